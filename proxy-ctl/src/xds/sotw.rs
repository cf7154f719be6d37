//! The state machine of one state-of-the-world ADS stream (pure: no I/O, no clock).
//!
//! Feed it the client's requests ([`Sotw::on_request`]) and the node's snapshots
//! ([`Sotw::on_snapshot`]); it returns the responses to send, in order. The rules it keeps are
//! listed in [`crate::xds`].
//!
//! ```
//! use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
//! use proxy_ctl::{snapshot::{build, Kind}, xds::sotw::Sotw, PathMatch, Route};
//! let snap = build(&[], &[Route::new("web", PathMatch::Prefix("/".into()), "web")]);
//! let mut stream = Sotw::default();
//! let req = DiscoveryRequest { type_url: Kind::Cluster.type_url().into(), ..Default::default() };
//! let out = stream.on_request(req, &snap).unwrap();
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].version_info, snap.clusters.version);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::{
    dependent, hash_or_placeholder, is_wildcard, kind_of, make_before_break, packed, Nack, Peer,
    StreamReport, TypeReport, MAX_NAMES,
};
use crate::{
    snapshot::{version_of, Kind, Snapshot},
    ProxyError,
};

/// What a response carried: name -> hash, and its version and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    nonce: String,
    version: String,
    content: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct TypeState {
    /// The client asked for this type at least once.
    subscribed: bool,
    /// The names asked for (EDS, RDS; CDS and LDS always get everything).
    names: BTreeSet<String>,
    /// The client answered the latest response (or has not had one): one may be sent.
    open: bool,
    /// The latest response.
    last: Option<Sent>,
    /// Answer on the next chance even if the content is unchanged.
    force: bool,
    /// The content the client rejected (not sent again until something else was).
    rejected: Option<BTreeMap<String, String>>,
    report: TypeReport,
}

/// One state-of-the-world stream.
#[derive(Debug, Default)]
pub struct Sotw {
    peer: Peer,
    nonce: u64,
    types: BTreeMap<Kind, TypeState>,
    nacks: Vec<Nack>,
}

impl Sotw {
    /// A request from the client. An unknown type URL, too many names or a malformed node
    /// target is an error (the stream ends with it); a stale nonce only updates the
    /// subscription.
    pub fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<DiscoveryResponse>, ProxyError> {
        let kind = kind_of(&req.type_url)?;
        if req.resource_names.len() > MAX_NAMES {
            return Err(ProxyError::Invalid(format!(
                "{} resource names in one request (at most {MAX_NAMES})",
                req.resource_names.len()
            )));
        }
        self.peer.learn(req.node.as_ref())?;
        let node = self.peer.id.clone();
        let t = self.types.entry(kind).or_default();
        t.subscribed = true;
        t.names = req
            .resource_names
            .into_iter()
            .filter(|n| n != "*")
            .collect();
        let latest = t.last.as_ref().map(|s| s.nonce.as_str());
        if !req.response_nonce.is_empty() && Some(req.response_nonce.as_str()) != latest {
            // Stale: answers an older response. The new names count; the answer to the
            // latest response comes (with the same names) and opens the type again.
            return Ok(Vec::new());
        }
        if let Some(last) = t.last.as_ref().filter(|_| !req.response_nonce.is_empty()) {
            match req.error_detail {
                Some(err) => {
                    let nack = Nack {
                        node,
                        kind,
                        version: last.version.clone(),
                        message: err.message,
                    };
                    t.rejected = Some(last.content.clone());
                    t.report.nack = Some(nack.clone());
                    self.nacks.push(nack);
                }
                None => {
                    t.report.acked = Some(last.version.clone());
                    t.report.nack = None;
                }
            }
        } else if t.last.is_none() && !req.version_info.is_empty() {
            // A reconnecting client that already has a version: if it is what we would send,
            // it has it (another node of the cluster sent it).
            let content = content(snap, kind, &t.names);
            let version = version_of(content.iter().map(|(n, h)| (n.as_str(), h.as_str())));
            if version == req.version_info {
                t.report.acked = Some(version.clone());
                t.last = Some(Sent {
                    nonce: String::new(),
                    version,
                    content,
                });
            }
        }
        t.open = true;
        Ok(self.respond(snap))
    }

    /// A new snapshot: the responses for every open type whose content changed.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> Vec<DiscoveryResponse> {
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

    /// The content a type would get now, if it is due: `(content, removals only)`.
    fn due(&self, kind: Kind, snap: &Snapshot) -> Option<(BTreeMap<String, String>, bool)> {
        let t = self.types.get(&kind)?;
        if !t.subscribed || !t.open {
            return None;
        }
        if !is_wildcard(kind) && t.names.is_empty() {
            return None; // nothing asked for
        }
        let now = content(snap, kind, &t.names);
        if t.rejected.as_ref() == Some(&now) {
            return None;
        }
        match &t.last {
            Some(last) if last.content == now && !t.force => None,
            Some(last) => {
                let only_removals = now.len() < last.content.len()
                    && now.iter().all(|(n, h)| last.content.get(n) == Some(h));
                Some((now, only_removals))
            }
            None => Some((now, false)),
        }
    }

    fn respond(&mut self, snap: &Snapshot) -> Vec<DiscoveryResponse> {
        // A cluster or listener sent now makes its dependent due even when unchanged, and the
        // dependent comes later in the order: decide type by type.
        let mut plan = Vec::new();
        let mut contents = BTreeMap::new();
        for kind in Kind::ALL {
            if let Some((content, only_removals)) = self.due(kind, snap) {
                if let Some(dep) = dependent(kind).and_then(|d| self.types.get_mut(&d)) {
                    dep.force = true;
                }
                plan.push((kind, only_removals));
                contents.insert(kind, content);
            }
        }
        make_before_break(plan)
            .into_iter()
            .filter_map(|kind| {
                let content = contents.remove(&kind)?;
                Some(self.send(kind, content, snap))
            })
            .collect()
    }

    fn send(
        &mut self,
        kind: Kind,
        content: BTreeMap<String, String>,
        snap: &Snapshot,
    ) -> DiscoveryResponse {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let version = version_of(content.iter().map(|(n, h)| (n.as_str(), h.as_str())));
        let resources = content
            .keys()
            .filter_map(|name| packed(snap, kind, name, &self.peer.target))
            .collect();
        let t = self.types.entry(kind).or_default();
        if t.rejected.as_ref() != Some(&content) {
            t.rejected = None;
        }
        t.open = false;
        t.force = false;
        t.report.sent = Some(version.clone());
        t.report.responses += 1;
        t.last = Some(Sent {
            nonce: nonce.clone(),
            version: version.clone(),
            content,
        });
        DiscoveryResponse {
            version_info: version,
            resources,
            type_url: kind.type_url().to_string(),
            nonce,
            ..DiscoveryResponse::default()
        }
    }
}

/// Name -> hash of what a type gets: everything for CDS/LDS, the names asked for (a
/// placeholder for an unknown one) for EDS/RDS.
fn content(snap: &Snapshot, kind: Kind, names: &BTreeSet<String>) -> BTreeMap<String, String> {
    if is_wildcard(kind) {
        return snap.of(kind).hashes();
    }
    names
        .iter()
        .filter_map(|n| Some((n.clone(), hash_or_placeholder(snap, kind, n)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        snapshot::{build, INGRESS},
        PathMatch, Route,
    };
    use envoy_types::pb::{
        envoy::config::{core::v3::Node, endpoint::v3::ClusterLoadAssignment},
        google::rpc::Status as RpcStatus,
    };
    use prost::Message;
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

    fn req(kind: Kind, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            node: Some(Node {
                id: "envoy-1".into(),
                ..Node::default()
            }),
            ..DiscoveryRequest::default()
        }
    }

    fn ack(r: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
        let kind = Kind::from_type_url(&r.type_url).unwrap();
        req(kind, names, &r.version_info, &r.nonce)
    }

    fn nack(r: &DiscoveryResponse, names: &[&str], msg: &str) -> DiscoveryRequest {
        let mut q = ack(r, names);
        q.version_info = String::new();
        q.error_detail = Some(RpcStatus {
            code: 3,
            message: msg.into(),
            ..RpcStatus::default()
        });
        q
    }

    fn kinds(rs: &[DiscoveryResponse]) -> Vec<Kind> {
        rs.iter()
            .map(|r| Kind::from_type_url(&r.type_url).unwrap())
            .collect()
    }

    /// A stream through the initial handshake: CDS, EDS for `web`, LDS, RDS, all ACKed.
    fn connected(snap: &Snapshot) -> Sotw {
        let mut s = Sotw::default();
        let c = s.on_request(req(Kind::Cluster, &[], "", ""), snap).unwrap();
        assert_eq!(kinds(&c), [Kind::Cluster]);
        assert!(s.on_request(ack(&c[0], &[]), snap).unwrap().is_empty());
        let e = s
            .on_request(req(Kind::Endpoints, &["web"], "", ""), snap)
            .unwrap();
        assert!(s.on_request(ack(&e[0], &["web"]), snap).unwrap().is_empty());
        let l = s
            .on_request(req(Kind::Listener, &[], "", ""), snap)
            .unwrap();
        assert!(s.on_request(ack(&l[0], &[]), snap).unwrap().is_empty());
        let r = s
            .on_request(req(Kind::Routes, &[INGRESS], "", ""), snap)
            .unwrap();
        assert!(s
            .on_request(ack(&r[0], &[INGRESS]), snap)
            .unwrap()
            .is_empty());
        s
    }

    #[test]
    fn an_ack_gets_no_answer_until_the_snapshot_changes() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut s = connected(&snap);
        assert!(s.on_snapshot(&snap).is_empty());
        let report = s.report();
        assert_eq!(report.node, "envoy-1");
        assert_eq!(
            report.types[&Kind::Cluster].acked.as_deref(),
            Some(snap.clusters.version.as_str())
        );
        // a new instance changes EDS only
        let snap2 = build(
            &[inst("web", "w1", 1), inst("web", "w2", 2)],
            &[route("web")],
        );
        let out = s.on_snapshot(&snap2);
        assert_eq!(kinds(&out), [Kind::Endpoints]);
        let cla = ClusterLoadAssignment::decode(out[0].resources[0].value.as_slice()).unwrap();
        assert_eq!(cla.endpoints[0].lb_endpoints.len(), 2);
    }

    #[test]
    fn eds_and_rds_answer_exactly_the_names_asked_with_empty_ones_for_unknown_names() {
        let snap = build(&[inst("web", "w1", 1)], &[]);
        let mut s = Sotw::default();
        let out = s
            .on_request(req(Kind::Endpoints, &["web", "ghost"], "", ""), &snap)
            .unwrap();
        let names: Vec<String> = out[0]
            .resources
            .iter()
            .map(|a| {
                ClusterLoadAssignment::decode(a.value.as_slice())
                    .unwrap()
                    .cluster_name
            })
            .collect();
        assert_eq!(names, ["ghost", "web"]);
        let ghost = ClusterLoadAssignment::decode(out[0].resources[0].value.as_slice()).unwrap();
        assert!(ghost.endpoints.is_empty());
    }

    #[test]
    fn cds_lds_send_full_state_and_a_resent_cluster_gets_its_endpoints_again() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut s = connected(&snap);
        // `api` appears: CDS (full state: web and api) and, although web's endpoints did not
        // change, EDS is answered again right after it.
        let snap2 = build(
            &[inst("web", "w1", 1), inst("api", "a1", 3)],
            &[route("web"), route("api")],
        );
        let out = s.on_snapshot(&snap2);
        assert_eq!(kinds(&out), [Kind::Cluster, Kind::Endpoints, Kind::Routes]);
        assert_eq!(out[0].resources.len(), 2);
        assert_eq!(out[1].resources.len(), 1, "only the name asked for: web");
        // Envoy asks for api's endpoints with its ACK: answered with both.
        assert!(s.on_request(ack(&out[0], &[]), &snap2).unwrap().is_empty());
        let more = s.on_request(ack(&out[1], &["api", "web"]), &snap2).unwrap();
        assert_eq!(kinds(&more), [Kind::Endpoints]);
        assert_eq!(more[0].resources.len(), 2);
    }

    #[test]
    fn a_nack_is_recorded_and_not_resent_until_the_snapshot_changes() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut s = connected(&snap);
        let extra = Route::new("extra", PathMatch::Regex("/x[0-9]+".into()), "web");
        let snap2 = build(&[inst("web", "w1", 1)], &[route("web"), extra.clone()]);
        let out = s.on_snapshot(&snap2);
        let rds = out
            .iter()
            .find(|r| r.type_url == Kind::Routes.type_url())
            .unwrap()
            .clone();
        let again = s
            .on_request(nack(&rds, &[INGRESS], "bad regex"), &snap2)
            .unwrap();
        assert!(again.is_empty(), "the rejected version is not re-sent");
        let nacks = s.take_nacks();
        assert_eq!(nacks.len(), 1);
        assert_eq!(nacks[0].kind, Kind::Routes);
        assert_eq!(nacks[0].version, rds.version_info);
        assert_eq!(nacks[0].message, "bad regex");
        assert_eq!(nacks[0].node, "envoy-1");
        assert!(s.on_snapshot(&snap2).is_empty(), "same snapshot: nothing");
        let rep = s.report();
        assert_eq!(
            rep.types[&Kind::Routes].nack.as_ref().unwrap().message,
            "bad regex"
        );
        // other types keep updating
        let snap3 = build(
            &[inst("web", "w1", 1), inst("web", "w2", 2)],
            &[route("web"), extra],
        );
        let out = s.on_snapshot(&snap3);
        assert!(kinds(&out).contains(&Kind::Endpoints));
        assert!(!kinds(&out).contains(&Kind::Routes));
        // the routes change: sent again
        let snap4 = build(&[inst("web", "w1", 1)], &[route("web")]);
        let out = s.on_snapshot(&snap4);
        assert!(kinds(&out).contains(&Kind::Routes), "{:?}", kinds(&out));
    }

    #[test]
    fn a_stale_nonce_is_no_ack_but_its_names_count() {
        let snap = build(&[inst("web", "w1", 1), inst("api", "a", 2)], &[]);
        let mut s = Sotw::default();
        let first = s
            .on_request(req(Kind::Endpoints, &["web"], "", ""), &snap)
            .unwrap();
        // a request carrying an old nonce, adding `api`: no answer yet (one is outstanding)
        let stale = req(Kind::Endpoints, &["api", "web"], "", "999");
        assert!(s.on_request(stale, &snap).unwrap().is_empty());
        assert_eq!(s.report().types[&Kind::Endpoints].acked, None, "not an ACK");
        // the ACK of the outstanding response opens the type: `api` is sent
        let mut a = ack(&first[0], &["web"]);
        a.resource_names = vec!["api".into(), "web".into()];
        let out = s.on_request(a, &snap).unwrap();
        assert_eq!(out[0].resources.len(), 2);
        // a NACK with a stale nonce is not recorded
        let stale_nack = nack(&first[0], &["api", "web"], "late");
        assert!(s.on_request(stale_nack, &snap).unwrap().is_empty());
        assert!(s.take_nacks().is_empty());
    }

    #[test]
    fn nonces_are_per_type() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut s = Sotw::default();
        let c = s
            .on_request(req(Kind::Cluster, &[], "", ""), &snap)
            .unwrap();
        let e = s
            .on_request(req(Kind::Endpoints, &["web"], "", ""), &snap)
            .unwrap();
        // the CDS nonce on an EDS request is stale for EDS
        let cross = req(Kind::Endpoints, &["web"], &c[0].version_info, &c[0].nonce);
        s.on_request(cross, &snap).unwrap();
        assert_eq!(s.report().types[&Kind::Endpoints].acked, None);
        s.on_request(ack(&e[0], &["web"]), &snap).unwrap();
        assert!(s.report().types[&Kind::Endpoints].acked.is_some());
    }

    #[test]
    fn a_client_that_never_acks_gets_one_response_per_type() {
        let mut s = Sotw::default();
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        assert_eq!(
            s.on_request(req(Kind::Cluster, &[], "", ""), &snap)
                .unwrap()
                .len(),
            1
        );
        for port in 2..50 {
            let snap = build(&[inst("web", "w1", 1), inst("x", "x", port)], &[]);
            assert!(s.on_snapshot(&snap).is_empty());
        }
        assert_eq!(s.report().types[&Kind::Cluster].responses, 1);
    }

    #[test]
    fn removals_only_go_after_additions_in_reverse_order() {
        let snap = build(
            &[inst("web", "w1", 1), inst("api", "a1", 2)],
            &[route("web"), route("api")],
        );
        let mut s = Sotw::default();
        for (kind, names) in [
            (Kind::Cluster, vec![]),
            (Kind::Endpoints, vec!["api", "web"]),
            (Kind::Listener, vec![]),
            (Kind::Routes, vec![INGRESS]),
        ] {
            let r = s.on_request(req(kind, &names, "", ""), &snap).unwrap();
            s.on_request(ack(&r[0], &names), &snap).unwrap();
        }
        // api goes away entirely: RDS changes, CDS only loses a cluster
        let snap2 = build(&[inst("web", "w1", 1)], &[route("web")]);
        let out = s.on_snapshot(&snap2);
        let order = kinds(&out);
        assert_eq!(order, [Kind::Endpoints, Kind::Routes, Kind::Cluster]);
    }

    #[test]
    fn a_reconnecting_client_with_the_current_version_gets_nothing_new() {
        let snap = build(&[inst("web", "w1", 1)], &[route("web")]);
        let mut s = Sotw::default();
        let out = s
            .on_request(req(Kind::Cluster, &[], &snap.clusters.version, ""), &snap)
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(
            s.report().types[&Kind::Cluster].acked.as_deref(),
            Some(snap.clusters.version.as_str())
        );
        let old = s
            .on_request(req(Kind::Listener, &[], "old-version", ""), &snap)
            .unwrap();
        assert_eq!(old.len(), 1);
    }

    #[test]
    fn bad_requests_are_errors() {
        let snap = Snapshot::default();
        let mut s = Sotw::default();
        let mut r = req(Kind::Cluster, &[], "", "");
        r.type_url = "type.googleapis.com/nope".into();
        assert!(matches!(
            s.on_request(r, &snap),
            Err(ProxyError::Invalid(_))
        ));
    }
}
