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
//! * [`files`]: files mode (the snapshot as `path_config_source` files, atomic renames).
//! * [`validate`]: a snapshot as one static bootstrap, checked by `envoy --mode validate`.
//! * [`http`]: admin routes under `/proxy/` backing `dctl routes ...` and `dctl proxy status`.
//!
//! ```
//! use proxy_ctl::{PathMatch, Route};
//! let route = Route::new("web", PathMatch::Prefix("/".into()), "web");
//! route.validate().unwrap();
//! ```

#![warn(missing_docs)]

pub mod envoy;
mod error;
pub mod files;
pub mod http;
pub mod route;
pub mod snapshot;
pub mod table;
#[cfg(test)]
mod test_support;
pub mod validate;
pub mod xds;

pub use error::ProxyError;
pub use route::{GrpcMatch, HeaderMatch, PathMatch, Route, RouteMatch};
pub use table::{RouteList, RouteTable, ROUTES_PREFIX};

pub mod bootstrap;
pub mod controller;

use runtime::Node;

/// How a node serves Envoy.
///
/// ```
/// let opts = proxy_ctl::ProxyOptions::default();
/// assert!(opts.xds_listen.ip().is_loopback() && opts.files.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The ADS server's address (port 0: a free one).
    pub xds_listen: std::net::SocketAddr,
    /// Files mode too: the directory, and the address of the ingress listener in the files.
    pub files: Option<(std::path::PathBuf, std::net::SocketAddr)>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            xds_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            files: None,
        }
    }
}

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
    /// Start the proxy controller (the `proxy` supervisor under the node's `system` supervisor:
    /// the controller actor and its registry and route watches, see `controller.rs`) and the
    /// ADS server (`xds`, on `opts.xds_listen`; port 0: a free port), in files mode the
    /// `xds-files` writer, announce the server's address in gossip ([`XDS_ADDR_KEY`]), and
    /// serve the admin routes and metrics. Needs the node's registry; routes come from the
    /// node's KV store.
    pub async fn start(
        node: &Node,
        registry: &registry::service::Registry,
        opts: &ProxyOptions,
    ) -> Result<Proxy, ProxyError> {
        let (listener, xds_addr) = xds::server::bind(opts.xds_listen)?;
        let cell = snapshot::SnapshotCell::default();
        let status = xds::status::XdsStatus::default();
        let sup = node
            .system_supervisor()
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        let spec = actors::ChildSpec::supervisor(
            "proxy",
            None,
            controller::supervisor_spec(controller::Controller {
                registry: registry.clone(),
                cell: cell.clone(),
            }),
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
        if let Some((dir, listen)) = &opts.files {
            let spec = actors::ChildSpec::worker(
                "xds-files",
                Some(format!("{}/xds-files", node.name())),
                files::FilesActor {
                    dir: dir.clone(),
                    listen: *listen,
                    cell: cell.clone(),
                },
                (),
            );
            actors::start_child(&sup, spec)
                .await
                .map_err(|e| ProxyError::Files(e.to_string()))?;
        }
        if let Err(e) = node.gossip_set(XDS_ADDR_KEY, &xds_addr.to_string()).await {
            tracing::error!("cannot publish {XDS_ADDR_KEY}: {e}");
        }
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
