use clap::{Parser, Subcommand};

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
    Up(crate::up::UpArgs),
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
        /// Each actor's live figures (mailbox, msg/s, mean and p99 handling time, uptime) and
        /// the node's totals.
        #[arg(long)]
        stats: bool,
    },
    /// A live view of the busiest actors of the cluster (like `top`).
    Top(crate::top_cmd::TopArgs),
    /// Restart a spawned actor on whichever node runs it (its supervisor starts it again).
    Restart {
        /// Actor name.
        name: String,
    },
    /// Kill a spawned actor on whichever node runs it (no cleanup; its supervisor restarts it
    /// as after a crash).
    Kill {
        /// Actor name.
        name: String,
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
    /// Envoy in front of the cluster: bootstrap, status of the connected Envoys.
    #[command(subcommand)]
    Proxy(crate::proxy_cmd::ProxyCmd),
    /// Create a service crate on the chassis (a typed actor, an HTTP route, live config).
    New {
        /// The service's name (also the crate's).
        name: String,
        /// Where to create it (default: the current directory).
        #[arg(long)]
        path: Option<std::path::PathBuf>,
    },
    /// Build a service crate and run supervised instances of it in the local cluster that
    /// `dctl up` started, until Ctrl-C.
    Run(crate::run_cmd::RunArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node this node knows of, with its state.
    Status,
}

impl Command {
    /// Commands that run a node (and so log at info by default).
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Node(NodeCmd::Start(_)) | Command::Up(_) | Command::Run(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Run one node in the foreground until SIGTERM or Ctrl-C.
    Start(Box<NodeArgs>),
}

/// The flags of `dctl node start`: the same struct every service binary built on the chassis
/// parses, so a user's binary joins a cluster like any node.
pub type NodeArgs = chassis::NodeFlags;
