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

mod actor;
mod remote;
mod wire;

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};

pub use actor::{factory, flush, spawn, worker, Ctx, Down, Typed, TypedActor, TypedState};
pub use remote::{CallError, Remote, TellError, RESOLVE_WAIT};
pub use wire::{decode, encode, Envelope, Outcome, WireError};

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

#[cfg(test)]
mod fuzz_tests;
