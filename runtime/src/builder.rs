//! [`NodeBuilder`]: a [`NodeConfig`] built step by step, checked, and started as a [`Node`].

use std::{net::SocketAddr, path::PathBuf};

use crate::{
    config::{NodeConfig, GOSSIP_DATAGRAM_MAX, GOSSIP_DATAGRAM_MIN},
    error::RuntimeError,
    node::Node,
};

impl Node {
    /// A builder with defaults that work on one machine with no configuration.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }
}

/// Builds and starts a [`Node`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let node = runtime::Node::builder()
///     .name("builder-doc")
///     .admin_addr("127.0.0.1:0")
///     .start()
///     .await
///     .unwrap();
/// assert_eq!(node.name(), "builder-doc");
/// node.shutdown().await;
/// # });
/// ```
#[derive(Debug, Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    data_dir_set: bool,
    errors: Vec<String>,
}

fn parse_addr(what: &str, s: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(format!(
                "{what} '{s}' is not HOST:PORT (e.g. 127.0.0.1:7070)"
            ));
            None
        }
    }
}

impl NodeBuilder {
    /// Start from a full config.
    pub fn from_config(config: NodeConfig) -> Self {
        NodeBuilder {
            config,
            data_dir_set: true,
            errors: Vec::new(),
        }
    }

    /// The node name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The admin HTTP address, `HOST:PORT`.
    pub fn admin_addr(mut self, addr: &str) -> Self {
        if let Some(a) = parse_addr("admin address", addr, &mut self.errors) {
            self.config.admin_addr = a;
        }
        self
    }

    /// Require `Authorization: Bearer TOKEN` on every admin request (always required, with a
    /// generated token, when the admin API is bound off loopback).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.config.admin_token = Some(token.into());
        self
    }

    /// Whether to time user actors' handlers for the live figures (default on).
    ///
    /// ```
    /// let b = runtime::Node::builder().actor_stats(false);
    /// # let _ = b;
    /// ```
    pub fn actor_stats(mut self, on: bool) -> Self {
        self.config.actor_stats = on;
        self
    }

    /// Refuse spawns once `limit` actors spawned through the node are running (see
    /// [`NodeConfig::max_actors`]).
    ///
    /// ```
    /// let b = runtime::Node::builder().max_actors(100_000);
    /// # let _ = b;
    /// ```
    pub fn max_actors(mut self, limit: usize) -> Self {
        self.config.max_actors = Some(limit);
        self
    }

    /// Export the node's spans over OTLP/gRPC to the collector at `url` (see
    /// [`NodeConfig::otlp_endpoint`]); a URL that is not `http(s)://HOST[:PORT]` fails
    /// [`NodeBuilder::start`] with [`crate::RuntimeError::Config`].
    ///
    /// ```
    /// let b = runtime::Node::builder().otlp_endpoint("http://127.0.0.1:4317");
    /// # let _ = b;
    /// ```
    pub fn otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.config.otlp_endpoint = Some(url.into());
        self
    }

    /// Services will be started on this node after [`NodeBuilder::start`] returns (see
    /// [`NodeConfig::services_pending`]); call [`Node::services_started`] once they are.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("pending-doc").admin_addr("127.0.0.1:0")
    ///     .services_pending().start().await.unwrap();
    /// assert!(!node.health().await.is_healthy());
    /// node.services_started();
    /// assert!(node.health().await.is_healthy());
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn services_pending(mut self) -> Self {
        self.config.services_pending = true;
        self
    }

    /// Announce a role (see [`NodeConfig::roles`]); may be called several times. A role is a
    /// non-empty word of letters, digits, `-` and `_`.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        let role = role.into();
        let ok = !role.is_empty()
            && role.len() <= 64
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            if !self.config.roles.contains(&role) {
                self.config.roles.push(role);
            }
        } else {
            self.errors.push(format!(
                "role '{role}' is not a word of letters, digits, '-' and '_' (at most 64)"
            ));
        }
        self
    }

    /// Do not serve the admin API.
    pub fn without_admin(mut self) -> Self {
        self.config.admin_enabled = false;
        self
    }

    /// The actor-transport address, `HOST:PORT`.
    pub fn listen_addr(mut self, addr: &str) -> Self {
        if let Some(a) = parse_addr("listen address", addr, &mut self.errors) {
            self.config.listen_addr = a;
        }
        self
    }

    /// The direct message lane's address, `HOST:PORT` (default: a free port on the
    /// actor-transport IP).
    pub fn lane_addr(mut self, addr: &str) -> Self {
        if let Some(a) = parse_addr("lane address", addr, &mut self.errors) {
            self.config.lane_addr = Some(a);
        }
        self
    }

    /// The gossip address, `HOST:PORT`.
    pub fn gossip_addr(mut self, addr: &str) -> Self {
        if let Some(a) = parse_addr("gossip address", addr, &mut self.errors) {
            self.config.gossip_addr = a;
        }
        self
    }

    /// Add a seed (gossip address of a node to join).
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.config.seeds.push(seed.into());
        self
    }

    /// The cluster cookie (default: the one generated in the data directory on first start).
    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.config.cookie = Some(cookie.into());
        self
    }

    /// The gossip encryption key, 32 bytes in base64 (default: derived from the cookie). Used
    /// when the data directory holds no keyring (a keyring written by `dctl keys` wins).
    pub fn gossip_key(mut self, key: impl Into<String>) -> Self {
        self.config.gossip_key = Some(key.into());
        self
    }

    /// The largest gossip datagram this node sends (see
    /// [`NodeConfig::gossip_datagram_size`]); outside [`GOSSIP_DATAGRAM_MIN`] to
    /// [`GOSSIP_DATAGRAM_MAX`] the node does not start.
    ///
    /// ```
    /// let b = runtime::Node::builder().gossip_datagram_size(1400);
    /// ```
    pub fn gossip_datagram_size(mut self, bytes: usize) -> Self {
        if (GOSSIP_DATAGRAM_MIN..=GOSSIP_DATAGRAM_MAX).contains(&bytes) {
            self.config.gossip_datagram_size = bytes;
        } else {
            self.errors.push(format!(
                "gossip datagram size {bytes} must be {GOSSIP_DATAGRAM_MIN} to \
                 {GOSSIP_DATAGRAM_MAX} bytes"
            ));
        }
        self
    }

    /// The data directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self.data_dir_set = true;
        self
    }

    /// Use mutual TLS on the actor transport with these PEM files (certificate, key, CA).
    pub fn tls(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
    ) -> Self {
        self.config.tls = Some(crate::tls::TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        });
        self
    }

    /// Validate the configuration and start the node.
    pub async fn start(mut self) -> Result<Node, RuntimeError> {
        if let Some(e) = self.errors.first() {
            return Err(RuntimeError::Config(e.clone()));
        }
        let name = &self.config.name;
        if name.is_empty()
            || name.len() > crate::NODE_NAME_MAX
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(RuntimeError::Config(format!(
                "node name '{name}' must be 1-{} letters, digits, '-', '_', '.'",
                crate::NODE_NAME_MAX
            )));
        }
        // the `roles` gossip entry ("runtime" and each role, comma-separated) must fit
        let roles = 7 + self.config.roles.iter().map(|r| r.len() + 1).sum::<usize>();
        if "roles".len() + roles > crate::GOSSIP_ENTRY_MAX {
            return Err(RuntimeError::Config(format!(
                "{} roles are too many to gossip: together they may take at most {} bytes",
                self.config.roles.len(),
                crate::GOSSIP_ENTRY_MAX - "roles".len() - 7
            )));
        }
        if !self.data_dir_set {
            self.config.data_dir = PathBuf::from(".dctl").join(name);
        }
        if self.config.cookie.as_deref() == Some("") {
            return Err(RuntimeError::Config("the cookie must not be empty".into()));
        }
        if self.config.cookie.is_none() {
            let stored = crate::secret::load_or_create_cookie(&self.config.data_dir)?;
            if stored.created {
                tracing::warn!(
                    file = %stored.path.display(),
                    "no cookie given: generated this node's cluster secret (mode 0600); to join \
                     another node to it, start that node with --cookie \"$(cat {})\" (or \
                     DCTL_COOKIE) and --seed <this node's gossip address>",
                    stored.path.display()
                );
            }
            self.config.cookie = Some(stored.cookie);
            self.config.cookie_file = Some(stored.path);
        }
        let c = &mut self.config;
        if c.admin_enabled && !c.admin_addr.ip().is_loopback() && c.admin_token.is_none() {
            let stored =
                crate::secret::load_or_create(&c.data_dir, crate::secret::ADMIN_TOKEN_FILE)?;
            tracing::warn!(
                admin = %c.admin_addr,
                file = %stored.path.display(),
                "the admin API is bound off loopback: every request must carry \
                 'Authorization: Bearer <token>' with the token in {} (dctl: DCTL_ADMIN_TOKEN)",
                stored.path.display()
            );
            c.admin_token = Some(stored.cookie);
        }
        Node::start(self.config).await
    }
}
