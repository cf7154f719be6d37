//! The built-in diagnostic actor `echo`, registered as a factory on every node.
//!
//! A `call` returns the JSON payload it was sent. The payload `{"crash": true}` (by call or tell)
//! makes it panic, so supervision can be watched at work; `{"sleep_ms": N}` makes it wait N
//! milliseconds (at most 60 s) before answering, so timeouts can be seen too;
//! `{"hold_bytes": N}` makes it keep a buffer of N bytes (at most 64 MiB, replacing the one it
//! held; 0 lets it go), which its memory hook ([`held_bytes`]) reports, so the memory figures
//! can be seen at work.

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

/// The most `{"hold_bytes": N}` keeps.
pub const MAX_HELD: u64 = 64 << 20;

/// The echo actor's state: messages seen and the buffer it was asked to hold.
#[derive(Debug, Default)]
pub struct EchoState {
    /// Messages handled by this incarnation.
    pub seen: u64,
    held: Vec<u8>,
}

/// The heap bytes an echo actor holds (its memory hook in the built-in `echo` factory).
///
/// ```
/// assert_eq!(runtime::echo::held_bytes(&Default::default()), 0);
/// ```
pub fn held_bytes(state: &EchoState) -> usize {
    state.held.capacity()
}

/// What a payload asks of the echo actor besides echoing.
enum Directive {
    Crash,
    Sleep(u64),
    Hold(u64),
    None,
}

fn directive(payload: &[u8]) -> Directive {
    // Most payloads carry no directive: skip the JSON parse unless a directive key appears.
    let finder = |key: &[u8]| memchr::memmem::find(payload, key).is_some();
    if !finder(b"\"crash\"") && !finder(b"\"sleep_ms\"") && !finder(b"\"hold_bytes\"") {
        return Directive::None;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Directive::None;
    };
    if v.get("crash") == Some(&serde_json::Value::Bool(true)) {
        Directive::Crash
    } else if let Some(ms) = v.get("sleep_ms").and_then(serde_json::Value::as_u64) {
        Directive::Sleep(ms.min(60_000))
    } else if let Some(n) = v.get("hold_bytes").and_then(serde_json::Value::as_u64) {
        Directive::Hold(n.min(MAX_HELD))
    } else {
        Directive::None
    }
}

async fn obey(payload: &[u8], state: &mut EchoState) {
    match directive(payload) {
        Directive::Crash => panic!("echo asked to crash"),
        Directive::Sleep(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        // at most MAX_HELD, so the conversion holds on 64-bit and 32-bit targets alike
        Directive::Hold(n) => state.held = vec![1; usize::try_from(n).unwrap_or(0)],
        Directive::None => {}
    }
}

impl Actor for Echo {
    type Msg = JsonMsg;
    type State = EchoState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<JsonMsg>,
        _: (),
    ) -> Result<EchoState, ActorProcessingErr> {
        Ok(EchoState::default())
    }

    async fn handle(
        &self,
        _myself: ActorRef<JsonMsg>,
        msg: JsonMsg,
        state: &mut EchoState,
    ) -> Result<(), ActorProcessingErr> {
        state.seen += 1;
        match msg {
            JsonMsg::Tell(payload) => obey(&payload, state).await,
            JsonMsg::Call(payload, reply) => {
                obey(&payload, state).await;
                let _ = reply.send(payload);
            }
        }
        Ok(())
    }
}
