//! The benchmarked actor of `bench local`: a counter, the same on both sides.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// The benchmark actor's message: a small local enum (never serialised).
#[derive(Debug)]
pub enum Msg {
    /// Add one to the counter (one-way).
    Inc,
    /// Reply with the current count.
    Get(RpcReplyPort<u64>),
}

impl ractor::Message for Msg {}

/// A counter actor: counts [`Msg::Inc`], answers [`Msg::Get`] with the count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Actor for Counter {
    type Msg = Msg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        count: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Msg::Inc => *count += 1,
            Msg::Get(reply) => {
                // The caller may have timed out and gone; that is not the actor's problem.
                let _ = reply.send(*count);
            }
        }
        Ok(())
    }
}
