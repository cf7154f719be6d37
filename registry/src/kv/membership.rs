//! Membership: one KV store per cluster, and who votes in it.
//!
//! **Store identity.** A store has an id, chosen when it is bootstrapped and kept in
//! `<data-dir>/kv/store.id`. Every node gossips its store id (key `kv`), Raft RPCs carry it
//! ([`RaftEnvelope`](super::net::RaftEnvelope)) and a node refuses RPCs of another store. A node
//! whose data dir holds another store than the one its cluster gossips refuses to start.
//!
//! **Bootstrap, once.** A node without a store waits for one to appear in gossip and then joins
//! it. Only when no live node gossips a store, at least `bootstrap_expect` nodes without a store
//! are seen (this one included) and the view has not changed for a moment, does the node with
//! the smallest name among those allowed to bootstrap create the store (as its only voter).
//! `bootstrap_expect` defaults to 1 for a node started without `--seed` (a lone node is a store
//! of one) and to 0, "never bootstrap, only join", for a node started with `--seed`: nodes
//! started by hand with `--seed` join the store of the node they were pointed at, and never
//! make a second one.
//!
//! **Join and autopilot.** A node that adopted a store asks its leader to add it as a learner
//! ([`Request::Join`](super::request::Request::Join)). The leader promotes live, caught-up learners to voters while there are
//! fewer voters than the target (`--kv-voters`, odd, default 3), always keeping an odd number,
//! and replaces a voter that has been dead for longer than the grace period by a live learner
//! (one joint-consensus change). Nodes started with `--kv-learner` are never promoted
//! automatically. A removed or replaced node does not re-join by itself (`members add` does).
//!
//! **Static voters.** `--kv-voter NAME` (the same list on every node) fixes the voter set
//! instead: those nodes initialize the store together, the store id is derived from the list,
//! and the autopilot stays off.
//!
//! **Membership commands** ([`MemberOp`](super::request::MemberOp)) run on the leader and are
//! refused, with the reason, when the new voter set would not have a live majority
//! ([`check_quorum`](decide::check_quorum)).

mod commands;
mod decide;
mod store_id;
mod task;
mod view;

pub(crate) use store_id::{new_store_id, read_store_id, static_store_id, write_store_id};
pub(crate) use task::{check_foreign, run};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The gossip key a node publishes its KV state under.
pub(crate) const GOSSIP_KEY: &str = "kv";
/// A learner at most this many log entries behind the leader counts as caught up.
const CAUGHT_UP_LAG: u64 = 64;
/// Most voters a store may have.
pub const MAX_VOTERS: usize = 7;

/// How this node takes part in deciding the membership.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `--kv-voter`: a fixed voter set (static mode); empty: dynamic membership.
    pub(crate) static_voters: Vec<String>,
    /// Bootstrap the store once this many nodes without a store are seen (0: never).
    pub(crate) expect: usize,
    /// Wanted number of voters (odd).
    pub(crate) target_voters: usize,
    /// A voter dead this long is replaced by a live learner.
    pub(crate) dead_grace: Duration,
    /// Never promote this node to voter automatically.
    pub(crate) learner_only: bool,
    /// How long the view must be unchanged before bootstrapping.
    pub(crate) settle: Duration,
}

impl Policy {
    fn is_static(&self) -> bool {
        !self.static_voters.is_empty()
    }
}

/// What a node gossips about its KV state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Advert {
    /// Its store.
    pub(crate) store: Option<String>,
    /// Whether it is in its store's membership.
    pub(crate) member: bool,
    /// Never promote it automatically.
    pub(crate) learner_only: bool,
    /// Its bootstrap-expect (0: it never bootstraps).
    pub(crate) expect: usize,
}
