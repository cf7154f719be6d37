//! The built-in diagnostic factory `watch`: monitors a named actor anywhere in the cluster and
//! reports whether it went down (Erlang's `monitor` / `'DOWN'`), including because its node died.
//!
//! Spawn it with `{"target": NAME}`; a call (any payload) answers
//! `{"target", "actor_id", "down": bool, "reason"}`.

use std::sync::Weak;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::json;

use crate::{
    json::JsonMsg,
    node::{Inner, Node},
};

#[derive(Clone)]
pub(crate) struct Watch {
    pub(crate) node: Weak<Inner>,
}

pub(crate) struct WatchState {
    target: String,
    actor_id: String,
    down: Option<String>,
}

impl Actor for Watch {
    type Msg = JsonMsg;
    type State = WatchState;
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<JsonMsg>,
        target: String,
    ) -> Result<WatchState, ActorProcessingErr> {
        let node = self
            .node
            .upgrade()
            .map(|inner| Node { inner })
            .ok_or("node is stopping")?;
        let cell = node.resolve(&target).await?;
        myself.get_cell().monitor(cell.clone());
        Ok(WatchState {
            target,
            actor_id: cell.get_id().to_string(),
            down: None,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<JsonMsg>,
        msg: JsonMsg,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        if let JsonMsg::Call(_, reply) = msg {
            let body = json!({
                "target": state.target,
                "actor_id": state.actor_id,
                "down": state.down.is_some(),
                "reason": state.down,
            });
            let _ = reply.send(body.to_string().into_bytes());
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<JsonMsg>,
        event: SupervisionEvent,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        let reason = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) if !cell.get_id().is_local() => (
                cell.get_id().to_string(),
                crate::remote_child::remote_down_reason(reason.as_deref()).to_string(),
            ),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id().to_string(),
                reason.unwrap_or_else(|| "normal".into()),
            ),
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell.get_id().to_string(), err.to_string())
            }
            _ => return Ok(()),
        };
        if reason.0 == state.actor_id && state.down.is_none() {
            tracing::info!(target = %state.target, reason = %reason.1, "watched actor went down");
            state.down = Some(reason.1);
        }
        Ok(())
    }
}
