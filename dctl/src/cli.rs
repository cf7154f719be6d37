use clap::{Args, Parser, Subcommand};

/// Draft actor runtime: run nodes and talk to them.
#[derive(Debug, Parser)]
#[command(name = "dctl", version, about)]
pub struct Cli {
    /// Admin API of the node to talk to.
    #[arg(
        long,
        global = true,
        env = "DCTL_ADMIN",
        default_value = "127.0.0.1:7070"
    )]
    pub admin: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Start a local setup on embedded defaults and print where to look.
    Up(UpArgs),
    /// Spawn an actor from a factory.
    Spawn {
        /// Factory name (e.g. `echo`).
        factory: String,
        /// Name to register the actor under.
        #[arg(long)]
        name: String,
        /// Node to spawn on (default: the node you talk to).
        #[arg(long)]
        on: Option<String>,
        /// JSON arguments for the factory.
        #[arg(long, default_value = "null")]
        args: String,
    },
    /// Send a JSON message to an actor.
    Send {
        /// Actor name.
        name: String,
        /// JSON payload.
        payload: String,
        /// Wait for and print the reply.
        #[arg(long)]
        call: bool,
        /// Call timeout in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout: u64,
    },
    /// Stop a spawned actor on whichever node runs it (it is not restarted).
    Stop {
        /// Actor name.
        name: String,
    },
    /// Show the supervision tree.
    Tree {
        /// The trees of every live node.
        #[arg(long)]
        all: bool,
    },
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Produce and consume CloudEvents (broker).
    #[command(subcommand)]
    Events(crate::events_cmd::EventsCmd),
    /// Service registry.
    #[command(subcommand)]
    Svc(crate::svc_cmd::SvcCmd),
    /// The KV store (Raft): put, get, del, ls, cas, watch, status.
    #[command(subcommand)]
    Kv(crate::kv_cmd::KvCmd),
    /// The gossip encryption keyring, on every live node: generate, list, install, use, remove.
    #[command(subcommand)]
    Keys(crate::keys_cmd::KeysCmd),
    /// The proxy route table (Envoy ingress): add, ls, rm.
    #[command(subcommand)]
    Routes(crate::routes_cmd::RoutesCmd),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node this node knows of, with its state.
    Status,
}

impl Command {
    /// Commands that run a node (and so log at info by default).
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Node(NodeCmd::Start(_)) | Command::Up(_))
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Run one node in the foreground until SIGTERM or Ctrl-C.
    Start(NodeArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node name, unique in the cluster.
    #[arg(long, default_value = "node1")]
    pub name: String,
    /// Actor-transport address.
    #[arg(long, default_value = "127.0.0.1:7071")]
    pub listen: String,
    /// Gossip address.
    #[arg(long, default_value = "127.0.0.1:7072")]
    pub gossip: String,
    /// Direct message lane address (TCP); default: a free port on the --listen IP, announced to
    /// the other nodes by gossip.
    #[arg(long)]
    pub lane_listen: Option<String>,
    /// Gossip address of a node to join (repeatable).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// Data directory (default `.dctl/<name>`).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Cluster secret (default: the one in `<data-dir>/cookie`, generated with mode 0600 on the
    /// node's first start).
    #[arg(long, env = "DCTL_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Gossip encryption key, 32 bytes in base64 (`dctl keys generate`); default: derived from
    /// the cookie. A keyring in the data directory (written by `dctl keys`) takes precedence.
    #[arg(long, env = "DCTL_GOSSIP_KEY", hide_env_values = true)]
    pub gossip_key: Option<String>,
    /// Mutual TLS on the actor transport: this node's certificate (PEM, with an IP SAN for the
    /// --listen address).
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<std::path::PathBuf>,
    /// The CA certificate every node's certificate is signed by (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Serve diagnostic admin routes for fault tests (`POST /api/diag/kill/{service}` kills a
    /// system service). Off by default: anyone reaching the admin API could crash the node.
    #[arg(long)]
    pub diagnostics: bool,
    /// A role this node announces (repeatable), e.g. `--role gpu`: a supervisor's remote child
    /// placed on `role:gpu` runs only on such nodes.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    #[command(flatten)]
    pub kv: crate::kv_cmd::KvNodeArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of node processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Cluster secret shared by the nodes (default: `<data-dir>/cookie`, generated with mode 0600
    /// on the first run).
    #[arg(long, env = "DCTL_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Where the nodes keep their data and logs (default `.dctl/up`).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}
