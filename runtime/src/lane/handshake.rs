//! The lane handshake as a pure state machine (no socket): [`Dialer`] and [`Acceptor`] each take
//! the peer's [`Msg`] and answer with their next state and the message to send, if any.
//!
//! ```text
//! dialer                                   acceptor
//!   MAGIC, Hello{name_d}             ->
//!                                    <-    Challenge{name_a, nonce_a}
//!   Proof{nonce_d, H(dial, ...)}     ->    (checks the proof over its own nonce)
//!                                    <-    Accepted{H(accept, ...)}  or  Refused
//!   (checks the proof over nonce_d)
//! ```
//!
//! The acceptor proves it knows the cookie only after the dialer proved it over the acceptor's
//! fresh nonce, so a connection that does not know the cookie never gets a proof to guess the
//! cookie from offline. Both proofs cover both nonces, both names and a label for the
//! direction (HMAC-SHA256 keyed with the cookie), so one side's proof can never be replayed as
//! the other's, nor on another connection.
//!
//! Wire form of a message: `u16 len | u8 tag | body` (big-endian; `len` counts tag and body); a
//! name is `u16 len | UTF-8` of at most [`MAX_NAME`] bytes, nonces and proofs are 32 bytes.

use ring::hmac;

/// Greeting a dialer sends before its first message.
pub(crate) const MAGIC: &[u8; 8] = b"DLANE/2\n";
/// Bytes of a nonce.
pub(crate) const NONCE: usize = 32;
/// Longest node name accepted in a handshake.
pub(crate) const MAX_NAME: usize = 255;
/// Longest handshake message (tag and body).
pub(crate) const MAX_MSG: usize = 1 + 2 + MAX_NAME + NONCE + 32;

const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const PROOF: u8 = 3;
const ACCEPTED: u8 = 4;
const REFUSED: u8 = 5;

/// One handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Dialer → acceptor: who is dialing.
    Hello { name: String },
    /// Acceptor → dialer: who answers, and the nonce the dialer must prove the cookie over.
    Challenge { name: String, nonce: [u8; NONCE] },
    /// Dialer → acceptor: the proof over the acceptor's nonce, and the dialer's own nonce.
    Proof { nonce: [u8; NONCE], proof: [u8; 32] },
    /// Acceptor → dialer: the dialer's proof was right; here is ours over the dialer's nonce.
    Accepted { proof: [u8; 32] },
    /// Acceptor → dialer: the dialer's proof was wrong.
    Refused,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The peer proved another cookie (or no cookie).
    #[error("node '{0}' does not know our cookie (wrong cookie)")]
    WrongCookie(String),
    /// The acceptor refused our proof.
    #[error("node '{0}' refused our cookie")]
    Refused(String),
    /// The node at the address is not the one we meant to dial.
    #[error("expected node '{expected}' at this address, found '{found}'")]
    WrongPeer { expected: String, found: String },
    /// A message that does not belong at this point of the handshake.
    #[error("unexpected handshake message ({0})")]
    Unexpected(&'static str),
    /// Bytes that are not a handshake message.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
}

/// The secret and name of this node, shared by both roles.
#[derive(Clone)]
pub(crate) struct Keys {
    me: String,
    key: hmac::Key,
}

impl Keys {
    pub(crate) fn new(me: &str, cookie: &str) -> Keys {
        Keys {
            me: me.to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes()),
        }
    }

    /// What a proof signs: that `prover` knows the cookie, answering `challenge` (the other
    /// side's nonce) on a connection where `other` is the prover's own nonce.
    fn proof_input(
        label: &[u8],
        challenge: &[u8; NONCE],
        other: &[u8; NONCE],
        prover: &str,
        verifier: &str,
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + 2 * NONCE + prover.len() + verifier.len());
        b.extend_from_slice(b"draft lane v2\0");
        b.extend_from_slice(label);
        b.extend_from_slice(challenge);
        b.extend_from_slice(other);
        for name in [prover, verifier] {
            b.extend_from_slice(&(name.len() as u16).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
        }
        b
    }

    fn proof(
        &self,
        label: &[u8],
        challenge: &[u8; NONCE],
        other: &[u8; NONCE],
        prover: &str,
        verifier: &str,
    ) -> [u8; 32] {
        let input = Self::proof_input(label, challenge, other, prover, verifier);
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.key, &input).as_ref());
        out
    }

    /// Whether `got` is the proof for these inputs (constant-time comparison).
    fn verify(
        &self,
        got: &[u8; 32],
        label: &[u8],
        challenge: &[u8; NONCE],
        other: &[u8; NONCE],
        prover: &str,
        verifier: &str,
    ) -> bool {
        let input = Self::proof_input(label, challenge, other, prover, verifier);
        hmac::verify(&self.key, &input, got).is_ok()
    }
}

/// The dialing side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dialer {
    /// Hello sent; waiting for the acceptor's challenge.
    AwaitChallenge { expect: String },
    /// Proof sent; waiting for the verdict.
    AwaitVerdict {
        peer: String,
        nonce: [u8; NONCE],
        their_nonce: [u8; NONCE],
    },
    /// Both sides proved the cookie: the lane is to `peer`.
    Done { peer: String },
    /// The handshake failed; close the connection.
    Failed(HandshakeError),
}

impl Dialer {
    /// Start dialing `expect`: the state and the Hello to send (after [`MAGIC`]).
    pub(crate) fn start(keys: &Keys, expect: &str) -> (Dialer, Msg) {
        (
            Dialer::AwaitChallenge {
                expect: expect.to_string(),
            },
            Msg::Hello {
                name: keys.me.clone(),
            },
        )
    }

    /// The next state on `msg`, and what to send. `fresh` is a new random nonce (used only when
    /// answering the challenge).
    pub(crate) fn next(self, keys: &Keys, msg: Msg, fresh: [u8; NONCE]) -> (Dialer, Option<Msg>) {
        match (self, msg) {
            (Dialer::AwaitChallenge { expect }, Msg::Challenge { name, nonce }) => {
                if name != expect {
                    return (
                        Dialer::Failed(HandshakeError::WrongPeer {
                            expected: expect,
                            found: name,
                        }),
                        None,
                    );
                }
                let proof = keys.proof(b"dial", &nonce, &fresh, &keys.me, &name);
                (
                    Dialer::AwaitVerdict {
                        peer: name,
                        nonce: fresh,
                        their_nonce: nonce,
                    },
                    Some(Msg::Proof {
                        nonce: fresh,
                        proof,
                    }),
                )
            }
            (
                Dialer::AwaitVerdict {
                    peer,
                    nonce,
                    their_nonce,
                },
                Msg::Accepted { proof },
            ) => {
                if keys.verify(&proof, b"accept", &nonce, &their_nonce, &peer, &keys.me) {
                    (Dialer::Done { peer }, None)
                } else {
                    (Dialer::Failed(HandshakeError::WrongCookie(peer)), None)
                }
            }
            (Dialer::AwaitVerdict { peer, .. }, Msg::Refused) => {
                (Dialer::Failed(HandshakeError::Refused(peer)), None)
            }
            (s @ (Dialer::Done { .. } | Dialer::Failed(_)), _) => (s, None),
            (_, m) => (Dialer::Failed(HandshakeError::Unexpected(m.kind())), None),
        }
    }
}

/// The accepting side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acceptor {
    /// Waiting for the dialer's Hello.
    AwaitHello,
    /// Challenge sent; waiting for the dialer's proof over `nonce`.
    AwaitProof { peer: String, nonce: [u8; NONCE] },
    /// Both sides proved the cookie: the lane is from `peer`.
    Done { peer: String },
    /// The handshake failed; close the connection (after sending the message, if any).
    Failed(HandshakeError),
}

impl Acceptor {
    /// The next state on `msg`, and what to send. `fresh` is a new random nonce (used only when
    /// answering the Hello).
    pub(crate) fn next(self, keys: &Keys, msg: Msg, fresh: [u8; NONCE]) -> (Acceptor, Option<Msg>) {
        match (self, msg) {
            (Acceptor::AwaitHello, Msg::Hello { name }) => (
                Acceptor::AwaitProof {
                    peer: name,
                    nonce: fresh,
                },
                Some(Msg::Challenge {
                    name: keys.me.clone(),
                    nonce: fresh,
                }),
            ),
            (
                Acceptor::AwaitProof { peer, nonce },
                Msg::Proof {
                    nonce: theirs,
                    proof,
                },
            ) => {
                if !keys.verify(&proof, b"dial", &nonce, &theirs, &peer, &keys.me) {
                    return (
                        Acceptor::Failed(HandshakeError::WrongCookie(peer)),
                        Some(Msg::Refused),
                    );
                }
                let ours = keys.proof(b"accept", &theirs, &nonce, &keys.me, &peer);
                (Acceptor::Done { peer }, Some(Msg::Accepted { proof: ours }))
            }
            (s @ (Acceptor::Done { .. } | Acceptor::Failed(_)), _) => (s, None),
            (_, m) => (Acceptor::Failed(HandshakeError::Unexpected(m.kind())), None),
        }
    }
}

impl Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Challenge { .. } => "challenge",
            Msg::Proof { .. } => "proof",
            Msg::Accepted { .. } => "accepted",
            Msg::Refused => "refused",
        }
    }

    /// The wire form, `u16 len | tag | body`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let mut body = Vec::with_capacity(MAX_MSG);
        match self {
            Msg::Hello { name } => {
                body.push(HELLO);
                put_name(&mut body, name)?;
            }
            Msg::Challenge { name, nonce } => {
                body.push(CHALLENGE);
                put_name(&mut body, name)?;
                body.extend_from_slice(nonce);
            }
            Msg::Proof { nonce, proof } => {
                body.push(PROOF);
                body.extend_from_slice(nonce);
                body.extend_from_slice(proof);
            }
            Msg::Accepted { proof } => {
                body.push(ACCEPTED);
                body.extend_from_slice(proof);
            }
            Msg::Refused => body.push(REFUSED),
        }
        let mut out = Vec::with_capacity(2 + body.len());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decode a message from its tag and body (the bytes after the length prefix).
    pub(crate) fn decode(b: &[u8]) -> Result<Msg, HandshakeError> {
        let bad = |why: &str| HandshakeError::Malformed(why.to_string());
        let (&tag, body) = b.split_first().ok_or_else(|| bad("empty message"))?;
        let array = |b: &[u8]| -> Result<[u8; 32], HandshakeError> {
            b.try_into().map_err(|_| bad("wrong length"))
        };
        match tag {
            HELLO => {
                let (name, rest) = take_name(body)?;
                rest.is_empty()
                    .then_some(Msg::Hello { name })
                    .ok_or_else(|| bad("trailing bytes after hello"))
            }
            CHALLENGE => {
                let (name, rest) = take_name(body)?;
                Ok(Msg::Challenge {
                    name,
                    nonce: array(rest)?,
                })
            }
            PROOF if body.len() == NONCE + 32 => Ok(Msg::Proof {
                nonce: array(&body[..NONCE])?,
                proof: array(&body[NONCE..])?,
            }),
            ACCEPTED => Ok(Msg::Accepted {
                proof: array(body)?,
            }),
            REFUSED if body.is_empty() => Ok(Msg::Refused),
            PROOF | REFUSED => Err(bad("wrong length")),
            other => Err(HandshakeError::Malformed(format!("unknown tag {other}"))),
        }
    }
}

fn put_name(buf: &mut Vec<u8>, name: &str) -> Result<(), HandshakeError> {
    if name.len() > MAX_NAME {
        return Err(HandshakeError::Malformed(format!(
            "node name of {} bytes (limit {MAX_NAME})",
            name.len()
        )));
    }
    buf.extend_from_slice(&(name.len() as u16).to_be_bytes());
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

fn take_name(b: &[u8]) -> Result<(String, &[u8]), HandshakeError> {
    let bad = |why: &str| HandshakeError::Malformed(why.to_string());
    if b.len() < 2 {
        return Err(bad("truncated name"));
    }
    let len = u16::from_be_bytes([b[0], b[1]]) as usize;
    if len > MAX_NAME || b.len() < 2 + len {
        return Err(bad("bad name length"));
    }
    let name = std::str::from_utf8(&b[2..2 + len]).map_err(|_| bad("node name is not UTF-8"))?;
    Ok((name.to_string(), &b[2 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: [u8; NONCE] = [1; NONCE];
    const N2: [u8; NONCE] = [2; NONCE];

    fn pair(cookie_d: &str, cookie_a: &str) -> (Keys, Keys) {
        (
            Keys::new("a-dialer", cookie_d),
            Keys::new("b-acceptor", cookie_a),
        )
    }

    /// Run the whole exchange through the wire encoding.
    fn run(d: &Keys, a: &Keys, expect: &str) -> (Dialer, Acceptor) {
        let wire = |m: Msg| {
            let b = m.encode().unwrap();
            Msg::decode(&b[2..]).unwrap()
        };
        let (dial, hello) = Dialer::start(d, expect);
        let (acc, challenge) = Acceptor::AwaitHello.next(a, wire(hello), N2);
        let (dial, proof) = dial.next(d, wire(challenge.unwrap()), N1);
        let Some(proof) = proof else {
            return (dial, acc);
        };
        let (acc, verdict) = acc.next(a, wire(proof), [9; NONCE]);
        let (dial, none) = dial.next(d, wire(verdict.unwrap()), [9; NONCE]);
        assert!(none.is_none());
        (dial, acc)
    }

    #[test]
    fn same_cookie_both_sides_done() {
        let (d, a) = pair("s3cret", "s3cret");
        let (dial, acc) = run(&d, &a, "b-acceptor");
        assert_eq!(
            dial,
            Dialer::Done {
                peer: "b-acceptor".into()
            }
        );
        assert_eq!(
            acc,
            Acceptor::Done {
                peer: "a-dialer".into()
            }
        );
    }

    #[test]
    fn the_challenge_carries_no_proof_and_a_wrong_cookie_gets_only_a_refusal() {
        let (d, a) = pair("guess", "s3cret");
        let (acc, challenge) = Acceptor::AwaitHello.next(
            &a,
            Msg::Hello {
                name: "a-dialer".into(),
            },
            N2,
        );
        assert_eq!(
            challenge,
            Some(Msg::Challenge {
                name: "b-acceptor".into(),
                nonce: N2
            })
        );
        let (dial, proof) = Dialer::AwaitChallenge {
            expect: "b-acceptor".into(),
        }
        .next(&d, challenge.unwrap(), N1);
        let (acc, verdict) = acc.next(&a, proof.unwrap(), N1);
        assert_eq!(verdict, Some(Msg::Refused));
        assert_eq!(
            acc,
            Acceptor::Failed(HandshakeError::WrongCookie("a-dialer".into()))
        );
        let (dial, _) = dial.next(&d, Msg::Refused, N1);
        assert_eq!(
            dial,
            Dialer::Failed(HandshakeError::Refused("b-acceptor".into()))
        );
    }

    #[test]
    fn a_dialer_rejects_an_acceptor_whose_proof_is_wrong() {
        let (d, _) = pair("s3cret", "s3cret");
        let dial = Dialer::AwaitVerdict {
            peer: "b-acceptor".into(),
            nonce: N1,
            their_nonce: N2,
        };
        let (dial, _) = dial.next(&d, Msg::Accepted { proof: [0; 32] }, N1);
        assert_eq!(
            dial,
            Dialer::Failed(HandshakeError::WrongCookie("b-acceptor".into()))
        );
    }

    #[test]
    fn a_proof_for_one_direction_or_connection_is_not_accepted_for_another() {
        let (d, a) = pair("s3cret", "s3cret");
        // The acceptor's proof replayed as a dialer's proof.
        let reflected = a.proof(b"accept", &N2, &N1, "a-dialer", "b-acceptor");
        let acc = Acceptor::AwaitProof {
            peer: "a-dialer".into(),
            nonce: N2,
        };
        let (acc2, _) = acc.clone().next(
            &a,
            Msg::Proof {
                nonce: N1,
                proof: reflected,
            },
            N1,
        );
        assert!(matches!(
            acc2,
            Acceptor::Failed(HandshakeError::WrongCookie(_))
        ));
        // A dialer's proof from a connection with another acceptor nonce.
        let old = d.proof(b"dial", &[7; NONCE], &N1, "a-dialer", "b-acceptor");
        let (acc3, _) = acc.next(
            &a,
            Msg::Proof {
                nonce: N1,
                proof: old,
            },
            N1,
        );
        assert!(matches!(
            acc3,
            Acceptor::Failed(HandshakeError::WrongCookie(_))
        ));
    }

    #[test]
    fn a_dialer_refuses_another_node_at_the_address() {
        let (d, a) = pair("s3cret", "s3cret");
        let (dial, acc) = run(&d, &a, "someone-else");
        assert_eq!(
            dial,
            Dialer::Failed(HandshakeError::WrongPeer {
                expected: "someone-else".into(),
                found: "b-acceptor".into()
            })
        );
        assert!(matches!(acc, Acceptor::AwaitProof { .. }));
    }

    #[test]
    fn out_of_order_messages_fail_the_handshake() {
        let (d, a) = pair("s3cret", "s3cret");
        let proof = Msg::Proof {
            nonce: N1,
            proof: [0; 32],
        };
        let (acc, out) = Acceptor::AwaitHello.next(&a, proof, N2);
        assert_eq!(
            (acc, out),
            (Acceptor::Failed(HandshakeError::Unexpected("proof")), None)
        );
        let (acc, _) = Acceptor::AwaitProof {
            peer: "x".into(),
            nonce: N2,
        }
        .next(&a, Msg::Hello { name: "x".into() }, N2);
        assert_eq!(acc, Acceptor::Failed(HandshakeError::Unexpected("hello")));
        let (dial, _) = Dialer::AwaitChallenge {
            expect: "b-acceptor".into(),
        }
        .next(&d, Msg::Accepted { proof: [0; 32] }, N1);
        assert_eq!(dial, Dialer::Failed(HandshakeError::Unexpected("accepted")));
        let (dial, _) = Dialer::AwaitVerdict {
            peer: "b".into(),
            nonce: N1,
            their_nonce: N2,
        }
        .next(
            &d,
            Msg::Challenge {
                name: "b".into(),
                nonce: N2,
            },
            N1,
        );
        assert_eq!(
            dial,
            Dialer::Failed(HandshakeError::Unexpected("challenge"))
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bytes in [
            &[][..],
            &[HELLO],
            &[HELLO, 0, 5, b'a'],
            &[HELLO, 0, 1, 0xff],
            &[HELLO, 0, 1, b'a', b'x'],
            &[CHALLENGE, 0, 1, b'a', 1, 2],
            &[PROOF, 1, 2, 3],
            &[ACCEPTED, 1],
            &[REFUSED, 0],
            &[99],
        ] {
            assert!(
                matches!(Msg::decode(bytes), Err(HandshakeError::Malformed(_))),
                "{bytes:?}"
            );
        }
        let long = "x".repeat(MAX_NAME + 1);
        assert!(Msg::Hello { name: long }.encode().is_err());
    }
}
