//! The built-in diagnostic actor `echo`, registered as a factory on every node.
//!
//! A `call` returns the JSON payload it was sent. The payload `{"crash": true}` (by call or tell)
//! makes it panic, so supervision can be watched at work.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::json::JsonMsg;

/// The echo actor.
///
/// ```
/// use ractor::Actor;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (echo, _) = Actor::spawn(None, runtime::echo::Echo, ()).await.unwrap();
/// let reply = echo
///     .call(|port| runtime::JsonMsg::Call(br#"{"a":[1,2]}"#.to_vec(), port), None)
///     .await
///     .unwrap()
///     .unwrap();
/// assert_eq!(reply, br#"{"a":[1,2]}"#);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// Whether this payload asks the echo actor to crash.
fn is_crash(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .map(|v| v.get("crash") == Some(&serde_json::Value::Bool(true)))
        .unwrap_or(false)
}

impl Actor for Echo {
    type Msg = JsonMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<JsonMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<JsonMsg>,
        msg: JsonMsg,
        seen: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *seen += 1;
        match msg {
            JsonMsg::Tell(payload) => {
                if is_crash(&payload) {
                    panic!("echo asked to crash");
                }
            }
            JsonMsg::Call(payload, reply) => {
                if is_crash(&payload) {
                    panic!("echo asked to crash");
                }
                let _ = reply.send(payload);
            }
        }
        Ok(())
    }
}
