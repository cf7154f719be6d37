//! Fuzz targets of the xDS server (run with the unit tests; see the `fuzz` crate for long
//! runs): a stream of requests from a client, as protobuf bytes, interleaved with snapshot
//! changes, through both stream state machines; and routes as stored in the KV.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
    },
    google::rpc::Status,
};
use prost::Message;
use registry::service::{Health, Instance};

use super::{delta::Delta, sotw::Sotw};
use crate::{
    snapshot::{build, Kind, Snapshot},
    table::{key, parse_entry},
    GrpcMatch, HeaderMatch, PathMatch, Route,
};

fn snapshots() -> [Snapshot; 2] {
    let inst = |service: &str, id: &str, address: &str| Instance {
        service: service.into(),
        id: id.into(),
        node: "n1".into(),
        address: address.into(),
        protocol: "http".into(),
        metadata: BTreeMap::new(),
        health: Health::Passing,
    };
    let web = Route::new("web", PathMatch::Prefix("/".into()), "web");
    let api = Route::new("api", PathMatch::Exact("/api".into()), "api");
    [
        build(
            &[inst("web", "w1", "127.0.0.1:8080")],
            std::slice::from_ref(&web),
        ),
        build(
            &[
                inst("web", "w2", "127.0.0.1:8081"),
                inst("api", "a1", "127.0.0.1:9090"),
            ],
            &[web, api],
        ),
    ]
}

/// Split an input into steps `u8 op | u16 len | bytes`: op 0 a request, 1 the other snapshot.
fn steps(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 3 && out.len() < 32 {
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        let end = (3 + len).min(b.len());
        out.push((b[0] % 2, &b[3..end]));
        b = &b[end..];
    }
    out
}

fn step(op: u8, m: impl Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut b = vec![op];
    b.extend((body.len() as u16).to_be_bytes());
    b.extend(body);
    b
}

fn node() -> Option<Node> {
    Some(Node {
        id: "envoy-1".into(),
        cluster: "edge".into(),
        ..Default::default()
    })
}

fn kinds() -> BTreeSet<&'static str> {
    Kind::ALL.iter().map(|k| k.type_url()).collect()
}

#[test]
fn fuzz_xds_sotw() {
    let req = |kind: Kind, names: &[&str], nonce: &str, nack: bool| DiscoveryRequest {
        node: node(),
        type_url: kind.type_url().into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        error_detail: nack.then(|| Status {
            code: 3,
            message: "bad".into(),
            details: vec![],
        }),
        ..Default::default()
    };
    let mut envoy = step(0, req(Kind::Cluster, &[], "", false));
    envoy.extend(step(0, req(Kind::Endpoints, &["web"], "", false)));
    envoy.extend(step(0, req(Kind::Cluster, &[], "1", false)));
    envoy.extend(step(1, req(Kind::Cluster, &[], "", false)));
    envoy.extend(step(0, req(Kind::Listener, &[], "", false)));
    envoy.extend(step(0, req(Kind::Routes, &["web", "*"], "2", true)));
    let snaps = snapshots();
    let known = kinds();
    fuzz::Target::new("xds_sotw")
        .seed(envoy)
        .dict(known.iter().copied().chain(["envoy-1", "web", "*"]))
        .run(|b| {
            let mut stream = Sotw::default();
            let mut which = 0;
            let mut nonces = BTreeSet::new();
            for (op, body) in steps(b) {
                let out = if op == 1 {
                    which = 1 - which;
                    stream.on_snapshot(&snaps[which])
                } else {
                    let Ok(r) = DiscoveryRequest::decode(body) else {
                        return;
                    };
                    match stream.on_request(r, &snaps[which]) {
                        Ok(out) => out,
                        Err(_) => return, // the stream ends with the error
                    }
                };
                for r in out {
                    assert!(known.contains(r.type_url.as_str()), "{}", r.type_url);
                    assert!(nonces.insert(r.nonce.clone()), "nonce {} reused", r.nonce);
                    assert!(!r.version_info.is_empty());
                }
                let _ = stream.take_nacks();
            }
        });
}

#[test]
fn fuzz_xds_delta() {
    let req = |kind: Kind, sub: &[&str], unsub: &[&str], nonce: &str| DeltaDiscoveryRequest {
        node: node(),
        type_url: kind.type_url().into(),
        resource_names_subscribe: sub.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|n| n.to_string()).collect(),
        initial_resource_versions: [("web".to_string(), "x".to_string())].into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let mut envoy = step(0, req(Kind::Cluster, &["*"], &[], ""));
    envoy.extend(step(0, req(Kind::Endpoints, &["web", "api"], &[], "")));
    envoy.extend(step(1, req(Kind::Cluster, &[], &[], "")));
    envoy.extend(step(0, req(Kind::Endpoints, &[], &["web"], "2")));
    envoy.extend(step(0, req(Kind::Routes, &["web"], &[], "")));
    let snaps = snapshots();
    let known = kinds();
    fuzz::Target::new("xds_delta")
        .seed(envoy)
        .dict(known.iter().copied().chain(["envoy-1", "web", "api", "*"]))
        .run(|b| {
            let mut stream = Delta::default();
            let mut which = 0;
            let mut nonces = BTreeSet::new();
            for (op, body) in steps(b) {
                let out = if op == 1 {
                    which = 1 - which;
                    stream.on_snapshot(&snaps[which])
                } else {
                    let Ok(r) = DeltaDiscoveryRequest::decode(body) else {
                        return;
                    };
                    match stream.on_request(r, &snaps[which]) {
                        Ok(out) => out,
                        Err(_) => return,
                    }
                };
                for r in out {
                    assert!(known.contains(r.type_url.as_str()), "{}", r.type_url);
                    assert!(nonces.insert(r.nonce.clone()), "nonce {} reused", r.nonce);
                    let names: BTreeSet<&str> =
                        r.resources.iter().map(|x| x.name.as_str()).collect();
                    assert!(
                        r.removed_resources
                            .iter()
                            .all(|n| !names.contains(n.as_str())),
                        "a resource both sent and removed"
                    );
                }
                let _ = stream.take_nacks();
            }
        });
}

/// A stored route entry: refused, or a valid route that, stored again, reads back the same and
/// builds a snapshot.
#[test]
fn fuzz_proxy_routes() {
    let mut api = Route::new("api", PathMatch::Exact("/api".into()), "api");
    api.matcher.host = Some("*.example.com".into());
    api.matcher.headers = vec![HeaderMatch {
        name: "x-v".into(),
        value: "2".into(),
    }];
    api.weights = [("api".to_string(), 90), ("api2".to_string(), 10)].into();
    api.http2 = true;
    api.timeout_ms = Some(500);
    api.retries = Some(2);
    let mut grpc = Route::new("g", PathMatch::Regex("^/v[0-9]+/.*$".into()), "g");
    grpc.matcher.path = None;
    grpc.matcher.grpc = Some(GrpcMatch {
        service: "pkg.Svc".into(),
        method: Some("Get".into()),
    });
    let routes = [
        Route::new("web", PathMatch::Prefix("/".into()), "web"),
        api,
        grpc,
        Route::new("re", PathMatch::Regex("^/v[0-9]+/.*$".into()), "re"),
    ];
    fuzz::Target::new("proxy_routes")
        .seeds(
            routes
                .iter()
                .map(|r| serde_json::to_vec(r).expect("a route serializes")),
        )
        .dict([
            "\"name\"",
            "\"match\"",
            "\"host\"",
            "\"exact\"",
            "\"path\"",
            "\"prefix\"",
            "\"regex\"",
            "\"weights\"",
            "\"service\"",
            "\"headers\"",
            "\"grpc\"",
            ":",
            ",",
            "{",
            "}",
            "0",
            "4294967296",
        ])
        .run(|b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return;
            };
            let name = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(String::from))
                .unwrap_or_default();
            if let Ok(r) = parse_entry(&key(&name), text) {
                let stored = serde_json::to_string(&r).expect("a route serializes");
                assert_eq!(parse_entry(&key(&name), &stored).as_ref(), Ok(&r));
                let _ = build(&[], std::slice::from_ref(&r));
            }
        });
}
