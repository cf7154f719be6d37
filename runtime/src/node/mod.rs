//! The [`Node`]: the handle every part of the runtime holds, and the state behind it.
//!
//! This file holds the state ([`Inner`]) and the plain accessors; the rest of `Node`'s methods
//! live in one file per capability:
//!
//! * [`start`]: building the supervision tree and starting the node's services;
//! * [`messaging`]: finding actors by name and sending or calling them (`lookup`, `resolve`,
//!   `call`, `tell`, `send`, `call_json`, `tell_json`);
//! * [`spawning`]: factories, spawning and stopping actors, the published-names wait;
//! * [`cluster_view`]: members, gossip key-values, spawning on other nodes, the cluster's trees;
//! * [`admin_api`]: the admin HTTP server, routes other crates add, the services-pending flag;
//! * [`lifecycle`]: shutdown, shutdown hooks, the root supervisor's fate;
//! * [`spans`]: running work as a span of the current trace.
//!
//! The modules of the node's actors and servers (spawner, inspector, watch, admin, ...) take a
//! `Node` from this file, which names none of them; only the capability files that use them
//! (`start`, `admin_api`, `cluster_view`) do, and nothing depends on those, so no module cycle
//! runs through `node`.

mod admin_api;
mod cluster_view;
mod lifecycle;
mod messaging;
mod spans;
mod spawning;
mod start;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, RwLock},
};

use actors::{SupervisorMsg, SupervisorStats, TreeSnapshot};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{
    actor_stats::{NodeTotals, StatsRegistry},
    cluster::Cluster,
    config::NodeConfig,
    directory_service::Directory,
    error::RuntimeError,
    factory::{Counting, Factory},
    metrics::Metrics,
    names::{system_name, user_name},
    otlp::SpanExport,
};

/// A node's supervision tree, tagged with the node's name (the `/tree` JSON shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTree {
    /// The node's name.
    pub node: String,
    /// Its tree, rooted at `root`, with live figures on its actors.
    pub tree: TreeSnapshot,
    /// The node's totals of the live figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<NodeTotals>,
}

/// What became of a node's root supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootState {
    Running,
    /// Stopped by [`Node::shutdown`].
    Stopped,
    /// Stopped on its own: it gave up.
    GaveUp,
}

struct AdminServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Inner {
    config: NodeConfig,
    root: ActorRef<SupervisorMsg>,
    factories: RwLock<BTreeMap<String, Factory>>,
    pub(crate) metrics: Metrics,
    pub(crate) stats: Arc<SupervisorStats>,
    /// Live figures of named user actors.
    pub(crate) actor_stats: Arc<StatsRegistry>,
    /// Actors spawned through the node that are running now (checked against `max_actors`).
    pub(crate) live_actors: Arc<std::sync::atomic::AtomicUsize>,
    /// The name directory: this node's named actors, the entries it owns, resolved proxies.
    pub(crate) directory: Arc<Directory>,
    /// The OTLP span exporter, when `otlp_endpoint` is set.
    pub(crate) spans: Option<Arc<SpanExport>>,
    admin: Mutex<Option<AdminServer>>,
    cluster: OnceLock<Arc<Cluster>>,
    extra_routes: RwLock<Option<axum::Router>>,
    shutdown_hooks: Mutex<Vec<ShutdownHook>>,
    /// What became of the root supervisor.
    pub(crate) root_down: tokio::sync::watch::Receiver<RootState>,
    /// Set when [`Node::shutdown`] begins: a root that stops after this did not give up.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Set until [`Node::services_started`] when the node was built with services pending.
    pub(crate) services_pending: std::sync::atomic::AtomicBool,
}

type ShutdownHook =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// A running node. Cheap to clone; all clones drive the same node.
///
/// See the crate docs for an example.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.config.name)
            .finish()
    }
}

impl Node {
    fn lock_admin(&self) -> std::sync::MutexGuard<'_, Option<AdminServer>> {
        self.inner.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Total restarts performed by this node's supervisors.
    pub fn restarts(&self) -> u64 {
        self.inner.stats.restarts()
    }

    /// The root supervisor (children `system` and `user`).
    pub fn root(&self) -> &ActorRef<SupervisorMsg> {
        &self.inner.root
    }

    /// The supervisor under which spawned actors live.
    pub fn user_supervisor(&self) -> Result<ActorRef<SupervisorMsg>, RuntimeError> {
        ractor::registry::where_is(user_name(self.name()))
            .map(ActorRef::from)
            .ok_or_else(|| RuntimeError::Unavailable("the user supervisor is not running".into()))
    }

    /// The supervisor of the node's own services (inspector, spawner, and whatever other crates
    /// add with [`actors::start_child`]: registry, KV, broker...).
    pub fn system_supervisor(&self) -> Result<ActorRef<SupervisorMsg>, RuntimeError> {
        ractor::registry::where_is(system_name(self.name()))
            .map(ActorRef::from)
            .ok_or_else(|| RuntimeError::Unavailable("the system supervisor is not running".into()))
    }

    fn counting(&self) -> Counting {
        Counting {
            handled: self.inner.metrics.messages.clone(),
            registry: self.inner.actor_stats.clone(),
            live: self.inner.live_actors.clone(),
            spans: self.inner.spans.clone(),
            directory: self.inner.directory.clone(),
        }
    }
}
