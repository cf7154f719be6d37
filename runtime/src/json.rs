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
            // The sender's trace context travels as the message's metadata (lane and session).
            JsonMsg::Tell(args) => SerializedMessage::Cast {
                variant: TELL.to_string(),
                args,
                metadata: crate::trace::outgoing(),
            },
            JsonMsg::Call(args, reply) => SerializedMessage::Call {
                variant: CALL.to_string(),
                args,
                reply,
                metadata: crate::trace::outgoing(),
            },
        })
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast {
                variant,
                args,
                metadata,
            } if variant == TELL => {
                crate::trace::received(metadata.as_deref());
                Ok(JsonMsg::Tell(args))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                metadata,
            } if variant == CALL => {
                crate::trace::received(metadata.as_deref());
                Ok(JsonMsg::Call(args, reply))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceContext;
    use ractor::Message;

    #[tokio::test]
    async fn the_trace_context_travels_in_the_metadata() {
        let t = TraceContext::new_root();
        let wire = crate::trace::scope(t, async {
            JsonMsg::tell(&serde_json::json!(1)).serialize()
        })
        .await
        .unwrap();
        let SerializedMessage::Cast { metadata, .. } = &wire else {
            panic!("a tell is a cast");
        };
        assert_eq!(metadata.as_deref(), Some(t.to_string().as_bytes()));
        assert!(matches!(JsonMsg::deserialize(wire), Ok(JsonMsg::Tell(b)) if b == b"1"));
        assert_eq!(crate::trace::take_received(), Some(t));
        // untraced: no metadata, nothing received
        let wire = JsonMsg::tell(&serde_json::json!(2)).serialize().unwrap();
        assert!(matches!(
            &wire,
            SerializedMessage::Cast { metadata: None, .. }
        ));
        let _ = JsonMsg::deserialize(wire);
        assert_eq!(crate::trace::take_received(), None);
    }
}
