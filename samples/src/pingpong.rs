//! The `ping-pong` sample's protocol and actor (the binary is `src/bin/ping-pong.rs`).

use chassis::{Ctx, Protocol, TypedActor};
use serde::{Deserialize, Serialize};

/// What a pong actor takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PingMsg {
    /// Answer `n + step` (step: the actor's start argument); `Ping(0)` is refused.
    Ping(u64),
    /// Keep a note (one-way).
    Note(String),
    /// How many notes it has.
    Notes,
}

/// A pong actor's own errors, typed on the caller's side too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PongError {
    /// `Ping(0)`.
    ZeroPing,
    /// Not a message this actor answers.
    Refused(String),
}

impl std::fmt::Display for PongError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PongError::ZeroPing => f.write_str("ping 0 is not a ping"),
            PongError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl Protocol for PingMsg {
    type Reply = u64;
    type Error = PongError;
}

/// Answers pings; its start argument is the step it adds.
#[derive(Debug, Clone, Copy)]
pub struct Ponger;

/// A pong actor's state.
#[derive(Debug)]
pub struct PongState {
    step: u64,
    notes: Vec<String>,
}

impl TypedActor for Ponger {
    type Msg = PingMsg;
    type State = PongState;
    type Args = u64;

    async fn init(&self, _: &Ctx, step: u64) -> Result<PongState, ractor::ActorProcessingErr> {
        Ok(PongState {
            step: step.max(1),
            notes: Vec::new(),
        })
    }

    async fn handle(&self, _: &Ctx, msg: PingMsg, st: &mut PongState) -> Result<u64, PongError> {
        match msg {
            PingMsg::Ping(0) => Err(PongError::ZeroPing),
            PingMsg::Ping(n) => Ok(n.saturating_add(st.step)),
            PingMsg::Note(text) => {
                st.notes.push(text);
                Ok(st.notes.len() as u64)
            }
            PingMsg::Notes => Ok(st.notes.len() as u64),
        }
    }
}
