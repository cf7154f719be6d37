//! The JSON message protocol used by the CLI and the admin HTTP API.

use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;

/// A message carrying a JSON document, for actors that are driven from the CLI or HTTP.
///
/// Payloads are JSON text as bytes (so the message can cross the network unchanged); a `Call`
/// is answered with JSON text as bytes. Rust callers normally use typed messages instead.
///
/// ```
/// let msg = runtime::JsonMsg::tell(&serde_json::json!({"x": 1}));
/// assert!(matches!(msg, runtime::JsonMsg::Tell(ref b) if b == br#"{"x":1}"#));
/// ```
#[derive(RactorClusterMessage)]
pub enum JsonMsg {
    /// One-way message.
    Tell(Vec<u8>),
    /// Request; the reply is JSON text.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl JsonMsg {
    /// A `Tell` carrying `value`.
    pub fn tell(value: &serde_json::Value) -> Self {
        JsonMsg::Tell(value.to_string().into_bytes())
    }
}
