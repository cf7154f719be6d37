//! The JSON message protocol used by the CLI and the admin HTTP API.

use ractor::{
    message::{BoxedDowncastErr, SerializedMessage},
    RpcReplyPort,
};

/// A message carrying a JSON document, for actors that are driven from the CLI or HTTP.
///
/// Payloads are JSON text as bytes (so the message can cross the network unchanged); a `Call`
/// is answered with JSON text as bytes. Rust callers normally use typed messages instead.
///
/// ```
/// let msg = runtime::JsonMsg::tell(&serde_json::json!({"x": 1}));
/// assert!(matches!(msg, runtime::JsonMsg::Tell(ref b) if b == br#"{"x":1}"#));
/// ```
pub enum JsonMsg {
    /// One-way message.
    Tell(Vec<u8>),
    /// Request; the reply is JSON text.
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

const TELL: &str = "Tell";
const CALL: &str = "Call";

/// Written by hand rather than derived: the payload and the reply are already bytes, so a
/// remote call passes its reply port through unchanged, where the derived form would bridge it
/// through an extra task on each side.
impl ractor::Message for JsonMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(match self {
            JsonMsg::Tell(args) => SerializedMessage::Cast {
                variant: TELL.to_string(),
                args,
                metadata: None,
            },
            JsonMsg::Call(args, reply) => SerializedMessage::Call {
                variant: CALL.to_string(),
                args,
                reply,
                metadata: None,
            },
        })
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. } if variant == TELL => {
                Ok(JsonMsg::Tell(args))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == CALL => Ok(JsonMsg::Call(args, reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl JsonMsg {
    /// A `Tell` carrying `value`.
    pub fn tell(value: &serde_json::Value) -> Self {
        JsonMsg::Tell(value.to_string().into_bytes())
    }
}
