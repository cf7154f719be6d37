//! The snapshot builder (pure): registry instances + routes -> the resources Envoy gets, in a
//! canonical form of our own model.
//!
//! Modelled on go-control-plane's snapshot cache: one [`TypeSet`] per resource type, each
//! resource with the hash of its canonical form (sorted maps, sorted lists; the input for
//! per-resource versions in delta xDS) and one version per type derived from the names and
//! hashes of its resources. Versions never come from encoded protobuf bytes: envoy-types maps
//! are `HashMap`s, so those bytes are not deterministic.
//!
//! What is built:
//! * one cluster (EDS) per service that a route refers to or that has a healthy instance;
//!   HTTP/2 upstream when a route to it asks for it or an instance's protocol is `grpc`/`http2`;
//! * its endpoints: the **healthy** (`passing`) instances only, with the registry's metadata;
//!   an instance whose host is not an IP address is left out and reported in
//!   [`Snapshot::skipped`];
//! * one route configuration, `ingress`: a virtual host per distinct route host (its own routes
//!   first, then the host-less ones) and a `*` host with the host-less routes, each in
//!   [`Route::precedence`] order. A route is active only while one of its services has a
//!   healthy instance: a route with none is left out (Envoy answers 404, or a less specific
//!   route takes the request), and a split drops the services without instances;
//! * one listener, `ingress`, using that route configuration over RDS.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

use registry::service::{Health, Instance};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Route;

/// Name of the ingress listener and of its route configuration.
pub const INGRESS: &str = "ingress";

/// Bumped when the mapping from our model to Envoy resources changes, so versions change too.
const SCHEMA: &str = "fuse-1";

/// The four resource types, in make-before-break order (CDS, EDS, LDS, RDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoints,
    /// `envoy.config.listener.v3.Listener`.
    Listener,
    /// `envoy.config.route.v3.RouteConfiguration`.
    Routes,
}

impl Kind {
    /// Every type, in make-before-break order.
    pub const ALL: [Kind; 4] = [Kind::Cluster, Kind::Endpoints, Kind::Listener, Kind::Routes];

    /// The xDS type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoints => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Routes => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    /// The type of a type URL.
    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }
}

/// A cluster: one registry service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSpec {
    /// Cluster name = service name (also the EDS name).
    pub name: String,
    /// HTTP/2 to the instances.
    pub http2: bool,
}

/// One healthy instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// Instance id.
    pub id: String,
    /// Node it is registered on.
    pub node: String,
    /// IP address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// The registry's metadata (Envoy endpoint metadata under `draft`).
    pub metadata: BTreeMap<String, String>,
}

/// The endpoints of one cluster, sorted by instance id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointsSpec {
    /// Cluster name.
    pub cluster: String,
    /// Healthy instances.
    pub endpoints: Vec<EndpointSpec>,
}

/// A route as it is given to Envoy: the route and its split over services with instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveRoute {
    /// The route.
    pub route: Route,
    /// `(service, weight)` over services that have a healthy instance.
    pub split: Vec<(String, u32)>,
}

/// A virtual host of the ingress route configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualHostSpec {
    /// Name (`*` or the host).
    pub name: String,
    /// Domains Envoy matches the `Host` against.
    pub domains: Vec<String>,
    /// Routes in the order Envoy tries them.
    pub routes: Vec<ActiveRoute>,
}

/// The ingress route configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteConfigSpec {
    /// Name ([`INGRESS`]).
    pub name: String,
    /// Virtual hosts, host-specific ones first (sorted), `*` last.
    pub virtual_hosts: Vec<VirtualHostSpec>,
}

/// The ingress listener; its address is per Envoy (from the Envoy node's metadata), so it is
/// not part of the shared snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerSpec {
    /// Name ([`INGRESS`]).
    pub name: String,
    /// The route configuration it uses over RDS.
    pub route_config: String,
}

/// One resource in our model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spec {
    /// A cluster.
    Cluster(ClusterSpec),
    /// A cluster's endpoints.
    Endpoints(EndpointsSpec),
    /// The listener.
    Listener(ListenerSpec),
    /// The route configuration.
    Routes(RouteConfigSpec),
}

/// A resource with the hash of its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Hash of the canonical form (hex).
    pub hash: String,
    /// The resource.
    pub spec: Arc<Spec>,
}

impl Resource {
    fn new(name: String, spec: Spec) -> Resource {
        let canonical = serde_json::to_vec(&spec).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(SCHEMA.as_bytes());
        h.update([0]);
        h.update(&canonical);
        Resource {
            name,
            hash: hex(&h.finalize()[..8]),
            spec: Arc::new(spec),
        }
    }
}

/// The resources of one type and the type's version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeSet {
    /// Version: derived from the names and hashes of the resources.
    pub version: String,
    /// Resources by name.
    pub resources: BTreeMap<String, Resource>,
}

impl TypeSet {
    fn new(resources: impl IntoIterator<Item = Resource>) -> TypeSet {
        let resources: BTreeMap<String, Resource> =
            resources.into_iter().map(|r| (r.name.clone(), r)).collect();
        TypeSet {
            version: version_of(
                resources
                    .values()
                    .map(|r| (r.name.as_str(), r.hash.as_str())),
            ),
            resources,
        }
    }

    /// Name -> hash of every resource.
    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.resources
            .values()
            .map(|r| (r.name.clone(), r.hash.clone()))
            .collect()
    }
}

/// The version of a set of resources given as `(name, hash)` in name order: the same for the
/// same content on every node.
pub fn version_of<'a>(resources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (name, hash) in resources {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        h.update([b'\n']);
    }
    hex(&h.finalize()[..8])
}

/// Everything Envoy is given, built from one view of the registry and the route table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Clusters.
    pub clusters: TypeSet,
    /// Endpoints.
    pub endpoints: TypeSet,
    /// Listener.
    pub listeners: TypeSet,
    /// Route configuration.
    pub routes: TypeSet,
    /// Instances left out, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Snapshot {
    /// The resources of one type.
    pub fn of(&self, kind: Kind) -> &TypeSet {
        match kind {
            Kind::Cluster => &self.clusters,
            Kind::Endpoints => &self.endpoints,
            Kind::Listener => &self.listeners,
            Kind::Routes => &self.routes,
        }
    }

    /// Names of the routes given to Envoy (those with a healthy instance), sorted.
    pub fn active_routes(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for r in self.routes.resources.values() {
            if let Spec::Routes(rc) = &*r.spec {
                for vh in &rc.virtual_hosts {
                    names.extend(vh.routes.iter().map(|a| a.route.name.clone()));
                }
            }
        }
        names.into_iter().collect()
    }

    /// Versions and resource names per type (for `/proxy/snapshot`).
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (k, key) in Kind::ALL
            .into_iter()
            .zip(["clusters", "endpoints", "listeners", "routes"])
        {
            let set = self.of(k);
            out.insert(
                key.to_string(),
                serde_json::json!({
                    "version": set.version,
                    "resources": set.resources.keys().collect::<Vec<_>>(),
                }),
            );
        }
        out.insert(
            "active_routes".into(),
            serde_json::json!(self.active_routes()),
        );
        out.insert("skipped".into(), serde_json::json!(self.skipped));
        serde_json::Value::Object(out)
    }
}

/// Build the snapshot from every instance on live nodes and every route.
///
/// ```
/// use proxy_ctl::{snapshot::{build, Kind}, PathMatch, Route};
/// let snap = build(&[], &[Route::new("web", PathMatch::Prefix("/".into()), "web")]);
/// assert!(snap.clusters.resources.contains_key("web")); // referenced by a route
/// assert!(snap.of(Kind::Routes).resources["ingress"].hash.len() == 16);
/// ```
pub fn build(instances: &[Instance], routes: &[Route]) -> Snapshot {
    let mut skipped = Vec::new();
    let mut healthy: BTreeMap<&str, Vec<EndpointSpec>> = BTreeMap::new();
    let mut h2_services: BTreeSet<&str> = BTreeSet::new();
    for i in instances {
        if i.health != Health::Passing {
            continue;
        }
        let Some((ip, port)) = ip_port(&i.address) else {
            skipped.push((
                format!("{}/{}", i.service, i.id),
                format!("address '{}' is not IP:PORT", i.address),
            ));
            continue;
        };
        if matches!(i.protocol.as_str(), "grpc" | "http2" | "h2" | "h2c") {
            h2_services.insert(&i.service);
        }
        healthy.entry(&i.service).or_default().push(EndpointSpec {
            id: i.id.clone(),
            node: i.node.clone(),
            ip,
            port,
            metadata: i.metadata.clone(),
        });
    }
    for eps in healthy.values_mut() {
        eps.sort_by(|a, b| a.id.cmp(&b.id));
    }

    let mut services: BTreeMap<String, bool> = healthy
        .keys()
        .map(|s| (s.to_string(), h2_services.contains(s)))
        .collect();
    for r in routes {
        for s in r.services() {
            let h2 = services.entry(s).or_insert(false);
            *h2 |= r.http2;
        }
    }
    let clusters = TypeSet::new(services.iter().map(|(name, http2)| {
        Resource::new(
            name.clone(),
            Spec::Cluster(ClusterSpec {
                name: name.clone(),
                http2: *http2 || h2_services.contains(name.as_str()),
            }),
        )
    }));
    let endpoints = TypeSet::new(services.keys().map(|name| {
        Resource::new(
            name.clone(),
            Spec::Endpoints(EndpointsSpec {
                cluster: name.clone(),
                endpoints: healthy.get(name.as_str()).cloned().unwrap_or_default(),
            }),
        )
    }));

    let mut active: Vec<ActiveRoute> = routes
        .iter()
        .filter_map(|r| {
            let split: Vec<(String, u32)> = r
                .split()
                .into_iter()
                .filter(|(s, _)| healthy.contains_key(s.as_str()))
                .collect();
            (!split.is_empty()).then(|| ActiveRoute {
                route: r.clone(),
                split,
            })
        })
        .collect();
    active.sort_by(|a, b| a.route.precedence().cmp(&b.route.precedence()));
    let hosts: BTreeSet<&str> = active
        .iter()
        .filter_map(|a| a.route.matcher.host.as_deref())
        .collect();
    let anywhere: Vec<ActiveRoute> = active
        .iter()
        .filter(|a| a.route.matcher.host.is_none())
        .cloned()
        .collect();
    let mut virtual_hosts: Vec<VirtualHostSpec> = hosts
        .iter()
        .map(|h| {
            let mut rs: Vec<ActiveRoute> = active
                .iter()
                .filter(|a| a.route.matcher.host.as_deref() == Some(h))
                .cloned()
                .collect();
            rs.extend(anywhere.iter().cloned());
            let mut domains = vec![h.to_string()];
            if !h.contains(':') {
                domains.push(format!("{h}:*"));
            }
            VirtualHostSpec {
                name: h.to_string(),
                domains,
                routes: rs,
            }
        })
        .collect();
    virtual_hosts.push(VirtualHostSpec {
        name: "*".into(),
        domains: vec!["*".into()],
        routes: anywhere,
    });
    let route_config = TypeSet::new([Resource::new(
        INGRESS.into(),
        Spec::Routes(RouteConfigSpec {
            name: INGRESS.into(),
            virtual_hosts,
        }),
    )]);
    let listeners = TypeSet::new([Resource::new(
        INGRESS.into(),
        Spec::Listener(ListenerSpec {
            name: INGRESS.into(),
            route_config: INGRESS.into(),
        }),
    )]);
    Snapshot {
        clusters,
        endpoints,
        listeners,
        routes: route_config,
        skipped,
    }
}

fn ip_port(addr: &str) -> Option<(IpAddr, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    Some((ip, port.parse().ok()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current snapshot of a node, shared by the controller (which publishes) and the xDS
/// server and admin routes (which read and wait for changes).
#[derive(Debug, Clone)]
pub struct SnapshotCell {
    tx: Arc<tokio::sync::watch::Sender<Arc<Snapshot>>>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        SnapshotCell {
            tx: Arc::new(tokio::sync::watch::channel(Arc::new(build(&[], &[]))).0),
        }
    }
}

impl SnapshotCell {
    /// The current snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Publish a snapshot (watchers wake only if it differs from the current one).
    pub fn publish(&self, snap: Snapshot) {
        self.tx.send_if_modified(|cur| {
            if **cur == snap {
                false
            } else {
                *cur = Arc::new(snap);
                true
            }
        });
    }

    /// A receiver that sees every published change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests;
