//! The requests a node serves (its own clients' and those forwarded by other nodes), and their
//! answers: one enum matched in one place ([`Kv::serve`](super::Kv)).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    txn::{RangeQuery, RangeResult},
    CmdResult, Command, KvEntry, KvStatus, WatchBatch,
};

/// A client request (also the message forwarded between nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
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
        /// The store it belongs to (the leader refuses another store's node).
        store: String,
    },
    /// List or change the store's members (served by the leader).
    Members(MemberOp),
    /// A lease operation timed by the leader's clock (served by the leader).
    Lease(LeaseOp),
    /// A range query in etcd's model.
    Query {
        /// The query.
        query: RangeQuery,
        /// As for `Get`.
        linearizable: bool,
    },
}

/// A lease operation served by the leader without a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LeaseOp {
    /// A keep-alive: the lease lives another full TTL.
    Renew {
        /// Lease id.
        id: u64,
    },
    /// TTL, time left and keys.
    Info {
        /// Lease id.
        id: u64,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Response {
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
    /// The store's members.
    Members(Vec<MemberInfo>),
    /// A lease as the leader times it.
    Lease(LeaseInfo),
    /// The answer to a query.
    Query(RangeResult),
}

/// A membership operation (`dctl kv members ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MemberOp {
    /// Every member with its role, state and replication progress.
    List,
    /// Add a node: as a learner, then (unless `learner`) promote it to voter once caught up.
    Add {
        /// Node name.
        name: String,
        /// Stop at learner.
        learner: bool,
    },
    /// Remove a node (voter or learner) from the store.
    Remove {
        /// Node name.
        name: String,
    },
    /// Make a learner a voter.
    Promote {
        /// Node name.
        name: String,
    },
}

/// A lease as the leader times it (see [`Kv::lease_info`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Lease id.
    pub id: u64,
    /// The TTL it was granted with.
    pub ttl: Duration,
    /// Time left before it expires.
    pub remaining: Duration,
    /// Keys attached to it.
    pub keys: Vec<String>,
}

/// One member of the store, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// Raft node id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: String,
    /// Whether it is the leader.
    pub leader: bool,
    /// `alive`, `dead` (per the failure detector) or `unknown` (not in the cluster view).
    pub state: String,
    /// Last log index known replicated to it.
    pub match_index: Option<u64>,
    /// How many log entries it is behind the leader's last one.
    pub lag: Option<u64>,
}
