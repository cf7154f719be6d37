//! The ADS server: Envoy's aggregated discovery service, state-of-the-world and delta, on one
//! gRPC port per node.
//!
//! * [`sotw`]: the protocol state machine of one state-of-the-world stream (pure: fed requests
//!   and snapshots, returns responses);
//! * [`delta`]: the same for one incremental (delta) stream;
//! * [`status`]: what every connected Envoy was sent, ACKed and NACKed (`/proxy/status`,
//!   `dctl proxy status`, the NACK counter in `/metrics`);
//! * [`server`]: the thin tonic layer: one task per stream joining the client's requests and
//!   the node's snapshots; bounded in streams.
//!
//! The rules both state machines keep (from go-control-plane's design and the bugs found in it
//! and other control planes):
//! * versions and nonces are per type; a request whose nonce is not the latest one sent for its
//!   type is no ACK/NACK, but its subscription change is applied;
//! * at most one response per type is outstanding: the next goes after the client answered;
//! * a NACKed content is not re-sent until the snapshot (or the subscription) changes;
//! * when a cluster is (re)sent, its endpoints are sent on the next EDS request even when
//!   unchanged (a re-sent cluster warms until it gets them); the same for a listener and its
//!   route configuration;
//! * EDS and RDS answer exactly the names requested, an unknown name with an empty resource;
//!   CDS and LDS always send the full state (SotW);
//! * delta removes only names the client has (sent on this stream or listed in
//!   `initial_resource_versions`);
//! * make-before-break: types with additions or changes go CDS, EDS, LDS, RDS; types with only
//!   removals after them in reverse order.

pub mod delta;
pub mod server;
pub mod sotw;
pub mod status;

#[cfg(test)]
mod fuzz_tests;

use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;

use crate::{
    envoy::{self, Target},
    snapshot::{EndpointsSpec, Kind, RouteConfigSpec, Snapshot, Spec},
    ProxyError,
};

/// Most open xDS streams per node; one more gets `RESOURCE_EXHAUSTED`.
pub const MAX_STREAMS: usize = 1024;

/// Most resource names in one request.
pub const MAX_NAMES: usize = 100_000;

/// The hash given to a name that is requested but not in the snapshot (it is answered with an
/// empty resource).
const PLACEHOLDER: &str = "empty";

/// A rejected response: which Envoy, which type and version, and Envoy's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The Envoy's node id.
    pub node: String,
    /// The resource type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The version it rejected.
    pub version: String,
    /// Envoy's `error_detail` message.
    pub message: String,
}

/// What one type of one stream was sent and answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeReport {
    /// The version of the latest response.
    pub sent: Option<String>,
    /// The latest version the Envoy ACKed.
    pub acked: Option<String>,
    /// Responses sent.
    pub responses: u64,
    /// The NACK of the latest response, if it was rejected.
    pub nack: Option<Nack>,
}

/// The state of one stream, for `/proxy/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// The Envoy's node id (empty until its first request).
    pub node: String,
    /// The Envoy's cluster name.
    pub cluster: String,
    /// Per type, in make-before-break order.
    pub types: BTreeMap<Kind, TypeReport>,
}

impl StreamReport {
    /// The report of the stream from `peer`, with each type's report.
    pub(crate) fn of<'a>(
        peer: &Peer,
        types: impl Iterator<Item = (&'a Kind, &'a TypeReport)>,
    ) -> Self {
        StreamReport {
            node: peer.id.clone(),
            cluster: peer.cluster.clone(),
            types: types.map(|(k, t)| (*k, t.clone())).collect(),
        }
    }
}

/// The Envoy node of the first request of a stream: its id, cluster and listener target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub(crate) id: String,
    pub(crate) cluster: String,
    pub(crate) target: Target,
    pub(crate) known: bool,
}

impl Peer {
    /// Take the node from the first request that has one (later ones may omit it).
    pub(crate) fn learn(
        &mut self,
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
    ) -> Result<(), ProxyError> {
        if self.known {
            return Ok(());
        }
        if let Some(n) = node {
            self.target = Target::of_node(Some(n)).map_err(ProxyError::Invalid)?;
            self.id = n.id.clone();
            self.cluster = n.cluster.clone();
            self.known = true;
        }
        Ok(())
    }
}

pub(crate) fn kind_of(type_url: &str) -> Result<Kind, ProxyError> {
    Kind::from_type_url(type_url).ok_or_else(|| {
        let served: Vec<&str> = Kind::ALL.iter().map(|k| k.type_url()).collect();
        ProxyError::Invalid(format!(
            "unknown type URL '{}': this server serves {}",
            type_url.chars().take(200).collect::<String>(),
            served.join(", ")
        ))
    })
}

/// Whether Envoy subscribes to this type by wildcard (CDS, LDS) or by name (EDS, RDS).
pub(crate) fn is_wildcard(kind: Kind) -> bool {
    matches!(kind, Kind::Cluster | Kind::Listener)
}

/// The type that must be answered again after this one is (re)sent.
pub(crate) fn dependent(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::Cluster => Some(Kind::Endpoints),
        Kind::Listener => Some(Kind::Routes),
        _ => None,
    }
}

/// The hash of `name` of `kind` in `snap`, or the placeholder's for a name it lacks
/// (EDS and RDS only; `None` for CDS and LDS).
pub(crate) fn hash_or_placeholder(snap: &Snapshot, kind: Kind, name: &str) -> Option<String> {
    match snap.of(kind).resources.get(name) {
        Some(r) => Some(r.hash.clone()),
        None if is_wildcard(kind) => None,
        None => Some(PLACEHOLDER.to_string()),
    }
}

/// The resource named `name` of `kind`, packed for Envoy (an empty one for an unknown EDS or
/// RDS name).
pub(crate) fn packed(
    snap: &Snapshot,
    kind: Kind,
    name: &str,
    target: &Target,
) -> Option<envoy_types::pb::google::protobuf::Any> {
    let spec: Arc<Spec> = match snap.of(kind).resources.get(name) {
        Some(r) => r.spec.clone(),
        None => Arc::new(match kind {
            Kind::Endpoints => Spec::Endpoints(EndpointsSpec {
                cluster: name.to_string(),
                endpoints: Vec::new(),
            }),
            Kind::Routes => Spec::Routes(RouteConfigSpec {
                name: name.to_string(),
                virtual_hosts: Vec::new(),
            }),
            Kind::Cluster | Kind::Listener => return None,
        }),
    };
    Some(envoy::to_any(&spec, target))
}

/// Order the types to send for make-before-break: those with additions or changes in
/// CDS, EDS, LDS, RDS order, then those with only removals in reverse order.
pub(crate) fn make_before_break(mut plan: Vec<(Kind, bool)>) -> Vec<Kind> {
    plan.sort_by_key(|(k, _)| *k);
    let mut out: Vec<Kind> = plan.iter().filter(|(_, rm)| !rm).map(|(k, _)| *k).collect();
    out.extend(plan.iter().rev().filter(|(_, rm)| *rm).map(|(k, _)| *k));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_only_go_last_in_reverse_order() {
        let plan = vec![
            (Kind::Routes, false),
            (Kind::Cluster, true),
            (Kind::Endpoints, true),
            (Kind::Listener, false),
        ];
        assert_eq!(
            make_before_break(plan),
            [Kind::Listener, Kind::Routes, Kind::Endpoints, Kind::Cluster]
        );
    }

    #[test]
    fn unknown_type_urls_are_named_in_the_error() {
        let e = kind_of("type.googleapis.com/envoy.config.secret.v3.Secret").unwrap_err();
        assert!(e.to_string().contains("unknown type URL"), "{e}");
        assert!(e.to_string().contains("Secret"), "{e}");
        assert_eq!(kind_of(Kind::Routes.type_url()).unwrap(), Kind::Routes);
    }
}
