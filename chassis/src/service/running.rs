//! A started service: its context, addresses, readiness; wait for it or stop it.

use std::{net::SocketAddr, sync::Arc};

use runtime::Node;

use super::{shared::Shared, ServiceCtx};
use crate::{error::Error, health::Readiness};

/// A started service.
pub struct Running {
    pub(super) ctx: ServiceCtx,
    pub(super) http: Option<SocketAddr>,
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("service", &self.ctx.name)
            .field("http", &self.http)
            .finish()
    }
}

impl Running {
    /// The service's context (node, KV, registry, configuration).
    pub fn ctx(&self) -> &ServiceCtx {
        &self.ctx
    }
    /// The node.
    pub fn node(&self) -> &Node {
        &self.ctx.node
    }
    /// The address the HTTP router is served on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }
    /// The current readiness.
    pub fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }
    /// Print where the service is (to stdout) and run until a signal or the root gives up.
    pub async fn wait(self) -> Result<(), Error> {
        let node = self.ctx.node.clone();
        println!(
            "service {} running on node {}; admin API {}; http {}",
            self.ctx.name,
            node.name(),
            node.admin_addr()
                .map(|a| format!("http://{a}/"))
                .unwrap_or_else(|| "off".into()),
            self.http
                .map(|a| format!("http://{a}/"))
                .unwrap_or_else(|| "none".into()),
        );
        if let Some((_, gossip)) = node.cluster_addrs() {
            println!("gossip {gossip}");
        }
        node.run_until_signal()
            .await
            .map_err(|e| Error::Stopped(e.to_string()))
    }
    /// Stop gracefully (what SIGTERM does).
    pub async fn shutdown(self) {
        self.ctx.node.shutdown().await;
    }
}
