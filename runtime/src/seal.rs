//! Sealed gossip datagrams: AES-256-GCM with the cluster id as associated data, a keyring (the
//! primary key seals, every installed key opens), replay protection, and splitting of messages
//! that would not fit in one UDP datagram once sealed. Pure logic, no socket: the transport in
//! `sealed_transport.rs` feeds it bytes.
//!
//! Datagram: `u8 version (1) | 12-byte random nonce | AES-256-GCM(plaintext) | 16-byte tag`;
//! associated data: the version byte and the cluster id. Plaintext:
//! `u64 sender | u64 counter | u64 unix_ms | u32 message | u8 index | u8 count | payload`.
//!
//! * `sender` is random per process (a restarted node is a new sender) and `counter` grows by
//!   one per datagram. A receiver keeps, per sender, the highest counter seen and a window of
//!   the [`WINDOW`] counters below it (as IPsec does): a datagram seen before, or older than the
//!   window, is refused as a replay.
//! * `unix_ms` must be within [`MAX_SKEW`] of the receiver's clock, so a datagram captured
//!   earlier cannot be replayed after its sender's entry was forgotten (entries idle for longer
//!   than twice the skew are), nor to a receiver that restarted since, once the skew has passed.
//!   Nodes' clocks must therefore agree within [`MAX_SKEW`].
//! * A message whose sealed datagram would pass [`MAX_DATAGRAM`] is split into `count` pieces
//!   that share `message`; the receiver reassembles it (at most [`MAX_PARTIAL`] incomplete
//!   messages are kept, each for at most [`PARTIAL_TTL`]).

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// Largest UDP payload (IPv4).
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// Smallest datagram size a sealer may be limited to (a 64 KiB message then takes at most
/// 148 pieces of the 255 a message may have).
pub(crate) const MIN_DATAGRAM: usize = 512;
const VERSION: u8 = 1;
const TAG: usize = 16;
const HEADER: usize = 8 + 8 + 8 + 4 + 1 + 1;
/// Bytes a sealed datagram adds to its piece of the message.
pub(crate) const OVERHEAD: usize = 1 + NONCE_LEN + TAG + HEADER;
/// Counters below a sender's highest that are still accepted (once each).
pub(crate) const WINDOW: u64 = 1024;
/// How far a datagram's timestamp may be from the receiver's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(300);
/// Incomplete split messages kept at once.
pub(crate) const MAX_PARTIAL: usize = 64;
/// How long a piece of a split message waits for the others.
pub(crate) const PARTIAL_TTL: Duration = Duration::from_secs(5);
/// Senders remembered at once (the oldest is forgotten first).
const MAX_SENDERS: usize = 4096;

/// A 32-byte AES-256 key.
pub(crate) type RawKey = [u8; 32];

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// Too short, or an unknown version.
    #[error("not a sealed gossip datagram")]
    Malformed,
    /// No installed key opens it (another key, another cluster, or tampered with).
    #[error("no installed key opens it")]
    NoKey,
    /// Authentic, but seen before or too old.
    #[error("replayed or stale")]
    Replay,
}

/// What [`Opener::open`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// A whole message, sent in one datagram.
    Message(Vec<u8>),
    /// A whole message put back together from its pieces (this datagram was the last missing).
    Reassembled(Vec<u8>),
    /// A piece of a split message; the rest has not arrived yet.
    Partial,
}

/// Seals messages with the primary key.
pub(crate) struct Sealer {
    sender: u64,
    counter: u64,
    message: u32,
    /// Largest datagram sealed: a message that would make a larger one is split.
    max_datagram: usize,
}

impl Sealer {
    pub(crate) fn new(sender: u64) -> Sealer {
        Sealer {
            sender,
            counter: 0,
            message: 0,
            max_datagram: MAX_DATAGRAM,
        }
    }

    /// Seal datagrams of at most `bytes` (clamped to [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`]).
    pub(crate) fn set_max_datagram(&mut self, bytes: usize) {
        self.max_datagram = bytes.clamp(MIN_DATAGRAM, MAX_DATAGRAM);
    }

    /// The datagrams carrying `payload` (one unless it must be split), sealed with `key` at
    /// time `now_ms`. `nonce` gives fresh random nonces.
    pub(crate) fn seal(
        &mut self,
        key: &RawKey,
        cluster_id: &str,
        payload: &[u8],
        now_ms: u64,
        mut nonce: impl FnMut() -> [u8; NONCE_LEN],
    ) -> Result<Vec<Vec<u8>>, SealError> {
        let room = self.max_datagram - OVERHEAD;
        let count = payload.len().div_ceil(room).max(1);
        let count = u8::try_from(count).map_err(|_| SealError::TooLarge(payload.len()))?;
        self.message = self.message.wrapping_add(1);
        let key = less_safe(key);
        let mut out = Vec::with_capacity(count as usize);
        let pieces: Vec<&[u8]> = if payload.is_empty() {
            vec![payload]
        } else {
            payload.chunks(room).collect()
        };
        for (index, piece) in pieces.into_iter().enumerate() {
            self.counter += 1;
            let mut body = Vec::with_capacity(OVERHEAD + piece.len());
            body.extend_from_slice(&self.sender.to_be_bytes());
            body.extend_from_slice(&self.counter.to_be_bytes());
            body.extend_from_slice(&now_ms.to_be_bytes());
            body.extend_from_slice(&self.message.to_be_bytes());
            body.push(index as u8);
            body.push(count);
            body.extend_from_slice(piece);
            let n = nonce();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from(aad(cluster_id)),
                &mut body,
            )
            .map_err(|_| SealError::TooLarge(payload.len()))?;
            let mut dgram = Vec::with_capacity(1 + NONCE_LEN + body.len());
            dgram.push(VERSION);
            dgram.extend_from_slice(&n);
            dgram.extend_from_slice(&body);
            out.push(dgram);
        }
        Ok(out)
    }
}

/// A message too large to seal even when split.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    /// More than 255 datagrams' worth.
    #[error("gossip message of {0} bytes is too large to seal")]
    TooLarge(usize),
}

fn less_safe(key: &RawKey) -> LessSafeKey {
    // AES-256 takes any 32 bytes, so building the key cannot fail.
    match UnboundKey::new(&AES_256_GCM, key) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("a 32-byte key is a valid AES-256 key"),
    }
}

fn aad(cluster_id: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + cluster_id.len());
    a.push(VERSION);
    a.extend_from_slice(cluster_id.as_bytes());
    a
}

/// The replay window of one sender.
#[derive(Debug, Clone)]
struct Window {
    highest: u64,
    /// Bit `i` set: counter `highest - i` was seen (bit 0 is `highest`).
    seen: Vec<u64>,
    last_ms: u64,
}

impl Window {
    fn new(counter: u64, now_ms: u64) -> Window {
        let mut w = Window {
            highest: counter,
            seen: vec![0; (WINDOW / 64) as usize],
            last_ms: now_ms,
        };
        w.set(0);
        w
    }

    fn get(&self, i: u64) -> bool {
        self.seen[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    fn set(&mut self, i: u64) {
        self.seen[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Accept `counter` once; `false` if it was seen or is below the window.
    fn accept(&mut self, counter: u64, now_ms: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            if shift >= WINDOW {
                self.seen.iter_mut().for_each(|w| *w = 0);
            } else {
                // Shift the bitmap left by `shift` bits (towards older counters).
                let words = self.seen.len();
                let (ws, bs) = ((shift / 64) as usize, (shift % 64) as u32);
                for i in (0..words).rev() {
                    let lo = i.checked_sub(ws).map(|j| self.seen[j]).unwrap_or(0);
                    let lower = i.checked_sub(ws + 1).map(|j| self.seen[j]).unwrap_or(0);
                    self.seen[i] = if bs == 0 {
                        lo
                    } else {
                        (lo << bs) | (lower >> (64 - bs))
                    };
                }
            }
            self.highest = counter;
            self.set(0);
        } else {
            let age = self.highest - counter;
            if age >= WINDOW || self.get(age) {
                return false;
            }
            self.set(age);
        }
        self.last_ms = now_ms;
        true
    }
}

struct Partial {
    pieces: Vec<Option<Vec<u8>>>,
    started_ms: u64,
}

/// Opens datagrams with any installed key, refusing replays and reassembling split messages.
#[derive(Default)]
pub(crate) struct Opener {
    windows: HashMap<u64, Window>,
    partial: HashMap<(u64, u32), Partial>,
    partial_order: VecDeque<(u64, u32)>,
}

impl Opener {
    /// Open `dgram` with the first of `keys` that authenticates it.
    pub(crate) fn open(
        &mut self,
        keys: &[RawKey],
        cluster_id: &str,
        dgram: &[u8],
        now_ms: u64,
    ) -> Result<Opened, OpenError> {
        if dgram.len() < OVERHEAD || dgram[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let nonce: [u8; NONCE_LEN] = dgram[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| OpenError::Malformed)?;
        let mut plain = None;
        for key in keys {
            let mut body = dgram[1 + NONCE_LEN..].to_vec();
            if let Ok(p) = less_safe(key).open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(cluster_id)),
                &mut body,
            ) {
                let n = p.len();
                body.truncate(n);
                plain = Some(body);
                break;
            }
        }
        let plain = plain.ok_or(OpenError::NoKey)?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&plain[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (sender, counter, sent_ms) = (u64_at(0), u64_at(8), u64_at(16));
        let mut m = [0u8; 4];
        m.copy_from_slice(&plain[24..28]);
        let message = u32::from_be_bytes(m);
        let (index, count) = (plain[28], plain[29]);
        if count == 0 || index >= count {
            return Err(OpenError::Malformed);
        }
        if sent_ms.abs_diff(now_ms) > MAX_SKEW.as_millis() as u64 {
            return Err(OpenError::Replay);
        }
        self.forget_idle(now_ms);
        match self.windows.get_mut(&sender) {
            Some(w) => {
                if !w.accept(counter, now_ms) {
                    return Err(OpenError::Replay);
                }
            }
            None => {
                if self.windows.len() >= MAX_SENDERS {
                    let oldest = self
                        .windows
                        .iter()
                        .min_by_key(|(_, w)| w.last_ms)
                        .map(|(s, _)| *s);
                    if let Some(s) = oldest {
                        self.windows.remove(&s);
                    }
                }
                self.windows.insert(sender, Window::new(counter, now_ms));
            }
        }
        let payload = plain[HEADER..].to_vec();
        if count == 1 {
            return Ok(Opened::Message(payload));
        }
        Ok(self.piece(sender, message, index, count, payload, now_ms))
    }

    fn piece(
        &mut self,
        sender: u64,
        message: u32,
        index: u8,
        count: u8,
        payload: Vec<u8>,
        now_ms: u64,
    ) -> Opened {
        let id = (sender, message);
        if !self.partial.contains_key(&id) {
            while self.partial.len() >= MAX_PARTIAL {
                match self.partial_order.pop_front() {
                    Some(old) => {
                        self.partial.remove(&old);
                    }
                    None => break,
                }
            }
            self.partial.insert(
                id,
                Partial {
                    pieces: vec![None; count as usize],
                    started_ms: now_ms,
                },
            );
            self.partial_order.push_back(id);
        }
        let Some(p) = self.partial.get_mut(&id) else {
            return Opened::Partial;
        };
        if p.pieces.len() != count as usize {
            return Opened::Partial;
        }
        p.pieces[index as usize] = Some(payload);
        if p.pieces.iter().all(Option::is_some) {
            let whole: Vec<u8> = p
                .pieces
                .iter_mut()
                .flat_map(|x| x.take().unwrap_or_default())
                .collect();
            self.partial.remove(&id);
            self.partial_order.retain(|x| *x != id);
            return Opened::Reassembled(whole);
        }
        Opened::Partial
    }

    fn forget_idle(&mut self, now_ms: u64) {
        let idle = 2 * MAX_SKEW.as_millis() as u64;
        if self.windows.len() > 64 {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.last_ms) <= idle);
        }
        let ttl = PARTIAL_TTL.as_millis() as u64;
        let before = self.partial.len();
        self.partial
            .retain(|_, p| now_ms.saturating_sub(p.started_ms) <= ttl);
        if self.partial.len() != before {
            let partial = &self.partial;
            self.partial_order.retain(|id| partial.contains_key(id));
        }
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const K1: RawKey = [1; 32];
    const K2: RawKey = [2; 32];
    const T: u64 = 1_800_000_000_000;

    fn nonces() -> impl FnMut() -> [u8; NONCE_LEN] {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; NONCE_LEN]
        }
    }

    #[test]
    fn a_sealed_message_opens_with_any_installed_key_and_only_in_its_cluster() {
        let mut s = Sealer::new(7);
        let d = s.seal(&K1, "c1", b"hello", T, nonces()).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), OVERHEAD + 5);
        let mut o = Opener::default();
        assert_eq!(
            o.open(&[K2, K1], "c1", &d[0], T),
            Ok(Opened::Message(b"hello".to_vec()))
        );
        let mut o = Opener::default();
        assert_eq!(o.open(&[K2], "c1", &d[0], T), Err(OpenError::NoKey));
        assert_eq!(o.open(&[K1], "c2", &d[0], T), Err(OpenError::NoKey));
        let mut bad = d[0].clone();
        let last = bad.len() - 20;
        bad[last] ^= 1;
        assert_eq!(o.open(&[K1], "c1", &bad, T), Err(OpenError::NoKey));
        assert_eq!(o.open(&[K1], "c1", b"junk", T), Err(OpenError::Malformed));
    }

    #[test]
    fn a_replayed_datagram_is_refused_and_reordering_within_the_window_is_not() {
        let mut s = Sealer::new(7);
        let d: Vec<Vec<u8>> = (0..5)
            .map(|_| s.seal(&K1, "c", b"x", T, nonces()).unwrap().remove(0))
            .collect();
        let mut o = Opener::default();
        for i in [0, 3, 1, 4, 2] {
            assert!(o.open(&[K1], "c", &d[i], T).is_ok(), "first {i}");
        }
        for (i, dgram) in d.iter().enumerate() {
            assert_eq!(o.open(&[K1], "c", dgram, T), Err(OpenError::Replay), "{i}");
        }
    }

    #[test]
    fn counters_below_the_window_and_stale_timestamps_are_refused() {
        let mut s = Sealer::new(9);
        let first = s.seal(&K1, "c", b"x", T, nonces()).unwrap().remove(0);
        let mut o = Opener::default();
        let mut last = None;
        for _ in 0..WINDOW + 1 {
            last = Some(s.seal(&K1, "c", b"x", T, nonces()).unwrap().remove(0));
        }
        assert!(o.open(&[K1], "c", &last.unwrap(), T).is_ok());
        assert_eq!(o.open(&[K1], "c", &first, T), Err(OpenError::Replay));
        let old = s.seal(&K1, "c", b"x", T, nonces()).unwrap().remove(0);
        let later = T + MAX_SKEW.as_millis() as u64 + 1;
        assert_eq!(
            Opener::default().open(&[K1], "c", &old, later),
            Err(OpenError::Replay)
        );
    }

    #[test]
    fn the_window_shifts_across_words() {
        let mut w = Window::new(1, T);
        for c in [70, 2, 65, 200, 150] {
            assert!(w.accept(c, T), "{c}");
        }
        for c in [70, 2, 65, 200, 150, 1] {
            assert!(!w.accept(c, T), "again {c}");
        }
        assert!(w.accept(199, T) && w.accept(3, T));
    }

    #[test]
    fn a_message_too_large_for_one_datagram_is_split_and_reassembled_in_any_order() {
        let payload: Vec<u8> = (0..150_000u32).map(|i| (i * 7) as u8).collect();
        let mut s = Sealer::new(3);
        let d = s.seal(&K1, "c", &payload, T, nonces()).unwrap();
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|x| x.len() <= MAX_DATAGRAM));
        let mut o = Opener::default();
        assert_eq!(o.open(&[K1], "c", &d[2], T), Ok(Opened::Partial));
        assert_eq!(o.open(&[K1], "c", &d[0], T), Ok(Opened::Partial));
        assert_eq!(
            o.open(&[K1], "c", &d[1], T),
            Ok(Opened::Reassembled(payload))
        );
        // exactly the chitchat maximum plus overhead: two datagrams
        let full = vec![0u8; MAX_DATAGRAM];
        let d = s.seal(&K1, "c", &full, T, nonces()).unwrap();
        assert_eq!(d.len(), 2);
        // limited to 1400-byte datagrams (no IP fragmentation on Ethernet): 48 pieces
        s.set_max_datagram(1400);
        let d = s.seal(&K1, "c", &full, T, nonces()).unwrap();
        assert_eq!(d.len(), MAX_DATAGRAM.div_ceil(1400 - OVERHEAD));
        assert!(d.iter().all(|x| x.len() <= 1400), "a piece over 1400 bytes");
        let mut o = Opener::default();
        let (last, rest) = d.split_last().unwrap();
        for piece in rest {
            assert_eq!(o.open(&[K1], "c", piece, T), Ok(Opened::Partial));
        }
        assert_eq!(o.open(&[K1], "c", last, T), Ok(Opened::Reassembled(full)));
    }

    #[test]
    fn an_incomplete_split_message_is_forgotten() {
        let payload = vec![5u8; 100_000];
        let mut s = Sealer::new(3);
        let d = s.seal(&K1, "c", &payload, T, nonces()).unwrap();
        let mut o = Opener::default();
        assert_eq!(o.open(&[K1], "c", &d[0], T), Ok(Opened::Partial));
        let later = T + PARTIAL_TTL.as_millis() as u64 + 1;
        assert_eq!(o.open(&[K1], "c", &d[1], later), Ok(Opened::Partial));
        assert!(o.partial.len() <= 1);
    }

    /// Not a fuzzer: bounded pseudo-random mutations of sealed datagrams never panic the opener
    /// and never open (AES-GCM authenticates every byte).
    #[test]
    fn mutated_datagrams_never_open_nor_panic() {
        let mut s = Sealer::new(1);
        let good = s
            .seal(&K1, "c", b"payload of a gossip message", T, nonces())
            .unwrap()
            .remove(0);
        let mut o = Opener::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut d = good.clone();
            let at = (next() as usize) % d.len();
            d[at] ^= next() as u8 | 1;
            if next() % 3 == 0 {
                d.truncate((next() as usize) % d.len());
            }
            assert!(o.open(&[K1, K2], "c", &d, T).is_err());
        }
        let random: Vec<u8> = (0..200).map(|_| next() as u8).collect();
        for len in 0..random.len() {
            assert!(o.open(&[K1], "c", &random[..len], T).is_err());
        }
    }
}
