//! The wire form of typed messages: the [`Envelope`] a typed actor's mailbox takes, the
//! [`Outcome`] of a call, and the pure encoding of a protocol's message (see the `typed`
//! module docs for the layout).

use ractor::{
    message::{BoxedDowncastErr, SerializedMessage},
    RpcReplyPort,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Protocol;

/// What a typed actor's mailbox takes: encoded messages, from this node or another.
pub enum Envelope {
    /// One-way message (bytes as described in the module docs).
    Tell(Vec<u8>),
    /// Request; the reply is an encoded [`Outcome`].
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Answered once every message queued before it was handled (local only; used to drain
    /// mailboxes on shutdown).
    Flush(RpcReplyPort<()>),
}

const TELL: &str = "chassis.tell";
const CALL: &str = "chassis.call";

/// Hand-written, as `runtime::JsonMsg`: the payload and reply are already bytes. The sender's
/// trace context travels as the message's metadata (the lane's `CAST_M` / `CALL_M` frames), so
/// a typed call continues its caller's trace on the receiving node.
impl ractor::Message for Envelope {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            Envelope::Tell(args) => Ok(SerializedMessage::Cast {
                variant: TELL.to_string(),
                args,
                metadata: runtime::trace_metadata(),
            }),
            Envelope::Call(args, reply) => Ok(SerializedMessage::Call {
                variant: CALL.to_string(),
                args,
                reply,
                metadata: runtime::trace_metadata(),
            }),
            Envelope::Flush(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast {
                variant,
                args,
                metadata,
            } if variant == TELL => {
                runtime::trace_received(metadata.as_deref());
                Ok(Envelope::Tell(args))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                metadata,
            } if variant == CALL => {
                runtime::trace_received(metadata.as_deref());
                Ok(Envelope::Call(args, reply))
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// The answer to a call, as it travels back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<R, E> {
    /// The actor's reply.
    Ok(R),
    /// The actor's own error.
    Err(E),
    /// The actor could not take the message (another protocol, or undecodable bytes).
    Refused(String),
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Encoding or decoding with bincode failed.
    #[error("{0}")]
    Codec(String),
    /// The message belongs to another protocol.
    #[error("this actor speaks {expected}, not {got}")]
    Protocol {
        /// The actor's protocol.
        expected: String,
        /// The message's.
        got: String,
    },
    /// The frame is shorter than its header says.
    #[error("truncated message ({0} bytes)")]
    Truncated(usize),
}

/// Encode a message of protocol `P` (pure; see the module docs for the layout).
pub fn encode<P: Protocol>(msg: &P) -> Result<Vec<u8>, WireError> {
    let name = P::protocol().as_bytes();
    let len =
        u16::try_from(name.len()).map_err(|_| WireError::Codec("protocol name too long".into()))?;
    let body = actors::codec::encode(msg).map_err(|e| WireError::Codec(e.to_string()))?;
    let mut out = Vec::with_capacity(2 + name.len() + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a message of protocol `P`; another protocol's or malformed bytes are an error.
pub fn decode<P: Protocol>(bytes: &[u8]) -> Result<P, WireError> {
    let [a, b, rest @ ..] = bytes else {
        return Err(WireError::Truncated(bytes.len()));
    };
    let len = usize::from(u16::from_be_bytes([*a, *b]));
    if rest.len() < len {
        return Err(WireError::Truncated(bytes.len()));
    }
    let (name, body) = rest.split_at(len);
    if name != P::protocol().as_bytes() {
        return Err(WireError::Protocol {
            expected: P::protocol().to_string(),
            got: String::from_utf8_lossy(name).into_owned(),
        });
    }
    actors::codec::decode(body).map_err(|e| WireError::Codec(e.to_string()))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum A {
        X(u32),
    }
    impl Protocol for A {
        type Reply = u32;
        type Error = String;
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum B {
        X(u32),
    }
    impl Protocol for B {
        type Reply = u32;
        type Error = String;
    }

    #[test]
    fn a_message_round_trips() {
        let bytes = encode(&A::X(7)).unwrap();
        assert_eq!(decode::<A>(&bytes).unwrap(), A::X(7));
    }

    #[test]
    fn another_protocols_message_is_refused_with_both_names() {
        let bytes = encode(&B::X(7)).unwrap();
        let err = decode::<A>(&bytes).unwrap_err();
        assert!(
            matches!(&err, WireError::Protocol { expected, got } if expected.ends_with("::A") && got.ends_with("::B")),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        assert_eq!(decode::<A>(&[0]).unwrap_err(), WireError::Truncated(1));
        assert_eq!(
            decode::<A>(&[0, 9, 1]).unwrap_err(),
            WireError::Truncated(3)
        );
        let mut bytes = encode(&A::X(7)).unwrap();
        bytes.push(0xff);
        assert!(matches!(decode::<A>(&bytes), Err(WireError::Codec(_))));
    }
}
