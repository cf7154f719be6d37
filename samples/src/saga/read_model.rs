//! The query side: the orders folded from the log, rebuilt at every start.

use broker::CloudEvent;
use chassis::{Ctx, Protocol, TypedActor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    log::follow,
    model::{fold, Orders},
    CHANNEL,
};

/// What the read model takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadMsg {
    /// An event of the log.
    Logged(u64, String),
    /// The model.
    Get,
}

impl Protocol for ReadMsg {
    type Reply = Orders;
    type Error = String;
}

/// The query side: the orders folded from the log, from offset 0 at every start. Declares the
/// log's channel durable on this node (its home) first.
#[derive(Debug, Clone)]
pub struct ReadModel;

impl TypedActor for ReadModel {
    type Msg = ReadMsg;
    type State = (Orders, tokio::task::JoinHandle<()>);
    type Args = broker::Broker;

    async fn init(
        &self,
        ctx: &Ctx,
        broker: broker::Broker,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        broker.declare_durable(CHANNEL).await?;
        let task = follow(ctx, &broker, ReadMsg::Logged).await?;
        Ok((Orders::default(), task))
    }

    async fn handle(
        &self,
        _: &Ctx,
        msg: ReadMsg,
        (model, _): &mut Self::State,
    ) -> Result<Orders, String> {
        if let ReadMsg::Logged(offset, json) = msg {
            let ev = CloudEvent::from_json(&json).map_err(|e| e.to_string())?;
            if let Err(e) = fold(
                model,
                Some(offset),
                &ev.ty(),
                &ev.data().unwrap_or(Value::Null),
            ) {
                tracing::warn!(offset, "read model: {e}");
            }
        }
        Ok(model.clone())
    }

    async fn on_stop(
        &self,
        _: &Ctx,
        (_, task): &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}
