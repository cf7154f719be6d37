use super::*;
use crate::{test_support::inst, HeaderMatch, PathMatch};

fn prefix(name: &str, p: &str, svc: &str) -> Route {
    Route::new(name, PathMatch::Prefix(p.into()), svc)
}

#[test]
fn only_healthy_ip_instances_become_endpoints() {
    let mut sick = inst("web", "w2", "127.0.0.1:2");
    sick.health = Health::Critical;
    let snap = build(
        &[
            inst("web", "w1", "127.0.0.1:1"),
            sick,
            inst("web", "w3", "db.local:3"),
        ],
        &[],
    );
    let Spec::Endpoints(e) = &*snap.endpoints.resources["web"].spec else {
        panic!("endpoints expected")
    };
    assert_eq!(e.endpoints.len(), 1);
    assert_eq!(e.endpoints[0].id, "w1");
    assert_eq!(e.endpoints[0].metadata["zone"], "a");
    assert_eq!(snap.skipped.len(), 1, "{:?}", snap.skipped);
    assert!(snap.skipped[0].0 == "web/w3");
}

#[test]
fn versions_depend_on_content_not_on_input_order() {
    let a = [
        inst("web", "w1", "127.0.0.1:1"),
        inst("web", "w2", "127.0.0.1:2"),
    ];
    let b = [a[1].clone(), a[0].clone()];
    let routes = [prefix("r1", "/a", "web"), prefix("r2", "/b", "web")];
    let rev: Vec<Route> = routes.iter().rev().cloned().collect();
    let (s1, s2) = (build(&a, &routes), build(&b, &rev));
    assert_eq!(s1, s2);
    for k in Kind::ALL {
        assert_eq!(s1.of(k).version, s2.of(k).version);
    }
    // one new instance changes EDS only
    let mut more = a.to_vec();
    more.push(inst("web", "w3", "127.0.0.1:3"));
    let s3 = build(&more, &routes);
    assert_ne!(s3.endpoints.version, s1.endpoints.version);
    assert_eq!(s3.clusters.version, s1.clusters.version);
    assert_eq!(s3.routes.version, s1.routes.version);
    assert_eq!(s3.listeners.version, s1.listeners.version);
}

#[test]
fn a_route_without_healthy_instances_is_left_out_and_splits_drop_empty_services() {
    let mut split = prefix("canary", "/c", "web");
    split.weights = [("web".to_string(), 90), ("web2".to_string(), 10)].into();
    let routes = [prefix("gone", "/g", "nobody"), split];
    let snap = build(&[inst("web", "w1", "127.0.0.1:1")], &routes);
    let Spec::Routes(rc) = &*snap.routes.resources[INGRESS].spec else {
        panic!()
    };
    let any = rc.virtual_hosts.last().unwrap();
    assert_eq!(any.name, "*");
    let names: Vec<&str> = any.routes.iter().map(|a| a.route.name.as_str()).collect();
    assert_eq!(names, ["canary"]);
    assert_eq!(any.routes[0].split, vec![("web".to_string(), 90)]);
    // referenced services still have (empty) clusters
    assert!(snap.clusters.resources.contains_key("nobody"));
    assert!(snap.clusters.resources.contains_key("web2"));
}

#[test]
fn host_routes_get_their_own_virtual_host_before_the_hostless_ones() {
    let mut shop = prefix("shop", "/", "shop");
    shop.matcher.host = Some("shop.local".into());
    let mut hdr = prefix("beta", "/", "beta");
    hdr.matcher.headers.push(HeaderMatch {
        name: "x-beta".into(),
        value: "1".into(),
    });
    let all = prefix("all", "/", "web");
    let snap = build(
        &[
            inst("web", "w", "127.0.0.1:1"),
            inst("shop", "s", "127.0.0.1:2"),
            inst("beta", "b", "127.0.0.1:3"),
        ],
        &[all, shop, hdr],
    );
    let Spec::Routes(rc) = &*snap.routes.resources[INGRESS].spec else {
        panic!()
    };
    assert_eq!(rc.virtual_hosts.len(), 2);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["shop.local", "shop.local:*"]);
    let names: Vec<&str> = vh.routes.iter().map(|a| a.route.name.as_str()).collect();
    assert_eq!(names, ["shop", "beta", "all"]);
}

#[test]
fn http2_comes_from_routes_or_instance_protocol() {
    let mut grpc = inst("g", "g1", "127.0.0.1:1");
    grpc.protocol = "grpc".into();
    let mut r = prefix("r", "/", "web");
    r.http2 = true;
    let snap = build(
        &[
            grpc,
            inst("web", "w", "127.0.0.1:2"),
            inst("plain", "p", "127.0.0.1:3"),
        ],
        &[r],
    );
    let h2 = |n: &str| match &*snap.clusters.resources[n].spec {
        Spec::Cluster(c) => c.http2,
        _ => panic!(),
    };
    assert!(h2("g") && h2("web") && !h2("plain"));
}
