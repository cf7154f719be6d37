//! The KV store (CP): Raft ([openraft] 0.9) between the KV actors of the voter nodes, with the
//! log, vote and state machine in [redb] (fsync'd), snapshots and log compaction.
//!
//! * Every node runs a KV actor (process group `kv@<node>`). Voters (configured with
//!   `--kv-voter NAME`, the same list on every node; by default a node is the only voter of its
//!   own store) also run a Raft member. Raft RPCs travel as messages between KV actors over the
//!   actor transport. Requests made on a non-leader (a follower or a non-voter) are forwarded to
//!   the leader. A node started as a learner ([`KvConfig::learner`], `--kv-learner`) asks the
//!   leader to add it as a non-voting member and then holds a full replica: serializable reads
//!   and watches are served from it, writes and linearizable reads are forwarded.
//! * Writes: concurrent writes on the leader are group-committed, several to one log entry
//!   ([`Command::Batch`]), so one fsync and one replication round serve them all.
//! * API: [`Kv::get`] (linearizable by default), [`Kv::put`], [`Kv::delete`], [`Kv::cas`],
//!   [`Kv::range`], [`Kv::watch`] (ordered events from a revision), leases ([`Kv::grant`],
//!   [`Kv::put_with_lease`], [`Kv::keep_alive`], [`Kv::revoke`]) and on top of them [`Kv::lock`]
//!   (a lock / leader election) and [`ConfigWatcher`] (a service's config, live).
//! * Limits: keys are 1 to [`MAX_KEY_BYTES`] bytes of UTF-8, values at most [`MAX_VALUE_BYTES`].
//! * Every write carries a request id, so a retry after a leader change is applied once.
//!
//! ```no_run
//! # async fn demo(node: runtime::Node) -> Result<(), registry::kv::KvError> {
//! use registry::kv::{self, Expect, KvConfig};
//! let kv = kv::start(&node, KvConfig::default()).await?;
//! kv.put("app/color", "blue").await?;
//! assert_eq!(kv.get("app/color").await?.map(|e| e.value), Some("blue".into()));
//! let swapped = kv.cas("app/color", Expect::Value(Some("red".into())), Some("green".into())).await?;
//! assert!(!swapped.ok); // the value was "blue": nothing changed
//! # Ok(()) }
//! ```

mod config;
mod http;
mod net;
mod store;
mod types;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actors::ChildSpec;
use openraft::{
    error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError},
    Raft, ServerState, SnapshotPolicy,
};
use runtime::Node;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use config::{ConfigWatcher, LockGuard};
pub use net::KvMsg;
pub use types::{
    node_id, CmdResult, Command, EventKind, Expect, KvEntry, KvNode, KvStatus, Lease, NodeId,
    Proposal, TypeConfig, WatchBatch, WatchEvent,
};

use net::{KvActor, RaftReq, RaftResp};
use store::StateMachine;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;
/// Longest lease TTL, in seconds (one week).
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// Errors of the KV store.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum KvError {
    /// The key does not exist.
    #[error("key '{0}' not found")]
    NotFound(String),
    /// A compare-and-swap's condition did not hold; nothing changed.
    #[error("compare failed for key '{key}': {detail}; nothing changed")]
    CompareFailed {
        /// The key.
        key: String,
        /// What was found.
        detail: String,
    },
    /// A key or value over its limit.
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// `key` or `value`.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A malformed or invalid request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// This node is not the leader (internal: requests are forwarded).
    #[error("this node is not the KV leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader, if known.
        leader: Option<String>,
    },
    /// No quorum: no leader could be reached, or a write was not committed in time.
    #[error("no KV quorum: {0}")]
    NoQuorum(String),
    /// The store cannot serve now.
    #[error("KV unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for revisions that were compacted away.
    #[error("cannot watch from revision {from}: history starts at revision {oldest} (older revisions were compacted)")]
    Compacted {
        /// The revision asked for.
        from: u64,
        /// The oldest revision still kept.
        oldest: u64,
    },
    /// A lease operation failed (unknown or expired lease).
    #[error("{0}")]
    Lease(String),
    /// The disk failed.
    #[error("KV storage error: {0}")]
    Storage(String),
}

impl KvError {
    /// The HTTP status that fits the error.
    pub fn http_status(&self) -> u16 {
        match self {
            KvError::NotFound(_) => 404,
            KvError::CompareFailed { .. } => 409,
            KvError::TooLarge { .. } => 413,
            KvError::Invalid(_) | KvError::Lease(_) => 400,
            KvError::Compacted { .. } => 410,
            KvError::NotLeader { .. } | KvError::NoQuorum(_) | KvError::Unavailable(_) => 503,
            KvError::Storage(_) => 500,
        }
    }
}

/// A client request (also the message forwarded between nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// A command through Raft, with its request id.
    Write {
        /// `(client, seq)`.
        id: Option<(u64, u64)>,
        /// The command.
        cmd: Command,
    },
    /// Read a key.
    Get {
        /// Key.
        key: String,
        /// Through the leader with a quorum check (else the serving node's state).
        linearizable: bool,
    },
    /// Read keys by prefix.
    Range {
        /// Prefix.
        prefix: String,
        /// As for `Get`.
        linearizable: bool,
        /// Most entries to return.
        limit: usize,
    },
    /// Raft status.
    Status,
    /// Watch events from a revision (0: from now), waiting up to `wait_ms` for some.
    Watch {
        /// Prefix.
        prefix: String,
        /// First revision wanted.
        from: u64,
        /// Long-poll time.
        wait_ms: u64,
    },
    /// Add the named node as a learner (sent by the node itself to the leader).
    Join {
        /// The node name.
        name: String,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// A command's result.
    Write(CmdResult),
    /// A key (or none) at a revision.
    Get(Option<KvEntry>, u64),
    /// Keys at a revision.
    Range(Vec<KvEntry>, u64),
    /// Status.
    Status(KvStatus),
    /// Watch events.
    Watch(WatchBatch),
}

/// How a node takes part in the KV store.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// Voter node names (the same list on every node). Empty: this node alone.
    pub voters: Vec<String>,
    /// Join as a learner: not one of `voters` (which must be given), this node asks the leader
    /// to add it as a non-voting member, then holds a full replica (local reads, watches) and
    /// forwards writes and linearizable reads to the leader.
    pub learner: bool,
    /// Take a snapshot (and compact the log) after this many log entries.
    pub snapshot_every: u64,
    /// How long a request may take, retries and forwarding included.
    pub op_timeout: Duration,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            voters: Vec::new(),
            learner: false,
            snapshot_every: 10_000,
            op_timeout: Duration::from_secs(8),
        }
    }
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasResult {
    /// Whether the comparison held (and the change was made).
    pub ok: bool,
    /// Store revision after the operation.
    pub revision: u64,
    /// The entry as it was when compared.
    pub current: Option<KvEntry>,
}

struct Shared {
    node: String,
    /// The runtime node: its lanes carry Raft RPCs and forwarded requests.
    rt: Node,
    id: NodeId,
    voters: Vec<String>,
    raft: Option<Raft<TypeConfig>>,
    sm: Option<StateMachine>,
    /// Queue of the write batcher (voters only).
    batcher: Option<tokio::sync::mpsc::UnboundedSender<Queued>>,
    client: u64,
    seq: AtomicU64,
    hint: Mutex<Option<String>>,
    op_timeout: Duration,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A handle on the KV store, through this node. Cheap to clone.
#[derive(Clone)]
pub struct Kv {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("node", &self.inner.node)
            .finish()
    }
}

fn handles() -> &'static Mutex<HashMap<String, Kv>> {
    static H: OnceLock<Mutex<HashMap<String, Kv>>> = OnceLock::new();
    H.get_or_init(Default::default)
}

/// The KV handle started on the node named `node` in this process, if any.
pub fn handle(node: &str) -> Option<Kv> {
    handles()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node)
        .cloned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Start the KV store on a node: its Raft member (when a voter), its KV actor under the node's
/// `system` supervisor, the lease reaper, and the admin routes under `/kv/`.
pub async fn start(node: &Node, config: KvConfig) -> Result<Kv, KvError> {
    let name = node.name().to_string();
    let mut voters = config.voters.clone();
    if voters.is_empty() {
        voters.push(name.clone());
    }
    voters.sort();
    voters.dedup();
    let id = node_id(&name);
    let is_voter = voters.contains(&name);
    if config.learner && (is_voter || config.voters.is_empty()) {
        return Err(KvError::Invalid(format!(
            "a KV learner must not be a voter, and needs the voters' names (--kv-voter); node '{name}', voters: {}",
            config.voters.join(", ")
        )));
    }
    let (raft, sm) = if is_voter || config.learner {
        let dir = node.config().data_dir.join("kv");
        let dbs = store::open(&dir).map_err(KvError::Storage)?;
        let sm = StateMachine::new(dbs.sm.clone(), dir).map_err(KvError::Storage)?;
        let rc = openraft::Config {
            cluster_name: "draft-kv".into(),
            heartbeat_interval: 100,
            election_timeout_min: 800,
            election_timeout_max: 1600,
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(10)),
            max_in_snapshot_log_to_keep: (config.snapshot_every / 2).min(500),
            install_snapshot_timeout: 5000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| KvError::Invalid(format!("raft config: {e}")))?;
        let raft = Raft::new(
            id,
            Arc::new(rc),
            net::Network { rt: node.clone() },
            store::LogStore::new(&dbs),
            sm.clone(),
        )
        .await
        .map_err(|e| KvError::Storage(format!("cannot start Raft: {e}")))?;
        (Some(raft), Some(sm))
    } else {
        (None, None)
    };
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let (stop, _) = tokio::sync::watch::channel(false);
    let batcher = raft.as_ref().map(|r| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batch_writes(r.clone(), rx, stop.subscribe()));
        tx
    });
    let kv = Kv {
        inner: Arc::new(Shared {
            node: name.clone(),
            rt: node.clone(),
            id,
            voters: voters.clone(),
            raft,
            sm,
            batcher,
            client: seed ^ now_ms() ^ u64::from(std::process::id()),
            seq: AtomicU64::new(1),
            hint: Mutex::new(None),
            op_timeout: config.op_timeout,
            stop,
        }),
    };
    let sup = node
        .system_supervisor()
        .map_err(|e| KvError::Unavailable(e.to_string()))?;
    actors::start_child(
        &sup,
        ChildSpec::worker("kv", None, KvActor { kv: kv.clone() }, ()),
    )
    .await
    .map_err(|e| KvError::Unavailable(format!("cannot start the KV actor: {e}")))?;
    if config.learner {
        tokio::spawn(join_as_learner(kv.clone()));
    } else if let Some(raft) = &kv.inner.raft {
        let members: BTreeMap<NodeId, KvNode> = voters
            .iter()
            .map(|v| (node_id(v), KvNode { name: v.clone() }))
            .collect();
        match raft.is_initialized().await {
            Ok(false) => match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => tracing::warn!("kv: initialize: {e}"),
            },
            Ok(true) => {
                // A restarted node does not resume leadership on its own (its vote is read back
                // as uncommitted, see store.rs); a lone voter need not wait for its election
                // timeout to elect itself.
                if voters.len() == 1 {
                    if let Err(e) = raft.trigger().elect().await {
                        tracing::warn!("kv: elect: {e}");
                    }
                }
            }
            Err(e) => return Err(KvError::Unavailable(e.to_string())),
        }
        tokio::spawn(reap_leases(kv.clone()));
    }
    handles()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), kv.clone());
    node.add_admin_routes(http::routes(kv.clone()));
    let on_stop = kv.clone();
    node.on_shutdown(move || async move {
        on_stop.inner.stop.send_replace(true);
        if let Some(r) = &on_stop.inner.raft {
            let _ = r.shutdown().await;
        }
        handles()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&on_stop.inner.node);
    });
    tracing::info!(node = %name, voter = is_voter, learner = config.learner, voters = ?voters, "kv started");
    Ok(kv)
}

/// A write waiting in the batcher's queue, and where its result goes.
type Queued = (
    Proposal,
    tokio::sync::oneshot::Sender<Result<CmdResult, KvError>>,
);

/// Most proposals in one batched log entry.
const BATCH_MAX_ITEMS: usize = 256;
/// Most key and value bytes in one batched log entry.
const BATCH_MAX_BYTES: usize = 1 << 20;
/// Batched entries proposed at a time: while they are in flight, new writes queue up and go
/// into the next entry together (one log append, one fsync and one replication round for all).
const BATCH_IN_FLIGHT: usize = 2;

/// Whether a command may share a log entry with others (`Grant` takes the entry's index as
/// the lease id, so it goes alone; so do the internal ones).
fn batchable(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Put { .. } | Command::Delete { .. } | Command::Cas { .. }
    )
}

fn proposal_bytes(p: &Proposal) -> usize {
    let payload = match &p.cmd {
        Command::Put { key, value, .. } => key.len() + value.len(),
        Command::Cas {
            key, expect, new, ..
        } => {
            let e = match expect {
                Expect::Value(Some(v)) => v.len(),
                _ => 0,
            };
            key.len() + e + new.as_ref().map_or(0, |v| v.len())
        }
        Command::Delete { key } => key.len(),
        _ => 0,
    };
    payload + 64
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, KvNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => KvError::NotLeader {
            leader: f.leader_node.map(|n| n.name),
        },
        e => KvError::Unavailable(e.to_string()),
    }
}

/// Group commit: take the writes that queued up while earlier entries were in flight and
/// propose them as one [`Command::Batch`] entry (a lone write goes as itself).
async fn batch_writes(
    raft: Raft<TypeConfig>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Queued>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCH_IN_FLIGHT));
    loop {
        let first = tokio::select! {
            q = rx.recv() => match q {
                Some(q) => q,
                None => return,
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = proposal_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX_ITEMS && bytes < BATCH_MAX_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += proposal_bytes(&q.0);
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if batch.len() == 1 {
                if let Some((p, tx)) = batch.pop() {
                    let r = raft.client_write(p).await;
                    let _ = tx.send(r.map(|r| r.data).map_err(write_error));
                }
                return;
            }
            let (items, txs): (Vec<Proposal>, Vec<_>) = batch.into_iter().unzip();
            let n = items.len();
            let p = Proposal {
                request: None,
                cmd: Command::Batch(items),
            };
            match raft.client_write(p).await {
                Ok(r) => match r.data {
                    CmdResult::Batch(results) if results.len() == n => {
                        for (tx, r) in txs.into_iter().zip(results) {
                            let _ = tx.send(Ok(r));
                        }
                    }
                    other => {
                        for tx in txs {
                            let _ = tx.send(Err(KvError::Unavailable(format!(
                                "unexpected answer to a batch: {other:?}"
                            ))));
                        }
                    }
                },
                Err(e) => {
                    let e = write_error(e);
                    for tx in txs {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// On a learner: ask the leader to add this node as a learner until the membership this node
/// has replicated lists it (at once after a restart).
async fn join_as_learner(kv: Kv) {
    let Some(raft) = kv.inner.raft.clone() else {
        return;
    };
    let mut stop = kv.inner.stop.subscribe();
    let mut metrics = raft.metrics();
    loop {
        let member = metrics
            .borrow_and_update()
            .membership_config
            .membership()
            .get_node(&kv.inner.id)
            .is_some();
        if member {
            tracing::info!(node = %kv.inner.node, "kv: member as a learner");
            return;
        }
        let asked = kv
            .exec(Request::Join {
                name: kv.inner.node.clone(),
            })
            .await;
        if let Err(e) = &asked {
            tracing::debug!("kv: join as a learner: {e}");
        }
        // Wait for the membership to reach this node (or retry the request after a while).
        let wait = if asked.is_ok() { 5_000 } else { 500 };
        tokio::select! {
            _ = stop.changed() => return,
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

/// On the leader: propose the expiry of leases whose time is up.
async fn reap_leases(kv: Kv) {
    let mut stop = kv.inner.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
        let (Some(raft), Some(sm)) = (&kv.inner.raft, &kv.inner.sm) else {
            return;
        };
        if raft.current_leader().await != Some(kv.inner.id) {
            continue;
        }
        let now = now_ms();
        match sm.expired_leases(now).await {
            Ok(ids) if !ids.is_empty() => {
                let p = Proposal {
                    request: None,
                    cmd: Command::Expire { now_ms: now },
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), raft.client_write(p)).await;
            }
            _ => {}
        }
    }
}

fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge {
            what: "key".into(),
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::TooLarge {
            what: "value".into(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

fn validate(cmd: &Command) -> Result<(), KvError> {
    match cmd {
        Command::Put { key, value, .. } => {
            validate_key(key)?;
            validate_value(value)
        }
        Command::Delete { key } => validate_key(key),
        Command::Cas {
            key, expect, new, ..
        } => {
            validate_key(key)?;
            if let Expect::Value(Some(v)) = expect {
                validate_value(v)?;
            }
            if let Some(v) = new {
                validate_value(v)?;
            }
            Ok(())
        }
        Command::Batch(_) => Err(KvError::Invalid(
            "batches are built by the leader, not sent by clients".into(),
        )),
        Command::Grant { ttl_ms, .. } => {
            if *ttl_ms == 0 || *ttl_ms > MAX_TTL_SECS * 1000 {
                return Err(KvError::Invalid(format!(
                    "a lease TTL must be between 1 ms and {MAX_TTL_SECS} s"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn write_result(r: CmdResult) -> Result<CmdResult, KvError> {
    match r {
        CmdResult::Refused(m) => Err(KvError::Lease(m)),
        other => Ok(other),
    }
}

impl Kv {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// Whether this node is a Raft voter.
    pub fn is_voter(&self) -> bool {
        self.inner.raft.is_some() && self.inner.voters.contains(&self.inner.node)
    }

    /// Whether this node is (or asked to be) a Raft learner: a non-voting full replica.
    pub fn is_learner(&self) -> bool {
        self.inner.raft.is_some() && !self.inner.voters.contains(&self.inner.node)
    }

    /// The configured voters.
    pub fn voters(&self) -> &[String] {
        &self.inner.voters
    }

    fn next_id(&self) -> (u64, u64) {
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

    async fn watch_poll(
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

    /// Create a lease with a time to live; keys put with it vanish when it expires.
    pub async fn grant(&self, ttl: Duration) -> Result<u64, KvError> {
        let r = self
            .write(Command::Grant {
                ttl_ms: ttl.as_millis() as u64,
                now_ms: now_ms(),
            })
            .await?;
        match r {
            CmdResult::Lease { id, .. } => Ok(id),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Renew a lease for another TTL.
    pub async fn keep_alive(&self, lease: u64) -> Result<(), KvError> {
        self.write(Command::KeepAlive {
            id: lease,
            now_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    /// End a lease now, deleting its keys.
    pub async fn revoke(&self, lease: u64) -> Result<(), KvError> {
        self.write(Command::Revoke { id: lease }).await.map(|_| ())
    }

    /// Raft status as seen by this node (a non-voter asks a voter).
    pub async fn status(&self) -> Result<KvStatus, KvError> {
        match self.exec(Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn write(&self, cmd: Command) -> Result<CmdResult, KvError> {
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
    pub async fn exec(&self, req: Request) -> Result<Response, KvError> {
        let deadline = Instant::now() + self.inner.op_timeout;
        let needs_leader = matches!(
            req,
            Request::Write { .. }
                | Request::Join { .. }
                | Request::Get {
                    linearizable: true,
                    ..
                }
                | Request::Range {
                    linearizable: true,
                    ..
                }
        );
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
            let hop = match &err {
                KvError::NotLeader { leader: Some(l) } if *l != target => Some(l.clone()),
                KvError::NotLeader { .. } | KvError::Unavailable(_) => None,
                _ => return Err(err),
            };
            if Instant::now() >= deadline {
                return Err(match err {
                    KvError::NotLeader { .. } => KvError::NoQuorum(format!(
                        "no leader within {:?}; a majority of the voters ({}) must be up and connected",
                        self.inner.op_timeout,
                        self.inner.voters.join(", ")
                    )),
                    e => e,
                });
            }
            match hop {
                Some(l) if !attempt.is_multiple_of(4) => target = l,
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    target = self.pick_target(needs_leader, Some(&target)).await;
                }
            }
        }
    }

    async fn pick_target(&self, needs_leader: bool, failed: Option<&str>) -> String {
        let me = &self.inner.node;
        if let Some(raft) = &self.inner.raft {
            if !needs_leader {
                return me.clone();
            }
            if let Some(l) = raft.current_leader().await {
                if let Some(n) = self.inner.voters.iter().find(|v| node_id(v) == l) {
                    return n.clone();
                }
            }
            if self.is_voter() {
                return me.clone();
            }
            // A learner that knows no leader (yet) asks the voters, as a non-member does.
        }
        let hint = self
            .inner
            .hint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(h) = hint {
            if Some(h.as_str()) != failed {
                return h;
            }
        }
        // Rotate through the voters.
        let voters = &self.inner.voters;
        let pos = failed
            .and_then(|f| voters.iter().position(|v| v == f))
            .map(|i| (i + 1) % voters.len())
            .unwrap_or(0);
        voters.get(pos).cloned().unwrap_or_else(|| me.clone())
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
        let timeout = (left + wait).max(Duration::from_millis(500));
        match net::call(&self.inner.rt, target, KvMsg::Client, req, timeout).await {
            Ok(r) => r,
            Err(net::CallFail::Unreachable(m)) | Err(net::CallFail::NoAnswer(m)) => {
                Err(KvError::Unavailable(m))
            }
            Err(net::CallFail::Garbled(m)) => Err(KvError::Unavailable(format!(
                "unreadable answer from node '{target}': {m}"
            ))),
        }
    }

    fn raft(&self) -> Result<&Raft<TypeConfig>, KvError> {
        self.inner
            .raft
            .as_ref()
            .ok_or(KvError::NotLeader { leader: None })
    }

    fn sm(&self) -> Result<&StateMachine, KvError> {
        self.inner
            .sm
            .as_ref()
            .ok_or(KvError::NotLeader { leader: None })
    }

    fn leader_name(&self, id: Option<NodeId>) -> Option<String> {
        id.and_then(|l| self.inner.voters.iter().find(|v| node_id(v) == l).cloned())
    }

    /// Serve a request on this node (no forwarding).
    pub(crate) async fn serve(&self, req: Request) -> Result<Response, KvError> {
        match req {
            Request::Write { id, cmd } => {
                validate(&cmd)?;
                let raft = self.raft()?;
                let p = Proposal { request: id, cmd };
                let timeout = Duration::from_secs(5);
                let res = match (&self.inner.batcher, batchable(&p.cmd)) {
                    (Some(batcher), true) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        batcher
                            .send((p, tx))
                            .map_err(|_| KvError::Unavailable("the KV store is stopping".into()))?;
                        match tokio::time::timeout(timeout, rx).await {
                            Err(_) => None,
                            Ok(Ok(r)) => Some(r),
                            Ok(Err(_)) => {
                                Some(Err(KvError::Unavailable("the KV store is stopping".into())))
                            }
                        }
                    }
                    _ => tokio::time::timeout(timeout, raft.client_write(p))
                        .await
                        .ok()
                        .map(|r| r.map(|r| r.data).map_err(write_error)),
                };
                match res {
                    None => Err(KvError::NoQuorum(
                        "the write was not committed within 5 s (is a majority of the voters up?); it may still be applied"
                            .into(),
                    )),
                    Some(r) => r.map(Response::Write),
                }
            }
            Request::Get { key, linearizable } => {
                validate_key(&key)?;
                if linearizable {
                    self.linearize().await?;
                }
                let (e, rev) = self.sm()?.get(key).await.map_err(KvError::Storage)?;
                Ok(Response::Get(e, rev))
            }
            Request::Range {
                prefix,
                linearizable,
                limit,
            } => {
                if linearizable {
                    self.linearize().await?;
                }
                let (e, rev) = self
                    .sm()?
                    .range(prefix, limit.min(10_000))
                    .await
                    .map_err(KvError::Storage)?;
                Ok(Response::Range(e, rev))
            }
            Request::Status => self.local_status().await.map(Response::Status),
            Request::Join { name } => {
                validate_key(&name)?;
                if self.inner.voters.contains(&name) {
                    return Err(KvError::Invalid(format!(
                        "node '{name}' is a configured voter, not a learner"
                    )));
                }
                let raft = self.raft()?;
                let id = node_id(&name);
                let known = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .is_some();
                if !known {
                    let add = raft.add_learner(id, KvNode { name: name.clone() }, false);
                    match tokio::time::timeout(Duration::from_secs(5), add).await {
                        Err(_) => {
                            return Err(KvError::NoQuorum(format!(
                                "adding learner '{name}' was not committed within 5 s"
                            )))
                        }
                        Ok(Err(e)) => return Err(write_error(e)),
                        Ok(Ok(_)) => tracing::info!(learner = %name, "kv: learner added"),
                    }
                }
                Ok(Response::Write(CmdResult::None))
            }
            Request::Watch {
                prefix,
                from,
                wait_ms,
            } => {
                let sm = self.sm()?;
                let mut rx = sm.subscribe_revision();
                let mut from = if from == 0 { sm.revision() + 1 } else { from };
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(30_000));
                loop {
                    let b = sm.history(prefix.clone(), from, 1000).await?;
                    if !b.events.is_empty() || tokio::time::Instant::now() >= deadline {
                        return Ok(Response::Watch(b));
                    }
                    from = b.next;
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        let b = sm.history(prefix.clone(), from, 1000).await?;
                        return Ok(Response::Watch(b));
                    }
                }
            }
        }
    }

    async fn linearize(&self) -> Result<(), KvError> {
        let raft = self.raft()?;
        match tokio::time::timeout(Duration::from_secs(5), raft.ensure_linearizable()).await {
            Err(_) => Err(KvError::NoQuorum(
                "the leader could not confirm its leadership with a majority within 5 s".into(),
            )),
            Ok(Ok(_)) => self.wait_own_term_applied(raft).await,
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(KvError::NotLeader {
                    leader: f.leader_node.map(|n| n.name),
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                Err(KvError::NoQuorum(q.to_string()))
            }
            Ok(Err(e)) => Err(KvError::Unavailable(e.to_string())),
        }
    }

    /// openraft 0.9 uses the leader's commit index as the read index even before the blank
    /// entry of its term is committed; a new leader's commit index can lag what the previous
    /// leader acknowledged. Wait until an entry of the current term is applied: then everything
    /// committed before the term is applied too.
    async fn wait_own_term_applied(&self, raft: &Raft<TypeConfig>) -> Result<(), KvError> {
        let mut rx = raft.metrics();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            {
                let m = rx.borrow_and_update();
                if m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term) {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(KvError::Unavailable("Raft stopped".into())),
                Err(_) => {
                    return Err(KvError::NoQuorum(
                        "the new leader could not commit an entry of its term within 5 s".into(),
                    ))
                }
            }
        }
    }

    async fn local_status(&self) -> Result<KvStatus, KvError> {
        let raft = self.raft()?;
        let m = raft.metrics().borrow().clone();
        let committed = raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let sm = self.sm()?;
        Ok(KvStatus {
            node: self.inner.node.clone(),
            role: role.into(),
            leader: self.leader_name(m.current_leader),
            voters: {
                let mut v: Vec<String> = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .filter_map(|id| self.leader_name(Some(id)))
                    .collect();
                v.sort();
                v
            },
            learners: {
                let membership = m.membership_config.membership();
                let mut l: Vec<String> = membership
                    .learner_ids()
                    .filter_map(|id| membership.get_node(&id).map(|n| n.name.clone()))
                    .collect();
                l.sort();
                l
            },
            term: m.current_term,
            commit_index: committed.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            revision: sm.revision(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        })
    }

    /// Serve a Raft RPC from another voter.
    pub(crate) async fn serve_raft(&self, req: RaftReq) -> RaftResp {
        let Some(raft) = &self.inner.raft else {
            return RaftResp::Refused(format!(
                "node '{}' is not a KV voter (check --kv-voter on every node)",
                self.inner.node
            ));
        };
        match req {
            RaftReq::Append(r) => RaftResp::Append(raft.append_entries(r).await),
            RaftReq::Vote(r) => RaftResp::Vote(raft.vote(r).await),
            RaftReq::Snapshot(r) => RaftResp::Snapshot(raft.install_snapshot(r).await),
        }
    }

    /// Ask for a snapshot now (log compaction follows); for tests and operators.
    pub async fn trigger_snapshot(&self) -> Result<(), KvError> {
        self.raft()?
            .trigger()
            .snapshot()
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
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
