//! Fuse, the proxy controller: it turns what the service registry knows and the route table in
//! the KV store into Envoy configuration.
//!
//! * [`route`]: a [`Route`] (name, path/host/header/gRPC match, target service or weighted
//!   split, HTTP/2 upstream, timeout, retries) and its validation.
//! * [`table`]: the route table, stored in the KV store under `routes/<name>` ([`RouteTable`]):
//!   add (refused on a name clash, nothing half-written), list, remove.
//! * [`snapshot`]: the pure snapshot builder: registry instances + routes -> clusters,
//!   endpoints (healthy instances only), the ingress listener and route configuration, each
//!   with a hash of its canonical form and one version per type derived from those hashes
//!   (never from encoded protobuf bytes, whose map order is not deterministic).
//! * [`http`]: admin routes under `/proxy/` backing `dctl routes ...`.
//!
//! ```
//! use proxy_ctl::{PathMatch, Route};
//! let route = Route::new("web", PathMatch::Prefix("/".into()), "web");
//! route.validate().unwrap();
//! ```

pub mod envoy;
mod error;
pub mod http;
pub mod route;
pub mod snapshot;
pub mod table;

pub use error::ProxyError;
pub use route::{GrpcMatch, HeaderMatch, PathMatch, Route, RouteMatch};
pub use table::{RouteList, RouteTable, ROUTES_PREFIX};

pub mod controller;

use runtime::Node;

/// The proxy controller of a node (cheap to clone).
#[derive(Debug, Clone)]
pub struct Proxy {
    cell: snapshot::SnapshotCell,
}

impl Proxy {
    /// Start the proxy-controller actor (`proxy`, under the node's `system` supervisor) and
    /// serve its admin routes. Needs the node's registry; routes come from the node's KV store.
    pub async fn start(
        node: &Node,
        registry: &registry::service::Registry,
    ) -> Result<Proxy, ProxyError> {
        let cell = snapshot::SnapshotCell::default();
        let sup = node
            .system_supervisor()
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        let spec = actors::ChildSpec::worker(
            "proxy",
            Some(format!("{}/proxy", node.name())),
            controller::Controller {
                registry: registry.clone(),
                cell: cell.clone(),
            },
            (),
        );
        actors::start_child(&sup, spec)
            .await
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        node.add_admin_routes(http::routes(node.name(), cell.clone()));
        Ok(Proxy { cell })
    }

    /// The node's current snapshot, and a way to wait for the next.
    pub fn snapshot(&self) -> &snapshot::SnapshotCell {
        &self.cell
    }
}
