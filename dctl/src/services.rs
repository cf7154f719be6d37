//! The services a `dctl` node runs on top of the runtime (registry, KV, broker, proxy controller): each subsystem
//! crate exposes a `start(&Node, ...)` that adds its actors under the node's `system` supervisor
//! and its routes to the admin API; this is where a node wires them in.

use anyhow::{Context, Result};
use runtime::Node;

use crate::cli::NodeArgs;

/// Start every service on a freshly started node.
pub async fn start(node: &Node, args: &NodeArgs) -> Result<()> {
    crate::kv_cmd::start(node, &args.kv).await?;
    let registry = registry::service::Registry::start(node)
        .await
        .context("service registry")?;
    proxy_ctl::Proxy::start(node, &registry)
        .await
        .context("proxy controller")?;
    broker::start(node).await.context("broker")?;
    Ok(())
}
