//! Spawning actors under the node's `user` supervisor (typed, from a factory, from a child
//! spec), the factories, the live-figures switch, and stopping spawned actors here or on the node
//! that runs them.

use std::{sync::Arc, time::Duration};

use actors::{ChildSpec, SupervisorError};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use serde_json::Value;

use super::Node;
use crate::{
    cluster::MemberState,
    directory_service::FLUSH_WITHIN,
    error::RuntimeError,
    factory::{spec_for, Factory},
    spawn_protocol::{spawner_of, SpawnReply, SpawnerMsg},
};

impl Node {
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
        self.on_the_other_node_running(name, |node| async move { self.stop_on(&node, name).await })
            .await
    }

    /// Ask each other live node in turn (`ask` with its name) to do something to its user actor
    /// `name` until one has it (`Ok(true)`), and return that node. A node's refusal
    /// ([`RuntimeError::Remote`]) ends the search; a node with no session or no answer is
    /// skipped; [`RuntimeError::UnknownActor`] when no node has it.
    pub(crate) async fn on_the_other_node_running<F, Fut>(
        &self,
        name: &str,
        ask: F,
    ) -> Result<String, RuntimeError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, RuntimeError>>,
    {
        for m in self.members().await {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            match ask(m.name.clone()).await {
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
        let asked = name.to_string();
        self.ask_spawner(
            node,
            |p| SpawnerMsg::Stop(asked, p),
            "unreadable stop reply",
        )
        .await
    }

    /// Send `node`'s spawner a request about one of its user actors (stop it, act on it) and
    /// read the answer: `Ok(false)` when it has no such actor (`unreadable`: see
    /// [`SpawnReply::found`]).
    pub(crate) async fn ask_spawner(
        &self,
        node: &str,
        request: impl FnOnce(RpcReplyPort<Vec<u8>>) -> SpawnerMsg,
        unreadable: &str,
    ) -> Result<bool, RuntimeError> {
        let spawner = spawner_of(node)?;
        let bytes = self
            .call(&spawner, request, Duration::from_secs(10))
            .await?;
        SpawnReply::found(node, &bytes, unreadable)
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
