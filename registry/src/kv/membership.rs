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
//! ([`Request::Join`]). The leader promotes live, caught-up learners to voters while there are
//! fewer voters than the target (`--kv-voters`, odd, default 3), always keeping an odd number,
//! and replaces a voter that has been dead for longer than the grace period by a live learner
//! (one joint-consensus change). Nodes started with `--kv-learner` are never promoted
//! automatically. A removed or replaced node does not re-join by itself (`members add` does).
//!
//! **Static voters.** `--kv-voter NAME` (the same list on every node) fixes the voter set
//! instead: those nodes initialize the store together, the store id is derived from the list,
//! and the autopilot stays off.
//!
//! **Membership commands** ([`MemberOp`]) run on the leader and are refused, with the reason,
//! when the new voter set would not have a live majority ([`check_quorum`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{BuildHasher, Hasher},
    path::Path,
    time::{Duration, Instant},
};

use openraft::{ChangeMembers, ServerState};
use runtime::MemberState;
use serde::{Deserialize, Serialize};

use super::{
    node_id,
    request::{MemberInfo, MemberOp, Request, Response},
    validate::write_error,
    CmdResult, Kv, KvError, KvNode, NodeId,
};

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

// ---- store identity ---------------------------------------------------------------------------

fn store_file(dir: &Path) -> std::path::PathBuf {
    dir.join("store.id")
}

/// Whether `id` looks like a store id (what this code writes: `[a-z0-9-]`, 1-64 characters).
pub(crate) fn valid_store_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The check written after a store id in its file: 8 hex digits of its SHA-256.
fn store_id_check(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `id` has the shape of an id written before the check was added: 32 hex digits
/// ([`new_store_id`]) or `static-` and 16 ([`static_store_id`]).
fn legacy_store_id(id: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    hex(id, 32) || id.strip_prefix("static-").is_some_and(|h| hex(h, 16))
}

/// The store id in a `store.id` file's text: `ID CHECK` (or a bare id of the legacy shape).
fn parse_store_id(text: &str) -> Option<String> {
    let line = text.strip_suffix('\n')?;
    match line.split_once(' ') {
        Some((id, check)) => {
            (valid_store_id(id) && check == store_id_check(id)).then(|| id.to_string())
        }
        None => legacy_store_id(line).then(|| line.to_string()),
    }
}

/// The store id kept in `dir` (`None`: none yet). A corrupt file is an error, not "none".
pub(crate) fn read_store_id(dir: &Path) -> Result<Option<String>, KvError> {
    let path = store_file(dir);
    match std::fs::read(&path) {
        Ok(b) => match std::str::from_utf8(&b).ok().and_then(parse_store_id) {
            Some(id) => Ok(Some(id)),
            None => Err(KvError::Storage(format!(
                "{} is corrupt (not a KV store id with its check: {:?}); restore it from a backup, or move {} away and start the node again to join as a new member (after `dctl kv members remove` of this node on a live one)",
                path.display(),
                String::from_utf8_lossy(&b).chars().take(80).collect::<String>(),
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KvError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Write the store id durably (temp file, fsync, rename, fsync of the directory), with its
/// check.
pub(crate) fn write_store_id(dir: &Path, id: &str) -> Result<(), KvError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| KvError::Storage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("store.id.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(format!("{id} {}\n", store_id_check(id)).as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, store_file(dir)).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A fresh random store id.
pub(crate) fn new_store_id() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{a:016x}{:016x}", b ^ super::types::now_ms())
}

/// The store id of a static voter set (the same on every node given the same `--kv-voter`s).
pub(crate) fn static_store_id(voters: &[String]) -> String {
    let mut v = voters.to_vec();
    v.sort();
    v.dedup();
    format!("static-{:016x}", node_id(&v.join(",")))
}

// ---- pure decisions ---------------------------------------------------------------------------

/// Refuse a voter set without a live majority: `healthy` are the nodes that are up (and, for
/// new voters, caught up).
pub(crate) fn check_quorum(
    new_voters: &BTreeSet<String>,
    healthy: &BTreeSet<String>,
) -> Result<(), String> {
    if new_voters.is_empty() {
        return Err("the store needs at least one voter".into());
    }
    let up: Vec<&String> = new_voters.intersection(healthy).collect();
    let need = new_voters.len() / 2 + 1;
    if up.len() < need {
        let down: Vec<&String> = new_voters.difference(healthy).collect();
        return Err(format!(
            "it would lose the quorum: of the new voters {:?}, {} are up and caught up ({:?}), {need} are needed (down or behind: {:?})",
            new_voters, up.len(), up, down
        ));
    }
    Ok(())
}

/// How many voters to have: at most `target`, never more than the candidates allow, and odd.
pub(crate) fn wanted_voters(voters: usize, eligible: usize, target: usize) -> usize {
    let can = (voters + eligible).min(target.max(1));
    let odd = if can.is_multiple_of(2) { can - 1 } else { can };
    odd.max(voters.min(target.max(1)))
}

/// The bootstrap decision of a node without a store, from what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Join this store (the only one gossiped).
    Adopt(String),
    /// Several stores are gossiped: do nothing, say so.
    Conflict(Vec<String>),
    /// Create the store now.
    Bootstrap,
    /// Wait.
    Wait,
}

/// `me` with `my_expect`, seeing the adverts of the other live nodes, with a view unchanged for
/// `stable` (compared with `settle`).
pub(crate) fn decide(
    me: &str,
    my_expect: usize,
    others: &[(String, Advert)],
    stable: Duration,
    settle: Duration,
) -> Decision {
    let stores: BTreeSet<String> = others.iter().filter_map(|(_, a)| a.store.clone()).collect();
    match stores.len() {
        0 => {}
        1 => return Decision::Adopt(stores.into_iter().next().unwrap_or_default()),
        _ => return Decision::Conflict(stores.into_iter().collect()),
    }
    if my_expect == 0 || others.len() + 1 < my_expect || stable < settle {
        return Decision::Wait;
    }
    let smallest = others
        .iter()
        .filter(|(_, a)| a.expect > 0)
        .map(|(n, _)| n.as_str())
        .chain(std::iter::once(me))
        .min();
    if smallest == Some(me) {
        Decision::Bootstrap
    } else {
        Decision::Wait
    }
}

// ---- the membership task ----------------------------------------------------------------------

/// The other live nodes' adverts.
pub(crate) async fn adverts(kv: &Kv) -> Vec<(String, Advert)> {
    let mut out = Vec::new();
    for (node, key, value) in kv.inner.rt.gossip_scan(GOSSIP_KEY).await {
        if key != GOSSIP_KEY || node == kv.inner.node {
            continue;
        }
        match serde_json::from_str::<Advert>(&value) {
            Ok(a) => out.push((node, a)),
            Err(e) => tracing::debug!(%node, "kv: unreadable gossip advert: {e}"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// At start, for a node whose data dir holds a store and that was given seeds: wait (up to
/// `wait`) to hear of a store from the cluster, and refuse when it is another one.
pub(crate) async fn check_foreign(kv: &Kv, ours: &str, wait: Duration) -> Result<(), KvError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = kv.inner.rt.gossip_changes().await;
    loop {
        let ads = adverts(kv).await;
        let stores: Vec<(String, String)> = ads
            .iter()
            .filter_map(|(n, a)| a.store.clone().map(|s| (n.clone(), s)))
            .collect();
        if stores.iter().any(|(_, s)| s == ours) {
            return Ok(());
        }
        if let Some((peer, theirs)) = stores.first() {
            return Err(KvError::ForeignStore {
                dir: kv.inner.dir.display().to_string(),
                ours: ours.to_string(),
                theirs: theirs.clone(),
                peer: peer.clone(),
            });
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        match changes.as_mut() {
            Some(c) => {
                tokio::select! {
                    _ = c.changed() => {}
                    _ = tick => {}
                    _ = tokio::time::sleep_until(deadline) => return Ok(()),
                }
            }
            None => return Ok(()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// The membership task of a node: gossip its state, bootstrap or adopt a store, join it, and
/// (on the leader, dynamic mode) run the autopilot.
pub(crate) async fn run(kv: Kv) {
    let mut stop = kv.inner.stop.subscribe();
    let mut changes = kv.inner.rt.gossip_changes().await;
    let mut published: Option<String> = None;
    let mut view: (Vec<(String, Advert)>, Instant) = (Vec::new(), Instant::now());
    let mut last_join = None::<Instant>;
    let mut dead_since: HashMap<NodeId, Instant> = HashMap::new();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    loop {
        let advert = Advert {
            store: kv.store_id(),
            member: kv.is_member(),
            learner_only: kv.inner.policy.learner_only,
            expect: kv.inner.policy.expect,
        };
        if let Ok(text) = serde_json::to_string(&advert) {
            if published.as_deref() != Some(text.as_str()) {
                match kv.inner.rt.gossip_set(GOSSIP_KEY, &text).await {
                    Ok(()) => published = Some(text),
                    Err(e) => tracing::error!("kv: cannot publish {GOSSIP_KEY}: {e}"),
                }
            }
        }
        let ads = adverts(&kv).await;
        if ads != view.0 {
            view = (ads.clone(), Instant::now());
        }
        match kv.store_id() {
            None => match decide(
                &kv.inner.node,
                kv.inner.policy.expect,
                &ads,
                view.1.elapsed(),
                kv.inner.policy.settle,
            ) {
                Decision::Adopt(s) => adopt(&kv, &s),
                Decision::Bootstrap => bootstrap(&kv).await,
                Decision::Conflict(stores) => {
                    let key = stores.join(",");
                    if warned.insert(key) {
                        tracing::error!(
                            ?stores,
                            "kv: the cluster gossips several KV stores; this node joins none of them"
                        );
                    }
                }
                Decision::Wait => {}
            },
            Some(mine) => {
                let peers: Vec<String> = ads
                    .iter()
                    .filter(|(_, a)| a.member && a.store.as_deref() == Some(mine.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect();
                *kv.inner.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
                for (n, a) in &ads {
                    if let Some(s) = &a.store {
                        if *s != mine && warned.insert(format!("{n}:{s}")) {
                            tracing::error!(
                                node = %n, store = %s, ours = %mine,
                                "kv: a node of this cluster belongs to another KV store; their Raft RPCs are refused"
                            );
                        }
                    }
                }
                let never_joined = kv.with_membership(|m| m.nodes().next().is_none());
                if never_joined
                    && last_join.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                {
                    last_join = Some(Instant::now());
                    let kv2 = kv.clone();
                    tokio::spawn(async move {
                        let r = kv2
                            .exec(Request::Join {
                                name: kv2.inner.node.clone(),
                                store: mine,
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::debug!("kv: join: {e}");
                        }
                    });
                }
                if !kv.inner.policy.is_static() {
                    autopilot(&kv, &ads, &mut dead_since).await;
                }
            }
        }
        let tick = tokio::time::sleep(Duration::from_millis(300));
        match changes.as_mut() {
            Some(c) => tokio::select! {
                _ = stop.changed() => return,
                _ = c.changed() => {}
                _ = tick => {}
            },
            None => tokio::select! {
                _ = stop.changed() => return,
                _ = tick => {}
            },
        }
    }
}

fn adopt(kv: &Kv, store: &str) {
    if let Err(e) = write_store_id(&kv.inner.dir, store) {
        tracing::error!("kv: cannot record store id: {e}");
        return;
    }
    tracing::info!(node = %kv.inner.node, %store, "kv: joining the cluster's KV store");
    kv.inner.store.send_replace(Some(store.to_string()));
}

async fn bootstrap(kv: &Kv) {
    let id = new_store_id();
    if let Err(e) = write_store_id(&kv.inner.dir, &id) {
        tracing::error!("kv: cannot record store id: {e}");
        return;
    }
    kv.inner.store.send_replace(Some(id.clone()));
    let members: BTreeMap<NodeId, KvNode> = [(
        kv.inner.id,
        KvNode {
            name: kv.inner.node.clone(),
        },
    )]
    .into();
    match kv.inner.raft.initialize(members).await {
        Ok(()) => tracing::info!(node = %kv.inner.node, store = %id, "kv: store bootstrapped"),
        Err(e) => tracing::warn!("kv: bootstrap: {e}"),
    }
}

/// Live nodes (alive and connected, this one included), by name.
async fn live_nodes(kv: &Kv) -> BTreeSet<String> {
    kv.inner
        .rt
        .members()
        .await
        .into_iter()
        .filter(|m| m.state == MemberState::Alive && (m.connected || m.is_self))
        .map(|m| m.name)
        .collect()
}

/// Replication progress on the leader: `(match index, lag)` of a member.
fn progress(m: &openraft::RaftMetrics<NodeId, KvNode>, id: NodeId) -> (Option<u64>, Option<u64>) {
    let last = m.last_log_index.unwrap_or(0);
    if m.id == id {
        return (Some(last), Some(0));
    }
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .map(|l| l.map(|l| l.index).unwrap_or(0));
    (matched, matched.map(|x| last.saturating_sub(x)))
}

fn caught_up(m: &openraft::RaftMetrics<NodeId, KvNode>, id: NodeId) -> bool {
    matches!(progress(m, id).1, Some(lag) if lag <= CAUGHT_UP_LAG)
}

/// On the leader: promote learners while below the target, replace voters dead too long.
async fn autopilot(kv: &Kv, ads: &[(String, Advert)], dead_since: &mut HashMap<NodeId, Instant>) {
    let m = kv.inner.raft.metrics().borrow().clone();
    if m.state != ServerState::Leader {
        dead_since.clear();
        return;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let live = live_nodes(kv).await;
    let name = |id: &NodeId| membership.get_node(id).map(|n| n.name.clone());
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    for v in &voters {
        match name(v) {
            Some(n) if live.contains(&n) => {
                dead_since.remove(v);
            }
            _ => {
                dead_since.entry(*v).or_insert_with(Instant::now);
            }
        }
    }
    dead_since.retain(|v, _| voters.contains(v));
    let store = kv.store_id();
    let mut eligible: Vec<(String, NodeId)> = membership
        .learner_ids()
        .filter(|id| {
            let Some(n) = name(id) else { return false };
            let ad = ads.iter().find(|(a, _)| *a == n).map(|(_, a)| a);
            live.contains(&n)
                && caught_up(&m, *id)
                && ad.is_some_and(|a| !a.learner_only && a.store == store)
        })
        .filter_map(|id| name(&id).map(|n| (n, id)))
        .collect();
    // In name order, so that which learner is promoted is predictable.
    eligible.sort();
    let eligible: Vec<NodeId> = eligible.into_iter().map(|(_, id)| id).collect();
    let grace = kv.inner.policy.dead_grace;
    let gone = dead_since
        .iter()
        .find(|(_, t)| t.elapsed() >= grace)
        .map(|(v, _)| *v);
    let change = match (gone, eligible.first()) {
        (Some(dead), Some(new)) => {
            let mut set = voters.clone();
            set.remove(&dead);
            set.insert(*new);
            tracing::warn!(
                dead = ?name(&dead), replacement = ?name(new),
                "kv: replacing a voter dead for longer than {grace:?}"
            );
            Some(ChangeMembers::ReplaceAllVoters(set))
        }
        _ => {
            let want = wanted_voters(voters.len(), eligible.len(), kv.inner.policy.target_voters);
            if want > voters.len() {
                let add: BTreeSet<NodeId> =
                    eligible.iter().take(want - voters.len()).copied().collect();
                tracing::info!(promote = ?add.iter().map(name).collect::<Vec<_>>(), "kv: promoting learners to voters");
                Some(ChangeMembers::AddVoterIds(add))
            } else {
                None
            }
        }
    };
    if let Some(c) = change {
        match tokio::time::timeout(
            Duration::from_secs(10),
            kv.inner.raft.change_membership(c, false),
        )
        .await
        {
            Ok(Ok(_)) => {
                if let Some(g) = gone {
                    dead_since.remove(&g);
                }
            }
            Ok(Err(e)) => tracing::warn!("kv: autopilot change: {e}"),
            Err(_) => tracing::warn!("kv: autopilot change not committed within 10 s"),
        }
    }
}

// ---- serving membership requests (on the leader) ---------------------------------------------

impl Kv {
    /// Add `name` (of store `store`) as a learner, unless it is a member already.
    pub(crate) async fn serve_join(
        &self,
        name: String,
        store: String,
    ) -> Result<Response, KvError> {
        let mine = self.store_id();
        if mine.as_deref() != Some(store.as_str()) {
            return Err(KvError::Invalid(format!(
                "node '{name}' belongs to KV store {store}, this store is {}",
                mine.unwrap_or_else(|| "none".into())
            )));
        }
        let id = node_id(&name);
        let known = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if !known {
            self.add_learner(&name, false).await?;
            tracing::info!(learner = %name, "kv: learner added");
        }
        Ok(Response::Write(CmdResult::None))
    }

    async fn add_learner(&self, name: &str, blocking: bool) -> Result<(), KvError> {
        let add = self.inner.raft.add_learner(
            node_id(name),
            KvNode {
                name: name.to_string(),
            },
            blocking,
        );
        match tokio::time::timeout(Duration::from_secs(10), add).await {
            Err(_) => Err(KvError::NoQuorum(format!(
                "adding learner '{name}' was not done within 10 s"
            ))),
            Ok(Err(e)) => Err(write_error(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Run a membership operation (this node must be the leader).
    pub(crate) async fn serve_members(&self, op: MemberOp) -> Result<Vec<MemberInfo>, KvError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(KvError::NotLeader {
                leader: m.current_leader.and_then(|l| self.name_of(l)),
            });
        }
        let membership = m.membership_config.membership().clone();
        let live = live_nodes(self).await;
        let name_of = |id: &NodeId| membership.get_node(id).map(|n| n.name.clone());
        let voters: BTreeSet<String> = membership.voter_ids().filter_map(|i| name_of(&i)).collect();
        let is_learner = |n: &str| {
            membership
                .learner_ids()
                .any(|i| name_of(&i).as_deref() == Some(n))
        };
        let refuse = |what: &str, why: String| KvError::Invalid(format!("cannot {what}: {why}"));
        if !matches!(op, MemberOp::List) && membership.get_joint_config().len() > 1 {
            return Err(KvError::Unavailable(
                "a membership change is in progress; try again".into(),
            ));
        }
        let healthy_with = |extra: &str, id: NodeId| -> BTreeSet<String> {
            let mut h: BTreeSet<String> = voters
                .iter()
                .filter(|v| live.contains(*v))
                .cloned()
                .collect();
            if live.contains(extra) && caught_up(&m, id) {
                h.insert(extra.to_string());
            }
            h
        };
        let change = |c: ChangeMembers<NodeId, KvNode>| async move {
            match tokio::time::timeout(Duration::from_secs(10), raft.change_membership(c, false))
                .await
            {
                Err(_) => Err(KvError::NoQuorum(
                    "the membership change was not committed within 10 s".into(),
                )),
                Ok(Err(e)) => Err(write_error(e)),
                Ok(Ok(_)) => Ok(()),
            }
        };
        match op {
            MemberOp::List => {}
            MemberOp::Add { name, learner } => {
                validate_name(&name)?;
                let what = format!("add '{name}'");
                if !live.contains(&name) {
                    return Err(refuse(
                        &what,
                        format!("node '{name}' is not alive and connected in this cluster"),
                    ));
                }
                let ad = adverts(self).await.into_iter().find(|(n, _)| *n == name);
                if let Some((_, a)) = &ad {
                    if a.store.is_some() && a.store != self.store_id() {
                        return Err(refuse(
                            &what,
                            format!(
                                "node '{name}' belongs to another KV store ({})",
                                a.store.clone().unwrap_or_default()
                            ),
                        ));
                    }
                }
                if voters.contains(&name) {
                    return Err(refuse(&what, format!("'{name}' is a voter already")));
                }
                let id = node_id(&name);
                if !is_learner(&name) {
                    self.add_learner(&name, true).await?;
                }
                if !learner {
                    let m2 = raft.metrics().borrow().clone();
                    let mut h: BTreeSet<String> = voters
                        .iter()
                        .filter(|v| live.contains(*v))
                        .cloned()
                        .collect();
                    if caught_up(&m2, id) {
                        h.insert(name.clone());
                    }
                    let mut new = voters.clone();
                    new.insert(name.clone());
                    check_quorum(&new, &h).map_err(|e| refuse(&what, e))?;
                    change(ChangeMembers::AddVoterIds([id].into())).await?;
                }
            }
            MemberOp::Promote { name } => {
                validate_name(&name)?;
                let what = format!("promote '{name}'");
                if voters.contains(&name) {
                    return Err(refuse(&what, format!("'{name}' is a voter already")));
                }
                if !is_learner(&name) {
                    return Err(refuse(
                        &what,
                        format!("'{name}' is not a learner of this store (add it first)"),
                    ));
                }
                let id = node_id(&name);
                if !live.contains(&name) {
                    return Err(refuse(
                        &what,
                        format!("node '{name}' is not alive and connected"),
                    ));
                }
                if !caught_up(&m, id) {
                    return Err(refuse(
                        &what,
                        format!(
                            "'{name}' is {} log entries behind; wait for it to catch up",
                            progress(&m, id)
                                .1
                                .map(|l| l.to_string())
                                .unwrap_or_else(|| "an unknown number of".into())
                        ),
                    ));
                }
                let mut new = voters.clone();
                new.insert(name.clone());
                check_quorum(&new, &healthy_with(&name, id)).map_err(|e| refuse(&what, e))?;
                change(ChangeMembers::AddVoterIds([id].into())).await?;
            }
            MemberOp::Remove { name } => {
                validate_name(&name)?;
                let what = format!("remove '{name}'");
                let id = node_id(&name);
                if voters.contains(&name) {
                    let mut new = voters.clone();
                    new.remove(&name);
                    let healthy: BTreeSet<String> =
                        new.iter().filter(|v| live.contains(*v)).cloned().collect();
                    check_quorum(&new, &healthy).map_err(|e| refuse(&what, e))?;
                    change(ChangeMembers::RemoveVoters([id].into())).await?;
                } else if is_learner(&name) {
                    change(ChangeMembers::RemoveNodes([id].into())).await?;
                } else {
                    return Err(refuse(
                        &what,
                        format!("'{name}' is not a member of this store"),
                    ));
                }
            }
        }
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let states: HashMap<String, MemberState> = self
            .inner
            .rt
            .members()
            .await
            .into_iter()
            .map(|mm| (mm.name, mm.state))
            .collect();
        let mut out: Vec<MemberInfo> = membership
            .nodes()
            .map(|(id, node)| {
                let (match_index, lag) = progress(&m, *id);
                MemberInfo {
                    name: node.name.clone(),
                    id: *id,
                    role: if voter_ids.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    leader: m.current_leader == Some(*id),
                    state: match states.get(&node.name) {
                        Some(MemberState::Alive) => "alive",
                        Some(_) => "dead",
                        None => "unknown",
                    }
                    .into(),
                    match_index,
                    lag,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn validate_name(name: &str) -> Result<(), KvError> {
    if name.is_empty() || name.len() > 255 {
        return Err(KvError::Invalid(format!(
            "'{name}' is not a node name (1 to 255 bytes)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ad(store: Option<&str>, expect: usize) -> Advert {
        Advert {
            store: store.map(str::to_string),
            member: store.is_some(),
            learner_only: false,
            expect,
        }
    }

    #[test]
    fn quorum_needs_a_live_majority_of_the_new_voters() {
        assert!(check_quorum(&set(&["a", "b", "c"]), &set(&["a", "b"])).is_ok());
        let e = check_quorum(&set(&["a", "b"]), &set(&["a"])).unwrap_err();
        assert!(e.contains("lose the quorum"), "{e}");
        assert!(check_quorum(&set(&[]), &set(&["a"])).is_err());
        assert!(check_quorum(&set(&["a"]), &set(&["a"])).is_ok());
        assert!(check_quorum(&set(&["a", "b", "c", "d"]), &set(&["a", "b"])).is_err());
    }

    #[test]
    fn wanted_voters_is_odd_and_bounded() {
        assert_eq!(wanted_voters(1, 0, 3), 1);
        assert_eq!(wanted_voters(1, 1, 3), 1);
        assert_eq!(wanted_voters(1, 2, 3), 3);
        assert_eq!(wanted_voters(1, 5, 3), 3);
        assert_eq!(wanted_voters(2, 0, 3), 2);
        assert_eq!(wanted_voters(2, 1, 3), 3);
        assert_eq!(wanted_voters(3, 4, 5), 5);
        assert_eq!(wanted_voters(3, 1, 5), 3);
        assert_eq!(wanted_voters(3, 2, 3), 3);
    }

    #[test]
    fn a_gossiped_store_is_joined_never_duplicated() {
        let others = vec![("b".to_string(), ad(Some("s1"), 0))];
        let d = decide("a", 1, &others, Duration::from_secs(9), Duration::ZERO);
        assert_eq!(d, Decision::Adopt("s1".into()));
    }

    #[test]
    fn two_gossiped_stores_are_a_conflict() {
        let others = vec![
            ("b".to_string(), ad(Some("s1"), 0)),
            ("c".to_string(), ad(Some("s2"), 0)),
        ];
        let d = decide("a", 1, &others, Duration::from_secs(9), Duration::ZERO);
        assert!(matches!(d, Decision::Conflict(_)));
    }

    #[test]
    fn bootstrap_waits_for_expect_nodes_and_the_smallest_name() {
        let others = vec![("b".to_string(), ad(None, 3))];
        let s = Duration::from_secs(5);
        assert_eq!(decide("a", 3, &others, s, Duration::ZERO), Decision::Wait);
        let others = vec![
            ("b".to_string(), ad(None, 3)),
            ("c".to_string(), ad(None, 3)),
        ];
        assert_eq!(
            decide("a", 3, &others, s, Duration::ZERO),
            Decision::Bootstrap
        );
        assert_eq!(
            decide(
                "b",
                3,
                &[("a".into(), ad(None, 3)), ("c".into(), ad(None, 3))],
                s,
                Duration::ZERO
            ),
            Decision::Wait
        );
        // Not before the view settled.
        assert_eq!(decide("a", 3, &others, Duration::ZERO, s), Decision::Wait);
        // A join-only node (expect 0) neither bootstraps nor counts as the bootstrapper.
        assert_eq!(decide("a", 0, &others, s, Duration::ZERO), Decision::Wait);
        let others = vec![("a".to_string(), ad(None, 0))];
        assert_eq!(
            decide("b", 1, &others, s, Duration::ZERO),
            Decision::Bootstrap
        );
    }

    #[test]
    fn store_ids_round_trip_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(read_store_id(dir.path()).expect("read"), None);
        let id = new_store_id();
        assert!(valid_store_id(&id), "{id}");
        write_store_id(dir.path(), &id).expect("write");
        assert_eq!(read_store_id(dir.path()).expect("read"), Some(id.clone()));
        let path = dir.path().join("store.id");
        let good = std::fs::read(&path).expect("read");
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        let half = good[..good.len() / 2].to_vec();
        for bad in [b"\xff garbage".to_vec(), flipped, half, b"".to_vec()] {
            std::fs::write(&path, &bad).expect("write");
            match read_store_id(dir.path()) {
                Err(KvError::Storage(e)) => {
                    assert!(e.contains(&path.display().to_string()), "{e}")
                }
                other => panic!("{:?} read as {other:?}", String::from_utf8_lossy(&bad)),
            }
        }
        // a file from before the check
        std::fs::write(&path, format!("{id}\n")).expect("write");
        assert_eq!(read_store_id(dir.path()).expect("read"), Some(id.clone()));
        assert_eq!(
            static_store_id(&["b".into(), "a".into()]),
            static_store_id(&["a".into(), "b".into(), "a".into()])
        );
    }
}
