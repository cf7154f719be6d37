//! A transparent wrapper that counts the messages an actor handles (for metrics).

use prometheus_client::metrics::counter::Counter;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

#[derive(Clone)]
pub(crate) struct Counted<A> {
    pub(crate) inner: A,
    pub(crate) handled: Counter,
}

impl<A: Actor> Actor for Counted<A> {
    type Msg = A::Msg;
    type State = A::State;
    type Arguments = A::Arguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = self.inner.pre_start(myself.clone(), args).await?;
        // Named user actors are findable cluster-wide through their process group.
        if let Some(name) = myself.get_name() {
            ractor::pg::join(crate::node::actor_group(&name), vec![myself.get_cell()]);
            if myself.get_cell().is_message_type_of::<crate::JsonMsg>() == Some(true) {
                ractor::pg::join(crate::node::json_group(&name), vec![myself.get_cell()]);
            }
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner.post_start(myself, state).await
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner.post_stop(myself, state).await
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.handled.inc();
        self.inner.handle(myself, message, state).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner
            .handle_supervisor_evt(myself, message, state)
            .await
    }
}
