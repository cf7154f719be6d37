//! The node flags every cluster member takes, shared by `dctl node start` and every service
//! binary built on the chassis ([`crate::Service::run`]), so a user's binary joins a cluster
//! exactly like a `dctl` node.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use runtime::{Node, NodeBuilder};

use crate::error::Error;

/// How a node joins the cluster: name, addresses, seeds, data directory, secrets, TLS, KV role.
///
/// Flatten it into a clap parser (`#[command(flatten)]`); [`NodeFlags::builder`] turns it into a
/// [`NodeBuilder`] and [`NodeFlags::start`] starts the node with its services.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     node: chassis::NodeFlags,
/// }
/// let cli = Cli::parse_from(["svc", "--name", "a1", "--seed", "127.0.0.1:7072"]);
/// assert_eq!(cli.node.name.as_deref(), Some("a1"));
/// assert_eq!(cli.node.seeds, vec!["127.0.0.1:7072".to_string()]);
/// ```
#[derive(Debug, Clone, Args)]
pub struct NodeFlags {
    /// Node name, unique in the cluster [default: `node1` for `dctl node start`, the service's
    /// name for a service binary].
    #[arg(long)]
    pub name: Option<String>,
    /// Actor-transport address [default: 127.0.0.1:7071 for `dctl node start`, a free loopback
    /// port for a service binary].
    #[arg(long)]
    pub listen: Option<String>,
    /// Gossip address [default: 127.0.0.1:7072 for `dctl node start`, a free loopback port for
    /// a service binary].
    #[arg(long)]
    pub gossip: Option<String>,
    /// Direct message lane address (TCP); default: a free port on the --listen IP, announced to
    /// the other nodes by gossip.
    #[arg(long)]
    pub lane_listen: Option<String>,
    /// Gossip address of a node to join (repeatable).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// Data directory (default `.dctl/<name>`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Cluster secret (default: the one in `<data-dir>/cookie`, generated with mode 0600 on the
    /// node's first start).
    #[arg(long, env = "DCTL_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Gossip encryption key, 32 bytes in base64 (`dctl keys generate`); default: derived from
    /// the cookie. A keyring in the data directory (written by `dctl keys`) takes precedence.
    #[arg(long, env = "DCTL_GOSSIP_KEY", hide_env_values = true)]
    pub gossip_key: Option<String>,
    /// Largest gossip datagram sent, in bytes (512 to 65507, the default): larger gossip
    /// messages are sent in pieces. E.g. 1400 where fragmented UDP is dropped on the way.
    #[arg(long, value_name = "BYTES")]
    pub gossip_datagram_size: Option<usize>,
    /// Mutual TLS on the actor transport: this node's certificate (PEM, with an IP SAN for the
    /// --listen address).
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate every node's certificate is signed by (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Serve diagnostic admin routes for fault tests (`POST /api/diag/kill/{service}` kills a
    /// system service). Off by default: anyone reaching the admin API could crash the node.
    #[arg(long)]
    pub diagnostics: bool,
    /// A role this node announces (repeatable), e.g. `--role gpu`: a supervisor's remote child
    /// placed on `role:gpu` runs only on such nodes.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Refuse spawns (HTTP 503, "at its actor limit") once this many actors spawned through
    /// the node run on it; no limit by default.
    #[arg(long, value_name = "N")]
    pub max_actors: Option<usize>,
    /// Export this node's spans (traced admin requests and messages, broker produces in a
    /// trace) to an OpenTelemetry collector over OTLP/gRPC, e.g. `http://127.0.0.1:4317`;
    /// the resource's service.name and service.instance.id are the node name. Off by default.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Serve Envoy's ADS (xDS over gRPC) on this address; the default is a free port on the
    /// --listen IP when it is loopback, else on 127.0.0.1 (see `dctl cluster status --json`).
    #[arg(long)]
    pub xds_listen: Option<std::net::SocketAddr>,
    /// Also write the snapshot as xDS files into this directory (Envoy's
    /// `path_config_source`), for Envoys without gRPC access to the node.
    #[arg(long)]
    pub xds_files: Option<PathBuf>,
    /// The ingress listener address written into the files of --xds-files.
    #[arg(long, default_value = proxy_ctl::envoy::DEFAULT_LISTEN, requires = "xds_files")]
    pub xds_files_listen: std::net::SocketAddr,
    /// The KV store's flags.
    #[command(flatten)]
    pub kv: KvFlags,
}

/// The KV store's node flags (part of [`NodeFlags`]).
#[derive(Debug, Clone, Args)]
pub struct KvFlags {
    /// Bootstrap the cluster's KV store once this many nodes without a store are up (the one
    /// with the smallest name does it; give the same N to those nodes). Default: 1 without
    /// --seed (a lone node is a store of one), 0 with --seed (only join the cluster's store,
    /// never create a second one).
    #[arg(long = "kv-bootstrap-expect")]
    pub kv_bootstrap_expect: Option<usize>,
    /// How many KV voters the leader keeps (odd, 1 to 7): live learners are promoted up to it.
    #[arg(long = "kv-voters", default_value_t = 3)]
    pub kv_target_voters: usize,
    /// Replace a KV voter dead for this many seconds by a live learner.
    #[arg(long = "kv-dead-grace", default_value_t = 30)]
    pub kv_dead_grace: u64,
    /// Fixed KV voters instead (override), by node name; repeat for each voter and give the same
    /// list to every node. The store's voters are then exactly these and never change by
    /// themselves.
    #[arg(long = "kv-voter")]
    pub kv_voters: Vec<String>,
    /// Snapshot the KV state and compact the log every this many log entries.
    #[arg(long = "kv-snapshot-every", default_value_t = 10_000)]
    pub kv_snapshot_every: u64,
    /// Join the KV store as a learner (a non-voting full replica) that is never promoted to
    /// voter automatically: it serves serializable reads and watches from its own copy and
    /// forwards writes.
    #[arg(long = "kv-learner")]
    pub kv_learner: bool,
    /// Serve the etcd v3 gRPC API (etcdctl, etcd clients) on this address; the default is a
    /// free loopback port (see `dctl kv status`).
    #[arg(long = "etcd-listen", default_value = "127.0.0.1:0")]
    pub etcd_listen: std::net::SocketAddr,
}

impl KvFlags {
    /// The KV configuration these flags ask for.
    pub fn config(&self) -> registry::kv::KvConfig {
        registry::kv::KvConfig {
            voters: self.kv_voters.clone(),
            learner: self.kv_learner,
            bootstrap_expect: self.kv_bootstrap_expect,
            target_voters: self.kv_target_voters,
            dead_grace: Duration::from_secs(self.kv_dead_grace),
            snapshot_every: self.kv_snapshot_every,
            ..Default::default()
        }
    }
}

/// What a flag left unset means for this kind of binary.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Node name.
    pub name: String,
    /// Actor-transport address.
    pub listen: String,
    /// Gossip address.
    pub gossip: String,
}

impl Defaults {
    /// `dctl node start`'s: `node1`, transport on 7071, gossip on 7072.
    pub fn dctl() -> Defaults {
        Defaults {
            name: "node1".into(),
            listen: "127.0.0.1:7071".into(),
            gossip: "127.0.0.1:7072".into(),
        }
    }

    /// A service binary's: named after the service, free loopback ports (so a service started
    /// with no flags never clashes with a `dctl` node on the same machine).
    pub fn service(name: &str) -> Defaults {
        Defaults {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            gossip: "127.0.0.1:0".into(),
        }
    }
}

/// The services every cluster member runs on top of its node, started by [`NodeFlags::start`].
#[derive(Clone)]
pub struct Services {
    /// The KV store client.
    pub kv: registry::kv::Kv,
    /// The service registry.
    pub registry: registry::service::Registry,
    /// The CloudEvents broker.
    pub broker: broker::Broker,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl NodeFlags {
    /// `--xds-listen`, or a free port on the loopback IP of `--listen` (127.0.0.1 otherwise).
    pub fn xds_listen(&self, defaults: &Defaults) -> std::net::SocketAddr {
        if let Some(a) = self.xds_listen {
            return a;
        }
        let ip = self
            .listen
            .as_deref()
            .unwrap_or(&defaults.listen)
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .ok()
            .filter(|ip| ip.is_loopback())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        std::net::SocketAddr::new(ip, 0)
    }

    /// The node's name, with the default filled in.
    pub fn node_name(&self, defaults: &Defaults) -> String {
        self.name.clone().unwrap_or_else(|| defaults.name.clone())
    }

    /// A node builder for these flags (`admin`: the admin API's address).
    pub fn builder(&self, admin: &str, defaults: &Defaults) -> NodeBuilder {
        let mut builder = Node::builder()
            .name(self.node_name(defaults))
            .admin_addr(admin)
            .listen_addr(self.listen.as_deref().unwrap_or(&defaults.listen))
            .gossip_addr(self.gossip.as_deref().unwrap_or(&defaults.gossip))
            .services_pending();
        for role in &self.roles {
            builder = builder.role(role);
        }
        if let Some(limit) = self.max_actors {
            builder = builder.max_actors(limit);
        }
        if let Some(url) = &self.otlp_endpoint {
            builder = builder.otlp_endpoint(url.clone());
        }
        if let Some(cookie) = &self.cookie {
            builder = builder.cookie(cookie.clone());
        }
        if let Some(key) = &self.gossip_key {
            builder = builder.gossip_key(key.clone());
        }
        if let Some(bytes) = self.gossip_datagram_size {
            builder = builder.gossip_datagram_size(bytes);
        }
        if let Some(lane) = &self.lane_listen {
            builder = builder.lane_addr(lane);
        }
        for seed in self.seeds.iter().cloned() {
            builder = builder.seed(seed);
        }
        if let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            builder = builder.tls(cert, key, ca);
        }
        if let Some(dir) = self.data_dir.clone() {
            builder = builder.data_dir(dir);
        }
        builder
    }

    /// Start a node and the services every member runs (KV store, service registry, proxy
    /// controller, broker), as `dctl node start` does. On failure the node is stopped again.
    pub async fn start(&self, admin: &str, defaults: &Defaults) -> Result<(Node, Services), Error> {
        let node = self.builder(admin, defaults).start().await?;
        if self.diagnostics {
            node.enable_diagnostics();
        }
        match start_services(&node, self, defaults).await {
            Ok(services) => {
                node.services_started();
                Ok((node, services))
            }
            Err(e) => {
                node.shutdown().await;
                Err(e)
            }
        }
    }
}

/// Start every service on a freshly started node: KV (and its etcd API), registry, proxy
/// controller (and its xDS server), broker. The caller then calls
/// [`Node::services_started`] ([`NodeFlags::start`] does).
pub async fn start_services(
    node: &Node,
    flags: &NodeFlags,
    defaults: &Defaults,
) -> Result<Services, Error> {
    let kv = registry::kv::start(node, flags.kv.config())
        .await
        .map_err(|e| Error::Service("KV store", e.to_string()))?;
    registry::etcd::serve(kv.clone(), flags.kv.etcd_listen)
        .await
        .map_err(|e| Error::Service("etcd API", e.to_string()))?;
    let registry = registry::service::Registry::start(node)
        .await
        .map_err(|e| Error::Service("service registry", e.to_string()))?;
    let opts = proxy_ctl::ProxyOptions {
        xds_listen: flags.xds_listen(defaults),
        files: flags
            .xds_files
            .clone()
            .map(|dir| (dir, flags.xds_files_listen)),
    };
    proxy_ctl::Proxy::start(node, &registry, &opts)
        .await
        .map_err(|e| Error::Service("proxy controller", e.to_string()))?;
    let broker = broker::start(node)
        .await
        .map_err(|e| Error::Service("broker", e.to_string()))?;
    Ok(Services {
        kv,
        registry,
        broker,
    })
}
