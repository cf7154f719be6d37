//! The built-in diagnostic factory `forward`: passes every message on to another named actor
//! (on any node) and, for a call, answers with that actor's reply. Chains of them show a
//! request hopping across nodes, with one trace id on every hop (see `trace.rs`).
//!
//! Spawn it with `{"to": NAME}`; a call waits at most 10 s for the next actor.

use std::{sync::Weak, time::Duration};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{json, Value};

use crate::{
    json::JsonMsg,
    node::{Inner, Node},
};

/// How long a forwarded call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct Forward {
    pub(crate) node: Weak<Inner>,
}

impl Forward {
    fn node(&self) -> Option<Node> {
        self.node.upgrade().map(|inner| Node { inner })
    }
}

impl Actor for Forward {
    type Msg = JsonMsg;
    /// The actor messages go to.
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        _: ActorRef<JsonMsg>,
        to: String,
    ) -> Result<String, ActorProcessingErr> {
        Ok(to)
    }

    async fn handle(
        &self,
        _: ActorRef<JsonMsg>,
        msg: JsonMsg,
        to: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(node) = self.node() else {
            return Ok(()); // stopping
        };
        match msg {
            JsonMsg::Tell(bytes) => {
                let payload: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Err(e) = node.tell_json(to, payload).await {
                    tracing::warn!(to = %to, "forward: {e}");
                }
            }
            JsonMsg::Call(bytes, reply) => {
                let payload: Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(
                            json!({ "error": format!("not JSON: {e}") })
                                .to_string()
                                .into_bytes(),
                        );
                        return Ok(());
                    }
                };
                let answer = match node.call_json(to, payload, CALL_TIMEOUT).await {
                    Ok(v) => v,
                    Err(e) => json!({ "error": e.to_string(), "forwarding_to": to }),
                };
                let _ = reply.send(answer.to_string().into_bytes());
            }
        }
        Ok(())
    }
}
