//! The direct lane: one lean TCP connection per pair of nodes that carries actor messages
//! (tells, calls and their replies) straight from the sender to the receiving actor's mailbox.
//!
//! ractor_cluster keeps the control plane (process groups, remote actor proxies, monitors,
//! remote spawn). Its data path costs a proxy actor, a session actor, a protobuf envelope and a
//! reader actor in each direction, plus two unbuffered reads per frame. On the lane a message is
//! one length-prefixed frame appended to a per-peer buffer that a writer task flushes in batches;
//! the reader decodes frames from a buffered stream and hands each to the target actor as a
//! ractor [`SerializedMessage`], exactly what ractor_cluster would hand it.
//!
//! * Authentication: both sides prove they know the cookie (HMAC-SHA256 over both sides' fresh
//!   nonces and names, with distinct labels for the two directions); the acceptor proves it only
//!   after the dialer proved it over the acceptor's nonce (the state machine and its wire form
//!   are in `lane/handshake.rs`). A peer with another cookie is refused and the refusal is
//!   logged on both sides.
//! * Optional mutual TLS with the transport's certificates.
//! * At most one lane per pair: the node whose name sorts first dials (as for sessions); a newer
//!   connection from the same peer replaces an older one (a restarted peer), and at most one dial
//!   to a peer is in flight, so two sides never install two lanes in opposite orders. A lane is
//!   closed when its peer is declared dead, and calls waiting on it then fail at once.
//! * Only actors published in a process group (as ractor_cluster requires) can be reached.
//! * Messages sent with `Node::tell` / `Node::call` from one sender to one actor arrive in the
//!   order sent while the lane stays up. Before a lane is up they travel over ractor_cluster, and
//!   the switch can reorder messages sent in the instant a lane comes up. `ActorRef::cast` /
//!   `call` on a remote reference always take ractor_cluster's path, so they are not ordered
//!   with messages sent through the node.
//!
//! Frames (big-endian): `u32 len | u8 kind | body` where body is
//! `CAST: u64 pid | u16 vlen | variant | args`,
//! `CALL: u64 pid | u64 id | u32 timeout_ms | u16 vlen | variant | args`,
//! `REPLY: u64 id | bytes`, `FAIL: u64 id` (no such actor, or it dropped the reply port);
//! `CAST_M` / `CALL_M` carry a message's metadata (its trace context) too: see `lane/frame.rs`.
//!
//! This file holds [`Lanes`], a node's set of lanes: the listener, dialing and accepting peers,
//! their handshakes, installing a lane. `link.rs` is one lane ([`Lane`]: its buffer, writer and
//! reader), `frame.rs` the frames, `handshake.rs` the handshake's state machine, and
//! `shared_tcp.rs` the TCP stream a lane's tasks share.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

use crate::tls::{server_name, Tls};

mod frame;
mod handshake;
mod link;
mod shared_tcp;

#[cfg(test)]
mod fuzz_tests;

pub(crate) use frame::MAX_FRAME;
use handshake::{Acceptor, Dialer, HandshakeError, Keys, Msg, MAGIC, NONCE};
pub(crate) use link::{Lane, LaneError, LaneStats};
use shared_tcp::SharedTcp;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The lanes of this node: a listener, and one [`Lane`] per connected peer.
pub(crate) struct Lanes {
    keys: Keys,
    tls: Option<Arc<Tls>>,
    /// Where the lane listener is bound.
    pub(crate) addr: SocketAddr,
    peers: RwLock<HashMap<String, Arc<Lane>>>,
    /// Peers a dial is in flight to: a second dial while one is still in its handshake would
    /// replace the first lane, and the two sides could install the two in opposite orders and
    /// close both, failing the calls on them.
    dialing: Mutex<HashSet<String>>,
    accept: Mutex<Option<AbortHandle>>,
    stats: Arc<LaneStats>,
}

/// A dial in flight to one peer; at most one per peer at a time.
struct Dialing<'a> {
    lanes: &'a Lanes,
    peer: String,
}

impl<'a> Dialing<'a> {
    fn start(lanes: &'a Lanes, peer: &str) -> Option<Self> {
        let fresh = lanes
            .dialing
            .lock()
            .map(|mut d| d.insert(peer.to_string()))
            .unwrap_or(false);
        fresh.then(|| Dialing {
            lanes,
            peer: peer.to_string(),
        })
    }
}

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        if let Ok(mut d) = self.lanes.dialing.lock() {
            d.remove(&self.peer);
        }
    }
}

impl Lanes {
    /// Bind the lane listener and start accepting peers.
    pub(crate) async fn start(
        me: &str,
        cookie: &str,
        tls: Option<Arc<Tls>>,
        bind: SocketAddr,
    ) -> io::Result<Arc<Lanes>> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let lanes = Arc::new(Lanes {
            keys: Keys::new(me, cookie),
            tls,
            addr,
            peers: RwLock::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            accept: Mutex::new(None),
            stats: Arc::new(LaneStats::default()),
        });
        let weak = Arc::downgrade(&lanes);
        let task = tokio::spawn(async move {
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("lane listener: cannot accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(lanes) = weak.upgrade() else { break };
                tokio::spawn(async move {
                    if let Err(e) = lanes.accept(stream).await {
                        lanes.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%from, "lane connection refused: {e}");
                    }
                });
            }
        });
        if let Ok(mut a) = lanes.accept.lock() {
            *a = Some(task.abort_handle());
        }
        Ok(lanes)
    }

    /// The lane to `peer`, if one is up.
    pub(crate) fn get(&self, peer: &str) -> Option<Arc<Lane>> {
        self.peers
            .read()
            .ok()
            .and_then(|p| p.get(peer).cloned())
            .filter(|l| !l.is_closed())
    }

    /// Names of the peers with a lane up.
    pub(crate) fn connected(&self) -> Vec<String> {
        self.peers
            .read()
            .map(|p| {
                p.iter()
                    .filter(|(_, l)| !l.is_closed())
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The lanes' metric families (OpenMetrics text, no `# EOF`).
    pub(crate) fn metrics_text(&self) -> String {
        let st = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows = [
            (
                "draft_lane_frames_sent_total",
                "counter",
                "Frames written to other nodes' lanes.",
                get(&st.frames_out),
            ),
            (
                "draft_lane_bytes_sent_total",
                "counter",
                "Bytes written to other nodes' lanes.",
                get(&st.bytes_out),
            ),
            (
                "draft_lane_frames_received_total",
                "counter",
                "Frames read from other nodes' lanes.",
                get(&st.frames_in),
            ),
            (
                "draft_lane_bytes_received_total",
                "counter",
                "Bytes read from other nodes' lanes.",
                get(&st.bytes_in),
            ),
            (
                "draft_lane_handshakes_refused_total",
                "counter",
                "Lane connections refused at the handshake (wrong cookie, garbage).",
                get(&st.refused),
            ),
            (
                "draft_lane_frames_undeliverable_total",
                "counter",
                "Frames for an actor that is not here or not published.",
                get(&st.undeliverable),
            ),
            (
                "draft_lane_connects_total",
                "counter",
                "Lanes installed, dialed or accepted (rising while peers stay up: a flapping lane).",
                get(&st.installed),
            ),
            (
                "draft_lanes_up",
                "gauge",
                "Lanes connected to other nodes.",
                self.connected().len() as u64,
            ),
        ];
        crate::metrics::metrics_text(&rows)
    }

    /// Close the lane to `peer` (declared dead).
    pub(crate) fn drop_peer(&self, peer: &str) {
        let lane = self.peers.write().ok().and_then(|mut p| p.remove(peer));
        if let Some(lane) = lane {
            lane.close();
        }
    }

    /// Close every lane and stop listening.
    pub(crate) fn shutdown(&self) {
        if let Some(a) = self.accept.lock().ok().and_then(|mut a| a.take()) {
            a.abort();
        }
        let all: Vec<Arc<Lane>> = self
            .peers
            .write()
            .map(|mut p| p.drain().map(|(_, l)| l).collect())
            .unwrap_or_default();
        for lane in all {
            lane.close();
        }
    }

    /// Dial `peer` at `addr` and install the lane.
    pub(crate) async fn dial(self: &Arc<Self>, peer: &str, addr: SocketAddr) -> io::Result<()> {
        let Some(_dialing) = Dialing::start(self, peer) else {
            tracing::debug!(%peer, "a dial to this peer is already in flight");
            return Ok(());
        };
        let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => {
                let tcp = Arc::new(tcp);
                let (mut r, mut w) = (SharedTcp(tcp.clone()), SharedTcp(tcp.clone()));
                self.dial_handshake(peer, &mut r, &mut w).await?;
                self.install(peer, r, w, Some(tcp));
            }
            Some(tls) => {
                let stream = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    tls.connector.connect(server_name(addr.ip()), tcp),
                )
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
                let (mut r, mut w) = tokio::io::split(stream);
                self.dial_handshake(peer, &mut r, &mut w).await?;
                self.install(peer, r, w, None);
            }
        }
        tracing::info!(%peer, %addr, "lane connected");
        Ok(())
    }

    async fn accept(self: &Arc<Self>, tcp: TcpStream) -> io::Result<()> {
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => {
                let tcp = Arc::new(tcp);
                let (mut r, mut w) = (SharedTcp(tcp.clone()), SharedTcp(tcp.clone()));
                let peer = self.accept_handshake(&mut r, &mut w).await?;
                tracing::info!(%peer, "lane accepted");
                self.install(&peer, r, w, Some(tcp));
            }
            Some(tls) => {
                let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                let (mut r, mut w) = tokio::io::split(stream);
                let peer = self.accept_handshake(&mut r, &mut w).await?;
                tracing::info!(%peer, "lane accepted (TLS)");
                self.install(&peer, r, w, None);
            }
        }
        Ok(())
    }

    async fn dial_handshake<R, W>(&self, peer: &str, r: &mut R, w: &mut W) -> io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let run = async {
            let (mut state, hello) = Dialer::start(&self.keys, peer);
            let mut first = MAGIC.to_vec();
            first.extend_from_slice(&hello.encode().map_err(hs_err)?);
            w.write_all(&first).await?;
            w.flush().await?;
            loop {
                let msg = read_msg(r).await?;
                let (next, out) = state.next(&self.keys, msg, fresh_nonce()?);
                if let Some(out) = out {
                    w.write_all(&out.encode().map_err(hs_err)?).await?;
                    w.flush().await?;
                }
                match next {
                    Dialer::Done { .. } => return Ok(()),
                    Dialer::Failed(e) => return Err(hs_err(e)),
                    s => state = s,
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "lane handshake timed out"))?
    }

    async fn accept_handshake<R, W>(&self, r: &mut R, w: &mut W) -> io::Result<String>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let run = async {
            read_magic(r).await?;
            let mut state = Acceptor::AwaitHello;
            loop {
                let msg = read_msg(r).await?;
                let (next, out) = state.next(&self.keys, msg, fresh_nonce()?);
                if let Some(out) = out {
                    w.write_all(&out.encode().map_err(hs_err)?).await?;
                    w.flush().await?;
                }
                match next {
                    Acceptor::Done { peer } => return Ok(peer),
                    Acceptor::Failed(e) => return Err(hs_err(e)),
                    s => state = s,
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "lane handshake timed out"))?
    }

    /// Start the reader and writer of a handshaken connection and make it the lane to `peer`.
    fn install<R, W>(self: &Arc<Self>, peer: &str, r: R, w: W, direct: Option<Arc<TcpStream>>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.stats.installed.fetch_add(1, Ordering::Relaxed);
        let lane = Arc::new(Lane::new(peer, direct, self.stats.clone()));
        let writer = {
            let lane = lane.clone();
            tokio::spawn(async move {
                if let Err(e) = lane.write_loop(w).await {
                    tracing::info!(peer = %lane.peer(), "lane write failed: {e}");
                }
                lane.close();
            })
        };
        let reader = {
            let lane = lane.clone();
            let lanes = Arc::downgrade(self);
            tokio::spawn(async move {
                match lane.read_loop(r).await {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        tracing::info!(peer = %lane.peer(), "lane closed by the peer")
                    }
                    Err(e) => tracing::warn!(peer = %lane.peer(), "lane closed: {e}"),
                    Ok(()) => {}
                }
                lane.close();
                if let Some(lanes) = lanes.upgrade() {
                    if let Ok(mut p) = lanes.peers.write() {
                        if p.get(lane.peer()).is_some_and(|l| Arc::ptr_eq(l, &lane)) {
                            p.remove(lane.peer());
                        }
                    }
                }
            })
        };
        if let Ok(mut t) = lane.tasks.lock() {
            t.push(writer.abort_handle());
            t.push(reader.abort_handle());
        }
        let old = self
            .peers
            .write()
            .ok()
            .and_then(|mut p| p.insert(peer.to_string(), lane));
        if let Some(old) = old {
            old.close();
        }
    }
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn fresh_nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(n)
}

async fn read_magic<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<()> {
    let mut m = [0u8; 8];
    r.read_exact(&mut m).await?;
    if &m != MAGIC {
        return Err(bad_data("not a draft lane (bad greeting)".into()));
    }
    Ok(())
}

/// Read one handshake message (`u16 len | tag | body`).
async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Msg> {
    let len = r.read_u16().await? as usize;
    if len == 0 || len > handshake::MAX_MSG {
        return Err(bad_data(format!("handshake message of {len} bytes")));
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).await?;
    Msg::decode(&b).map_err(hs_err)
}

fn hs_err(e: HandshakeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (Arc<Lanes>, Arc<Lanes>) {
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        let a = Lanes::start("lane-a", "cookie", None, bind).await.unwrap();
        let b = Lanes::start("lane-b", "cookie", None, bind).await.unwrap();
        (a, b)
    }

    /// Two dials racing (a slow handshake outlasting the redial interval) must not install two
    /// lanes: the second would replace the first, and calls on the first would fail.
    #[tokio::test]
    async fn concurrent_dials_to_one_peer_install_one_lane() {
        let (a, b) = pair().await;
        let (r1, r2) = tokio::join!(a.dial("lane-b", b.addr), a.dial("lane-b", b.addr));
        r1.unwrap();
        r2.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b.get("lane-a").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "b never saw the lane"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = a.get("lane-b").expect("a has a lane to b");
        assert_eq!(a.stats.installed.load(Ordering::Relaxed), 1);
        assert_eq!(b.stats.installed.load(Ordering::Relaxed), 1);
        // Once the first dial is done, a dial again is a deliberate reconnect (a restarted peer).
        a.dial("lane-b", b.addr).await.unwrap();
        assert!(first.is_closed(), "the replaced lane is closed");
        assert_eq!(a.stats.installed.load(Ordering::Relaxed), 2);
        a.shutdown();
        b.shutdown();
    }
}
