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

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use ractor::{message::SerializedMessage, pg, ActorCell, ActorId, RpcReplyPort};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::AbortHandle,
};

use crate::tls::{server_name, Tls};

mod frame;
mod handshake;

#[cfg(test)]
mod fuzz_tests;

pub(crate) use frame::MAX_FRAME;
use frame::{read_frame, Frame};
use handshake::{Acceptor, Dialer, HandshakeError, Keys, Msg, MAGIC, NONCE};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const READ_BUF: usize = 64 << 10;
/// Bytes waiting to be written above which [`Lane::room`] makes senders wait.
const HIGH_WATER: usize = 4 << 20;

/// Why a message could not be put on a lane.
#[derive(Debug)]
pub(crate) enum LaneError {
    /// The lane closed (its connection was lost or the peer declared dead).
    Closed,
    /// The message cannot be sent over the network (its type is not remote-capable).
    NotSerializable,
    /// The message is larger than a frame allows ([`MAX_FRAME`]).
    TooLarge,
}

/// The outgoing side of a lane, under one lock.
struct Out {
    /// Frames waiting for the writer.
    buf: Vec<u8>,
    /// Whether the writer holds a batch it has not finished writing.
    writing: bool,
    /// The plain TCP socket, so an urgent frame (a call or a reply) can be written by its
    /// sender when nothing else is queued, without waking the writer task. `None` under TLS
    /// and once closed.
    direct: Option<Arc<TcpStream>>,
}

/// Counters of this node's lanes, exported with the node's metrics.
#[derive(Default)]
pub(crate) struct LaneStats {
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    /// Connections refused at the handshake (wrong cookie, garbage, timeouts).
    refused: AtomicU64,
    /// Frames for an actor that does not exist here or is not published.
    undeliverable: AtomicU64,
    /// Lanes installed (dialed or accepted).
    installed: AtomicU64,
}

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

/// A connection to one peer node.
pub(crate) struct Lane {
    peer: String,
    out: Mutex<Out>,
    wake: Notify,
    /// Notified (all waiters) each time the writer takes the buffer.
    drained: Notify,
    pending: Mutex<HashMap<u64, RpcReplyPort<Vec<u8>>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
    stats: Arc<LaneStats>,
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
        let lane = Arc::new(Lane {
            peer: peer.to_string(),
            out: Mutex::new(Out {
                buf: Vec::with_capacity(READ_BUF),
                writing: false,
                direct,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            stats: self.stats.clone(),
        });
        let writer = {
            let lane = lane.clone();
            tokio::spawn(async move {
                if let Err(e) = lane.write_loop(w).await {
                    tracing::info!(peer = %lane.peer, "lane write failed: {e}");
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
                        tracing::info!(peer = %lane.peer, "lane closed by the peer")
                    }
                    Err(e) => tracing::warn!(peer = %lane.peer, "lane closed: {e}"),
                    Ok(()) => {}
                }
                lane.close();
                if let Some(lanes) = lanes.upgrade() {
                    if let Ok(mut p) = lanes.peers.write() {
                        if p.get(&lane.peer).is_some_and(|l| Arc::ptr_eq(l, &lane)) {
                            p.remove(&lane.peer);
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

impl Lane {
    /// The peer node's name.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Close the connection and fail every call waiting on it.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut out) = self.out.lock() {
            out.direct = None;
        }
        self.wake.notify_one();
        self.drained.notify_waiters();
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
        // Dropping the reply ports fails the callers ("stopped before replying").
        let pending: Vec<_> = self
            .pending
            .lock()
            .map(|mut p| p.drain().collect())
            .unwrap_or_default();
        drop(pending);
    }

    /// Wait until the outgoing buffer is below its high-water mark (or the lane closed), and
    /// let other tasks run now and then, as a bounded channel's `send` would.
    pub(crate) async fn room(&self) {
        tokio::task::consume_budget().await;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.buffered() < HIGH_WATER || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    fn buffered(&self) -> usize {
        self.out.lock().map(|o| o.buf.len()).unwrap_or(0)
    }

    /// Send a serialized message to the actor `pid` of the peer.
    pub(crate) fn send(&self, pid: u64, msg: SerializedMessage) -> Result<(), LaneError> {
        match msg {
            SerializedMessage::Cast {
                variant,
                args,
                metadata,
            } => self.cast(pid, &variant, &args, metadata.as_deref()),
            SerializedMessage::Call {
                variant,
                args,
                reply,
                metadata,
            } => self.call(pid, &variant, &args, reply, metadata.as_deref()),
            // Replies travel as REPLY frames, never as messages.
            SerializedMessage::CallReply(..) => Err(LaneError::NotSerializable),
        }
    }

    fn cast(
        &self,
        pid: u64,
        variant: &str,
        args: &[u8],
        meta: Option<&[u8]>,
    ) -> Result<(), LaneError> {
        frame::cast_fits(meta, variant, args).map_err(|_| LaneError::TooLarge)?;
        self.push(false, |b| frame::put_cast(b, pid, meta, variant, args))
    }

    fn call(
        &self,
        pid: u64,
        variant: &str,
        args: &[u8],
        reply: RpcReplyPort<Vec<u8>>,
        meta: Option<&[u8]>,
    ) -> Result<(), LaneError> {
        frame::call_fits(meta, variant, args).map_err(|_| LaneError::TooLarge)?;
        let timeout_ms = reply
            .get_timeout()
            .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1))
            .unwrap_or(0);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.pending.lock() {
            // Ports of callers that gave up are dropped now and then, so the map stays small.
            if p.len() >= 1024 && id.is_multiple_of(256) {
                p.retain(|_, port| !port.is_closed());
            }
            p.insert(id, reply);
        }
        let sent = self.push(true, |b| {
            frame::put_call(b, pid, id, timeout_ms, meta, variant, args)
        });
        if sent.is_err() {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
        }
        sent
    }

    fn reply(&self, id: u64, data: Option<&[u8]>) {
        // A reply too large for a frame would close the lane at the peer: fail the call instead.
        let data = data.filter(|d| frame::reply_fits(d));
        let _ = self.push(true, |b| match data {
            Some(data) => frame::put_reply(b, id, data),
            None => frame::put_fail(b, id),
        });
    }

    /// Append one frame to the outgoing buffer, waking the writer if it was idle. An `urgent`
    /// frame (a call or a reply) that finds nothing queued and nothing being written is written
    /// to the socket at once when it can be, saving the writer's wake-up on the latency path;
    /// tells always go through the writer, which batches them.
    fn push(&self, urgent: bool, frame: impl FnOnce(&mut Vec<u8>)) -> Result<(), LaneError> {
        if self.is_closed() {
            return Err(LaneError::Closed);
        }
        let wake = {
            let mut out = self.out.lock().map_err(|_| LaneError::Closed)?;
            let was_empty = out.buf.is_empty();
            frame(&mut out.buf);
            self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            if urgent && was_empty && !out.writing {
                if let Some(sock) = out.direct.clone() {
                    match sock.try_write(&out.buf) {
                        Ok(n) if n == out.buf.len() => {
                            self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                            out.buf.clear();
                        }
                        Ok(n) => {
                            self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                            out.buf.drain(..n);
                        }
                        // Full socket buffer or an error: the writer deals with it.
                        Err(_) => {}
                    }
                }
            }
            was_empty && !out.buf.is_empty()
        };
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn write_loop<W: AsyncWrite + Unpin>(&self, mut w: W) -> io::Result<()> {
        let mut batch: Vec<u8> = Vec::with_capacity(READ_BUF);
        loop {
            // While a sender is still adding frames, let it fill the batch a little: on loopback
            // each write also runs the receiving side in the kernel, so many small writes cost
            // far more than one larger one. A lone frame goes out after one yield.
            let mut seen = self.buffered();
            for _ in 0..64 {
                if seen == 0 || seen >= READ_BUF {
                    break;
                }
                tokio::task::yield_now().await;
                let now = self.buffered();
                if now == seen {
                    break;
                }
                seen = now;
            }
            {
                let mut out = self
                    .out
                    .lock()
                    .map_err(|_| io::Error::other("lane buffer poisoned"))?;
                std::mem::swap(&mut out.buf, &mut batch);
                out.writing = !batch.is_empty();
            }
            self.drained.notify_waiters();
            if batch.is_empty() {
                if self.is_closed() {
                    return Ok(());
                }
                self.wake.notified().await;
                continue;
            }
            w.write_all(&batch).await?;
            w.flush().await?;
            self.stats
                .bytes_out
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            if batch.capacity() > 8 << 20 {
                batch.shrink_to(READ_BUF);
            }
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(self: &Arc<Self>, r: R) -> io::Result<()> {
        let mut r = BufReader::with_capacity(READ_BUF, r);
        let mut actors: HashMap<u64, ActorCell> = HashMap::new();
        loop {
            let (frame, size) = read_frame(&mut r).await?;
            self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_in
                .fetch_add(size as u64, Ordering::Relaxed);
            match frame {
                Frame::Cast {
                    pid,
                    variant,
                    args,
                    metadata,
                } => {
                    if let Some(cell) = published(&mut actors, pid) {
                        let msg = SerializedMessage::Cast {
                            variant,
                            args,
                            metadata,
                        };
                        if cell.send_serialized(msg).is_err() {
                            actors.remove(&pid);
                        }
                    } else {
                        self.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %self.peer, pid, "lane message for an unknown or unpublished actor dropped");
                    }
                }
                call @ Frame::Call { .. } => self.serve_call(&mut actors, call),
                Frame::Reply { id, data } => {
                    let port = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                    if let Some(port) = port {
                        let _ = port.send(data);
                    }
                }
                Frame::Fail { id } => {
                    let port = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                    drop(port);
                }
            }
        }
    }

    /// Hand a CALL frame to its actor; the answer goes back as a REPLY or FAIL frame.
    fn serve_call(self: &Arc<Self>, actors: &mut HashMap<u64, ActorCell>, call: Frame) {
        let Frame::Call {
            pid,
            id,
            timeout_ms,
            variant,
            args,
            metadata,
        } = call
        else {
            return;
        };
        let Some(cell) = published(actors, pid) else {
            self.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %self.peer, pid, "lane call for an unknown or unpublished actor");
            self.reply(id, None);
            return;
        };
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
        let (tx, rx) = ractor::concurrency::oneshot();
        let reply: RpcReplyPort<Vec<u8>> = match timeout {
            Some(t) => (tx, t).into(),
            None => tx.into(),
        };
        let msg = SerializedMessage::Call {
            variant,
            args,
            reply,
            metadata,
        };
        if cell.send_serialized(msg).is_err() {
            actors.remove(&pid);
            self.reply(id, None);
            return;
        }
        let lane = self.clone();
        tokio::spawn(async move {
            let answer = match timeout {
                Some(t) => tokio::time::timeout(t, rx).await.ok().and_then(Result::ok),
                None => rx.await.ok(),
            };
            lane.reply(id, answer.as_deref());
        });
    }
}

/// A local actor that the peer may reach: it exists, accepts remote messages and is published
/// in the name directory or a process group.
fn published(cache: &mut HashMap<u64, ActorCell>, pid: u64) -> Option<ActorCell> {
    if let Some(cell) = cache.get(&pid) {
        return Some(cell.clone());
    }
    let cell = ractor::registry::where_is_pid(ActorId::Local(pid))?;
    if !cell.supports_remoting() {
        return None;
    }
    let id = cell.get_id();
    let in_group = crate::directory::is_published(pid)
        || pg::which_scopes_and_groups().iter().any(|k| {
            pg::get_scoped_local_members(&k.get_scope(), &k.get_group())
                .iter()
                .any(|c| c.get_id() == id)
        });
    if !in_group {
        return None;
    }
    if cache.len() > 4096 {
        cache.clear();
    }
    cache.insert(pid, cell.clone());
    Some(cell)
}

/// A plain TCP stream shared by the reader, the writer and senders of urgent frames
/// (`try_write` needs only `&TcpStream`).
struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
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
