//! The services a `dctl` node runs on top of the runtime (registry, KV, broker, proxy controller):
//! each subsystem crate exposes a `start(&Node, ...)` that adds its actors under the node's
//! `system` supervisor and its routes to the admin API; `chassis::start_services` wires them in,
//! for `dctl node start` and for every service binary alike.

use anyhow::Result;
use runtime::Node;

/// Start every service on a freshly started node.
pub async fn start(node: &Node, args: &chassis::NodeFlags) -> Result<()> {
    chassis::start_services(node, args, &chassis::Defaults::dctl()).await?;
    Ok(())
}
