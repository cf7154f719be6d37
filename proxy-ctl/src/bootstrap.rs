//! The Envoy bootstrap `dctl proxy bootstrap` prints (pure): ADS over gRPC (state-of-the-world
//! or delta) to every live node's xDS address, the ingress listener address in the node
//! metadata, Envoy's admin API.
//!
//! The ADS cluster lists every node with a TCP health check, so when the node Envoy talks to
//! dies, its next connection attempt (backoff 100 ms to 1 s) goes to a live one; Envoy keeps
//! routing on the configuration it has meanwhile.
//!
//! ```
//! use proxy_ctl::bootstrap::Bootstrap;
//! let b = Bootstrap {
//!     node_id: "edge-1".into(),
//!     listen: "127.0.0.1:10000".parse().unwrap(),
//!     admin: "127.0.0.1:9901".parse().unwrap(),
//!     xds: vec!["127.0.0.1:18000".parse().unwrap()],
//!     delta: false,
//!     files: None,
//! };
//! let yaml = b.yaml();
//! assert!(yaml.contains("api_type: GRPC"));
//! assert!(yaml.contains("port_value: 18000"));
//! ```

use std::net::SocketAddr;

use crate::envoy::LISTEN_METADATA;

/// Name of the static cluster of control-plane nodes in the bootstrap.
pub const XDS_CLUSTER: &str = "draft_xds";

/// What goes into a bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The Envoy's node id (shown by `dctl proxy status`).
    pub node_id: String,
    /// Where its ingress listener binds.
    pub listen: SocketAddr,
    /// Where its admin API binds.
    pub admin: SocketAddr,
    /// The xDS addresses of the nodes (at least one).
    pub xds: Vec<SocketAddr>,
    /// Delta (incremental) xDS instead of state-of-the-world.
    pub delta: bool,
    /// Files mode instead of ADS: the directory a node writes with `--xds-files` (the
    /// listener address is then the node's `--xds-files-listen`, not `listen`).
    pub files: Option<std::path::PathBuf>,
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn socket(indent: usize, a: &SocketAddr) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}socket_address:\n{pad}  address: {}\n{pad}  port_value: {}\n",
        quoted(&a.ip().to_string()),
        a.port()
    )
}

impl Bootstrap {
    /// The bootstrap as YAML.
    pub fn yaml(&self) -> String {
        if let Some(dir) = &self.files {
            return self.files_yaml(dir);
        }
        let api = if self.delta { "DELTA_GRPC" } else { "GRPC" };
        let mut out = String::new();
        out.push_str(&format!(
            "# Envoy bootstrap from `dctl proxy bootstrap`: ADS ({}) to {} node(s).\n",
            if self.delta {
                "delta"
            } else {
                "state of the world"
            },
            self.xds.len()
        ));
        out.push_str(&format!(
            "node:\n  id: {}\n  cluster: \"draft-ingress\"\n  metadata:\n    {LISTEN_METADATA}: {}\n",
            quoted(&self.node_id),
            quoted(&self.listen.to_string())
        ));
        out.push_str(&format!("admin:\n  address:\n{}", socket(4, &self.admin)));
        out.push_str(&format!(
            "dynamic_resources:\n  ads_config:\n    api_type: {api}\n    transport_api_version: V3\n    set_node_on_first_message_only: true\n    grpc_services:\n    - envoy_grpc:\n        cluster_name: {XDS_CLUSTER}\n        retry_policy:\n          retry_back_off:\n            base_interval: 0.1s\n            max_interval: 1s\n  cds_config:\n    ads: {{}}\n    resource_api_version: V3\n  lds_config:\n    ads: {{}}\n    resource_api_version: V3\n"
        ));
        out.push_str(&format!(
            "static_resources:\n  clusters:\n  - name: {XDS_CLUSTER}\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config:\n          http2_protocol_options: {{}}\n    health_checks:\n    - timeout: 0.5s\n      interval: 0.5s\n      unhealthy_threshold: 1\n      healthy_threshold: 1\n      tcp_health_check: {{}}\n    load_assignment:\n      cluster_name: {XDS_CLUSTER}\n      endpoints:\n      - lb_endpoints:\n"
        ));
        for a in &self.xds {
            out.push_str(&format!(
                "        - endpoint:\n            address:\n{}",
                socket(14, a)
            ));
        }
        out
    }
}

impl Bootstrap {
    fn files_yaml(&self, dir: &std::path::Path) -> String {
        let path = |kind| quoted(&crate::files::path_of(dir, kind, "").to_string_lossy());
        let mut out = format!(
            "# Envoy bootstrap from `dctl proxy bootstrap --files`: resources from files in {}.\n",
            dir.display()
        );
        out.push_str(&format!(
            "node:\n  id: {}\n  cluster: \"draft-ingress\"\n",
            quoted(&self.node_id)
        ));
        out.push_str(&format!("admin:\n  address:\n{}", socket(4, &self.admin)));
        out.push_str(&format!(
            "dynamic_resources:\n  cds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: {}\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: {}\n",
            path(crate::snapshot::Kind::Cluster),
            path(crate::snapshot::Kind::Listener)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_node_and_quotes_user_text() {
        let b = Bootstrap {
            node_id: "a\"b: c".into(),
            listen: "127.0.0.1:10000".parse().unwrap(),
            admin: "127.0.0.1:9901".parse().unwrap(),
            xds: vec![
                "127.0.0.1:18000".parse().unwrap(),
                "127.0.0.2:18001".parse().unwrap(),
            ],
            delta: true,
            files: None,
        };
        let y = b.yaml();
        assert!(y.contains("api_type: DELTA_GRPC"));
        assert!(y.contains(r#"id: "a\"b: c""#), "{y}");
        assert!(y.contains("port_value: 18000") && y.contains("port_value: 18001"));
        assert!(y.contains(&format!("{LISTEN_METADATA}: \"127.0.0.1:10000\"")));
        assert_eq!(y.matches("- endpoint:").count(), 2);
    }
}
