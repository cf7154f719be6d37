//! One lane: the connection to one peer node once its handshake is done. Senders append frames
//! to its outgoing buffer (an urgent one may be written at once), a writer task flushes the
//! buffer in batches, and a reader task hands each incoming frame to its actor or its caller.

use std::{
    collections::HashMap,
    io,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use ractor::{message::SerializedMessage, pg, ActorCell, ActorId, RpcReplyPort};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Notify,
    task::AbortHandle,
};

use super::frame::{self, read_frame, Frame};

/// The size of a lane's read buffer and of a writer's batch.
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
    /// The message is larger than a frame allows ([`MAX_FRAME`](super::MAX_FRAME)).
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
    pub(super) frames_out: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) frames_in: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    /// Connections refused at the handshake (wrong cookie, garbage, timeouts).
    pub(super) refused: AtomicU64,
    /// Frames for an actor that does not exist here or is not published.
    pub(super) undeliverable: AtomicU64,
    /// Lanes installed (dialed or accepted).
    pub(super) installed: AtomicU64,
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
    pub(super) tasks: Mutex<Vec<AbortHandle>>,
    stats: Arc<LaneStats>,
}

impl Lane {
    /// A lane to `peer` over a handshaken connection (`direct`: its plain TCP socket, for
    /// urgent frames; `None` under TLS), counting into `stats`. [`Lanes`](super::Lanes) starts
    /// its reader and writer.
    pub(super) fn new(peer: &str, direct: Option<Arc<TcpStream>>, stats: Arc<LaneStats>) -> Self {
        Lane {
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
            stats,
        }
    }

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

    pub(super) async fn write_loop<W: AsyncWrite + Unpin>(&self, mut w: W) -> io::Result<()> {
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

    pub(super) async fn read_loop<R: AsyncRead + Unpin>(self: &Arc<Self>, r: R) -> io::Result<()> {
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
