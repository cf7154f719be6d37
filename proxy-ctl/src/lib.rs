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
//! * [`envoy`]: the pure conversion from that model to Envoy's resources (`envoy-types`).
//! * [`xds`]: the ADS gRPC server (state-of-the-world and delta): per-stream state machines,
//!   the tonic layer, and the status of every connected Envoy.
//! * [`http`]: admin routes under `/proxy/` backing `dctl routes ...` and `dctl proxy status`.
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
pub mod xds;

pub use error::ProxyError;
pub use route::{GrpcMatch, HeaderMatch, PathMatch, Route, RouteMatch};
pub use table::{RouteList, RouteTable, ROUTES_PREFIX};

pub mod bootstrap;
pub mod controller;

use runtime::Node;

/// The gossip key under which a node announces its xDS address.
pub const XDS_ADDR_KEY: &str = "xds_addr";

/// The proxy controller of a node (cheap to clone).
#[derive(Debug, Clone)]
pub struct Proxy {
    cell: snapshot::SnapshotCell,
    status: xds::status::XdsStatus,
    xds_addr: std::net::SocketAddr,
}

impl Proxy {
    /// Start the proxy-controller actor (`proxy`, under the node's `system` supervisor) and the
    /// ADS server (`xds`, on `xds_listen`; port 0: a free port), announce the server's address
    /// in gossip ([`XDS_ADDR_KEY`]), and serve the admin routes and metrics. Needs the node's
    /// registry; routes come from the node's KV store.
    pub async fn start(
        node: &Node,
        registry: &registry::service::Registry,
        xds_listen: std::net::SocketAddr,
    ) -> Result<Proxy, ProxyError> {
        let (listener, xds_addr) = xds::server::bind(xds_listen)?;
        let cell = snapshot::SnapshotCell::default();
        let status = xds::status::XdsStatus::default();
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
        let spec = actors::ChildSpec::worker(
            "xds",
            Some(format!("{}/xds", node.name())),
            xds::server::XdsActor {
                listener: std::sync::Arc::new(listener),
                ads: xds::server::Ads::new(cell.clone(), status.clone()),
            },
            (),
        );
        actors::start_child(&sup, spec)
            .await
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        node.gossip_set(XDS_ADDR_KEY, &xds_addr.to_string()).await;
        let scraped = status.clone();
        node.metrics().add_source(move || scraped.metrics_text());
        node.add_admin_routes(http::routes(
            node.name(),
            cell.clone(),
            status.clone(),
            xds_addr,
        ));
        Ok(Proxy {
            cell,
            status,
            xds_addr,
        })
    }

    /// The node's current snapshot, and a way to wait for the next.
    pub fn snapshot(&self) -> &snapshot::SnapshotCell {
        &self.cell
    }

    /// What the xDS server knows of its clients.
    pub fn status(&self) -> &xds::status::XdsStatus {
        &self.status
    }

    /// Where the xDS server listens.
    pub fn xds_addr(&self) -> std::net::SocketAddr {
        self.xds_addr
    }
}
