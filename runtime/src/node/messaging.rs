//! Finding actors by name (here, published, or through the name directory) and messaging them:
//! over the direct lane to their node when it is up, else through ractor_cluster's session.

use std::{sync::Arc, time::Duration};

use ractor::{rpc::CallResult, ActorCell, ActorRef, Message, MessagingErr, RpcReplyPort};
use serde_json::Value;

use super::Node;
use crate::{
    cluster::MemberState,
    error::RuntimeError,
    json::JsonMsg,
    lane::{Lane, LaneError},
    names::{actor_group, json_group},
};

impl Node {
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
}

/// Whether a message to this local actor should go in its serialized form, so that the trace
/// context of the request being handled reaches the actor as it would from another node (only
/// while a trace is current; untraced messages stay on the typed path).
fn traced_local<M: Message>(actor: &ActorRef<M>) -> bool {
    actor.get_id().is_local() && M::serializable() && crate::trace::current().is_some()
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
