//! The [`Node`]: supervision tree, factories, messaging API and lifecycle.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use actors::{
    ChildSpec, Intensity, Strategy, Supervisor, SupervisorError, SupervisorMsg, SupervisorSpec,
    SupervisorStats, TreeSnapshot,
};
use ractor::{rpc::CallResult, Actor, ActorCell, ActorRef, Message, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    admin,
    config::NodeConfig,
    echo::Echo,
    error::RuntimeError,
    factory::{spec_for, Factory},
    inspector::{Inspector, InspectorMsg},
    json::JsonMsg,
    metrics::Metrics,
};

/// A node's supervision tree, tagged with the node's name (the `/tree` JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTree {
    /// The node's name.
    pub node: String,
    /// Its tree, rooted at `root`.
    pub tree: TreeSnapshot,
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
    admin: Mutex<Option<AdminServer>>,
}

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
fn inspector_name(node: &str) -> String {
    format!("{node}/inspector")
}

impl Node {
    /// A builder with defaults that work on one machine with no configuration.
    pub fn builder() -> crate::config::NodeBuilder {
        crate::config::NodeBuilder::default()
    }

    pub(crate) async fn start(config: NodeConfig) -> Result<Node, RuntimeError> {
        let name = config.name.clone();
        if ractor::registry::where_is(root_name(&name)).is_some() {
            return Err(RuntimeError::Config(format!(
                "a node named '{name}' already runs in this process"
            )));
        }
        let stats = Arc::new(SupervisorStats::default());
        let generous = Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        };
        let system = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .stats(stats.clone())
            .child(ChildSpec::worker(
                "inspector",
                Some(inspector_name(&name)),
                Inspector {
                    node: name.clone(),
                    root_name: root_name(&name),
                },
                (),
            ));
        let user = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .stats(stats.clone());
        let root = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .stats(stats.clone())
            .child(ChildSpec::supervisor("system", None, system))
            .child(ChildSpec::supervisor("user", Some(user_name(&name)), user));
        let (root, _) = Supervisor::start(Some(root_name(&name)), root)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("root supervisor: {e}")))?;

        let mut factories = BTreeMap::new();
        factories.insert("echo".to_string(), Factory::new(|_| Ok((Echo, ()))));
        let node = Node {
            inner: Arc::new(Inner {
                config,
                root,
                factories: RwLock::new(factories),
                metrics: Metrics::default(),
                stats,
                admin: Mutex::new(None),
            }),
        };
        if node.inner.config.admin_enabled {
            if let Err(e) = node.start_admin().await {
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
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("admin server failed: {e}");
            }
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
        let spec = spec_for(name, actor, args, &self.inner.metrics.messages);
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
        let spec = f
            .child_spec(name, args, &self.inner.metrics.messages)
            .map_err(RuntimeError::SpawnFailed)?;
        self.spawn_spec(name, spec).await
    }

    /// Start any child spec under the `user` supervisor, checking the name first.
    pub async fn spawn_spec(&self, name: &str, spec: ChildSpec) -> Result<ActorCell, RuntimeError> {
        validate_actor_name(name)?;
        if ractor::registry::where_is(name).is_some() {
            return Err(RuntimeError::NameTaken(name.to_string()));
        }
        let user = self.user_supervisor()?;
        match actors::start_child(&user, spec.clone()).await {
            Err(SupervisorError::AlreadyPresent(_)) => {
                // A stopped child with that id is left in the supervisor: replace it.
                actors::delete_child(&user, name)
                    .await
                    .map_err(|e| RuntimeError::NameTaken(format!("{name} ({e})")))?;
                actors::start_child(&user, spec).await.map_err(spawn_error)
            }
            other => other.map_err(spawn_error),
        }
    }

    /// Stop a spawned actor (it will not be restarted) and forget it.
    pub async fn stop_actor(&self, name: &str) -> Result<(), RuntimeError> {
        let user = self.user_supervisor()?;
        actors::terminate_child(&user, name)
            .await
            .map_err(|e| match e {
                SupervisorError::NotFound(n) => RuntimeError::UnknownActor(n),
                other => RuntimeError::Unavailable(other.to_string()),
            })?;
        let _ = actors::delete_child(&user, name).await;
        Ok(())
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
        let name = actor
            .get_name()
            .unwrap_or_else(|| actor.get_id().to_string());
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(r)) => Ok(r),
            Ok(CallResult::Timeout) => Err(RuntimeError::Timeout { name, timeout }),
            Ok(CallResult::SenderError) => Err(RuntimeError::NoReply(name)),
            Err(e) => Err(messaging_error(&name, e)),
        }
    }

    /// Send a JSON message to a named actor (which must take [`JsonMsg`]).
    pub async fn tell_json(&self, name: &str, payload: Value) -> Result<(), RuntimeError> {
        let actor = self.lookup::<JsonMsg>(name).map_err(json_only)?;
        actor
            .send_message(JsonMsg::tell(&payload))
            .map_err(|e| messaging_error(name, e))
    }

    /// Call a named actor with a JSON payload and return its JSON reply.
    pub async fn call_json(
        &self,
        name: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, RuntimeError> {
        let actor = self.lookup::<JsonMsg>(name).map_err(json_only)?;
        let bytes = payload.to_string().into_bytes();
        let reply = self
            .call(&actor, |port| JsonMsg::Call(bytes, port), timeout)
            .await?;
        serde_json::from_slice(&reply)
            .map_err(|e| RuntimeError::BadJson(format!("reply from '{name}': {e}")))
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

    /// Stop the node: the admin server first, then the tree in reverse start order.
    pub async fn shutdown(&self) {
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
        tracing::info!(node = %self.name(), "node stopped");
    }

    /// Wait for Ctrl-C or SIGTERM, then [`Node::shutdown`].
    pub async fn run_until_signal(&self) {
        wait_for_signal().await;
        tracing::info!(node = %self.name(), "signal received, shutting down");
        self.shutdown().await;
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

fn json_only(e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::WrongMessageType(name, _) => RuntimeError::WrongMessageType(name, "JSON"),
        other => other,
    }
}

fn messaging_error<T>(name: &str, e: MessagingErr<T>) -> RuntimeError {
    match e {
        MessagingErr::InvalidActorType => RuntimeError::WrongMessageType(name.to_string(), "this"),
        _ => RuntimeError::NoReply(name.to_string()),
    }
}
