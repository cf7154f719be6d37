//! The gossip socket: chitchat's envelopes, serialised and sealed ([`crate::seal`]) with the
//! node's keyring ([`crate::keyring`]) on a plain UDP socket. A datagram that no installed key
//! opens, or that is a replay, is dropped and counted (`draft_gossip_datagrams_rejected_total`),
//! so a node without the key can neither join nor change any member's state.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use chitchat::{
    transport::{RecvOutcome, SendOutcome, Socket, Transport},
    ChitchatEnvelope,
};
use ring::rand::SecureRandom;

use crate::{
    keyring::{Keyring, KeyringError},
    seal::{OpenError, Opened, Opener, Sealer, MAX_DATAGRAM},
};

/// Counters of the gossip socket.
#[derive(Default)]
struct Stats {
    sealed: AtomicU64,
    opened: AtomicU64,
    rejected: AtomicU64,
    replayed: AtomicU64,
    split: AtomicU64,
    reassembled: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

/// A change to the keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOp {
    /// Add a key that opens datagrams.
    Install,
    /// Make an installed key the one that seals.
    Use,
    /// Remove a key that is not primary.
    Remove,
}

/// The keyring and sealing state shared by the gossip socket and the key-management API.
pub(crate) struct GossipSeal {
    cluster_id: String,
    keys: RwLock<Keyring>,
    data_dir: PathBuf,
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
    rng: ring::rand::SystemRandom,
    stats: Stats,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl GossipSeal {
    pub(crate) fn new(
        cluster_id: String,
        keys: Keyring,
        data_dir: PathBuf,
    ) -> Result<Arc<GossipSeal>, KeyringError> {
        let rng = ring::rand::SystemRandom::new();
        let mut sender = [0u8; 8];
        rng.fill(&mut sender)
            .map_err(|_| KeyringError::BadKey("no randomness".into()))?;
        Ok(Arc::new(GossipSeal {
            cluster_id,
            keys: RwLock::new(keys),
            data_dir,
            sealer: Mutex::new(Sealer::new(u64::from_be_bytes(sender))),
            opener: Mutex::new(Opener::default()),
            rng,
            stats: Stats::default(),
        }))
    }

    /// Seal datagrams of at most `bytes` (see [`crate::NodeConfig::gossip_datagram_size`]).
    pub(crate) fn set_max_datagram(&self, bytes: usize) {
        if let Ok(mut s) = self.sealer.lock() {
            s.set_max_datagram(bytes);
        }
    }

    /// The installed keys, primary first.
    pub(crate) fn list(&self) -> Vec<String> {
        self.keys.read().map(|k| k.list()).unwrap_or_default()
    }

    /// Change the keyring, and keep it on disk when it changed.
    pub(crate) fn change(&self, op: KeyOp, key: &str) -> Result<bool, KeyringError> {
        let mut keys = self.keys.write().map_err(|_| KeyringError::Full)?;
        let mut next = keys.clone();
        let changed = match op {
            KeyOp::Install => next.install(key)?,
            KeyOp::Use => next.use_key(key)?,
            KeyOp::Remove => next.remove(key)?,
        };
        if changed {
            next.save(&self.data_dir)?;
            *keys = next;
            tracing::info!(?op, "gossip keyring changed");
        }
        Ok(changed)
    }

    fn seal(&self, payload: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        let primary = *self
            .keys
            .read()
            .map_err(|_| anyhow::anyhow!("keyring poisoned"))?
            .primary();
        let mut sealer = self
            .sealer
            .lock()
            .map_err(|_| anyhow::anyhow!("sealer poisoned"))?;
        let rng = &self.rng;
        let out = sealer.seal(&primary, &self.cluster_id, payload, now_ms(), || {
            let mut n = [0u8; 12];
            // SystemRandom only fails when the OS has no randomness at all.
            let _ = rng.fill(&mut n);
            n
        })?;
        self.stats
            .sealed
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        let bytes: usize = out.iter().map(|d| d.len()).sum();
        self.stats
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if out.len() > 1 {
            self.stats.split.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }

    fn open(&self, dgram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        self.stats
            .bytes_in
            .fetch_add(dgram.len() as u64, Ordering::Relaxed);
        let keys: Vec<_> = self
            .keys
            .read()
            .map(|k| k.raw().to_vec())
            .unwrap_or_default();
        let result = self
            .opener
            .lock()
            .map_err(|_| OpenError::Malformed)
            .and_then(|mut o| o.open(&keys, &self.cluster_id, dgram, now_ms()));
        match result {
            Ok(Opened::Message(m)) => {
                self.stats.opened.fetch_add(1, Ordering::Relaxed);
                Some(m)
            }
            Ok(Opened::Reassembled(m)) => {
                self.stats.opened.fetch_add(1, Ordering::Relaxed);
                self.stats.reassembled.fetch_add(1, Ordering::Relaxed);
                Some(m)
            }
            Ok(Opened::Partial) => {
                self.stats.opened.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if e == OpenError::Replay {
                    self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%from, len = dgram.len(), "gossip datagram rejected: {e}");
                None
            }
        }
    }

    /// The gossip socket's metric families (OpenMetrics text, no `# EOF`).
    pub(crate) fn metrics_text(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let st = &self.stats;
        crate::metrics::metrics_text(&[
            (
                "draft_gossip_datagrams_sealed_total",
                "counter",
                "Gossip datagrams sealed and sent.",
                get(&st.sealed),
            ),
            (
                "draft_gossip_datagrams_opened_total",
                "counter",
                "Gossip datagrams received that an installed key opened.",
                get(&st.opened),
            ),
            (
                "draft_gossip_datagrams_rejected_total",
                "counter",
                "Gossip datagrams dropped: no installed key opens them, malformed, or replayed.",
                get(&st.rejected),
            ),
            (
                "draft_gossip_datagrams_replayed_total",
                "counter",
                "Rejected gossip datagrams that were authentic but replayed or stale.",
                get(&st.replayed),
            ),
            (
                "draft_gossip_messages_split_total",
                "counter",
                "Gossip messages sent as several datagrams (too large for one once sealed).",
                get(&st.split),
            ),
            (
                "draft_gossip_messages_reassembled_total",
                "counter",
                "Split gossip messages received whole (every piece arrived and opened).",
                get(&st.reassembled),
            ),
            (
                "draft_gossip_bytes_sent_total",
                "counter",
                "Bytes of sealed gossip datagrams sent (UDP payload).",
                get(&st.bytes_out),
            ),
            (
                "draft_gossip_bytes_received_total",
                "counter",
                "Bytes of gossip datagrams received, opened or not (UDP payload).",
                get(&st.bytes_in),
            ),
            (
                "draft_gossip_keys",
                "gauge",
                "Keys installed in the gossip keyring.",
                self.list().len() as u64,
            ),
        ])
    }
}

/// A chitchat transport whose datagrams are sealed.
pub(crate) struct SealedUdp(pub(crate) Arc<GossipSeal>);

#[async_trait]
impl Transport for SealedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {listen_addr}/UDP for gossip: {e}"))?;
        Ok(Box::new(SealedSocket {
            seal: self.0.clone(),
            socket,
            buf: vec![0u8; MAX_DATAGRAM + 1],
            out: Vec::with_capacity(MAX_DATAGRAM),
        }))
    }
}

struct SealedSocket {
    seal: Arc<GossipSeal>,
    socket: tokio::net::UdpSocket,
    buf: Vec<u8>,
    out: Vec<u8>,
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.out.clear();
        envelope.serialize(&mut self.out);
        let num_bytes_sent = self.out.len();
        for dgram in self.seal.seal(&self.out)? {
            match self.socket.send_to(&dgram, to).await {
                Ok(_) => {}
                // A peer that went away, or a full buffer: gossip retries next round.
                Err(e) => {
                    tracing::debug!(%to, "gossip send failed: {e}");
                    break;
                }
            }
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::OutOfMemory
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(anyhow::anyhow!("gossip socket failed: {e}")),
            };
            let Some(plain) = self.seal.open(&self.buf[..n], from) else {
                continue;
            };
            match ChitchatEnvelope::deserialize(&mut plain.as_slice()) {
                Ok(envelope) => {
                    return Ok(RecvOutcome {
                        from_addr: from,
                        envelope,
                        num_bytes_received: plain.len(),
                    })
                }
                Err(e) => {
                    tracing::warn!(%from, "sealed gossip message is not a chitchat envelope: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitchat::{ChitchatMessage, ProtocolVersion, MAX_UDP_DATAGRAM_PAYLOAD_SIZE};

    fn seal(keys: Keyring) -> Arc<GossipSeal> {
        let dir = tempfile::tempdir().unwrap();
        GossipSeal::new("cluster".into(), keys, dir.path().to_path_buf()).unwrap()
    }

    fn syn(len: usize) -> ChitchatEnvelope {
        // A Syn whose cluster id pads the envelope to `len` bytes.
        let empty = ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::Syn {
                cluster_id: String::new(),
                digest: Default::default(),
            },
        };
        let mut b = Vec::new();
        empty.serialize(&mut b);
        ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::Syn {
                cluster_id: "x".repeat(len - b.len()),
                digest: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn a_full_size_envelope_is_split_and_arrives_whole_and_another_key_gets_nothing() {
        let ring = Keyring::from_cookie("c");
        let (a, b) = (seal(ring.clone()), seal(ring));
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut tx = SealedUdp(a.clone()).open(local).await.unwrap();
        let mut rx = SealedUdp(b.clone()).open(local).await.unwrap();
        let to = rx.local_addr().unwrap();
        let env = syn(MAX_UDP_DATAGRAM_PAYLOAD_SIZE);
        let mut bytes = Vec::new();
        env.serialize(&mut bytes);
        assert_eq!(bytes.len(), MAX_UDP_DATAGRAM_PAYLOAD_SIZE);
        tx.send(to, syn(MAX_UDP_DATAGRAM_PAYLOAD_SIZE))
            .await
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.envelope, env);
        assert_eq!(a.stats.split.load(Ordering::Relaxed), 1);
        assert_eq!(a.stats.sealed.load(Ordering::Relaxed), 2);
        assert_eq!(b.stats.reassembled.load(Ordering::Relaxed), 1);
        assert_eq!(b.stats.opened.load(Ordering::Relaxed), 2);

        // a socket with another key drops it and counts it
        let other = seal(Keyring::from_cookie("other"));
        let mut intruder = SealedUdp(other).open(local).await.unwrap();
        intruder.send(to, syn(100)).await.unwrap();
        tx.send(to, syn(100)).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.envelope, syn(100));
        assert_eq!(b.stats.rejected.load(Ordering::Relaxed), 1);
    }
}
