//! Calling a typed actor by name on any node: [`Remote`], and what a call or a tell can fail
//! with.

use std::{fmt, marker::PhantomData, time::Duration};

use ractor::ActorRef;
use runtime::{Node, RuntimeError};
use thiserror::Error;

use super::{
    wire::{encode, Envelope, Outcome, WireError},
    ErrorOf, Protocol, ReplyOf,
};

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
