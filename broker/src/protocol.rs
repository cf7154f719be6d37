//! The broker-to-broker protocol: one typed request enum and one response enum, encoded once
//! with bincode 2 ([`actors::codec`]) and carried by the two variants of [`BrokerMsg`].
//!
//! A peer's bytes are decoded where they are used; a malformed request is answered (or, for a
//! one-way request, logged) with a [`ProtocolError`] that names what could not be decoded,
//! never a crash.
//!
//! ```
//! use broker::protocol::{Request, Response};
//! let req = Request::Read { channel: "audit".into(), from: 0, max: 10 };
//! let bytes = actors::codec::encode(&req).unwrap();
//! assert_eq!(Request::decode(&bytes).unwrap(), req);
//! assert!(Request::decode(&[0xff, 0x00]).is_err());
//! assert!(Response::decode(&[]).is_err());
//! ```

use std::sync::Arc;

use actors::codec::{self, Wire};
use ractor::{ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::interest::Interest;

/// The actor message between brokers: a one-way request or a call. Both carry an encoded
/// [`Request`]; a call is answered with an encoded [`Response`].
#[derive(RactorClusterMessage)]
pub enum BrokerMsg {
    /// A request that expects no answer ([`Request::Deliver`], [`Request::Ack`],
    /// [`Request::Commit`], [`Request::Interest`]).
    Tell(Wire<Request>),
    /// A request answered with a [`Response`] ([`Request::Append`], [`Request::Read`],
    /// [`Request::Committed`], [`Request::Groups`], [`Request::Attach`]).
    #[rpc]
    Ask(Wire<Request>, RpcReplyPort<Wire<Response>>),
}

/// What one broker asks of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Events for the receiver's subscribers, in production order; acknowledged with
    /// [`Request::Ack`] once delivered (flow control).
    Deliver(Batch),
    /// The sender has delivered this many of the receiver's batches.
    Ack {
        /// The acknowledging node.
        node: String,
        /// Batches delivered.
        batches: u64,
    },
    /// Append events (their JSON text) to a durable log homed at the receiver; answered with
    /// [`Response::Appended`].
    Append {
        /// Durable channel.
        channel: String,
        /// Event JSON texts, in order.
        events: Vec<String>,
    },
    /// Read up to `max` records from `from` of a durable log homed at the receiver; answered
    /// with [`Response::Records`].
    Read {
        /// Durable channel.
        channel: String,
        /// First offset.
        from: u64,
        /// At most this many records (the receiver caps it).
        max: u64,
    },
    /// Record a queue group's next offset on a durable channel homed at the receiver.
    Commit {
        /// Durable channel.
        channel: String,
        /// Queue group.
        group: String,
        /// The next offset the group will read.
        next: u64,
    },
    /// A queue group's committed offset; answered with [`Response::Committed`].
    Committed {
        /// Durable channel.
        channel: String,
        /// Queue group.
        group: String,
    },
    /// A durable log's head and every group's committed offset; answered with
    /// [`Response::Groups`].
    Groups {
        /// Durable channel.
        channel: String,
    },
    /// A consumer of a durable channel homed at the receiver subscribed on another node: the
    /// receiver routes the channel's events to that node from now on, without waiting for
    /// gossip, and answers with [`Response::Attached`] (the log's head at that moment).
    Attach(NodeInterest),
    /// A node's interest in a durable channel homed at the receiver changed (a consumer
    /// left): replaces what an earlier [`Request::Attach`] or `Interest` said.
    Interest(NodeInterest),
}

/// One node's interest in one durable channel, as its broker pushes it to the channel's home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInterest {
    /// Durable channel.
    pub channel: String,
    /// The node with the subscribers.
    pub node: String,
    /// Its subscribers on the channel, now.
    pub interest: Interest,
    /// Its broker's incarnation.
    pub incarnation: u64,
    /// Its subscription table's change counter at the channel's last change (orders the pushes
    /// of one incarnation and tells whether gossip has caught up with them).
    pub seq: u64,
}

/// A broker's answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Appended; the first event's offset.
    Appended(u64),
    /// Records `(offset, event JSON)`.
    Records(Vec<(u64, String)>),
    /// The group's committed next offset, if any.
    Committed(Option<u64>),
    /// A log's head (its length) and its groups' committed next offsets.
    Groups {
        /// The next offset to be written.
        head: u64,
        /// `(group, committed next offset)`, by group name.
        committed: Vec<(String, u64)>,
    },
    /// Attached: the durable log's head (its length) when the interest was recorded; every
    /// event from this offset on is routed to the attached node.
    Attached {
        /// The next offset to be written.
        head: u64,
    },
    /// The request failed; why.
    Failed(String),
}

/// A peer's bytes could not be understood.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The bytes are not a valid encoding.
    #[error("malformed broker message: {0}")]
    Malformed(#[from] codec::CodecError),
    /// A valid response of another kind than the request calls for.
    #[error("unexpected broker response to {request}: {response:?}")]
    Unexpected {
        /// The request's kind.
        request: &'static str,
        /// What came back.
        response: Response,
    },
}

impl Request {
    /// Decode a request from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Request, ProtocolError> {
        Ok(codec::decode(bytes)?)
    }

    /// The request's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Deliver(_) => "deliver",
            Request::Ack { .. } => "ack",
            Request::Append { .. } => "append",
            Request::Read { .. } => "read",
            Request::Commit { .. } => "commit",
            Request::Committed { .. } => "committed",
            Request::Groups { .. } => "groups",
            Request::Attach(_) => "attach",
            Request::Interest(_) => "interest",
        }
    }
}

impl Response {
    /// Decode a response from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Response, ProtocolError> {
        Ok(codec::decode(bytes)?)
    }
}

/// Shared text that goes on the wire as a plain string (no copy when encoding, one allocation
/// when decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStr(pub Arc<str>);

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = SharedStr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<SharedStr, E> {
                Ok(SharedStr(v.into()))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Events crossing the network between brokers: the sending node, then runs of events of one
/// channel, in production order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The sending node (acknowledgements go back to it).
    pub from: String,
    /// Runs of one channel each.
    pub runs: Vec<Run>,
}

/// Consecutive events of one channel in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Channel.
    pub channel: SharedStr,
    /// Events, in order.
    pub events: Vec<WireEvent>,
}

/// One event in a [`Run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// The event's JSON text.
    pub event: SharedStr,
    /// Its durable-log offset.
    pub offset: Option<u64>,
    /// Deliver to the destination's broadcast subscribers.
    pub broadcast: bool,
    /// Queue groups for which the destination picks one member.
    pub groups: Vec<String>,
    /// How many times the event was re-routed (a group member gone).
    pub hops: u8,
}

/// The process group of a node's broker actor.
pub(crate) fn broker_group(node: &str) -> String {
    format!("broker@{node}")
}

/// The broker actor of another node, if it is connected.
pub(crate) fn remote_broker(node: &str) -> Option<ActorRef<BrokerMsg>> {
    ractor::pg::get_members(&broker_group(node))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            from: "n1".into(),
            runs: vec![Run {
                channel: SharedStr("orders".into()),
                events: vec![WireEvent {
                    event: SharedStr(r#"{"id":"1"}"#.into()),
                    offset: Some(3),
                    broadcast: true,
                    groups: vec!["g".into()],
                    hops: 1,
                }],
            }],
        }
    }

    pub(crate) fn node_interest() -> NodeInterest {
        NodeInterest {
            channel: "c".into(),
            node: "n2".into(),
            interest: Interest {
                broadcast: 1,
                groups: [("g".to_string(), 2)].into(),
            },
            incarnation: u64::MAX,
            seq: 3,
        }
    }

    #[test]
    fn every_request_round_trips() {
        let all = [
            Request::Deliver(batch()),
            Request::Ack {
                node: "n2".into(),
                batches: 4,
            },
            Request::Append {
                channel: "c".into(),
                events: vec!["{}".into()],
            },
            Request::Read {
                channel: "c".into(),
                from: 1,
                max: 2,
            },
            Request::Commit {
                channel: "c".into(),
                group: "g".into(),
                next: 9,
            },
            Request::Committed {
                channel: "c".into(),
                group: "g".into(),
            },
            Request::Groups {
                channel: "c".into(),
            },
            Request::Attach(node_interest()),
            Request::Interest(node_interest()),
        ];
        for req in all {
            let bytes = codec::encode(&req).unwrap();
            assert_eq!(Request::decode(&bytes).unwrap(), req, "{}", req.kind());
        }
    }

    #[test]
    fn every_response_round_trips() {
        for r in [
            Response::Appended(7),
            Response::Records(vec![(0, "{}".into())]),
            Response::Committed(None),
            Response::Groups {
                head: 9,
                committed: vec![("g".into(), 4)],
            },
            Response::Attached { head: 12 },
            Response::Failed("no".into()),
        ] {
            assert_eq!(Response::decode(&codec::encode(&r).unwrap()).unwrap(), r);
        }
    }

    /// A small deterministic generator for mutation tests (xorshift64).
    pub(crate) fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn mutated_requests_decode_or_fail_cleanly_never_panic() {
        let valid = codec::encode(&Request::Deliver(batch())).unwrap();
        let mut rng = 0x9e3779b97f4a7c15u64;
        for _ in 0..20_000 {
            let mut b = valid.clone();
            for _ in 0..=(xorshift(&mut rng) % 4) {
                let at = (xorshift(&mut rng) as usize) % b.len().max(1);
                match xorshift(&mut rng) % 3 {
                    0 => b[at] ^= 1 << (xorshift(&mut rng) % 8),
                    1 => b.truncate(at),
                    _ => b.insert(at, xorshift(&mut rng) as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = Request::decode(&b);
            let _ = Response::decode(&b);
        }
    }

    #[test]
    fn malformed_bytes_are_a_clear_error() {
        let err = Request::decode(&[0x2a]).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed broker message"),
            "{err}"
        );
        let mut bytes = codec::encode(&Request::Deliver(batch())).unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(Request::decode(&bytes).is_err());
        bytes = codec::encode(&Response::Appended(1)).unwrap();
        bytes.push(0);
        assert!(Response::decode(&bytes)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }
}
