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
    let opts = proxy_ctl::ProxyOptions {
        xds_listen: xds_listen(args),
        files: args
            .xds_files
            .clone()
            .map(|dir| (dir, args.xds_files_listen)),
    };
    proxy_ctl::Proxy::start(node, &registry, &opts)
        .await
        .context("proxy controller")?;
    broker::start(node).await.context("broker")?;
    Ok(())
}

/// `--xds-listen`, or a free port on the loopback IP of `--listen` (127.0.0.1 otherwise).
fn xds_listen(args: &NodeArgs) -> std::net::SocketAddr {
    if let Some(a) = args.xds_listen {
        return a;
    }
    let ip = args
        .listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .filter(|ip| ip.is_loopback())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    std::net::SocketAddr::new(ip, 0)
}
