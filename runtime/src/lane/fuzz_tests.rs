//! Fuzz targets of the lane (run with the unit tests; see the `fuzz` crate for long runs): the
//! frame reader over arbitrary streams, and both sides of the handshake fed arbitrary peers.

use std::io;

use futures::executor::block_on;

use super::{
    frame::{read_frame, Frame},
    handshake::{Acceptor, Dialer, Keys, Msg, MAGIC, NONCE},
    read_magic, read_msg,
};

fn frames() -> Vec<Frame> {
    vec![
        Frame::Cast {
            pid: 7,
            variant: "Tell".into(),
            args: br#"{"x":1}"#.to_vec(),
            metadata: None,
        },
        Frame::Cast {
            pid: 1 << 40,
            variant: "ractor::Ping".into(),
            args: vec![],
            metadata: Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
        },
        Frame::Call {
            pid: 12,
            id: 3,
            timeout_ms: 5000,
            variant: "Call".into(),
            args: br#"{"op":"get"}"#.to_vec(),
            metadata: None,
        },
        Frame::Call {
            pid: u64::MAX,
            id: 0,
            timeout_ms: 0,
            variant: String::new(),
            args: vec![0xff; 3],
            metadata: Some(vec![1, 2]),
        },
        Frame::Reply {
            id: 3,
            data: b"ok".to_vec(),
        },
        Frame::Reply {
            id: 4,
            data: vec![],
        },
        Frame::Fail { id: 5 },
    ]
}

fn encoded(fs: &[Frame]) -> Vec<u8> {
    let mut b = Vec::new();
    for f in fs {
        f.encode(&mut b).expect("seed frames fit");
    }
    b
}

/// A stream of frames from a peer: every frame read re-encodes to exactly the bytes it was read
/// from, and the stream ends with a clean error (end of stream or invalid data), never a panic.
#[test]
fn fuzz_lane_frames() {
    let all = frames();
    let mut seeds: Vec<Vec<u8>> = all
        .iter()
        .map(|f| encoded(std::slice::from_ref(f)))
        .collect();
    seeds.push(encoded(&all));
    fuzz::Target::new("lane_frames")
        .seeds(seeds)
        .dict(["Tell", "Call", "ractor::Ping"])
        .run(|b| {
            let mut r = b;
            let mut again = Vec::new();
            loop {
                match block_on(read_frame(&mut r)) {
                    Ok((f, size)) => {
                        let before = again.len();
                        f.encode(&mut again).expect("a decoded frame fits a frame");
                        assert_eq!(again.len() - before, size, "{f:?}");
                    }
                    Err(e) => {
                        assert!(
                            matches!(
                                e.kind(),
                                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                            ),
                            "{e}"
                        );
                        break;
                    }
                }
            }
            assert_eq!(&again[..], &b[..again.len()], "frames re-encode as read");
        });
}

fn msg(m: Msg) -> Vec<u8> {
    m.encode().expect("seed messages encode")
}

fn fresh() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n).expect("randomness");
    n
}

/// Our acceptor fed whatever a dialer sends (greeting, then messages): it never accepts a peer
/// that does not know the cookie (the input cannot hold a proof over the acceptor's fresh
/// nonce), never panics, and sends a proof only after accepting.
#[test]
fn fuzz_lane_accept() {
    let keys = Keys::new("acceptor", "the-cookie");
    let mut hello = MAGIC.to_vec();
    hello.extend(msg(Msg::Hello {
        name: "dialer".into(),
    }));
    let mut full = hello.clone();
    full.extend(msg(Msg::Proof {
        nonce: [7; NONCE],
        proof: [9; 32],
    }));
    let mut twice = full.clone();
    twice.extend(msg(Msg::Hello { name: "x".into() }));
    fuzz::Target::new("lane_accept")
        .seeds([hello, full, twice])
        .dict(["DLANE/2\n", "acceptor", "dialer"])
        .run(|b| {
            let mut r = b;
            if block_on(read_magic(&mut r)).is_err() {
                return;
            }
            let mut state = Acceptor::AwaitHello;
            for _ in 0..16 {
                let Ok(m) = block_on(read_msg(&mut r)) else {
                    return;
                };
                let (next, out) = state.next(&keys, m, fresh());
                assert!(
                    !matches!(next, Acceptor::Done { .. }),
                    "accepted without the cookie"
                );
                assert!(
                    !matches!(out, Some(Msg::Accepted { .. })),
                    "proof given away"
                );
                if matches!(next, Acceptor::Failed(_)) {
                    return;
                }
                state = next;
            }
        });
}

/// Our dialer fed whatever the acceptor answers: it never takes a peer that did not prove the
/// cookie over the dialer's fresh nonce for the peer it meant to dial, and never panics.
#[test]
fn fuzz_lane_dial() {
    let keys = Keys::new("dialer", "the-cookie");
    let challenge = msg(Msg::Challenge {
        name: "acceptor".into(),
        nonce: [4; NONCE],
    });
    let mut accepted = challenge.clone();
    accepted.extend(msg(Msg::Accepted { proof: [1; 32] }));
    let mut refused = challenge.clone();
    refused.extend(msg(Msg::Refused));
    fuzz::Target::new("lane_dial")
        .seeds([challenge, accepted, refused])
        .dict(["acceptor", "dialer"])
        .run(|b| {
            let mut r = b;
            let (mut state, _) = Dialer::start(&keys, "acceptor");
            for _ in 0..16 {
                let Ok(m) = block_on(read_msg(&mut r)) else {
                    return;
                };
                let (next, _) = state.next(&keys, m, fresh());
                assert!(
                    !matches!(next, Dialer::Done { .. }),
                    "took a peer without its proof"
                );
                if matches!(next, Dialer::Failed(_)) {
                    return;
                }
                state = next;
            }
        });
}

/// Handshake messages that decode encode back to the same bytes (the decoder accepts one form
/// of each message only).
#[test]
fn fuzz_lane_handshake_msg() {
    let seeds = [
        Msg::Hello { name: "n1".into() },
        Msg::Challenge {
            name: "n2".into(),
            nonce: [1; NONCE],
        },
        Msg::Proof {
            nonce: [2; NONCE],
            proof: [3; 32],
        },
        Msg::Accepted { proof: [4; 32] },
        Msg::Refused,
    ]
    .map(|m| msg(m)[2..].to_vec());
    fuzz::Target::new("lane_handshake_msg")
        .seeds(seeds)
        .run(|b| {
            if let Ok(m) = Msg::decode(b) {
                assert_eq!(&msg(m.clone())[2..], b, "{m:?}");
            }
        });
}
