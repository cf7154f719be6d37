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

mod error;
pub mod http;
pub mod route;
pub mod snapshot;
pub mod table;

pub use error::ProxyError;
pub use route::{GrpcMatch, HeaderMatch, PathMatch, Route, RouteMatch};
pub use table::{RouteList, RouteTable, ROUTES_PREFIX};
