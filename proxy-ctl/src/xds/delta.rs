//! The state machine of one incremental (delta) ADS stream (pure: no I/O, no clock).
//!
//! Per type it keeps what the client has (name -> version, from our responses on this stream
//! or the `initial_resource_versions` of a reconnecting client) and sends only what differs;
//! `removed_resources` lists only names the client has that are gone. The other rules are
//! listed in [`crate::xds`].
//!
//! ```
//! use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
//! use proxy_ctl::{snapshot::{build, Kind}, xds::delta::Delta, PathMatch, Route};
//! let snap = build(&[], &[Route::new("web", PathMatch::Prefix("/".into()), "web")]);
//! let mut stream = Delta::default();
//! let req = DeltaDiscoveryRequest { type_url: Kind::Cluster.type_url().into(), ..Default::default() };
//! let out = stream.on_request(req, &snap).unwrap();
//! assert_eq!(out[0].resources[0].name, "web");
//! ```

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::{
    dependent, hash_or_placeholder, is_wildcard, kind_of, make_before_break, packed, Nack, Peer,
    StreamReport, TypeReport, MAX_NAMES,
};
use crate::{
    snapshot::{Kind, Snapshot},
    ProxyError,
};

#[derive(Debug, Default)]
struct TypeState {
    subscribed: bool,
    /// Subscribed to everything (CDS and LDS by default).
    wildcard: bool,
    /// Names subscribed to explicitly.
    names: BTreeSet<String>,
    /// What the client has: name -> version (our hash).
    known: BTreeMap<String, String>,
    /// One response may be sent (the latest was answered, or none was sent).
    open: bool,
    last_nonce: Option<String>,
    last_version: String,
    /// Names to send on the next chance even if unchanged (their cluster/listener was sent).
    force: BTreeSet<String>,
    report: TypeReport,
}

/// A planned response: updates (name -> hash) and removals.
type Change = (BTreeMap<String, String>, Vec<String>);

/// One delta stream.
#[derive(Debug, Default)]
pub struct Delta {
    peer: Peer,
    nonce: u64,
    types: BTreeMap<Kind, TypeState>,
    nacks: Vec<Nack>,
}

impl Delta {
    /// A request from the client (see [`super::sotw::Sotw::on_request`] for the errors).
    pub fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ProxyError> {
        let kind = kind_of(&req.type_url)?;
        let count = req.resource_names_subscribe.len()
            + req.resource_names_unsubscribe.len()
            + req.initial_resource_versions.len();
        if count > MAX_NAMES {
            return Err(ProxyError::Invalid(format!(
                "{count} resource names in one request (at most {MAX_NAMES})"
            )));
        }
        self.peer.learn(req.node.as_ref())?;
        let node = self.peer.id.clone();
        let t = self.types.entry(kind).or_default();
        let reconnect = !t.subscribed && !req.initial_resource_versions.is_empty();
        if !t.subscribed {
            t.subscribed = true;
            // CDS and LDS: an empty first subscription means everything (legacy wildcard).
            t.wildcard = is_wildcard(kind) && req.resource_names_subscribe.is_empty();
            t.known = req.initial_resource_versions.into_iter().collect();
        }
        for n in req.resource_names_subscribe {
            if n == "*" {
                t.wildcard = true;
            } else {
                t.names.insert(n);
            }
        }
        for n in req.resource_names_unsubscribe {
            if n == "*" {
                t.wildcard = false;
            } else {
                t.names.remove(&n);
                // The client forgets it; nothing to remove.
                if !t.wildcard {
                    t.known.remove(&n);
                }
            }
        }
        if !req.response_nonce.is_empty() {
            if t.last_nonce.as_deref() != Some(req.response_nonce.as_str()) {
                return Ok(Vec::new()); // stale: subscription applied, no ACK/NACK
            }
            match req.error_detail {
                Some(err) => {
                    let nack = Nack {
                        node,
                        kind,
                        version: t.last_version.clone(),
                        message: err.message,
                    };
                    t.report.nack = Some(nack.clone());
                    self.nacks.push(nack);
                }
                None => {
                    t.report.acked = Some(t.last_version.clone());
                    t.report.nack = None;
                }
            }
        }
        t.open = true;
        let out = self.respond(snap);
        if reconnect && !out.iter().any(|r| r.type_url == req.type_url) {
            // A reconnecting client that has exactly what we would send: it has this version
            // (another node of the cluster sent it).
            let t = self.types.entry(kind).or_default();
            t.report.acked = Some(snap.of(kind).version.clone());
        }
        Ok(out)
    }

    /// A new snapshot: the changes for every open type.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        self.respond(snap)
    }

    /// NACKs received since the last call.
    pub fn take_nacks(&mut self) -> Vec<Nack> {
        std::mem::take(&mut self.nacks)
    }

    /// What was sent and answered, per type.
    pub fn report(&self) -> StreamReport {
        StreamReport::of(&self.peer, self.types.iter().map(|(k, t)| (k, &t.report)))
    }

    fn due(&self, kind: Kind, snap: &Snapshot) -> Option<Change> {
        let t = self.types.get(&kind)?;
        if !t.subscribed || !t.open {
            return None;
        }
        let mut now: BTreeMap<String, String> = if t.wildcard {
            snap.of(kind).hashes()
        } else {
            BTreeMap::new()
        };
        for n in &t.names {
            if let Some(h) = hash_or_placeholder(snap, kind, n) {
                now.insert(n.clone(), h);
            }
        }
        let updates: BTreeMap<String, String> = now
            .iter()
            .filter(|(n, h)| t.known.get(*n) != Some(*h) || t.force.contains(*n))
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect();
        let removed: Vec<String> = t
            .known
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        (!updates.is_empty() || !removed.is_empty()).then_some((updates, removed))
    }

    fn respond(&mut self, snap: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let mut plan = Vec::new();
        let mut changes = BTreeMap::new();
        for kind in Kind::ALL {
            if let Some((updates, removed)) = self.due(kind, snap) {
                if let Some(dep) = dependent(kind).and_then(|d| self.types.get_mut(&d)) {
                    dep.force.extend(dependent_names(kind, &updates, snap));
                }
                plan.push((kind, updates.is_empty()));
                changes.insert(kind, (updates, removed));
            }
        }
        make_before_break(plan)
            .into_iter()
            .filter_map(|kind| {
                let change = changes.remove(&kind)?;
                Some(self.send(kind, change, snap))
            })
            .collect()
    }

    fn send(
        &mut self,
        kind: Kind,
        (updates, removed): Change,
        snap: &Snapshot,
    ) -> DeltaDiscoveryResponse {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let version = snap.of(kind).version.clone();
        let resources = updates
            .iter()
            .filter_map(|(name, hash)| {
                Some(Resource {
                    name: name.clone(),
                    version: hash.clone(),
                    resource: Some(packed(snap, kind, name, &self.peer.target)?),
                    ..Resource::default()
                })
            })
            .collect();
        let t = self.types.entry(kind).or_default();
        for n in &removed {
            t.known.remove(n);
        }
        for (n, h) in updates {
            t.force.remove(&n);
            t.known.insert(n, h);
        }
        t.open = false;
        t.last_nonce = Some(nonce.clone());
        t.last_version = version.clone();
        t.report.sent = Some(version.clone());
        t.report.responses += 1;
        DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: kind.type_url().to_string(),
            removed_resources: removed,
            nonce,
            ..DeltaDiscoveryResponse::default()
        }
    }
}

/// The names of the dependent type to re-send when these clusters/listeners are sent: a
/// cluster's EDS name is its own; a listener's route configuration is named in its spec.
fn dependent_names(kind: Kind, updates: &BTreeMap<String, String>, snap: &Snapshot) -> Vec<String> {
    match kind {
        Kind::Cluster => updates.keys().cloned().collect(),
        Kind::Listener => updates
            .keys()
            .filter_map(
                |n| match snap.listeners.resources.get(n).map(|r| &*r.spec) {
                    Some(crate::snapshot::Spec::Listener(l)) => Some(l.route_config.clone()),
                    _ => None,
                },
            )
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        snapshot::{build, INGRESS},
        PathMatch, Route,
    };
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use registry::service::{Health, Instance};

    fn inst(service: &str, id: &str, port: u16) -> Instance {
        Instance {
            service: service.into(),
            id: id.into(),
            node: "n1".into(),
            address: format!("127.0.0.1:{port}"),
            protocol: "http".into(),
            metadata: Default::default(),
            health: Health::Passing,
        }
    }

    fn route(svc: &str) -> Route {
        Route::new(svc, PathMatch::Prefix(format!("/{svc}")), svc)
    }

    fn sub(kind: Kind, names: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..DeltaDiscoveryRequest::default()
        }
    }

    fn ack(r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        sub(Kind::from_type_url(&r.type_url).unwrap(), &[], &r.nonce)
    }

    fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
        r.resources.iter().map(|x| x.name.as_str()).collect()
    }

    fn kinds(rs: &[DeltaDiscoveryResponse]) -> Vec<Kind> {
        rs.iter()
            .map(|r| Kind::from_type_url(&r.type_url).unwrap())
            .collect()
    }

    #[test]
    fn only_changes_are_sent_and_removals_name_only_what_was_sent() {
        let snap = build(
            &[inst("web", "w1", 1), inst("api", "a1", 2)],
            &[route("web")],
        );
        let mut d = Delta::default();
        let c = d.on_request(sub(Kind::Cluster, &[], ""), &snap).unwrap();
        assert_eq!(names(&c[0]), ["api", "web"]);
        assert!(d.on_request(ack(&c[0]), &snap).unwrap().is_empty());
        // api goes away, web's route changes nothing in CDS
        let snap2 = build(&[inst("web", "w1", 1)], &[route("web")]);
        let out = d.on_snapshot(&snap2);
        assert_eq!(out.len(), 1);
        assert!(out[0].resources.is_empty());
        assert_eq!(out[0].removed_resources, ["api"]);
        d.on_request(ack(&out[0]), &snap2).unwrap();
        // a name never sent is never "removed"
        let snap3 = build(&[], &[route("web")]);
        let out = d.on_snapshot(&snap3);
        assert!(
            out.iter().all(|r| r.removed_resources.is_empty()),
            "{out:?}"
        );
    }

    #[test]
    fn eds_subscriptions_get_exactly_their_names_and_empty_ones_for_unknown() {
        let snap = build(&[inst("web", "w1", 1), inst("api", "a1", 2)], &[]);
        let mut d = Delta::default();
        let out = d
            .on_request(sub(Kind::Endpoints, &["web", "ghost"], ""), &snap)
            .unwrap();
        assert_eq!(names(&out[0]), ["ghost", "web"]);
        // unsubscribing is not a removal
        let mut un = ack(&out[0]);
        un.resource_names_unsubscribe = vec!["ghost".into()];
        assert!(d.on_request(un, &snap).unwrap().is_empty());
    }

    #[test]
    fn a_reconnecting_client_gets_only_what_differs_from_its_initial_versions() {
        let snap = build(
            &[inst("web", "w1", 1), inst("api", "a1", 2)],
            &[route("web")],
        );
        let mut d = Delta::default();
        let mut first = sub(Kind::Cluster, &[], "");
        first.initial_resource_versions = [
            (
                "web".to_string(),
                snap.clusters.resources["web"].hash.clone(),
            ),
            ("api".to_string(), "old".to_string()),
            ("gone".to_string(), "x".to_string()),
        ]
        .into();
        let out = d.on_request(first, &snap).unwrap();
        assert_eq!(names(&out[0]), ["api"]);
        assert_eq!(out[0].removed_resources, ["gone"]);
        // a client that has everything gets nothing, and counts as having the version
        let mut d = Delta::default();
        let mut first = sub(Kind::Cluster, &[], "");
        first.initial_resource_versions = snap.clusters.hashes().into_iter().collect();
        assert!(d.on_request(first, &snap).unwrap().is_empty());
        assert_eq!(
            d.report().types[&Kind::Cluster].acked.as_deref(),
            Some(snap.clusters.version.as_str())
        );
    }

    #[test]
    fn a_nack_is_recorded_and_not_resent_until_the_resource_changes() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut d = Delta::default();
        let r = d
            .on_request(sub(Kind::Routes, &[INGRESS], ""), &snap)
            .unwrap();
        let mut nack = ack(&r[0]);
        nack.error_detail = Some(RpcStatus {
            code: 3,
            message: "rejected".into(),
            ..RpcStatus::default()
        });
        assert!(d.on_request(nack, &snap).unwrap().is_empty());
        let n = d.take_nacks();
        assert_eq!((n.len(), n[0].kind), (1, Kind::Routes));
        assert_eq!(
            d.report().types[&Kind::Routes]
                .nack
                .as_ref()
                .unwrap()
                .message,
            "rejected"
        );
        assert!(d.on_snapshot(&snap).is_empty());
        let snap2 = build(
            &[inst("web", "w1", 1), inst("x", "x", 9)],
            &[route("web"), route("x")],
        );
        let out = d.on_snapshot(&snap2);
        assert_eq!(kinds(&out), [Kind::Routes]);
    }

    #[test]
    fn a_sent_cluster_makes_its_endpoints_due_even_if_unchanged() {
        let snap = build(&[inst("web", "w1", 1)], &[]);
        let mut d = Delta::default();
        let c = d.on_request(sub(Kind::Cluster, &[], ""), &snap).unwrap();
        d.on_request(ack(&c[0]), &snap).unwrap();
        let e = d
            .on_request(sub(Kind::Endpoints, &["web"], ""), &snap)
            .unwrap();
        d.on_request(ack(&e[0]), &snap).unwrap();
        // web becomes HTTP/2: the cluster changes, its endpoints do not
        let mut r = route("web");
        r.http2 = true;
        let snap2 = build(&[inst("web", "w1", 1)], &[r]);
        let out = d.on_snapshot(&snap2);
        assert_eq!(kinds(&out)[..2], [Kind::Cluster, Kind::Endpoints]);
        assert_eq!(names(&out[1]), ["web"]);
    }

    #[test]
    fn a_stale_nonce_applies_the_subscription_only() {
        let snap = build(&[inst("web", "w1", 1), inst("api", "a1", 2)], &[]);
        let mut d = Delta::default();
        let e = d
            .on_request(sub(Kind::Endpoints, &["web"], ""), &snap)
            .unwrap();
        assert!(d
            .on_request(sub(Kind::Endpoints, &["api"], "77"), &snap)
            .unwrap()
            .is_empty());
        assert_eq!(d.report().types[&Kind::Endpoints].acked, None);
        let out = d.on_request(ack(&e[0]), &snap).unwrap();
        assert_eq!(names(&out[0]), ["api"]);
    }
}
