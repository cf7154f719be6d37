//! The built-in diagnostic actor `echo`, registered as a factory on every node.
//!
//! A `call` returns the JSON payload it was sent. The payload `{"crash": true}` (by call or tell)
//! makes it panic, so supervision can be watched at work; `{"sleep_ms": N}` makes it wait N
//! milliseconds (at most 60 s) before answering, so timeouts can be seen too.

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

/// What a payload asks of the echo actor besides echoing.
enum Directive {
    Crash,
    Sleep(u64),
    None,
}

fn directive(payload: &[u8]) -> Directive {
    // Most payloads carry no directive: skip the JSON parse unless a directive key appears.
    let finder = |key: &[u8]| memchr::memmem::find(payload, key).is_some();
    if !finder(b"\"crash\"") && !finder(b"\"sleep_ms\"") {
        return Directive::None;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Directive::None;
    };
    if v.get("crash") == Some(&serde_json::Value::Bool(true)) {
        Directive::Crash
    } else if let Some(ms) = v.get("sleep_ms").and_then(serde_json::Value::as_u64) {
        Directive::Sleep(ms.min(60_000))
    } else {
        Directive::None
    }
}

async fn obey(payload: &[u8]) {
    match directive(payload) {
        Directive::Crash => panic!("echo asked to crash"),
        Directive::Sleep(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        Directive::None => {}
    }
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
            JsonMsg::Tell(payload) => obey(&payload).await,
            JsonMsg::Call(payload, reply) => {
                obey(&payload).await;
                let _ = reply.send(payload);
            }
        }
        Ok(())
    }
}
