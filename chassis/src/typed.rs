//! Typed messages across nodes: a serde message enum, a named actor on any node, typed replies
//! and typed errors. This is the one way the chassis and its samples talk between actors.
//!
//! * The user's message enum implements [`Protocol`], which names its reply and error types.
//! * The user's actor implements [`TypedActor`] (an `init` and a `handle` returning
//!   `Result<Reply, Error>`); wrapped in [`Typed`] it is a ractor actor whose mailbox takes
//!   [`Envelope`]s, published cluster-wide under its name.
//! * Callers on any node use [`Remote`]: `Remote::<Msg>::new(&node, "name").call(msg)` answers
//!   `Result<Reply, CallError<Error>>`; `tell` is one-way.
//!
//! On the wire an envelope is `u16 name length | protocol name | bincode-2 message`; the reply of
//! a call is the bincode-2 [`Outcome`]. A message of another protocol, or bytes that do not
//! decode, are refused with a reason the caller sees ([`CallError::Refused`]); the actor keeps
//! running. Envelopes travel on the direct lane like every message sent through the node.

use std::{collections::HashMap, fmt, future::Future, marker::PhantomData, time::Duration};

use ractor::{
    message::{BoxedDowncastErr, SerializedMessage},
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use runtime::{Node, RuntimeError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// A message enum that travels between nodes, with the types a call answers.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// enum Counter { Add(i64), Get }
/// impl chassis::Protocol for Counter {
///     type Reply = i64;
///     type Error = String;
/// }
/// ```
pub trait Protocol: Serialize + DeserializeOwned + Send + 'static {
    /// What a successful call answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// What a failed call answers (the actor's own error, not a transport failure).
    type Error: Serialize + DeserializeOwned + Send + fmt::Debug + fmt::Display + 'static;

    /// The protocol's name, checked on arrival: a message of another protocol is refused.
    /// Defaults to the Rust type's path; override it when both sides do not share the crate
    /// that defines the enum.
    fn protocol() -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// The reply type of a protocol.
pub type ReplyOf<P> = <P as Protocol>::Reply;
/// The error type of a protocol.
pub type ErrorOf<P> = <P as Protocol>::Error;

/// What a typed actor's mailbox takes: encoded messages, from this node or another.
pub enum Envelope {
    /// One-way message (bytes as described in the module docs).
    Tell(Vec<u8>),
    /// Request; the reply is an encoded [`Outcome`].
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Answered once every message queued before it was handled (local only; used to drain
    /// mailboxes on shutdown).
    Flush(RpcReplyPort<()>),
}

const TELL: &str = "chassis.tell";
const CALL: &str = "chassis.call";

/// Hand-written, as `runtime::JsonMsg`: the payload and reply are already bytes. The sender's
/// trace context travels as the message's metadata (the lane's `CAST_M` / `CALL_M` frames), so
/// a typed call continues its caller's trace on the receiving node.
impl ractor::Message for Envelope {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            Envelope::Tell(args) => Ok(SerializedMessage::Cast {
                variant: TELL.to_string(),
                args,
                metadata: runtime::trace_metadata(),
            }),
            Envelope::Call(args, reply) => Ok(SerializedMessage::Call {
                variant: CALL.to_string(),
                args,
                reply,
                metadata: runtime::trace_metadata(),
            }),
            Envelope::Flush(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast {
                variant,
                args,
                metadata,
            } if variant == TELL => {
                runtime::trace_received(metadata.as_deref());
                Ok(Envelope::Tell(args))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                metadata,
            } if variant == CALL => {
                runtime::trace_received(metadata.as_deref());
                Ok(Envelope::Call(args, reply))
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// The answer to a call, as it travels back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<R, E> {
    /// The actor's reply.
    Ok(R),
    /// The actor's own error.
    Err(E),
    /// The actor could not take the message (another protocol, or undecodable bytes).
    Refused(String),
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Encoding or decoding with bincode failed.
    #[error("{0}")]
    Codec(String),
    /// The message belongs to another protocol.
    #[error("this actor speaks {expected}, not {got}")]
    Protocol {
        /// The actor's protocol.
        expected: String,
        /// The message's.
        got: String,
    },
    /// The frame is shorter than its header says.
    #[error("truncated message ({0} bytes)")]
    Truncated(usize),
}

/// Encode a message of protocol `P` (pure; see the module docs for the layout).
pub fn encode<P: Protocol>(msg: &P) -> Result<Vec<u8>, WireError> {
    let name = P::protocol().as_bytes();
    let len =
        u16::try_from(name.len()).map_err(|_| WireError::Codec("protocol name too long".into()))?;
    let body = actors::codec::encode(msg).map_err(|e| WireError::Codec(e.to_string()))?;
    let mut out = Vec::with_capacity(2 + name.len() + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a message of protocol `P`; another protocol's or malformed bytes are an error.
pub fn decode<P: Protocol>(bytes: &[u8]) -> Result<P, WireError> {
    let [a, b, rest @ ..] = bytes else {
        return Err(WireError::Truncated(bytes.len()));
    };
    let len = usize::from(u16::from_be_bytes([*a, *b]));
    if rest.len() < len {
        return Err(WireError::Truncated(bytes.len()));
    }
    let (name, body) = rest.split_at(len);
    if name != P::protocol().as_bytes() {
        return Err(WireError::Protocol {
            expected: P::protocol().to_string(),
            got: String::from_utf8_lossy(name).into_owned(),
        });
    }
    actors::codec::decode(body).map_err(|e| WireError::Codec(e.to_string()))
}

/// A call failed: the actor's own error, or why it could not be asked or answered.
#[derive(Debug, Error)]
pub enum CallError<E: fmt::Debug + fmt::Display> {
    /// The actor answered with its protocol's error.
    #[error("{actor} answered an error: {error}")]
    Actor {
        /// The actor called.
        actor: String,
        /// Its error.
        error: E,
    },
    /// The actor could not take the message (another protocol, undecodable message).
    #[error("{actor} refused the message: {reason}")]
    Refused {
        /// The actor called.
        actor: String,
        /// Why.
        reason: String,
    },
    /// The message could not be encoded, or the reply decoded.
    #[error("{0}")]
    Wire(WireError),
    /// The runtime could not deliver it or got no reply: unknown actor, node down or
    /// unreachable, timeout, the actor stopped before replying...
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl<E: fmt::Debug + fmt::Display> CallError<E> {
    /// The actor's own error, when that is what this is.
    pub fn actor_error(&self) -> Option<&E> {
        match self {
            CallError::Actor { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A tell could not be sent.
#[derive(Debug, Error)]
pub enum TellError {
    /// The message could not be encoded.
    #[error("{0}")]
    Wire(WireError),
    /// The runtime could not deliver it (unknown actor, node down...).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// How long an unknown name is looked up again before a message to it fails.
pub const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// A named actor speaking protocol `P`, on whichever node runs it.
///
/// The name is resolved at each message (a restarted or moved actor is found again; a name
/// not known yet is looked up again for up to [`RESOLVE_WAIT`]); the default call timeout is
/// 5 s.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] enum Counter { Add(i64), Get }
/// # impl chassis::Protocol for Counter { type Reply = i64; type Error = String; }
/// # #[derive(Clone)] struct Count;
/// # impl chassis::TypedActor for Count {
/// #   type Msg = Counter; type State = i64; type Args = ();
/// #   async fn init(&self, _: &chassis::Ctx, _: ()) -> Result<i64, ractor::ActorProcessingErr> { Ok(0) }
/// #   async fn handle(&self, _: &chassis::Ctx, m: Counter, n: &mut i64) -> Result<i64, String> {
/// #     match m { Counter::Add(k) => { *n += k; Ok(*n) } Counter::Get => Ok(*n) } }
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let node = runtime::Node::builder().name("remote-doc").without_admin().start().await.unwrap();
/// chassis::spawn(&node, "count", Count, ()).await.unwrap();
/// let count = chassis::Remote::<Counter>::new(&node, "count");
/// count.tell(&Counter::Add(2)).await.unwrap();
/// assert_eq!(count.call(&Counter::Add(3)).await.unwrap(), 5);
/// # node.shutdown().await;
/// # });
/// ```
pub struct Remote<P> {
    node: Node,
    name: String,
    timeout: Duration,
    _p: PhantomData<fn() -> P>,
}

impl<P> Clone for Remote<P> {
    fn clone(&self) -> Self {
        Remote {
            node: self.node.clone(),
            name: self.name.clone(),
            timeout: self.timeout,
            _p: PhantomData,
        }
    }
}

impl<P> fmt::Debug for Remote<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remote<{}>({})", std::any::type_name::<P>(), self.name)
    }
}

impl<P: Protocol> Remote<P> {
    /// The actor named `name`, reached through `node`.
    pub fn new(node: &Node, name: impl Into<String>) -> Self {
        Remote {
            node: node.clone(),
            name: name.into(),
            timeout: Duration::from_secs(5),
            _p: PhantomData,
        }
    }

    /// Use this call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn target(&self) -> Result<ActorRef<Envelope>, RuntimeError> {
        // A name just spawned on another node reaches this one with the next process-group
        // sync: an unknown name is looked up again for a short while before it is an error.
        let deadline = tokio::time::Instant::now() + RESOLVE_WAIT.min(self.timeout);
        let cell = loop {
            match self.node.resolve(&self.name).await {
                Ok(cell) => break cell,
                Err(RuntimeError::UnknownActor(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if cell.is_message_type_of::<Envelope>() == Some(false) {
            return Err(RuntimeError::WrongMessageType(
                self.name.clone(),
                "chassis typed",
            ));
        }
        Ok(cell.into())
    }

    /// Send a one-way message (ordered with the other messages this node sends the actor).
    pub async fn tell(&self, msg: &P) -> Result<(), TellError> {
        let bytes = encode(msg).map_err(TellError::Wire)?;
        let actor = self.target().await?;
        self.node.send(&actor, Envelope::Tell(bytes)).await?;
        Ok(())
    }

    /// Ask and wait (at most the timeout) for the typed reply or the actor's typed error.
    pub async fn call(&self, msg: &P) -> Result<ReplyOf<P>, CallError<ErrorOf<P>>> {
        let bytes = encode(msg).map_err(CallError::Wire)?;
        let actor = self.target().await?;
        let reply = self
            .node
            .call(&actor, |port| Envelope::Call(bytes, port), self.timeout)
            .await?;
        let outcome: Outcome<ReplyOf<P>, ErrorOf<P>> = actors::codec::decode(&reply)
            .map_err(|e| CallError::Wire(WireError::Codec(e.to_string())))?;
        match outcome {
            Outcome::Ok(r) => Ok(r),
            Outcome::Err(error) => Err(CallError::Actor {
                actor: self.name.clone(),
                error,
            }),
            Outcome::Refused(reason) => Err(CallError::Refused {
                actor: self.name.clone(),
                reason,
            }),
        }
    }
}

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

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum A {
        X(u32),
    }
    impl Protocol for A {
        type Reply = u32;
        type Error = String;
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum B {
        X(u32),
    }
    impl Protocol for B {
        type Reply = u32;
        type Error = String;
    }

    #[test]
    fn a_message_round_trips() {
        let bytes = encode(&A::X(7)).unwrap();
        assert_eq!(decode::<A>(&bytes).unwrap(), A::X(7));
    }

    #[test]
    fn another_protocols_message_is_refused_with_both_names() {
        let bytes = encode(&B::X(7)).unwrap();
        let err = decode::<A>(&bytes).unwrap_err();
        assert!(
            matches!(&err, WireError::Protocol { expected, got } if expected.ends_with("::A") && got.ends_with("::B")),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        assert_eq!(decode::<A>(&[0]).unwrap_err(), WireError::Truncated(1));
        assert_eq!(
            decode::<A>(&[0, 9, 1]).unwrap_err(),
            WireError::Truncated(3)
        );
        let mut bytes = encode(&A::X(7)).unwrap();
        bytes.push(0xff);
        assert!(matches!(decode::<A>(&bytes), Err(WireError::Codec(_))));
    }
}
