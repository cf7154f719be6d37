//! Fuzz target of the gossip opener (run with the unit tests; see the `fuzz` crate for long
//! runs): datagrams from anyone on the network, and authentic datagrams with any plaintext (a
//! buggy or hostile member), in any order and at any time.

use ring::aead::{Aad, Nonce, NONCE_LEN};

use super::{aad, less_safe, Opened, Opener, RawKey, Sealer, HEADER, MAX_DATAGRAM, VERSION};

const KEY: RawKey = [7; 32];
const OTHER: RawKey = [8; 32];
const CLUSTER: &str = "c-1";
const T0: u64 = 1_800_000_000_000;

/// Seal any plaintext (header included) as a member holding the key would.
fn seal_plain(mut plain: Vec<u8>, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    less_safe(&KEY)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(CLUSTER)),
            &mut plain,
        )
        .expect("sealing a short plaintext");
    let mut d = vec![VERSION];
    d.extend_from_slice(&nonce);
    d.extend(plain);
    d
}

/// Steps `u8 kind | u16 len | bytes`: kind 0, a datagram from anyone; kind 1, a plaintext
/// sealed with the key; kind 2, the clock moves on by `len` seconds.
#[test]
fn fuzz_gossip_open() {
    let mut n = 0u8;
    let mut sealer = Sealer::new(42);
    let mut nonces = move || {
        n = n.wrapping_add(1);
        [n; NONCE_LEN]
    };
    let good = sealer
        .seal(&KEY, CLUSTER, b"gossip", T0, &mut nonces)
        .expect("seal");
    let step = |kind: u8, b: &[u8]| {
        let mut s = vec![kind];
        s.extend((b.len() as u16).to_be_bytes());
        s.extend_from_slice(b);
        s
    };
    let mut plain = Vec::new();
    plain.extend(42u64.to_be_bytes());
    plain.extend(1u64.to_be_bytes());
    plain.extend(T0.to_be_bytes());
    plain.extend(9u32.to_be_bytes());
    plain.extend([0, 2]);
    plain.extend(b"first half");
    let mut second = plain.clone();
    second[8..16].copy_from_slice(&2u64.to_be_bytes());
    second[28] = 1;
    let mut seed = step(0, &good[0]);
    seed.extend(step(0, &good[0]));
    seed.extend(step(1, &plain));
    seed.extend(step(2, &[]));
    seed.extend(step(1, &second));
    fuzz::Target::new("gossip_open")
        .seed(seed)
        .seed(step(1, &plain[..HEADER]))
        .run(|b| {
            let mut o = Opener::default();
            let mut now = T0;
            let mut rest = b;
            let mut count = 0u8;
            while rest.len() >= 3 && count < 64 {
                count += 1;
                let kind = rest[0] % 3;
                let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
                let end = (3 + len).min(rest.len());
                let body = &rest[3..end];
                rest = &rest[end..];
                let dgram = match kind {
                    0 => body.to_vec(),
                    1 => seal_plain(body.to_vec(), [count; NONCE_LEN]),
                    _ => {
                        now += len as u64 * 1000;
                        continue;
                    }
                };
                let first = o.open(&[OTHER, KEY], CLUSTER, &dgram, now);
                if kind == 0 && dgram != good[0] {
                    assert!(first.is_err(), "a forged datagram opened: {first:?}");
                }
                if let Ok(opened) = &first {
                    if let Opened::Message(m) | Opened::Reassembled(m) = opened {
                        assert!(m.len() <= 255 * MAX_DATAGRAM);
                    }
                    let again = o.open(&[OTHER, KEY], CLUSTER, &dgram, now);
                    assert!(again.is_err(), "a replayed datagram opened: {again:?}");
                }
            }
        });
}
