//! The KV store (CP): Raft ([openraft] 0.9) between the KV actors of a cluster's nodes, with the
//! log, vote and state machine in [redb] (fsync'd), snapshots and log compaction.
//!
//! * **One store per cluster** (see the `membership` module docs, and the README): the store is bootstrapped
//!   once, every later node joins it as a learner and the leader's autopilot promotes learners
//!   to voters up to the target (`--kv-voters`, 3) and replaces voters dead for longer than a
//!   grace period. A store has an id (`<data-dir>/kv/store.id`); Raft RPCs carry it and a node
//!   refuses another store's; a node whose data dir holds another cluster's store refuses to
//!   start ([`KvError::ForeignStore`]). `--kv-voter NAME` fixes the voters instead.
//! * Every node runs a KV actor (process group `kv@<node>`) and a Raft instance (a member once
//!   it joined). Raft RPCs travel as messages between KV actors over the actor transport.
//!   Requests made on a non-leader are forwarded to the leader; learners hold a full replica
//!   and serve serializable reads and watches themselves.
//! * Writes: concurrent writes on the leader are group-committed ([`Command::Batch`]), so one
//!   fsync and one replication round serve them all.
//! * API: [`Kv::get`] (linearizable by default), [`Kv::put`], [`Kv::delete`], [`Kv::cas`],
//!   [`Kv::range`], [`Kv::watch`] (ordered events from a revision), leases ([`Kv::grant`],
//!   [`Kv::put_with_lease`], [`Kv::keep_alive`], [`Kv::revoke`]) and on top of them [`Kv::lock`]
//!   (a lock / leader election) and [`ConfigWatcher`] (a service's config, live); membership:
//!   [`Kv::members`], [`Kv::add_member`], [`Kv::remove_member`], [`Kv::promote_member`];
//!   etcd's model (what the [`crate::etcd`] API serves): [`Kv::txn`] (compares, then one branch
//!   of puts / deletes / ranges, at **one** revision), [`Kv::query`] (key ranges, sort, limit,
//!   a past revision), [`Kv::compact`].
//! * Revisions are etcd's: every write command that changes something takes one new revision
//!   shared by all its changes (a transaction, a lease revoke); the watch history keeps, per
//!   revision, each change with the entry before it (so a past revision can be read back).
//! * Leases are timed by the leader only, on its monotonic clock (`lease_clock`): keep-alives
//!   go to the leader without a log entry, a new leader re-arms every lease with its full TTL,
//!   and the leader proposes `Revoke` for an expired one.
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

mod batcher;
mod client;
mod db_file;
mod etcd_ops;
mod http;
mod lease_clock;
mod leases;
mod live_config;
mod lock;
mod members_api;
mod membership;
mod net;
mod query;
mod request;
mod routing;
mod server;
mod store;
mod txn;
mod types;
mod validate;

#[cfg(test)]
mod fuzz_tests;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actors::ChildSpec;
use openraft::{error::InitializeError, error::RaftError, Raft, SnapshotPolicy};
use runtime::Node;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use client::{handle, Kv, Watch};
pub use etcd_ops::{cluster_id, HeaderInfo};
#[cfg(test)]
pub(crate) use etcd_ops::{validate_range, validate_txn};
pub use live_config::ConfigWatcher;
pub use lock::LockGuard;
pub use membership::MAX_VOTERS;
pub use request::{LeaseInfo, MemberInfo};
pub use txn::{
    Compare, CompareOp, CompareTarget, KeyRange, RangeEnd, RangeQuery, RangeResult, SortTarget,
    Txn, TxnOp, TxnOpResult, TxnResult,
};
pub use types::{
    node_id, CmdResult, Command, EventKind, Expect, KvEntry, KvNode, KvStatus, Lease, NodeId,
    Proposal, TypeConfig, WatchBatch, WatchEvent,
};

use membership::Policy;
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
    /// This node's data dir holds another store than the cluster's: joining would split the
    /// store, so the node refuses to start.
    #[error("the data dir {dir} holds KV store {ours}, but this cluster's KV store is {theirs} (node '{peer}'): this node belongs to another cluster. Start it with a fresh --data-dir (or move {dir} away) to join this cluster")]
    ForeignStore {
        /// `<data-dir>/kv`.
        dir: String,
        /// The store in the data dir.
        ours: String,
        /// The cluster's store.
        theirs: String,
        /// A node that gossips it.
        peer: String,
    },
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
            KvError::ForeignStore { .. } => 409,
            KvError::Compacted { .. } => 410,
            KvError::NotLeader { .. } | KvError::NoQuorum(_) | KvError::Unavailable(_) => 503,
            KvError::Storage(_) => 500,
        }
    }
}

/// How a node takes part in the KV store.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// Static voters (`--kv-voter`, the same list on every node): these nodes form the store
    /// and the autopilot is off. Empty (the default): dynamic membership.
    pub voters: Vec<String>,
    /// Join as a learner (a non-voting full replica that serves serializable reads and watches
    /// and forwards writes), never promoted to voter automatically.
    pub learner: bool,
    /// Bootstrap the store once this many nodes without a store are seen (the one with the
    /// smallest name does it). `None`: 1 for a node without seeds (a lone node is a store of
    /// one), 0 ("only join, never bootstrap") for a node with seeds.
    pub bootstrap_expect: Option<usize>,
    /// Wanted number of voters (odd, 1 to [`MAX_VOTERS`]); learners are promoted up to it.
    pub target_voters: usize,
    /// A voter dead (per the failure detector) this long is replaced by a live learner.
    pub dead_grace: Duration,
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
            bootstrap_expect: None,
            target_voters: 3,
            dead_grace: Duration::from_secs(30),
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

/// Start the KV store on a node: its Raft instance and, under the node's `system` supervisor,
/// the write batcher (`kv-batcher`), the KV actor (`kv`), the membership loop (`kv-membership`:
/// bootstrap / join / autopilot) and the lease reaper (`kv-lease-reaper`); then the admin
/// routes under `/kv/`.
///
/// Fails with [`KvError::ForeignStore`] when the node's data dir holds another store than the
/// one its cluster gossips, and with [`KvError::Invalid`] on a bad configuration.
pub async fn start(node: &Node, config: KvConfig) -> Result<Kv, KvError> {
    let name = node.name().to_string();
    let mut voters = config.voters.clone();
    voters.sort();
    voters.dedup();
    let id = node_id(&name);
    if config.learner && voters.contains(&name) {
        return Err(KvError::Invalid(format!(
            "node '{name}' is both a KV learner and a voter (--kv-voter {name})"
        )));
    }
    if config.target_voters == 0
        || config.target_voters > MAX_VOTERS
        || config.target_voters.is_multiple_of(2)
    {
        return Err(KvError::Invalid(format!(
            "the KV voter target must be odd, 1 to {MAX_VOTERS} (got {})",
            config.target_voters
        )));
    }
    let seeded = !node.config().seeds.is_empty();
    let expect = match (
        config.learner || !voters.is_empty(),
        config.bootstrap_expect,
    ) {
        (true, _) => 0,
        (false, Some(n)) => n,
        (false, None) => usize::from(!seeded),
    };
    let policy = Policy {
        static_voters: voters.clone(),
        expect,
        target_voters: config.target_voters,
        dead_grace: config.dead_grace,
        learner_only: config.learner,
        settle: if expect == 1 && !seeded {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        },
    };
    let dir = node.config().data_dir.join("kv");
    let dbs = store::open(&dir).map_err(KvError::Storage)?;
    let mut store_id = membership::read_store_id(&dir)?;
    if !voters.is_empty() {
        let want = membership::static_store_id(&voters);
        match &store_id {
            Some(s) if *s != want => {
                return Err(KvError::Invalid(format!(
                    "the data dir {} holds KV store {s}, not the store of the voters {} given by --kv-voter ({want}); use a fresh --data-dir",
                    dir.display(),
                    voters.join(", ")
                )))
            }
            Some(_) => {}
            None => {
                membership::write_store_id(&dir, &want)?;
                store_id = Some(want);
            }
        }
    }
    let sm = StateMachine::new(dbs.sm.clone(), dir.clone()).map_err(KvError::Storage)?;
    store::check_snapshot_file(&sm).map_err(KvError::Storage)?;
    let (store_tx, store_rx) = tokio::sync::watch::channel(store_id.clone());
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
        net::Network {
            rt: node.clone(),
            store: store_rx,
        },
        store::LogStore::new(&dbs),
        sm.clone(),
    )
    .await
    .map_err(|e| KvError::Storage(format!("cannot start Raft: {e}")))?;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| KvError::Unavailable(e.to_string()))?;
    if initialized && store_id.is_none() {
        // A data dir from before store ids: it was a store of its own.
        let legacy = membership::new_store_id();
        membership::write_store_id(&dir, &legacy)?;
        store_tx.send_replace(Some(legacy.clone()));
        store_id = Some(legacy);
    }
    let (stop, _) = tokio::sync::watch::channel(false);
    let (btx, brx) = tokio::sync::mpsc::unbounded_channel();
    let queue: batcher::Queue = Arc::new(tokio::sync::Mutex::new(brx));
    let client = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            ^ types::now_ms()
            ^ u64::from(std::process::id())
    };
    let kv = Kv {
        inner: Arc::new(client::Shared {
            node: name.clone(),
            rt: node.clone(),
            id,
            dir: dir.clone(),
            policy,
            raft,
            sm,
            batcher: btx,
            store: store_tx,
            peers: std::sync::Mutex::new(Vec::new()),
            client,
            seq: std::sync::atomic::AtomicU64::new(1),
            hint: std::sync::Mutex::new(None),
            op_timeout: config.op_timeout,
            stop,
            lease_clock: Default::default(),
            etcd_addr: Default::default(),
        }),
    };
    if let (Some(s), true) = (&store_id, seeded) {
        membership::check_foreign(&kv, s, Duration::from_secs(3)).await?;
    }
    let sup = node
        .system_supervisor()
        .map_err(|e| KvError::Unavailable(e.to_string()))?;
    // Writes queue up in the batcher's channel until it runs; it starts before the actor that
    // forwards writes to it, and so stops after it.
    let writer = kv.clone();
    let batcher = ChildSpec::infallible_task("kv-batcher", move || {
        let (raft, stop) = (writer.inner.raft.clone(), writer.inner.stop.subscribe());
        batcher::batch_writes(raft, queue.clone(), stop)
    });
    start_loop(&sup, batcher).await?;
    actors::start_child(
        &sup,
        ChildSpec::worker("kv", None, net::KvActor { kv: kv.clone() }, ()),
    )
    .await
    .map_err(|e| KvError::Unavailable(format!("cannot start the KV actor: {e}")))?;
    let raft = &kv.inner.raft;
    if !voters.is_empty() && voters.contains(&name) && !initialized {
        let members: BTreeMap<NodeId, KvNode> = voters
            .iter()
            .map(|v| (node_id(v), KvNode { name: v.clone() }))
            .collect();
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => tracing::warn!("kv: initialize: {e}"),
        }
    } else if initialized && kv.voters() == [name.clone()] {
        // A restarted node does not resume leadership on its own (its vote is read back as
        // uncommitted, see store/mod.rs); a lone voter need not wait for its election timeout.
        if let Err(e) = raft.trigger().elect().await {
            tracing::warn!("kv: elect: {e}");
        }
    }
    let member = kv.clone();
    let membership =
        ChildSpec::infallible_task("kv-membership", move || membership::run(member.clone()));
    start_loop(&sup, membership).await?;
    let reaper = kv.clone();
    let reaper = ChildSpec::infallible_task("kv-lease-reaper", move || {
        leases::reap_leases(reaper.clone())
    });
    start_loop(&sup, reaper).await?;
    client::handles()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), kv.clone());
    node.add_admin_routes(http::routes(kv.clone()));
    let on_stop = kv.clone();
    node.on_shutdown(move || async move {
        on_stop.inner.stop.send_replace(true);
        let _ = on_stop.inner.raft.shutdown().await;
        client::handles()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&on_stop.inner.node);
    });
    tracing::info!(node = %name, store = ?store_id, static_voters = ?voters, expect, learner = config.learner, "kv started");
    Ok(kv)
}

/// Start one of the KV's loops (a [`ChildSpec::infallible_task`]) under the node's `system` supervisor.
/// Each returns only when the KV stops (its `stop` watch, or every handle gone), so it is not
/// restarted then; a panic restarts it.
async fn start_loop(
    sup: &ractor::ActorRef<actors::SupervisorMsg>,
    spec: ChildSpec,
) -> Result<(), KvError> {
    let id = spec.id().to_string();
    actors::start_child(sup, spec)
        .await
        .map(|_| ())
        .map_err(|e| KvError::Unavailable(format!("cannot start {id}: {e}")))
}
