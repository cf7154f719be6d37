use super::*;
use crate::{
    snapshot::{build, Kind, INGRESS},
    test_support::inst,
    GrpcMatch, HeaderMatch, Route,
};
use prost::Message;

fn routes_of(snap: &crate::snapshot::Snapshot) -> RouteConfiguration {
    let any = to_any(&snap.routes.resources[INGRESS].spec, &Target::default());
    assert_eq!(any.type_url, Kind::Routes.type_url());
    RouteConfiguration::decode(any.value.as_slice()).unwrap()
}

#[test]
fn every_spec_packs_with_its_type_url() {
    let snap = build(
        &[inst("web", "w1", "127.0.0.1:8080")],
        &[Route::new("r", PathMatch::Prefix("/".into()), "web")],
    );
    for k in Kind::ALL {
        for r in snap.of(k).resources.values() {
            assert_eq!(to_any(&r.spec, &Target::default()).type_url, k.type_url());
        }
    }
}

#[test]
fn clusters_are_eds_over_ads_with_http2_when_asked() {
    let plain = cluster(&ClusterSpec {
        name: "web".into(),
        http2: false,
    });
    assert_eq!(
        plain.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    let eds = plain.eds_cluster_config.unwrap();
    assert_eq!(eds.service_name, "web");
    assert!(matches!(
        eds.eds_config.unwrap().config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    assert!(plain.typed_extension_protocol_options.is_empty());
    let h2 = cluster(&ClusterSpec {
        name: "g".into(),
        http2: true,
    });
    let any = &h2.typed_extension_protocol_options
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let opts = HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
    assert!(matches!(
        opts.upstream_protocol_options,
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(_))
            }
        ))
    ));
}

#[test]
fn endpoints_carry_address_and_registry_metadata() {
    let snap = build(
        &[
            inst("web", "w1", "127.0.0.1:8080"),
            inst("web", "w2", "127.0.0.2:8081"),
        ],
        &[],
    );
    let Spec::Endpoints(e) = &*snap.endpoints.resources["web"].spec else {
        panic!()
    };
    let cla = endpoints(e);
    assert_eq!(cla.cluster_name, "web");
    let eps = &cla.endpoints[0].lb_endpoints;
    assert_eq!(eps.len(), 2);
    let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &eps[1].host_identifier else {
        panic!()
    };
    let Some(address::Address::SocketAddress(sa)) = &ep.address.as_ref().unwrap().address else {
        panic!()
    };
    assert_eq!(sa.address, "127.0.0.2");
    assert_eq!(sa.port_specifier, Some(PortSpecifier::PortValue(8081)));
    let md = &eps[1].metadata.as_ref().unwrap().filter_metadata[METADATA_KEY];
    assert_eq!(md.fields["zone"], string_value("a"));
    assert_eq!(md.fields["instance"], string_value("w2"));
    // no instances: an empty assignment (Envoy then has no hosts), not a missing one
    let empty = endpoints(&EndpointsSpec {
        cluster: "none".into(),
        endpoints: vec![],
    });
    assert!(empty.endpoints.is_empty());
}

#[test]
fn the_listener_uses_rds_over_ads_on_the_requested_address() {
    let target = Target {
        listen: "127.0.0.9:18000".parse().unwrap(),
        files: None,
    };
    let l = listener(
        &ListenerSpec {
            name: INGRESS.into(),
            route_config: INGRESS.into(),
        },
        &target,
    );
    let Some(address::Address::SocketAddress(sa)) = l.address.unwrap().address else {
        panic!()
    };
    assert_eq!(
        (sa.address.as_str(), sa.port_specifier),
        ("127.0.0.9", Some(PortSpecifier::PortValue(18000)))
    );
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!()
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
        panic!()
    };
    assert_eq!(rds.route_config_name, INGRESS);
    assert_eq!(hcm.http_filters[0].name, "envoy.filters.http.router");
}

#[test]
fn the_target_comes_from_node_metadata() {
    use envoy_types::pb::envoy::config::core::v3::Node;
    let node = |v: Value| Node {
        metadata: Some(Struct {
            fields: [(LISTEN_METADATA.to_string(), v)].into(),
        }),
        ..Node::default()
    };
    let t = Target::of_node(Some(&node(string_value("127.0.0.5:9999")))).unwrap();
    assert_eq!(t.listen, "127.0.0.5:9999".parse().unwrap());
    let bad = Target::of_node(Some(&node(string_value("nowhere")))).unwrap_err();
    assert!(bad.contains("not IP:PORT"), "{bad}");
    assert_eq!(Target::of_node(None).unwrap(), Target::default());
    assert_eq!(
        DEFAULT_LISTEN.parse::<SocketAddr>().unwrap(),
        Target::default().listen
    );
}

#[test]
fn routes_map_every_match_and_action() {
    let mut exact_r = Route::new("exact", PathMatch::Exact("/x".into()), "web");
    exact_r.timeout_ms = Some(1500);
    exact_r.retries = Some(2);
    let regex_r = Route::new("re", PathMatch::Regex("/r/[0-9]+".into()), "web");
    let mut hdr = Route::new("hdr", PathMatch::Prefix("/".into()), "beta");
    hdr.matcher.headers.push(HeaderMatch {
        name: "x-beta".into(),
        value: "1".into(),
    });
    let mut grpc = Route::new("g", PathMatch::Prefix("/".into()), "web");
    grpc.matcher.path = None;
    grpc.matcher.grpc = Some(GrpcMatch {
        service: "pkg.Greeter".into(),
        method: Some("Hi".into()),
    });
    let mut split = Route::new("split", PathMatch::Prefix("/s".into()), "web");
    split.weights = [("web".to_string(), 90), ("beta".to_string(), 10)].into();
    let mut host = Route::new("host", PathMatch::Prefix("/".into()), "beta");
    host.matcher.host = Some("shop.local".into());
    let snap = build(
        &[
            inst("web", "w1", "127.0.0.1:1"),
            inst("beta", "b1", "127.0.0.1:2"),
        ],
        &[exact_r, regex_r, hdr, grpc, split, host],
    );
    let rc = routes_of(&snap);
    assert_eq!(rc.name, INGRESS);
    assert_eq!(rc.virtual_hosts.len(), 2);
    assert_eq!(rc.virtual_hosts[0].domains, ["shop.local", "shop.local:*"]);
    let any = &rc.virtual_hosts[1];
    assert_eq!(any.domains, ["*"]);
    let by_name = |n: &str| any.routes.iter().find(|r| r.name == n).unwrap().clone();
    let action = |r: &EnvoyRoute| match &r.action {
        Some(route::Action::Route(a)) => a.clone(),
        _ => panic!(),
    };
    let path = |r: &EnvoyRoute| r.r#match.as_ref().unwrap().path_specifier.clone();

    let e = by_name("exact");
    assert_eq!(path(&e), Some(PathSpecifier::Path("/x".into())));
    let a = action(&e);
    assert_eq!(
        a.timeout,
        Some(Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    let retry = a.retry_policy.unwrap();
    assert_eq!(retry.num_retries, Some(UInt32Value { value: 2 }));
    assert!(retry.retry_on.contains("5xx"));
    assert_eq!(
        a.cluster_specifier,
        Some(ClusterSpecifier::Cluster("web".into()))
    );

    let Some(PathSpecifier::SafeRegex(re)) = path(&by_name("re")) else {
        panic!()
    };
    assert_eq!(re.regex, "/r/[0-9]+");

    let h = by_name("hdr");
    let m = h.r#match.unwrap();
    assert_eq!(m.headers[0].name, "x-beta");
    assert_eq!(
        m.headers[0].header_match_specifier,
        Some(HeaderMatchSpecifier::StringMatch(exact("1")))
    );

    let g = by_name("g");
    assert_eq!(
        path(&g),
        Some(PathSpecifier::Path("/pkg.Greeter/Hi".into()))
    );
    assert!(g.r#match.unwrap().grpc.is_some());

    let Some(ClusterSpecifier::WeightedClusters(w)) = action(&by_name("split")).cluster_specifier
    else {
        panic!()
    };
    let weights: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.unwrap().value))
        .collect();
    assert_eq!(weights, [("beta".to_string(), 10), ("web".to_string(), 90)]);
}
