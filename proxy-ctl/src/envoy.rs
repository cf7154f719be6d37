//! Conversion (pure) from our snapshot model ([`Spec`]) to the Envoy resources of
//! `envoy-types`, packed as `Any` for an xDS response.
//!
//! * [`cluster`]: an EDS cluster fed over ADS, HTTP/2 upstream (explicit `HttpProtocolOptions`)
//!   when the spec asks for it;
//! * [`endpoints`]: a `ClusterLoadAssignment` with one endpoint per healthy instance, the
//!   registry's metadata under the `draft` filter-metadata key (plus `instance` and `node`);
//! * [`listener`]: the ingress listener on the address the Envoy asked for (node metadata
//!   [`LISTEN_METADATA`]), one HTTP connection manager with the router filter, its routes over
//!   RDS on the ADS stream;
//! * [`route_config`]: virtual hosts and routes: prefix / exact path / regex (RE2), host via
//!   the virtual host's domains, exact header matches, gRPC (`/{service}/{method}` and the
//!   `grpc` match option), one cluster or weighted clusters, timeout and retry policy.
//!
//! ```
//! use proxy_ctl::{envoy, snapshot::{build, Kind}, PathMatch, Route};
//! let snap = build(&[], &[Route::new("web", PathMatch::Prefix("/".into()), "web")]);
//! let any = envoy::to_any(&snap.clusters.resources["web"].spec, &envoy::Target::default());
//! assert_eq!(any.type_url, Kind::Cluster.type_url());
//! ```

use std::{collections::HashMap, net::SocketAddr};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
                Cluster,
            },
            core::v3::{
                address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
                Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions,
                Metadata, PathConfigSource, SocketAddress,
            },
            endpoint::v3::{
                lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
            },
            listener::v3::{filter, Filter, FilterChain, Listener},
            route::v3::{
                header_matcher::HeaderMatchSpecifier,
                route,
                route_action::ClusterSpecifier,
                route_match::{GrpcRouteMatchOptions, PathSpecifier},
                weighted_cluster::ClusterWeight,
                HeaderMatcher, RetryPolicy, Route as EnvoyRoute, RouteAction, RouteConfiguration,
                RouteMatch as EnvoyRouteMatch, VirtualHost, WeightedCluster,
            },
        },
        extensions::{
            filters::{
                http::router::v3::Router,
                network::http_connection_manager::v3::{
                    http_connection_manager::{CodecType, RouteSpecifier},
                    http_filter, HttpConnectionManager, HttpFilter, Rds,
                },
            },
            upstreams::http::v3::{
                http_protocol_options::{
                    explicit_http_config::ProtocolConfig, ExplicitHttpConfig,
                    UpstreamProtocolOptions,
                },
                HttpProtocolOptions,
            },
        },
        r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher},
    },
    google::protobuf::{value, Any, Duration, Struct, UInt32Value, Value},
};
use envoy_types::util::pack_any;

use crate::{
    snapshot::{ActiveRoute, ClusterSpec, EndpointsSpec, ListenerSpec, RouteConfigSpec, Spec},
    PathMatch,
};

/// The Envoy node-metadata key with the address its ingress listener binds
/// (`dctl proxy bootstrap --listen`).
pub const LISTEN_METADATA: &str = "ingress_listen";

/// Where the ingress listener binds when the Envoy did not say (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10000";

/// The filter-metadata key the registry's metadata goes under on each endpoint.
pub const METADATA_KEY: &str = "draft";

/// What depends on the Envoy a resource goes to: its listener address, and where it gets
/// endpoints and routes from (the ADS stream, or files in files mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Address of the ingress listener.
    pub listen: SocketAddr,
    /// Files mode: the directory of [`crate::files`]; `None`: over ADS.
    pub files: Option<std::path::PathBuf>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
            files: None,
        }
    }
}

impl Target {
    /// The target for an Envoy node: [`LISTEN_METADATA`] from its metadata when it is a valid
    /// `IP:PORT`, else the default (the error says why, for the log).
    pub fn of_node(
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
    ) -> Result<Target, String> {
        let Some(v) = node
            .and_then(|n| n.metadata.as_ref())
            .and_then(|m| m.fields.get(LISTEN_METADATA))
        else {
            return Ok(Target::default());
        };
        match &v.kind {
            Some(value::Kind::StringValue(s)) => s
                .parse()
                .map(|listen| Target {
                    listen,
                    files: None,
                })
                .map_err(|_| format!("node metadata {LISTEN_METADATA} '{s}' is not IP:PORT")),
            _ => Err(format!("node metadata {LISTEN_METADATA} is not a string")),
        }
    }
}

/// One resource of our model as the `Any` of an xDS response.
pub fn to_any(spec: &Spec, target: &Target) -> Any {
    match spec {
        Spec::Cluster(c) => pack_any(cluster_for(c, target)),
        Spec::Endpoints(e) => pack_any(endpoints(e)),
        Spec::Listener(l) => pack_any(listener(l, target)),
        Spec::Routes(r) => pack_any(route_config(r)),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..ConfigSource::default()
    }
}

/// Where a resource of `kind` named `name` comes from for `target`: the ADS stream, or its
/// file (watched for moves: [`crate::files`] writes with an atomic rename).
fn source(target: &Target, kind: crate::snapshot::Kind, name: &str) -> ConfigSource {
    match &target.files {
        None => ads(),
        Some(dir) => ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::PathConfigSource(
                PathConfigSource {
                    path: crate::files::path_of(dir, kind, name)
                        .to_string_lossy()
                        .into_owned(),
                    ..PathConfigSource::default()
                },
            )),
            ..ConfigSource::default()
        },
    }
}

fn millis(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn socket(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
            ..SocketAddress::default()
        })),
    }
}

/// A cluster of type EDS whose endpoints come over ADS.
pub fn cluster(c: &ClusterSpec) -> Cluster {
    cluster_for(c, &Target::default())
}

/// A cluster of type EDS whose endpoints come from where `target` says.
pub fn cluster_for(c: &ClusterSpec, target: &Target) -> Cluster {
    let mut options = HashMap::new();
    if c.http2 {
        let h2 = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..HttpProtocolOptions::default()
        };
        options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(h2),
        );
    }
    Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(source(target, crate::snapshot::Kind::Endpoints, &c.name)),
            service_name: c.name.clone(),
        }),
        connect_timeout: Some(millis(1000)),
        typed_extension_protocol_options: options,
        ..Cluster::default()
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_string())),
    }
}

/// The healthy instances of a cluster, each with its registry metadata.
pub fn endpoints(e: &EndpointsSpec) -> ClusterLoadAssignment {
    let lb_endpoints = e
        .endpoints
        .iter()
        .map(|ep| {
            let mut fields: HashMap<String, Value> = ep
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), string_value(v)))
                .collect();
            fields.insert("instance".into(), string_value(&ep.id));
            fields.insert("node".into(), string_value(&ep.node));
            LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(SocketAddr::new(ep.ip, ep.port))),
                    ..Endpoint::default()
                })),
                metadata: Some(Metadata {
                    filter_metadata: [(METADATA_KEY.to_string(), Struct { fields })].into(),
                    ..Metadata::default()
                }),
                ..LbEndpoint::default()
            }
        })
        .collect::<Vec<_>>();
    ClusterLoadAssignment {
        cluster_name: e.cluster.clone(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..LocalityLbEndpoints::default()
            }]
        },
        ..ClusterLoadAssignment::default()
    }
}

/// The ingress listener: one HTTP connection manager whose routes come over RDS.
pub fn listener(l: &ListenerSpec, target: &Target) -> Listener {
    let hcm = HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: l.name.clone(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(source(
                target,
                crate::snapshot::Kind::Routes,
                &l.route_config,
            )),
            route_config_name: l.route_config.clone(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..HttpFilter::default()
        }],
        ..HttpConnectionManager::default()
    };
    Listener {
        name: l.name.clone(),
        address: Some(socket(target.listen)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

fn exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(value.to_string())),
        ..StringMatcher::default()
    }
}

fn route_match(a: &ActiveRoute) -> EnvoyRouteMatch {
    let m = &a.route.matcher;
    // `grpc: {}` also requires `content-type: application/grpc*`.
    let headers: Vec<HeaderMatcher> = m
        .headers
        .iter()
        .map(|h| HeaderMatcher {
            name: h.name.clone(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(exact(&h.value))),
            ..HeaderMatcher::default()
        })
        .collect();
    let path = match (&m.path, &m.grpc) {
        (Some(PathMatch::Prefix(p)), _) => PathSpecifier::Prefix(p.clone()),
        (Some(PathMatch::Exact(p)), _) => PathSpecifier::Path(p.clone()),
        (Some(PathMatch::Regex(r)), _) => PathSpecifier::SafeRegex(RegexMatcher {
            regex: r.clone(),
            ..RegexMatcher::default()
        }),
        (None, Some(g)) => match &g.method {
            Some(method) => PathSpecifier::Path(format!("/{}/{method}", g.service)),
            None => PathSpecifier::Prefix(format!("/{}/", g.service)),
        },
        (None, None) => PathSpecifier::Prefix("/".into()),
    };
    EnvoyRouteMatch {
        path_specifier: Some(path),
        headers,
        grpc: m.grpc.as_ref().map(|_| GrpcRouteMatchOptions {}),
        ..EnvoyRouteMatch::default()
    }
}

fn route_action(a: &ActiveRoute) -> RouteAction {
    let cluster = match a.split.as_slice() {
        [(one, _)] => ClusterSpecifier::Cluster(one.clone()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(s, w)| ClusterWeight {
                    name: s.clone(),
                    weight: Some(UInt32Value { value: *w }),
                    ..ClusterWeight::default()
                })
                .collect(),
            ..WeightedCluster::default()
        }),
    };
    RouteAction {
        cluster_specifier: Some(cluster),
        timeout: a.route.timeout_ms.map(millis),
        retry_policy: a.route.retries.map(|n| RetryPolicy {
            retry_on: "connect-failure,reset,5xx".into(),
            num_retries: Some(UInt32Value { value: n }),
            ..RetryPolicy::default()
        }),
        ..RouteAction::default()
    }
}

/// The ingress route configuration.
pub fn route_config(r: &RouteConfigSpec) -> RouteConfiguration {
    RouteConfiguration {
        name: r.name.clone(),
        virtual_hosts: r
            .virtual_hosts
            .iter()
            .map(|vh| VirtualHost {
                name: vh.name.clone(),
                domains: vh.domains.clone(),
                routes: vh
                    .routes
                    .iter()
                    .map(|a| EnvoyRoute {
                        name: a.route.name.clone(),
                        r#match: Some(route_match(a)),
                        action: Some(route::Action::Route(route_action(a))),
                        ..EnvoyRoute::default()
                    })
                    .collect(),
                ..VirtualHost::default()
            })
            .collect(),
        ..RouteConfiguration::default()
    }
}

#[cfg(test)]
mod tests;
