//! Data types of the KV store: what is stored, what is proposed through Raft, what is answered.

use std::{
    fmt,
    io::Cursor,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Raft node id: a stable 64-bit hash of the node's name (see [`node_id`]).
pub type NodeId = u64;

/// What Raft knows about a member: its runtime node name (used to find its KV actor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvNode {
    /// The runtime node name.
    pub name: String,
}

impl fmt::Display for KvNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the KV store.
    pub TypeConfig:
        D = Proposal,
        R = CmdResult,
        NodeId = NodeId,
        Node = KvNode,
);

/// The Raft id of a node name (FNV-1a, 64 bit): the same on every node and across restarts.
///
/// ```
/// assert_eq!(registry::kv::node_id("node1"), registry::kv::node_id("node1"));
/// assert_ne!(registry::kv::node_id("node1"), registry::kv::node_id("node2"));
/// ```
pub fn node_id(name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stored key with its value and revisions (etcd-style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Revision at which the key was created (since its last deletion).
    pub create_revision: u64,
    /// Revision of the last change of the key.
    pub mod_revision: u64,
    /// Number of changes since creation (1 after the first put).
    pub version: u64,
    /// Lease the key is attached to, if any: the key is deleted when the lease expires.
    pub lease: Option<u64>,
}

/// What a compare-and-swap compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The current value (`None`: the key must be absent).
    Value(Option<String>),
    /// The key's `mod_revision` (0: the key must be absent).
    Revision(u64),
}

/// A state-machine command, proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set a key (optionally attached to a lease).
    Put {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Lease to attach the key to.
        lease: Option<u64>,
    },
    /// Remove a key.
    Delete {
        /// Key.
        key: String,
    },
    /// Compare, then set (`new: Some`) or delete (`new: None`).
    Cas {
        /// Key.
        key: String,
        /// The condition.
        expect: Expect,
        /// The new value, or `None` to delete.
        new: Option<String>,
        /// Lease to attach the key to.
        lease: Option<u64>,
    },
    /// Create a lease (its id is the log index of this command).
    Grant {
        /// Time to live.
        ttl_ms: u64,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Push a lease's expiry to `now_ms + ttl` (no longer proposed: keep-alives are timed by
    /// the leader's monotonic clock, see `lease_clock`; applied as before for old logs).
    KeepAlive {
        /// Lease id.
        id: u64,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Delete a lease and its keys.
    Revoke {
        /// Lease id.
        id: u64,
    },
    /// Delete every lease (and its keys) whose expiry is at or before `now_ms` (no longer
    /// proposed: the leader proposes a `Revoke` per expired lease; applied as before for old
    /// logs).
    Expire {
        /// The leader's clock.
        now_ms: u64,
    },
    /// Several proposals in one log entry, applied in order, each with its own request id
    /// (built by the leader to commit concurrent writes together; never sent by clients).
    Batch(Vec<Proposal>),
    /// A multi-key transaction (etcd's `Txn`, also its `Put` and `DeleteRange`): one revision
    /// for all of its changes.
    Txn(super::txn::Txn),
    /// Drop the watch history before `revision` (etcd's `Compact`).
    Compact {
        /// The new compact revision.
        revision: u64,
    },
}

/// A command with the identity of its request, so a retried proposal is applied once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// `(client, seq)`: unique per request; `None` for internal commands.
    pub request: Option<(u64, u64)>,
    /// The command.
    pub cmd: Command,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.cmd)
    }
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdResult {
    /// Nothing to say (membership entries, blanks).
    #[default]
    None,
    /// A put: the new revision and the previous entry.
    Put {
        /// Revision of the change.
        revision: u64,
        /// The entry before the change.
        prev: Option<KvEntry>,
    },
    /// A delete: the revision after it and the removed entry (`None`: there was nothing).
    Delete {
        /// Store revision after the command.
        revision: u64,
        /// The removed entry.
        prev: Option<KvEntry>,
    },
    /// A compare-and-swap.
    Cas {
        /// Whether the comparison held (and the change was made).
        ok: bool,
        /// Store revision after the command.
        revision: u64,
        /// The entry as it was when compared.
        current: Option<KvEntry>,
    },
    /// A lease operation.
    Lease {
        /// Lease id.
        id: u64,
        /// Its time to live.
        ttl_ms: u64,
    },
    /// The command was refused (e.g. unknown lease); nothing changed.
    Refused(String),
    /// The results of a [`Command::Batch`], in order.
    Batch(Vec<CmdResult>),
    /// The result of a [`Command::Txn`].
    Txn(super::txn::TxnResult),
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Time to live.
    pub ttl_ms: u64,
    /// Wall-clock expiry (ms since the epoch), from the proposer's clock.
    pub expires_at_ms: u64,
    /// Keys attached to it.
    pub keys: Vec<String>,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A key was set.
    Put,
    /// A key was removed.
    Delete,
}

/// One change of one key, in revision order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Revision of the change (strictly increasing).
    pub revision: u64,
    /// Put or delete.
    pub kind: EventKind,
    /// The key.
    pub key: String,
    /// The new value (puts only).
    pub value: Option<String>,
}

/// Status of the KV store as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStatus {
    /// The node that answered.
    pub node: String,
    /// The id of the store it belongs to (`None`: it has not bootstrapped or joined one).
    #[serde(default)]
    pub store: Option<String>,
    /// Its role: `leader`, `follower`, `candidate`, `learner`, `joining` (waiting to be added),
    /// `removed` (taken out of the store) or `no store`.
    pub role: String,
    /// The current leader's node name, if known.
    pub leader: Option<String>,
    /// Voter node names.
    pub voters: Vec<String>,
    /// Learner node names (non-voting full replicas), as the answering node knows them.
    pub learners: Vec<String>,
    /// Current term.
    pub term: u64,
    /// Index of the last committed log entry (as far as the answering node knows).
    pub commit_index: u64,
    /// Index of the last applied log entry.
    pub last_applied: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Store revision (number of key changes so far).
    pub revision: u64,
    /// Index of the last snapshot, if any.
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index are purged (compacted into the snapshot).
    pub purged_index: Option<u64>,
    /// The answering node's etcd v3 API address, if it serves one.
    #[serde(default)]
    pub etcd_addr: Option<String>,
}

/// A page of watch events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchBatch {
    /// Events with `revision >= from`, in order.
    pub events: Vec<WatchEvent>,
    /// Where to continue.
    pub next: u64,
}

/// The wall clock in milliseconds since the Unix epoch (0 if the clock is before it): what
/// lease commands carry and what request ids are salted with, never what times a lease.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
