//! [`NodeConfig`]: everything a node is started with, and its limits. Plain data: the
//! [`NodeBuilder`](crate::NodeBuilder) fills it in and checks it.

use std::{net::SocketAddr, path::PathBuf};

/// Everything a node is started with. [`NodeConfig::default`] works on one machine with no
/// configuration: admin API on `127.0.0.1:7070`, actor transport and gossip on free loopback
/// ports, no seeds (a cluster of one), data under `./.dctl/<name>`, and a cluster secret generated
/// in the data directory on first start (never a well-known default).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name, unique in its cluster.
    pub name: String,
    /// Admin HTTP address (loopback by default); port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// Whether to serve the admin HTTP API at all.
    pub admin_enabled: bool,
    /// Bearer token every admin request must carry (`Authorization: Bearer TOKEN`). Required
    /// when the admin API is bound off loopback: `None` there means the token in
    /// `<data_dir>/admin-token`, generated (mode 0600) on first start.
    pub admin_token: Option<String>,
    /// Actor-transport address (TCP); port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// Gossip address (UDP); port 0 picks a free port.
    pub gossip_addr: SocketAddr,
    /// Address of the direct message lane (TCP, see the `lane` docs of [`Node::tell`](crate::Node::tell)); `None`
    /// binds a free port on the actor-transport IP. Peers learn it through gossip.
    pub lane_addr: Option<SocketAddr>,
    /// Gossip addresses of nodes to join.
    pub seeds: Vec<String>,
    /// Shared secret of the cluster. `None`: the one in `<data_dir>/cookie`, generated (mode
    /// 0600) on the node's first start (see [`crate::secret`]); [`NodeBuilder::start`](crate::NodeBuilder::start) fills it
    /// in, so a started node's config always holds `Some`.
    pub cookie: Option<String>,
    /// Where the cookie was read from or generated, when it came from the data directory.
    pub cookie_file: Option<PathBuf>,
    /// The gossip encryption key (32 bytes, base64) to use when the data directory holds no
    /// keyring yet. `None`: a key derived from the cookie (see [`crate::keyring`]).
    pub gossip_key: Option<String>,
    /// The largest gossip datagram this node sends, sealed ([`GOSSIP_DATAGRAM_MIN`] to
    /// [`GOSSIP_DATAGRAM_MAX`], the default): a gossip message that would make a larger one is
    /// sent in pieces, put back together by the receiver. Lower it (e.g. to 1400) where
    /// fragmented UDP datagrams are dropped on the way.
    pub gossip_datagram_size: usize,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Mutual TLS for the actor transport (off by default).
    pub tls: Option<crate::tls::TlsFiles>,
    /// The node's services (KV, registry, broker, ...) are started after the node and mount
    /// their admin routes then: until [`Node::services_started`](crate::Node::services_started) is called, a request to a path
    /// nobody serves yet answers 503 "still starting" (not 404), and `/health` is 503.
    pub services_pending: bool,
    /// Roles this node announces (besides `runtime`), e.g. `gpu` or `edge`: a remote child can
    /// be placed on "any live node with role R" ([`crate::Placement::Role`]).
    pub roles: Vec<String>,
    /// Whether user actors' handlers are timed for the live figures (on by default; switch at
    /// run time with [`Node::set_actor_stats`](crate::Node::set_actor_stats)).
    pub actor_stats: bool,
    /// At most this many actors spawned through the node (by name, from this node or another)
    /// run at once; a spawn beyond it is refused with [`crate::RuntimeError::ActorLimit`]
    /// (HTTP 503). `None`: no limit.
    pub max_actors: Option<usize>,
    /// Export the node's spans (traced admin requests, traced messages, broker produces in a
    /// trace) over OTLP/gRPC to this collector URL, e.g. `http://127.0.0.1:4317` (see
    /// [`crate::otlp`]). `None` (the default): no export.
    pub otlp_endpoint: Option<String>,
}

/// The largest gossip datagram (the largest UDP payload over IPv4), the default of
/// [`NodeConfig::gossip_datagram_size`].
pub const GOSSIP_DATAGRAM_MAX: usize = crate::seal::MAX_DATAGRAM;
/// The smallest [`NodeConfig::gossip_datagram_size`].
pub const GOSSIP_DATAGRAM_MIN: usize = crate::seal::MIN_DATAGRAM;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node1".into(),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            admin_enabled: true,
            admin_token: None,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lane_addr: None,
            seeds: Vec::new(),
            cookie: None,
            cookie_file: None,
            gossip_key: None,
            gossip_datagram_size: GOSSIP_DATAGRAM_MAX,
            data_dir: PathBuf::from(".dctl").join("node1"),
            tls: None,
            services_pending: false,
            roles: Vec::new(),
            actor_stats: true,
            max_actors: None,
            otlp_endpoint: None,
        }
    }
}
