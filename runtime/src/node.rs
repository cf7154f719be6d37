//! The [`Node`]: supervision tree, factories, messaging API and lifecycle.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::Duration,
};

use actors::{
    ChildSpec, Intensity, IntensityScope, Strategy, Supervisor, SupervisorError, SupervisorMsg,
    SupervisorSpec, SupervisorStats, TreeSnapshot,
};
use ractor::{rpc::CallResult, Actor, ActorCell, ActorRef, Message, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    actor_stats::StatsRegistry,
    admin,
    cluster::{Cluster, Member, MemberState},
    config::NodeConfig,
    directory_service::{Directory, DirectoryActor, FLUSH_WITHIN},
    echo::Echo,
    error::RuntimeError,
    factory::{spec_for, Counting, Factory},
    inspector::{Inspector, InspectorMsg},
    json::JsonMsg,
    lane::{Lane, LaneError},
    metrics::Metrics,
    spawner::{SpawnReply, SpawnRequest, Spawner, SpawnerMsg},
    watch::Watch,
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
    pub totals: Option<crate::actor_stats::NodeTotals>,
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
    pub(crate) spans: Option<Arc<crate::otlp::SpanExport>>,
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

fn user_name(node: &str) -> String {
    format!("{node}/user")
}
fn root_name(node: &str) -> String {
    format!("{node}/root")
}
fn system_name(node: &str) -> String {
    format!("{node}/system")
}
fn inspector_name(node: &str) -> String {
    format!("{node}/inspector")
}
/// The process group of a *published* named actor: one that every node holds a proxy of at
/// once (typed service actors, remote children). Other named actors are found through the
/// name directory (`directory.rs`).
pub(crate) fn actor_group(name: &str) -> String {
    format!("actor:{name}")
}
/// The process group of published actors that take [`JsonMsg`] (so JSON callers on other
/// nodes can tell a JSON actor from a typed one, which a remote proxy cannot).
pub(crate) fn json_group(name: &str) -> String {
    format!("json:{name}")
}
/// The process group of a node's inspector.
pub(crate) fn inspector_group(node: &str) -> String {
    format!("inspector@{node}")
}
/// The process group of a node's spawner.
pub(crate) fn spawner_group(node: &str) -> String {
    format!("spawner@{node}")
}

impl Node {
    /// A builder with defaults that work on one machine with no configuration.
    pub fn builder() -> crate::config::NodeBuilder {
        crate::config::NodeBuilder::default()
    }

    pub(crate) async fn start(config: NodeConfig) -> Result<Node, RuntimeError> {
        let name = config.name.clone();
        let services_pending = config.services_pending;
        if ractor::registry::where_is(root_name(&name)).is_some() {
            return Err(RuntimeError::Config(format!(
                "a node named '{name}' already runs in this process"
            )));
        }
        let spans = match &config.otlp_endpoint {
            Some(url) => Some(Arc::new(
                crate::otlp::SpanExport::otlp(url, &name)
                    .map_err(|e| RuntimeError::Config(e.to_string()))?,
            )),
            None => None,
        };
        let stats = Arc::new(SupervisorStats::default());
        let actor_stats = StatsRegistry::new(config.actor_stats);
        crate::actor_stats::start_sampler(&actor_stats);
        let generous = Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        };
        let handle: Arc<OnceLock<std::sync::Weak<Inner>>> = Arc::new(OnceLock::new());
        let directory = Arc::new(Directory::default());
        let system = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .stats(stats.clone())
            .child(ChildSpec::worker(
                "directory",
                None,
                DirectoryActor {
                    node: name.clone(),
                    directory: directory.clone(),
                },
                (),
            ))
            .child(ChildSpec::worker(
                "inspector",
                Some(inspector_name(&name)),
                Inspector {
                    node: name.clone(),
                    root_name: root_name(&name),
                    stats: actor_stats.clone(),
                },
                (),
            ))
            .child(ChildSpec::worker(
                "spawner",
                None,
                Spawner {
                    node_name: name.clone(),
                    node: handle.clone(),
                },
                (),
            ));
        // Actors spawned on request are unrelated to each other: each has its own restart
        // count, and one that exceeds it is stopped alone (the `user` supervisor never
        // escalates because of its children).
        let user = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .intensity_scope(IntensityScope::PerChild)
            .stats(stats.clone());
        // `root` restarts nothing: `system` fails only after its services exceeded their
        // intensity, and a restarted `system` would come back without the services other crates
        // added to it at run time (KV, broker, registry). So root gives up at once, and the
        // node leaves the cluster and exits (see `Node::run_until_signal`): a node that cannot
        // serve must not look alive, and its process supervisor restarts it whole.
        let root = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(Intensity {
                max_restarts: 0,
                period: Duration::from_secs(10),
            })
            .stats(stats.clone())
            .child(ChildSpec::supervisor(
                "system",
                Some(system_name(&name)),
                system,
            ))
            .child(ChildSpec::supervisor("user", Some(user_name(&name)), user));
        let (root, root_task) = Supervisor::start(Some(root_name(&name)), root)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("root supervisor: {e}")))?;
        let (root_down_tx, root_down) = tokio::sync::watch::channel(RootState::Running);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = stopping.clone();
        tokio::spawn(async move {
            let _ = root_task.await;
            let _ = root_down_tx.send(if asked.load(std::sync::atomic::Ordering::SeqCst) {
                RootState::Stopped
            } else {
                RootState::GaveUp
            });
        });

        let mut factories = BTreeMap::new();
        factories.insert(
            "echo".to_string(),
            Factory::with_memory(|_| Ok((Echo, ())), crate::echo::held_bytes),
        );
        factories.insert(
            "counter".to_string(),
            Factory::new(|_| Ok((crate::counter::Counter, ()))),
        );
        let node = Node {
            inner: Arc::new(Inner {
                config,
                root,
                factories: RwLock::new(factories),
                metrics: Metrics::default(),
                stats,
                actor_stats,
                live_actors: Arc::default(),
                directory,
                spans,
                admin: Mutex::new(None),
                cluster: OnceLock::new(),
                extra_routes: RwLock::new(None),
                shutdown_hooks: Mutex::new(Vec::new()),
                root_down,
                stopping,
                services_pending: std::sync::atomic::AtomicBool::new(services_pending),
            }),
        };
        let _ = handle.set(Arc::downgrade(&node.inner));
        let directory = Arc::downgrade(&node.inner.directory);
        node.metrics().add_source(move || {
            directory
                .upgrade()
                .map(|d| d.metrics_text())
                .unwrap_or_default()
        });
        let figures = Arc::downgrade(&node.inner.actor_stats);
        node.metrics().add_source(move || {
            figures
                .upgrade()
                .map(|f| crate::actor_metrics::render(f.rows()))
                .unwrap_or_default()
        });
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "watch",
            Factory::new(move |args: Value| {
                let target = args
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or("watch needs arguments {\"target\": NAME}")?;
                Ok((Watch { node: weak.clone() }, target.to_string()))
            }),
        );
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "forward",
            Factory::new(move |args: Value| {
                let to = args
                    .get("to")
                    .and_then(Value::as_str)
                    .ok_or("forward needs arguments {\"to\": NAME}")?;
                Ok((
                    crate::forward::Forward { node: weak.clone() },
                    to.to_string(),
                ))
            }),
        );
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "supervisor",
            Factory::from_spec(move |name, args| {
                crate::supervisor_factory::build(&weak, name, args)
            }),
        );
        if node.inner.config.admin_enabled {
            if let Err(e) = node.start_admin().await {
                node.shutdown().await;
                return Err(e);
            }
        }
        match Cluster::start(
            &node.inner.config,
            node.admin_addr(),
            node.inner.live_actors.clone(),
        )
        .await
        {
            Ok(cluster) => {
                tokio::spawn(crate::directory_service::run_publisher(
                    name.clone(),
                    Arc::downgrade(&node.inner.directory),
                    Arc::downgrade(&cluster),
                ));
                let scraped = Arc::downgrade(&cluster);
                node.metrics().add_source(move || {
                    scraped
                        .upgrade()
                        .map(|c| c.lane_metrics())
                        .unwrap_or_default()
                });
                let _ = node.inner.cluster.set(cluster);
                if let Err(e) = crate::keys::start(&node).await {
                    node.shutdown().await;
                    return Err(e);
                }
            }
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        }
        tracing::info!(node = %name, admin = ?node.admin_addr(), "node started");
        Ok(node)
    }

    async fn start_admin(&self) -> Result<(), RuntimeError> {
        let addr = self.inner.config.admin_addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RuntimeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| RuntimeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel();
        let app = admin::router(self.clone());
        let token = self.inner.config.admin_token.clone();
        let task = tokio::spawn(async move {
            crate::admin_serve::serve(listener, app, stopped, token).await;
        });
        *self.lock_admin() = Some(AdminServer {
            addr: bound,
            stop,
            task,
        });
        Ok(())
    }

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

    /// The address the admin HTTP server is bound to (with the real port when 0 was asked).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.lock_admin().as_ref().map(|a| a.addr)
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

    /// Serve more routes on the admin HTTP server (merged with the ones added before). Paths the
    /// runtime serves itself take precedence.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("routes-doc").admin_addr("127.0.0.1:0").start().await.unwrap();
    /// node.add_admin_routes(axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" })));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn add_admin_routes(&self, routes: axum::Router) {
        let mut guard = self
            .inner
            .extra_routes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let merged = match guard.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        };
        *guard = Some(merged);
    }

    /// The services this node was built to wait for ([`crate::NodeBuilder::services_pending`])
    /// have mounted their routes: unknown paths answer 404 again and `/health` stops reporting
    /// `starting`.
    pub fn services_started(&self) {
        self.inner
            .services_pending
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the node still waits for [`Node::services_started`].
    pub fn is_starting(&self) -> bool {
        self.inner
            .services_pending
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn extra_routes(&self) -> Option<axum::Router> {
        self.inner
            .extra_routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Run `hook` at the start of [`Node::shutdown`], before the tree stops (hooks run in reverse
    /// order of registration). Used e.g. to deregister services before draining.
    pub fn on_shutdown<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner
            .shutdown_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(move || Box::pin(hook())));
    }

    /// Publish a key-value in this node's gossip state (visible to every node). Key and value
    /// together may have at most [`crate::GOSSIP_ENTRY_MAX`] bytes (what one gossip message
    /// can carry): a larger one is refused with [`RuntimeError::GossipEntryTooLarge`] and
    /// nothing changes.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("gossip-set-doc").admin_addr("127.0.0.1:0")
    ///     .start().await.unwrap();
    /// node.gossip_set("demo", "1").await.unwrap();
    /// let big = "x".repeat(runtime::GOSSIP_ENTRY_MAX);
    /// let err = node.gossip_set("demo", &big).await.unwrap_err();
    /// assert_eq!(err.http_status(), 413);
    /// assert_eq!(node.gossip_scan("demo").await[0].2, "1");
    /// node.shutdown().await;
    /// # });
    /// ```
    pub async fn gossip_set(&self, key: &str, value: &str) -> Result<(), RuntimeError> {
        crate::gossip_entry::check(key, value)?;
        if let Some(c) = self.inner.cluster.get() {
            c.set_key(key, value).await;
        }
        Ok(())
    }

    /// Remove a key from this node's gossip state.
    pub async fn gossip_delete(&self, key: &str) {
        if let Some(c) = self.inner.cluster.get() {
            c.delete_key(key).await;
        }
    }

    /// Key-values under `prefix` published by live nodes (this one included), as
    /// `(node, key, value)`.
    pub async fn gossip_scan(&self, prefix: &str) -> Vec<(String, String, String)> {
        match self.inner.cluster.get() {
            Some(c) => c.scan_live(prefix).await,
            None => Vec::new(),
        }
    }

    /// A receiver that changes whenever membership or any node's gossip state changes.
    pub async fn gossip_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self.inner.cluster.get() {
            Some(c) => Some(c.changes().await),
            None => None,
        }
    }

    /// Register (or replace) a named factory, for [`Node::spawn_factory`] and remote spawn.
    pub fn register_factory(&self, name: impl Into<String>, factory: Factory) {
        self.inner
            .factories
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), factory);
    }

    /// Names of the registered factories.
    pub fn factories(&self) -> Vec<String> {
        self.inner
            .factories
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Spawn a typed actor under the `user` supervisor, registered under `name`, restarted after
    /// abnormal exits (transient).
    pub async fn spawn<A>(
        &self,
        name: &str,
        actor: A,
        args: A::Arguments,
    ) -> Result<ActorRef<A::Msg>, RuntimeError>
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        let spec = spec_for(name, actor, args, &self.counting(), None);
        let cell = self.spawn_spec(name, spec).await?;
        Ok(cell.into())
    }

    /// [`Node::spawn`] for an actor that can tell how much its state holds on the heap:
    /// `memory(&state)` is asked after it starts and then at most once a second after a
    /// handled message, and added to its shallow memory estimate (see
    /// [`crate::Factory::with_memory`]).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("mem-doc").without_admin().start().await.unwrap();
    /// // say this echo actor holds 1 MiB
    /// node.spawn_with_memory("doc-mem", runtime::echo::Echo, (), |_| 1 << 20).await.unwrap();
    /// // answered: it has started (and been asked)
    /// node.call_json("doc-mem", serde_json::json!(1), std::time::Duration::from_secs(5))
    ///     .await
    ///     .unwrap();
    /// let tree = node.tree().await.unwrap();
    /// let stats = tree.find("doc-mem").and_then(|t| t.stats.clone()).unwrap();
    /// assert!(stats.memory_reported);
    /// assert!(stats.memory_bytes.unwrap() >= (1 << 20) + runtime::ACTOR_BASE_BYTES);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn spawn_with_memory<A, M>(
        &self,
        name: &str,
        actor: A,
        args: A::Arguments,
        memory: M,
    ) -> Result<ActorRef<A::Msg>, RuntimeError>
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
        M: Fn(&A::State) -> usize + Send + Sync + 'static,
    {
        let hook: crate::counted::MemoryHook<A::State> = Arc::new(memory);
        let spec = spec_for(name, actor, args, &self.counting(), Some(hook));
        let cell = self.spawn_spec(name, spec).await?;
        Ok(cell.into())
    }

    /// Spawn an actor from a registered factory with JSON arguments.
    pub async fn spawn_factory(
        &self,
        factory: &str,
        name: &str,
        args: Value,
    ) -> Result<ActorCell, RuntimeError> {
        self.spawn_factory_as(factory, name, args, None).await
    }

    /// [`Node::spawn_factory`] with another restart type than the default `transient`.
    pub(crate) async fn spawn_factory_as(
        &self,
        factory: &str,
        name: &str,
        args: Value,
        restart: Option<actors::Restart>,
    ) -> Result<ActorCell, RuntimeError> {
        let mut spec = self.factory_child_spec(factory, name, args)?;
        if let Some(restart) = restart {
            spec = spec.restart(restart);
        }
        self.spawn_spec(name, spec).await
    }

    /// The child spec the factory `factory` makes for an actor named `name` (to start it under
    /// a supervisor of one's own).
    pub(crate) fn factory_child_spec(
        &self,
        factory: &str,
        name: &str,
        args: Value,
    ) -> Result<ChildSpec, RuntimeError> {
        let f = self
            .inner
            .factories
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(factory)
            .cloned()
            .ok_or_else(|| {
                RuntimeError::UnknownFactory(factory.to_string(), self.factories().join(", "))
            })?;
        f.child_spec(name, args, &self.counting())
            .map_err(RuntimeError::SpawnFailed)
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

    /// Turn the timing of user actors' handlers (rate, mean and p99 handling time, failures in
    /// the live figures) on or off while the node runs; message counts and mailbox lengths
    /// stay. On unless [`crate::NodeBuilder::actor_stats`] said otherwise.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("stats-doc").without_admin().start().await.unwrap();
    /// assert!(node.actor_stats_enabled());
    /// node.set_actor_stats(false);
    /// assert!(!node.actor_stats_enabled());
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn set_actor_stats(&self, on: bool) {
        self.inner.actor_stats.set_enabled(on);
    }

    /// Whether user actors' handlers are timed (see [`Node::set_actor_stats`]).
    pub fn actor_stats_enabled(&self) -> bool {
        self.inner.actor_stats.enabled()
    }

    /// Start any child spec under the `user` supervisor, checking the name first.
    pub async fn spawn_spec(&self, name: &str, spec: ChildSpec) -> Result<ActorCell, RuntimeError> {
        validate_actor_name(name)?;
        if ractor::registry::where_is(name).is_some() {
            return Err(RuntimeError::NameTaken(name.to_string()));
        }
        if let Some(limit) = self.inner.config.max_actors {
            if self.spawned_actors() >= limit {
                return Err(RuntimeError::ActorLimit {
                    node: self.name().to_string(),
                    limit,
                });
            }
        }
        let user = self.user_supervisor()?;
        let cell = match actors::start_child(&user, spec.clone()).await {
            Err(SupervisorError::AlreadyPresent(_)) => {
                // A stopped child with that id is left in the supervisor: replace it.
                actors::delete_child(&user, name)
                    .await
                    .map_err(|e| RuntimeError::NameTaken(format!("{name} ({e})")))?;
                actors::start_child(&user, spec).await.map_err(spawn_error)
            }
            other => other.map_err(spawn_error),
        }?;
        Ok(cell)
    }

    /// Wait until the names of the actors this node spawned so far were sent to their owners
    /// in the name directory, each owner acknowledging or failing within 1 s (at most 2 s in
    /// all), so other nodes resolve them: `false` when that took longer. An owner that did not
    /// acknowledge is sent them again in the next rounds.
    ///
    /// [`Node::spawn`] and its siblings return once the actor runs here; its name reaches the
    /// directory a moment later (in batches, so spawning many actors is not held up by round
    /// trips). A spawn through the admin API or another node's request
    /// ([`Node::spawn_on`]) waits for this itself.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = runtime::Node::builder().name("published-doc").without_admin().start().await.unwrap();
    /// node.spawn("published-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// assert!(node.names_published().await);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn names_published(&self) -> bool {
        self.inner.directory.flushed(FLUSH_WITHIN).await
    }

    /// Actors spawned through this node ([`Node::spawn`], factories, other nodes' requests)
    /// that are running now; what [`crate::NodeBuilder::max_actors`] limits.
    ///
    /// ```
    /// # use runtime::Node;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = Node::builder().name("count-doc").without_admin().start().await.unwrap();
    /// node.spawn("count-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// assert_eq!(node.spawned_actors(), 1);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn spawned_actors(&self) -> usize {
        self.inner
            .live_actors
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stop a spawned actor of this node (it will not be restarted) and forget it; an actor
    /// waiting for its restart, or given up on, is forgotten too.
    pub async fn stop_actor(&self, name: &str) -> Result<(), RuntimeError> {
        let user = self.user_supervisor()?;
        actors::terminate_child(&user, name)
            .await
            .map_err(|e| match e {
                SupervisorError::NotFound(n) => RuntimeError::UnknownActor(n),
                other => RuntimeError::Unavailable(other.to_string()),
            })?;
        let _ = actors::delete_child(&user, name).await;
        self.inner.actor_stats.forget(name);
        Ok(())
    }

    /// Stop a spawned actor on whichever node runs it (this one first, then every live node's
    /// spawner); returns the node it was stopped on. [`RuntimeError::UnknownActor`] when no
    /// node has a user actor of that name.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = runtime::Node::builder().name("stop-doc").without_admin().start().await.unwrap();
    /// node.spawn("stop-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// assert_eq!(node.stop("stop-doc-echo").await.unwrap(), "stop-doc");
    /// assert!(node.lookup::<runtime::JsonMsg>("stop-doc-echo").is_err());
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn stop(&self, name: &str) -> Result<String, RuntimeError> {
        match self.stop_actor(name).await {
            Ok(()) => return Ok(self.name().to_string()),
            Err(RuntimeError::UnknownActor(_)) => {}
            Err(e) => return Err(e),
        }
        for m in self.members().await {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            match self.stop_on(&m.name, name).await {
                Ok(true) => return Ok(m.name),
                Ok(false) => {}
                Err(e @ RuntimeError::Remote { .. }) => return Err(e),
                Err(_) => {} // no session or no answer: try the next node
            }
        }
        Err(RuntimeError::UnknownActor(name.to_string()))
    }

    /// Ask `node`'s spawner to stop its user actor `name`: `Ok(false)` when it has none.
    pub(crate) async fn stop_on(&self, node: &str, name: &str) -> Result<bool, RuntimeError> {
        let spawner = Self::remote_member::<SpawnerMsg>(&spawner_group(node)).ok_or_else(|| {
            RuntimeError::Unreachable {
                node: node.to_string(),
                what: "no actor-transport session to it".into(),
            }
        })?;
        let asked = name.to_string();
        let bytes = self
            .call(
                &spawner,
                |p| SpawnerMsg::Stop(asked, p),
                Duration::from_secs(10),
            )
            .await?;
        match serde_json::from_slice::<SpawnReply>(&bytes) {
            Ok(SpawnReply::Ok { .. }) => Ok(true),
            Ok(SpawnReply::Err { status: 404, .. }) => Ok(false),
            Ok(SpawnReply::Err { status, message }) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status,
                message,
            }),
            Err(e) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status: 502,
                message: format!("unreadable stop reply: {e}"),
            }),
        }
    }

    /// Find a typed actor by name.
    pub fn lookup<M: Message>(&self, name: &str) -> Result<ActorRef<M>, RuntimeError> {
        let cell = ractor::registry::where_is(name)
            .ok_or_else(|| RuntimeError::UnknownActor(name.to_string()))?;
        if cell.is_message_type_of::<M>() == Some(false) {
            return Err(RuntimeError::WrongMessageType(
                name.to_string(),
                std::any::type_name::<M>(),
            ));
        }
        Ok(cell.into())
    }

    /// Call a typed actor and wait at most `timeout` for its reply.
    ///
    /// ```
    /// # use runtime::{Node, JsonMsg};
    /// # use std::time::Duration;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = Node::builder().name("call-doc").without_admin().start().await.unwrap();
    /// node.spawn("call-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// let echo = node.lookup::<JsonMsg>("call-doc-echo").unwrap();
    /// let reply = node
    ///     .call(&echo, |port| JsonMsg::Call(b"1".to_vec(), port), Duration::from_secs(1))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(reply, b"1");
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn call<M, R>(
        &self,
        actor: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
        timeout: Duration,
    ) -> Result<R, RuntimeError>
    where
        M: Message,
        R: Send + 'static,
    {
        // The name is only needed for errors: build it off the hot path.
        let name = || {
            actor
                .get_name()
                .unwrap_or_else(|| actor.get_id().to_string())
        };
        if let Some((lane, pid)) = self.lane_to::<M>(actor) {
            let started = tokio::time::Instant::now();
            let (tx, rx) = ractor::concurrency::oneshot();
            let msg = build((tx, timeout).into());
            let msg = msg
                .serialize()
                .map_err(|_| RuntimeError::WrongMessageType(name(), "network"))?;
            lane.send(pid, msg)
                .map_err(|e| lane_error(&lane, &name(), e))?;
            return match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => Ok(r),
                // The reply port's own timeout fires with ours: that is a timeout too.
                Ok(Err(_)) if started.elapsed() >= timeout => Err(RuntimeError::Timeout {
                    name: name(),
                    timeout,
                }),
                Ok(Err(_)) if lane.is_closed() => Err(RuntimeError::Unreachable {
                    node: lane.peer().to_string(),
                    what: format!(
                        "the connection to it was lost during the call to '{}'",
                        name()
                    ),
                }),
                Ok(Err(_)) => Err(RuntimeError::NoReply(name())),
                Err(_) => Err(RuntimeError::Timeout {
                    name: name(),
                    timeout,
                }),
            };
        }
        if traced_local(actor) {
            let (tx, rx) = ractor::concurrency::oneshot();
            let msg = build((tx, timeout).into())
                .serialize()
                .map_err(|_| RuntimeError::WrongMessageType(name(), "network"))?;
            actor
                .get_cell()
                .send_serialized(msg)
                .map_err(|_| RuntimeError::NoReply(name()))?;
            return match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(_)) => Err(RuntimeError::NoReply(name())),
                Err(_) => Err(RuntimeError::Timeout {
                    name: name(),
                    timeout,
                }),
            };
        }
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(r)) => Ok(r),
            Ok(CallResult::Timeout) => Err(RuntimeError::Timeout {
                name: name(),
                timeout,
            }),
            Ok(CallResult::SenderError) => Err(RuntimeError::NoReply(name())),
            Err(e) => Err(messaging_error(&name(), e)),
        }
    }

    /// Find a named actor on any node: a local actor first, then a published one (a typed
    /// service actor or a remote child, whose proxy every node holds), else through the name
    /// directory: the name's owner node says where it runs, and this node gets a proxy of it
    /// from the session to that node (kept for later calls). When the directory says the
    /// actor's node was declared dead, the error says that node is down.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = runtime::Node::builder().name("resolve-doc").without_admin().start().await.unwrap();
    /// node.spawn("resolve-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// let cell = node.resolve("resolve-doc-echo").await.unwrap();
    /// assert!(cell.get_id().is_local());
    /// assert!(matches!(
    ///     node.resolve("nobody").await,
    ///     Err(runtime::RuntimeError::UnknownActor(_))
    /// ));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn resolve(&self, name: &str) -> Result<ActorCell, RuntimeError> {
        self.locate(name).await.map(|(cell, _)| cell)
    }

    /// [`Node::resolve`], and whether the actor takes [`JsonMsg`] (`None` only for a local
    /// actor whose type ractor cannot tell).
    async fn locate(&self, name: &str) -> Result<(ActorCell, Option<bool>), RuntimeError> {
        if let Some(cell) = ractor::registry::where_is(name) {
            let json = cell.is_message_type_of::<JsonMsg>();
            return Ok((cell, json));
        }
        if let Some(cell) = ractor::pg::get_members(&actor_group(name))
            .into_iter()
            .find(|c| !c.get_id().is_local())
        {
            let json = ractor::pg::get_members(&json_group(name))
                .iter()
                .any(|m| m.get_id() == cell.get_id());
            return Ok((cell, Some(json)));
        }
        let Some(cluster) = self.inner.cluster.get() else {
            return Err(RuntimeError::UnknownActor(name.to_string()));
        };
        let (cell, json) =
            crate::directory_service::locate(self.name(), &self.inner.directory, cluster, name)
                .await?;
        Ok((cell, Some(json)))
    }

    async fn resolve_json(&self, name: &str) -> Result<ActorRef<JsonMsg>, RuntimeError> {
        let (cell, json) = self.locate(name).await?;
        if json != Some(true) {
            return Err(RuntimeError::WrongMessageType(name.to_string(), "JSON"));
        }
        Ok(cell.into())
    }

    /// After a failed remote call: was it because the actor's node went down?
    async fn explain_failure(&self, cell: &ActorCell, name: &str, e: RuntimeError) -> RuntimeError {
        if cell.get_id().is_local() {
            return e;
        }
        let Some(cluster) = self.inner.cluster.get() else {
            return e;
        };
        let node = cluster.node_of(cell);
        let members = self.members().await;
        let alive = |n: &str| {
            members
                .iter()
                .any(|m| m.name == n && m.state == MemberState::Alive)
        };
        match node {
            Some(n) if alive(&n) => e,
            Some(n) => RuntimeError::NodeDown {
                node: n,
                what: format!("call to '{name}' failed"),
            },
            // The session (and so the node mapping) is already gone.
            None if matches!(e, RuntimeError::NoReply(_)) => RuntimeError::NodeDown {
                node: "unknown".into(),
                what: format!("the connection to the node of '{name}' was lost"),
            },
            None => e,
        }
    }

    /// Send a JSON message to a named actor on any node (it must take [`JsonMsg`]).
    pub async fn tell_json(&self, name: &str, payload: Value) -> Result<(), RuntimeError> {
        let actor = self.resolve_json(name).await?;
        self.tell(&actor, JsonMsg::tell(&payload))
    }

    /// Send a one-way message to a typed actor on any node.
    ///
    /// An actor on another node is reached over the direct lane to that node when it is up: one
    /// frame, batched with others, straight into the actor's mailbox. Otherwise the message goes
    /// through ractor_cluster's session. Messages sent through the node from one sender to one
    /// actor keep their order; `ActorRef::cast` on a remote reference takes ractor_cluster's
    /// slower path and is not ordered with them, so send through the node when order matters.
    ///
    /// ```
    /// # use runtime::{Node, JsonMsg};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = Node::builder().name("tell-doc").without_admin().start().await.unwrap();
    /// node.spawn("tell-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// let echo = node.lookup::<JsonMsg>("tell-doc-echo").unwrap();
    /// node.tell(&echo, JsonMsg::Tell(b"{}".to_vec())).unwrap();
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn tell<M: Message>(&self, actor: &ActorRef<M>, msg: M) -> Result<(), RuntimeError> {
        self.tell_via(self.lane_to::<M>(actor), actor, msg)
    }

    /// Send on `lane` (the actor's lane and pid) when given, else through ractor_cluster.
    fn tell_via<M: Message>(
        &self,
        lane: Option<(Arc<Lane>, u64)>,
        actor: &ActorRef<M>,
        msg: M,
    ) -> Result<(), RuntimeError> {
        let name = || {
            actor
                .get_name()
                .unwrap_or_else(|| actor.get_id().to_string())
        };
        if let Some((lane, pid)) = lane {
            let msg = msg
                .serialize()
                .map_err(|_| RuntimeError::WrongMessageType(name(), "network"))?;
            return lane
                .send(pid, msg)
                .map_err(|e| lane_error(&lane, &name(), e));
        }
        if traced_local(actor) {
            let msg = msg
                .serialize()
                .map_err(|_| RuntimeError::WrongMessageType(name(), "network"))?;
            return actor
                .get_cell()
                .send_serialized(msg)
                .map_err(|_| RuntimeError::NotRunning(name()));
        }
        actor.send_message(msg).map_err(|e| match e {
            MessagingErr::InvalidActorType => RuntimeError::WrongMessageType(name(), "this"),
            _ => RuntimeError::NotRunning(name()),
        })
    }

    /// [`Node::tell`] with back-pressure: when the lane to the actor's node has more than a few
    /// MiB waiting to be written, wait until it drains. Use it to stream many messages to
    /// another node without buffering them all in memory; it also lets other tasks run now and
    /// then, as a bounded channel's `send` does.
    ///
    /// ```
    /// # use runtime::{Node, JsonMsg};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = Node::builder().name("send-doc").without_admin().start().await.unwrap();
    /// node.spawn("send-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// let echo = node.lookup::<JsonMsg>("send-doc-echo").unwrap();
    /// for _ in 0..1000 {
    ///     node.send(&echo, JsonMsg::Tell(b"{}".to_vec())).await.unwrap();
    /// }
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn send<M: Message>(&self, actor: &ActorRef<M>, msg: M) -> Result<(), RuntimeError> {
        let lane = self.lane_to::<M>(actor);
        match &lane {
            Some((lane, _)) => lane.room().await,
            None => tokio::task::consume_budget().await,
        }
        // The lane may have closed while we waited: look again (a new lane, or ractor_cluster).
        let lane = match lane {
            Some((l, _)) if l.is_closed() => self.lane_to::<M>(actor),
            other => other,
        };
        self.tell_via(lane, actor, msg)
    }

    /// Whether messages to `actor` travel on a direct lane: it lives on another node and the
    /// lane to that node is up. Components that must not mix paths (an ordered stream) wait
    /// for this before sending.
    pub fn has_lane<M: Message>(&self, actor: &ActorRef<M>) -> bool {
        self.lane_to::<M>(actor).is_some()
    }

    /// The lane to a remote actor's node, when the message type can travel on it.
    fn lane_to<M: Message>(&self, actor: &ActorRef<M>) -> Option<(Arc<Lane>, u64)> {
        if actor.get_id().is_local() || !M::serializable() {
            return None;
        }
        self.inner.cluster.get()?.lane_to(&actor.get_cell())
    }

    /// Call a named actor with a JSON payload and return its JSON reply.
    pub async fn call_json(
        &self,
        name: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, RuntimeError> {
        let actor = self.resolve_json(name).await?;
        let bytes = payload.to_string().into_bytes();
        let started = tokio::time::Instant::now();
        let reply = match self
            .call(&actor, |port| JsonMsg::Call(bytes, port), timeout)
            .await
        {
            Ok(r) => r,
            // ractor_cluster reports a remote call that ran out of time as a dropped reply port
            // (not a timeout): if the time is up and the proxy still runs, it was a timeout.
            Err(RuntimeError::NoReply(_))
                if !actor.get_id().is_local()
                    && started.elapsed() >= timeout
                    && self.is_alive_remote(actor.get_cell()) =>
            {
                return Err(RuntimeError::Timeout {
                    name: name.to_string(),
                    timeout,
                })
            }
            Err(e) => return Err(self.explain_failure(&actor.get_cell(), name, e).await),
        };
        serde_json::from_slice(&reply)
            .map_err(|e| RuntimeError::BadJson(format!("reply from '{name}': {e}")))
    }

    fn is_alive_remote(&self, cell: ActorCell) -> bool {
        cell.get_status() == ractor::ActorStatus::Running
    }

    /// The members of the cluster as this node sees them (itself included).
    pub async fn members(&self) -> Vec<Member> {
        match self.inner.cluster.get() {
            Some(c) => c.members().await,
            None => Vec::new(),
        }
    }

    /// The actor-transport and gossip addresses this node is bound to.
    pub fn cluster_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.inner
            .cluster
            .get()
            .map(|c| (c.actor_addr, c.gossip_addr))
    }

    /// A member of `group` on another node (its local proxy), if the group has reached us.
    pub(crate) fn remote_member<M: Message>(group: &str) -> Option<ActorRef<M>> {
        ractor::pg::get_members(&group.to_string())
            .into_iter()
            .find(|c| !c.get_id().is_local())
            .map(ActorRef::from)
    }

    async fn ensure_alive(&self, node: &str) -> Result<(), RuntimeError> {
        match self.members().await.into_iter().find(|m| m.name == node) {
            Some(m) if m.state == MemberState::Alive => Ok(()),
            Some(_) => Err(RuntimeError::NodeDown {
                node: node.to_string(),
                what: "declared dead by the failure detector".into(),
            }),
            None => Err(RuntimeError::UnknownNode(node.to_string())),
        }
    }

    /// Spawn an actor from a factory on another node (or this one), by node name. The actor is
    /// supervised there and can be messaged by name from any node.
    pub async fn spawn_on(
        &self,
        node: &str,
        factory: &str,
        name: &str,
        args: Value,
    ) -> Result<String, RuntimeError> {
        self.spawn_request_on(
            node,
            SpawnRequest {
                factory: factory.to_string(),
                name: name.to_string(),
                args,
                restart: None,
                supervised_from: None,
            },
        )
        .await
    }

    /// Ask `node`'s spawner (or this node) to spawn; answers the new actor's id.
    pub(crate) async fn spawn_request_on(
        &self,
        node: &str,
        req: SpawnRequest,
    ) -> Result<String, RuntimeError> {
        if node == self.name() {
            let cell = self
                .spawn_factory_as(&req.factory, &req.name, req.args, req.restart)
                .await?;
            // Whoever asked (the admin API, another node) may use the name anywhere at once.
            if !self.names_published().await {
                tracing::debug!(actor = %req.name, "the name directory has not acknowledged it yet");
            }
            if let Some(from) = req.supervised_from {
                // Published: the supervising node gets its proxy at once, and the proxy stops
                // when the actor does (what the remote child's guard monitors).
                ractor::pg::join(actor_group(&req.name), vec![cell.clone()]);
                if cell.is_message_type_of::<JsonMsg>() == Some(true) {
                    ractor::pg::join(json_group(&req.name), vec![cell.clone()]);
                }
                crate::remote_child::hosted(&cell, from);
            }
            return Ok(cell.get_id().to_string());
        }
        self.ensure_alive(node).await?;
        let spawner: ActorRef<SpawnerMsg> =
            Self::remote_member(&spawner_group(node)).ok_or_else(|| RuntimeError::Unreachable {
                node: node.to_string(),
                what: "no actor-transport session to it".into(),
            })?;
        let bytes = serde_json::to_vec(&req).map_err(|e| RuntimeError::BadJson(e.to_string()))?;
        let reply = self
            .call(
                &spawner,
                |p| SpawnerMsg::Spawn(bytes, p),
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| match e {
                RuntimeError::NoReply(_) => RuntimeError::NodeDown {
                    node: node.to_string(),
                    what: "the spawn request got no answer".into(),
                },
                other => other,
            })?;
        match serde_json::from_slice::<SpawnReply>(&reply) {
            Ok(SpawnReply::Ok { actor_id }) => Ok(actor_id),
            Ok(SpawnReply::Err { status, message }) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status,
                message,
            }),
            Err(e) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status: 502,
                message: format!("unreadable spawn reply: {e}"),
            }),
        }
    }

    /// The trees of every live node, each tagged with its node name, sorted by node name.
    /// Nodes that do not answer in time are left out.
    pub async fn cluster_tree(&self) -> Result<Vec<NodeTree>, RuntimeError> {
        let mut out = vec![self.node_tree().await?];
        for m in self.members().await {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            let Some(inspector) = Self::remote_member::<InspectorMsg>(&inspector_group(&m.name))
            else {
                continue;
            };
            if let Ok(bytes) = self
                .call(&inspector, InspectorMsg::Tree, Duration::from_secs(5))
                .await
            {
                if let Ok(tree) = serde_json::from_slice::<NodeTree>(&bytes) {
                    out.push(tree);
                }
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(out)
    }

    /// This node's supervision tree, from its inspector.
    pub async fn tree(&self) -> Result<TreeSnapshot, RuntimeError> {
        Ok(self.node_tree().await?.tree)
    }

    /// This node's supervision tree tagged with the node's name.
    pub async fn node_tree(&self) -> Result<NodeTree, RuntimeError> {
        let inspector: ActorRef<InspectorMsg> =
            ractor::registry::where_is(inspector_name(self.name()))
                .map(ActorRef::from)
                .ok_or_else(|| RuntimeError::Unavailable("inspector not running".into()))?;
        let bytes = self
            .call(&inspector, InspectorMsg::Tree, Duration::from_secs(10))
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Unavailable(format!("inspector answered badly: {e}")))
    }

    /// Resolves when the root supervisor has stopped. Unless [`Node::shutdown`] stopped it, that
    /// means it gave up (a system service failed beyond its restart intensity): the node can no
    /// longer serve.
    pub async fn root_stopped(&self) {
        let mut down = self.inner.root_down.clone();
        let _ = down.wait_for(|d| *d != RootState::Running).await;
    }

    /// Whether the root supervisor stopped without [`Node::shutdown`] asking it to.
    pub fn root_gave_up(&self) -> bool {
        *self.inner.root_down.borrow() == RootState::GaveUp
    }

    /// Run `work` as a span named `name` of the current trace: a child of the request or message
    /// being handled ([`crate::trace_context`]), current while `work` runs (messages it sends
    /// carry it) and exported when OTLP export is on ([`crate::NodeBuilder::otlp_endpoint`]).
    /// Outside a trace, or with export off, `work` just runs (and `attributes`, the span's
    /// attributes, is not called). The broker's produce is one.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("in-span-doc").without_admin().start().await.unwrap();
    /// let n = node.in_span("produce", || vec![("channel", "orders".to_string())], async { 1 + 1 }).await;
    /// assert_eq!(n, 2);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn in_span<F: std::future::Future>(
        &self,
        name: &'static str,
        attributes: impl FnOnce() -> Vec<(&'static str, String)>,
        work: F,
    ) -> F::Output {
        let (Some(spans), Some(parent)) = (&self.inner.spans, crate::trace::current()) else {
            return work.await;
        };
        let ctx = parent.child();
        let started = std::time::SystemTime::now();
        let out = crate::trace::scope(ctx, work).await;
        spans.export(crate::otlp::Finished {
            name,
            kind: opentelemetry::trace::SpanKind::Internal,
            ctx,
            parent: Some(parent),
            start: started,
            attributes: attributes()
                .into_iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k, v))
                .collect(),
            error: None,
        });
        out
    }

    /// Handle a message in its trace, for actors that are not spawned through the node (e.g. a
    /// worker put in a supervision spec by hand, whose handler the node does not wrap): when
    /// the message just decoded carried a trace context ([`crate::trace_received`]), `work` runs
    /// as a child span of it named `message` with `actor` (logged, current while it runs,
    /// exported when OTLP export is on). Call it before the handler's first await. For an actor
    /// spawned through the node the node has done this already, and `work` just runs.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("handle-traced-doc").without_admin().start().await.unwrap();
    /// let r: Result<u8, String> = node.handle_traced("me", async { Ok(7) }).await;
    /// assert_eq!(r, Ok(7));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn handle_traced<T, E: std::fmt::Display>(
        &self,
        actor: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        crate::trace::handle_received(self.inner.spans.as_deref(), actor, work).await
    }

    /// Stop the node: the admin server first, then the tree in reverse start order.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let hooks: Vec<ShutdownHook> = std::mem::take(
            &mut *self
                .inner
                .shutdown_hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for hook in hooks.into_iter().rev() {
            if tokio::time::timeout(Duration::from_secs(10), hook())
                .await
                .is_err()
            {
                tracing::warn!("a shutdown hook took more than 10 s; moving on");
            }
        }
        if let Some(cluster) = self.inner.cluster.get() {
            cluster.shutdown().await;
        }
        let admin = self.lock_admin().take();
        if let Some(admin) = admin {
            let _ = admin.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), admin.task).await;
        }
        let _ = self
            .inner
            .root
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(60)))
            .await;
        if let Some(spans) = self.inner.spans.clone() {
            // The last spans go out (blocking, bounded by the export timeout).
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
        tracing::info!(node = %self.name(), "node stopped");
    }

    /// Wait for Ctrl-C or SIGTERM, then [`Node::shutdown`] and `Ok`. If the root supervisor
    /// gives up first, the node leaves the cluster (shutdown hooks, gossip, transport, admin
    /// API) and this returns [`RuntimeError::RootGaveUp`], so the process can exit non-zero
    /// and its supervisor restart it (as OTP stops a node whose permanent application died).
    pub async fn run_until_signal(&self) -> Result<(), RuntimeError> {
        tokio::select! {
            _ = wait_for_signal() => {
                tracing::info!(node = %self.name(), "signal received, shutting down");
                self.shutdown().await;
                Ok(())
            }
            _ = self.root_stopped() => {
                tracing::error!(
                    node = %self.name(),
                    "the root supervisor gave up; leaving the cluster and stopping"
                );
                self.shutdown().await;
                Err(RuntimeError::RootGaveUp(self.name().to_string()))
            }
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether a message to this local actor should go in its serialized form, so that the trace
/// context of the request being handled reaches the actor as it would from another node (only
/// while a trace is current; untraced messages stay on the typed path).
fn traced_local<M: Message>(actor: &ActorRef<M>) -> bool {
    actor.get_id().is_local() && M::serializable() && crate::trace::current().is_some()
}

fn validate_actor_name(name: &str) -> Result<(), RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Config(format!(
            "actor name '{name}' must be 1-128 letters, digits, '-', '_', '.', ':'"
        )))
    }
}

fn spawn_error(e: SupervisorError) -> RuntimeError {
    match e {
        SupervisorError::AlreadyPresent(n) => RuntimeError::NameTaken(n),
        SupervisorError::StartFailed { reason, .. } => RuntimeError::SpawnFailed(reason),
        other => RuntimeError::Unavailable(other.to_string()),
    }
}

fn lane_error(lane: &Lane, name: &str, e: LaneError) -> RuntimeError {
    match e {
        LaneError::Closed => RuntimeError::Unreachable {
            node: lane.peer().to_string(),
            what: format!("the connection to it closed; actor '{name}' lives there"),
        },
        LaneError::NotSerializable => RuntimeError::WrongMessageType(name.to_string(), "network"),
        LaneError::TooLarge => RuntimeError::TooLarge {
            name: name.to_string(),
            limit: crate::lane::MAX_FRAME,
        },
    }
}

fn messaging_error<T>(name: &str, e: MessagingErr<T>) -> RuntimeError {
    match e {
        MessagingErr::InvalidActorType => RuntimeError::WrongMessageType(name.to_string(), "this"),
        _ => RuntimeError::NoReply(name.to_string()),
    }
}
