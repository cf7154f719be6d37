//! A user's [`TypedActor`] run as a ractor actor ([`Typed`]), its context ([`Ctx`]), and the
//! ways to start one (under the node, in a supervision spec, from a factory).

use std::{collections::HashMap, fmt, future::Future, time::Duration};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use runtime::{Node, RuntimeError};
use serde::de::DeserializeOwned;

use super::{
    remote::Remote,
    wire::{decode, Envelope, Outcome},
    ErrorOf, Protocol, ReplyOf,
};

/// An actor that is monitored went down (Erlang's `'DOWN'`), including because its node died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The name it was monitored under.
    pub name: String,
    /// Why it went down, as the runtime saw it.
    pub reason: String,
}

/// What a typed actor can use while it runs: its node, its own reference, monitors.
#[derive(Clone)]
pub struct Ctx {
    node: Node,
    myself: ActorRef<Envelope>,
    watched: std::sync::Arc<std::sync::Mutex<HashMap<ActorId, String>>>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.node.name())
            .field("actor", &self.myself.get_name())
            .finish()
    }
}

impl Ctx {
    /// The node the actor runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// This actor's reference.
    pub fn myself(&self) -> &ActorRef<Envelope> {
        &self.myself
    }

    /// A [`Remote`] for another named actor, through this node.
    pub fn remote<P: Protocol>(&self, name: &str) -> Remote<P> {
        Remote::new(&self.node, name)
    }

    /// Monitor the named actor wherever it runs: [`TypedActor::on_down`] is called when it
    /// stops or fails, or its node dies.
    pub async fn monitor(&self, name: &str) -> Result<(), RuntimeError> {
        let cell: ActorCell = self.node.resolve(name).await?;
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cell.get_id(), name.to_string());
        self.myself.get_cell().monitor(cell);
        Ok(())
    }
}

/// A user actor speaking a [`Protocol`]: spawn it with [`spawn`], or put [`Typed`] in a
/// supervision spec.
///
/// `handle` answers every message: the answer of a call goes back to the caller, that of a tell
/// is dropped (an error is logged). A panic or an `Err` from `init` is a crash, restarted by
/// the actor's supervisor.
pub trait TypedActor: Clone + Send + Sync + 'static {
    /// The protocol it speaks.
    type Msg: Protocol;
    /// Its state.
    type State: Send + 'static;
    /// Its start arguments (given again on each restart).
    type Args: Clone + Send + Sync + 'static;

    /// Build the state (runs again on each restart).
    fn init(
        &self,
        ctx: &Ctx,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorProcessingErr>> + Send;

    /// Handle one message.
    fn handle(
        &self,
        ctx: &Ctx,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<ReplyOf<Self::Msg>, ErrorOf<Self::Msg>>> + Send;

    /// The actor is stopping (shutdown, or before a restart after a crash). Default: nothing.
    fn on_stop(
        &self,
        _ctx: &Ctx,
        _state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        async { Ok(()) }
    }

    /// A monitored actor went down (see [`Ctx::monitor`]). Default: log it.
    fn on_down(
        &self,
        _ctx: &Ctx,
        down: Down,
        _state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        async move {
            tracing::info!(actor = %down.name, reason = %down.reason, "monitored actor went down");
            Ok(())
        }
    }
}

/// A [`TypedActor`] as a ractor actor (mailbox: [`Envelope`]). Give it a name (the child spec's
/// registered name) and it is published cluster-wide under it.
#[derive(Clone)]
pub struct Typed<A> {
    actor: A,
    node: Node,
}

impl<A> Typed<A> {
    /// Wrap `actor`, which runs on `node`.
    pub fn new(node: &Node, actor: A) -> Self {
        Typed {
            actor,
            node: node.clone(),
        }
    }
}

/// The state of a [`Typed`] actor.
pub struct TypedState<S> {
    inner: S,
    ctx: Ctx,
}

impl<A: TypedActor> Typed<A> {
    /// Handle one envelope: decode it, run the actor's handler, answer a call.
    async fn handle_envelope(
        &self,
        msg: Envelope,
        state: &mut TypedState<A::State>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Envelope::Flush(reply) => {
                let _ = reply.send(());
            }
            Envelope::Tell(bytes) => match decode::<A::Msg>(&bytes) {
                Ok(m) => {
                    if let Err(e) = self.actor.handle(&state.ctx, m, &mut state.inner).await {
                        tracing::warn!(actor = ?state.ctx.myself.get_name(), "a told message failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(actor = ?state.ctx.myself.get_name(), "dropping a message: {e}")
                }
            },
            Envelope::Call(bytes, reply) => {
                let outcome = match decode::<A::Msg>(&bytes) {
                    Ok(m) => match self.actor.handle(&state.ctx, m, &mut state.inner).await {
                        Ok(r) => Outcome::Ok(r),
                        Err(e) => Outcome::Err(e),
                    },
                    Err(e) => Outcome::Refused(e.to_string()),
                };
                match actors::codec::encode(&outcome) {
                    Ok(b) => {
                        let _ = reply.send(b);
                    }
                    Err(e) => tracing::warn!("cannot encode a reply: {e}"),
                }
            }
        }
        Ok(())
    }
}

impl<A: TypedActor> Actor for Typed<A> {
    type Msg = Envelope;
    type State = TypedState<A::State>;
    type Arguments = A::Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Envelope>,
        args: A::Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ctx = Ctx {
            node: self.node.clone(),
            myself: myself.clone(),
            watched: Default::default(),
        };
        let inner = self.actor.init(&ctx, args).await?;
        // Named actors are found cluster-wide through their process group (the runtime's
        // `actor:<name>` convention, which `Node::resolve` and the gossiped actor list use).
        if let Some(name) = myself.get_name() {
            ractor::pg::join(format!("actor:{name}"), vec![myself.get_cell()]);
        }
        Ok(TypedState { inner, ctx })
    }

    async fn handle(
        &self,
        myself: ActorRef<Envelope>,
        msg: Envelope,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A worker of a hand-made spec is not wrapped by the node: continue the message's
        // trace here (a no-op when the node's wrapper already did).
        let name = myself.get_name().unwrap_or_default();
        self.node
            .handle_traced(&name, self.handle_envelope(msg, state))
            .await
    }

    async fn post_stop(
        &self,
        _: ActorRef<Envelope>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ctx = state.ctx.clone();
        self.actor.on_stop(&ctx, &mut state.inner).await
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Envelope>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, reason) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.get_id(), reason.unwrap_or_else(|| "normal".into()))
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), err.to_string()),
            _ => return Ok(()),
        };
        let name = state
            .ctx
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(name) = name {
            let ctx = state.ctx.clone();
            self.actor
                .on_down(&ctx, Down { name, reason }, &mut state.inner)
                .await?;
        }
        Ok(())
    }
}

/// Spawn a typed actor under the node's `user` supervisor, named `name` and reachable from any
/// node (transient: restarted after a crash). See [`Remote`] for an example.
pub async fn spawn<A: TypedActor>(
    node: &Node,
    name: &str,
    actor: A,
    args: A::Args,
) -> Result<ActorRef<Envelope>, RuntimeError> {
    node.spawn(name, Typed::new(node, actor), args).await
}

/// A worker child spec for a typed actor in a supervision spec, registered (and published)
/// under `name`.
pub fn worker<A: TypedActor>(
    node: &Node,
    name: &str,
    actor: A,
    args: A::Args,
) -> runtime::ChildSpec {
    runtime::ChildSpec::worker(name, Some(name.to_string()), Typed::new(node, actor), args)
}

/// A factory for `dctl spawn FACTORY --on NODE`: the JSON `--args` are deserialized into the
/// actor's start arguments (a bad value is refused with the reason).
pub fn factory<A>(node: &Node, actor: A) -> runtime::Factory
where
    A: TypedActor,
    A::Args: DeserializeOwned,
{
    let node = node.clone();
    runtime::Factory::new(move |args: serde_json::Value| {
        let args: A::Args = serde_json::from_value(args).map_err(|e| format!("bad --args: {e}"))?;
        Ok((Typed::new(&node, actor.clone()), args))
    })
}

/// Wait until every message queued in the typed actor's mailbox before now is handled (at most
/// `timeout`).
pub async fn flush(actor: &ActorRef<Envelope>, timeout: Duration) -> bool {
    matches!(
        actor.call(Envelope::Flush, Some(timeout)).await,
        Ok(ractor::rpc::CallResult::Success(()))
    )
}
