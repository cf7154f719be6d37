//! The client side of the KV store: the [`Kv`] handle, its public API, and how a request finds
//! the node that can serve it (this node, the leader, or another member), with retries.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use openraft::Raft;
use runtime::Node;

use super::{
    batcher::Queued,
    membership::Policy,
    net::{self, KvMsg},
    request::{Request, Response},
    routing::{self, Step, View},
    store::StateMachine,
    validate::{validate, validate_key, validate_value, write_result},
    CasResult, CmdResult, Command, Expect, KvEntry, KvError, KvStatus, NodeId, TypeConfig,
    WatchBatch, WatchEvent, MAX_KEY_BYTES,
};

/// What every clone of a [`Kv`] shares.
pub(crate) struct Shared {
    pub(crate) node: String,
    /// The runtime node: its lanes carry Raft RPCs and forwarded requests.
    pub(crate) rt: Node,
    pub(crate) id: NodeId,
    /// `<data-dir>/kv`.
    pub(crate) dir: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) sm: StateMachine,
    /// Queue of the write batcher.
    pub(crate) batcher: tokio::sync::mpsc::UnboundedSender<Queued>,
    /// The id of the store this node belongs to (`None` until it bootstraps or joins one).
    pub(crate) store: tokio::sync::watch::Sender<Option<String>>,
    /// Live members of this node's store, as gossip tells (for forwarding before this node
    /// has replicated the membership).
    pub(crate) peers: Mutex<Vec<String>>,
    pub(crate) client: u64,
    pub(crate) seq: AtomicU64,
    pub(crate) hint: Mutex<Option<String>>,
    pub(crate) op_timeout: Duration,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    /// The leader's lease deadlines (monotonic; see `lease_clock`).
    pub(crate) lease_clock: Mutex<super::lease_clock::LeaseClock>,
    /// This node's etcd API address, once it serves one.
    pub(crate) etcd_addr: Mutex<Option<std::net::SocketAddr>>,
}

/// A handle on the KV store, through this node. Cheap to clone.
#[derive(Clone)]
pub struct Kv {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("node", &self.inner.node)
            .finish()
    }
}

pub(crate) fn handles() -> &'static Mutex<HashMap<String, Kv>> {
    static H: OnceLock<Mutex<HashMap<String, Kv>>> = OnceLock::new();
    H.get_or_init(Default::default)
}

/// The KV handle started on the node named `node` in this process, if any.
///
/// ```no_run
/// if let Some(kv) = registry::kv::handle("node1") {
///     println!("node1's KV store: {:?}", kv.store_id());
/// }
/// ```
pub fn handle(node: &str) -> Option<Kv> {
    handles()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node)
        .cloned()
}

impl Kv {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// Run `f` on the membership this node has replicated.
    pub(crate) fn with_membership<T>(
        &self,
        f: impl FnOnce(&openraft::Membership<NodeId, super::KvNode>) -> T,
    ) -> T {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow();
        f(m.membership_config.membership())
    }

    /// Whether this node is a Raft voter (in the membership it has replicated).
    pub fn is_voter(&self) -> bool {
        let me = self.inner.id;
        self.with_membership(|m| m.voter_ids().any(|v| v == me))
    }

    /// Whether this node is a Raft learner: a non-voting full replica.
    pub fn is_learner(&self) -> bool {
        let me = self.inner.id;
        self.with_membership(|m| m.learner_ids().any(|v| v == me))
    }

    /// The voters, by node name, in the membership this node has replicated (sorted).
    pub fn voters(&self) -> Vec<String> {
        let mut v: Vec<String> = self.with_membership(|m| {
            m.voter_ids()
                .filter_map(|id| m.get_node(&id).map(|n| n.name.clone()))
                .collect()
        });
        v.sort();
        v
    }

    /// The id of the KV store this node belongs to (`None`: it has not joined one yet).
    pub fn store_id(&self) -> Option<String> {
        self.inner.store.borrow().clone()
    }

    /// The node name of a Raft member, from the replicated membership.
    pub(crate) fn name_of(&self, id: NodeId) -> Option<String> {
        self.with_membership(|m| m.get_node(&id).map(|n| n.name.clone()))
    }

    /// Whether this node is in the membership it has replicated.
    pub(crate) fn is_member(&self) -> bool {
        let me = self.inner.id;
        self.with_membership(|m| m.get_node(&me).is_some())
    }

    pub(crate) fn next_id(&self) -> (u64, u64) {
        (
            self.inner.client,
            self.inner.seq.fetch_add(1, Ordering::Relaxed),
        )
    }

    // ---- public API -------------------------------------------------------------------------

    /// Set `key` to `value`; returns the revision of the change.
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// let rev = kv.put("svc/a/port", "8080").await?;
    /// assert!(rev > 0);
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, key: &str, value: &str) -> Result<u64, KvError> {
        self.put_inner(key, value, None).await
    }

    /// Set `key` to `value`, attached to a lease (the key is deleted when the lease ends).
    pub async fn put_with_lease(&self, key: &str, value: &str, lease: u64) -> Result<u64, KvError> {
        self.put_inner(key, value, Some(lease)).await
    }

    /// Set `key` to `value` for `ttl` (a fresh lease); returns `(revision, lease id)`.
    pub async fn put_with_ttl(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(u64, u64), KvError> {
        validate_key(key)?;
        validate_value(value)?;
        let lease = self.grant(ttl).await?;
        Ok((self.put_inner(key, value, Some(lease)).await?, lease))
    }

    async fn put_inner(&self, key: &str, value: &str, lease: Option<u64>) -> Result<u64, KvError> {
        let r = self
            .write(Command::Put {
                key: key.into(),
                value: value.into(),
                lease,
            })
            .await?;
        match r {
            CmdResult::Put { revision, .. } => Ok(revision),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Delete `key`; returns the removed entry (`None`: there was no such key).
    pub async fn delete(&self, key: &str) -> Result<Option<KvEntry>, KvError> {
        match self.write(Command::Delete { key: key.into() }).await? {
            CmdResult::Delete { prev, .. } => Ok(prev),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Compare-and-swap: if `expect` holds, set the key to `new` (or delete it when `None`).
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// use registry::kv::Expect;
    /// // create only if absent
    /// let r = kv.cas("locks/x", Expect::Value(None), Some("me".into())).await?;
    /// if !r.ok { println!("held by {:?}", r.current.map(|e| e.value)); }
    /// # Ok(()) }
    /// ```
    pub async fn cas(
        &self,
        key: &str,
        expect: Expect,
        new: Option<String>,
    ) -> Result<CasResult, KvError> {
        self.cas_with_lease(key, expect, new, None).await
    }

    /// [`Kv::cas`] that attaches the new value to a lease.
    pub async fn cas_with_lease(
        &self,
        key: &str,
        expect: Expect,
        new: Option<String>,
        lease: Option<u64>,
    ) -> Result<CasResult, KvError> {
        let r = self
            .write(Command::Cas {
                key: key.into(),
                expect,
                new,
                lease,
            })
            .await?;
        match r {
            CmdResult::Cas {
                ok,
                revision,
                current,
            } => Ok(CasResult {
                ok,
                revision,
                current,
            }),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Read a key (linearizable: through the leader, after a quorum check).
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, KvError> {
        Ok(self.get_at(key, true).await?.0)
    }

    /// Read a key and the store revision; `linearizable: false` reads this node's (or a
    /// voter's) copy, which may be slightly behind.
    pub async fn get_at(
        &self,
        key: &str,
        linearizable: bool,
    ) -> Result<(Option<KvEntry>, u64), KvError> {
        validate_key(key)?;
        match self
            .exec(Request::Get {
                key: key.into(),
                linearizable,
            })
            .await?
        {
            Response::Get(e, rev) => Ok((e, rev)),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Every key under `prefix` in key order (at most 10 000), and the store revision
    /// (linearizable).
    pub async fn range(&self, prefix: &str) -> Result<(Vec<KvEntry>, u64), KvError> {
        self.range_at(prefix, true).await
    }

    /// [`Kv::range`]; `linearizable: false` reads this node's copy (a voter's, for non-voters).
    pub async fn range_at(
        &self,
        prefix: &str,
        linearizable: bool,
    ) -> Result<(Vec<KvEntry>, u64), KvError> {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(KvError::TooLarge {
                what: "prefix".into(),
                size: prefix.len(),
                limit: MAX_KEY_BYTES,
            });
        }
        match self
            .exec(Request::Range {
                prefix: prefix.into(),
                linearizable,
                limit: 10_000,
            })
            .await?
        {
            Response::Range(e, rev) => Ok((e, rev)),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Watch the keys under `prefix`: every change from revision `from` (`None`: from now on),
    /// in revision order.
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// let mut w = kv.watch("config/", None).await?;
    /// let ev = w.next().await?;
    /// println!("{} {:?} {}", ev.revision, ev.kind, ev.key);
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, prefix: &str, from: Option<u64>) -> Result<Watch, KvError> {
        let batch = self.watch_poll(prefix, from.unwrap_or(0), 0).await?;
        Ok(Watch {
            kv: self.clone(),
            prefix: prefix.to_string(),
            next: batch.next,
            buf: batch.events.into(),
        })
    }

    /// Watch the keys under `prefix` from the oldest revision still kept (replaying the whole
    /// retained history, then following live). Also answers that oldest revision: when it is
    /// above 1, the revisions before it were compacted away.
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// let (mut w, oldest) = kv.watch_from_oldest("config/").await?;
    /// if oldest > 1 {
    ///     eprintln!("revisions before {oldest} were compacted");
    /// }
    /// let first = w.next().await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_from_oldest(&self, prefix: &str) -> Result<(Watch, u64), KvError> {
        let mut from = 1;
        // The history can be trimmed between two calls: follow it a few times.
        for _ in 0..5 {
            match self.watch(prefix, Some(from)).await {
                Ok(w) => return Ok((w, from)),
                Err(KvError::Compacted { oldest, .. }) if oldest > from => from = oldest,
                Err(e) => return Err(e),
            }
        }
        Err(KvError::Unavailable(
            "the watch history kept being compacted while starting the watch".into(),
        ))
    }

    pub(crate) async fn watch_poll(
        &self,
        prefix: &str,
        from: u64,
        wait_ms: u64,
    ) -> Result<WatchBatch, KvError> {
        match self
            .exec(Request::Watch {
                prefix: prefix.into(),
                from,
                wait_ms,
            })
            .await?
        {
            Response::Watch(b) => Ok(b),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Raft status as seen by this node (a non-voter asks a voter).
    pub async fn status(&self) -> Result<KvStatus, KvError> {
        match self.exec(Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CmdResult, KvError> {
        validate(&cmd)?;
        let id = Some(self.next_id());
        match self.exec(Request::Write { id, cmd }).await? {
            Response::Write(r) => write_result(r),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Execute a request: here when this node can serve it, else at the leader (or a voter),
    /// following leader hints and retrying while no leader is known, until the op timeout.
    /// Retrying writes is safe: each carries a request id and is applied at most once.
    pub(crate) async fn exec(&self, req: Request) -> Result<Response, KvError> {
        let deadline = Instant::now() + self.inner.op_timeout;
        let needs_leader = routing::needs_leader(&req);
        let mut target = self.pick_target(needs_leader, None).await;
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let res = if target == self.inner.node {
                self.serve(req.clone()).await
            } else {
                self.forward(&target, &req, deadline).await
            };
            let err = match res {
                Ok(r) => {
                    if needs_leader {
                        *self.inner.hint.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(target.clone());
                    }
                    return Ok(r);
                }
                Err(e) => e,
            };
            match routing::after_error(err, &target, attempt, Instant::now() >= deadline) {
                Step::GiveUp(e) => return Err(e),
                Step::NoLeader => {
                    return Err(KvError::NoQuorum(format!(
                        "no leader within {:?}; {}",
                        self.inner.op_timeout,
                        self.no_leader_hint()
                    )))
                }
                Step::Redirect(l) => target = l,
                Step::Retry => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    target = self.pick_target(needs_leader, Some(&target)).await;
                }
            }
        }
    }

    /// Why there may be no leader, for error messages.
    fn no_leader_hint(&self) -> String {
        match self.store_id() {
            None => "this node has not joined a KV store yet (no store in the cluster: start a \
                     node without --seed, or give --kv-bootstrap-expect N to N nodes)"
                .to_string(),
            Some(_) => {
                let voters = self.voters();
                if voters.is_empty() {
                    "this node is waiting to be added to the KV store".to_string()
                } else {
                    format!(
                        "a majority of the voters ({}) must be up and connected",
                        voters.join(", ")
                    )
                }
            }
        }
    }

    /// Where to send a request: this node when it can serve it, else the leader it knows of,
    /// the last leader that answered, or the next member of the store.
    async fn pick_target(&self, needs_leader: bool, failed: Option<&str>) -> String {
        let leader = match self.inner.raft.current_leader().await {
            Some(l) => self.name_of(l),
            None => None,
        };
        let view = View {
            me: self.inner.node.clone(),
            member: self.is_member(),
            voter: self.is_voter(),
            leader,
            hint: self
                .inner
                .hint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            // The store's members: replicated membership, then gossip.
            others: self
                .voters()
                .into_iter()
                .chain(
                    self.inner
                        .peers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned(),
                )
                .collect(),
        };
        routing::choose_target(view, needs_leader, failed)
    }

    async fn forward(
        &self,
        target: &str,
        req: &Request,
        deadline: Instant,
    ) -> Result<Response, KvError> {
        let wait = match req {
            Request::Watch { wait_ms, .. } => Duration::from_millis(*wait_ms),
            _ => Duration::ZERO,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = routing::forward_timeout(left, wait);
        match net::call(&self.inner.rt, target, KvMsg::Client, req, timeout).await {
            Ok(r) => r,
            Err(fail) => Err(routing::call_error(target, fail)),
        }
    }
}

/// A stream of changes under a prefix, in revision order (see [`Kv::watch`]).
#[derive(Debug)]
pub struct Watch {
    kv: Kv,
    prefix: String,
    next: u64,
    buf: VecDeque<WatchEvent>,
}

impl Watch {
    /// The next change (waits for one).
    pub async fn next(&mut self) -> Result<WatchEvent, KvError> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return Ok(e);
            }
            let b = self.kv.watch_poll(&self.prefix, self.next, 10_000).await?;
            self.next = b.next;
            self.buf.extend(b.events);
        }
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> u64 {
        self.buf.front().map(|e| e.revision).unwrap_or(self.next)
    }
}
