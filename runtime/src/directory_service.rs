//! The name directory at work: the `directory` actor (process group `directory@<node>`) that
//! answers for the names this node owns, the task that publishes this node's named actors to
//! their owners, and the lookup [`crate::Node::resolve`] uses. The pure parts (who owns a name,
//! the tables) are in `directory.rs`.
//!
//! Publishing: each change to this node's named actors is queued ([`LocalNames`]); the publish
//! task sends them in batches to each name's owner (applied at once when the owner is this
//! node) and, when the live members change, sends every name whose owner moved to its new
//! owner. A node drops the entries it no longer owns [`HANDOFF_GRACE`] after such a change.
//! `Node::names_published` waits (at most [`FLUSH_WITHIN`]) until the owners acknowledged what
//! was queued before it; spawns through the admin API or another node's request wait for it.
//!
//! Lookup: the owner's answer gives the node and pid; the actor's proxy is made on demand by
//! ractor_cluster's session to that node (vendored, see `vendor/ractor_cluster/PATCHED.md`),
//! then the node is asked, over that same session, whether the pid still runs. Its answer
//! comes after any `Terminate` for that pid, so a proxy that is handed out either stops when
//! its actor exits or was never handed out. Proxies found are cached by name.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::{
    cluster::Cluster,
    directory::{owners, Change, LocalNames, Location, Shard},
    error::RuntimeError,
};

/// How long a node keeps the entries it no longer owns after the members changed (the new
/// owner gets them from their nodes within a publish round or two).
pub(crate) const HANDOFF_GRACE: Duration = Duration::from_secs(5);
/// How long a spawn waits for its name's owner to acknowledge the name.
pub(crate) const FLUSH_WITHIN: Duration = Duration::from_secs(2);
/// How long the publish task waits for an owner's acknowledgement (a round, and so the spawns
/// waiting on it, is held up at most this long by an owner that stopped answering).
const UPDATE_WITHIN: Duration = Duration::from_secs(1);
/// How long a lookup waits for the owner or the actor's node.
const ASK_WITHIN: Duration = Duration::from_secs(2);
/// How often the publish task looks at the members when nothing was queued.
const ROUND_EVERY: Duration = Duration::from_millis(200);
/// Resolved proxies kept by name, at most.
const CACHE_MAX: usize = 10_000;

/// The process group of a node's directory actor.
pub(crate) fn directory_group(node: &str) -> String {
    format!("directory@{node}")
}

/// A node's directory: its own named actors, the entries it owns, resolved proxies.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) names: LocalNames,
    pub(crate) shard: Mutex<Shard>,
    cache: Mutex<HashMap<String, (ActorCell, bool)>>,
    /// Changes queued so far / acknowledged by their owners so far (sequence numbers).
    queued: AtomicU64,
    acked: tokio::sync::watch::Sender<u64>,
}

impl Directory {
    /// Queue `name -> pid` for its owner.
    pub(crate) fn put(&self, name: &str, pid: u64, json: bool) {
        // Queued first, counted after: a count the publisher reads covers only queued changes.
        self.names.put(name, pid, json);
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Queue the removal of `name -> pid`.
    pub(crate) fn remove(&self, name: &str, pid: u64) {
        self.names.remove(name, pid);
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Wait until every change queued before this call was tried with its owners (a round of
    /// the publish task; what an owner did not acknowledge is retried later), or `within`
    /// passed.
    pub(crate) async fn flushed(&self, within: Duration) -> bool {
        let target = self.queued.load(Ordering::Acquire);
        let mut rx = self.acked.subscribe();
        tokio::time::timeout(within, rx.wait_for(|a| *a >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The directory's metric families.
    pub(crate) fn metrics_text(&self) -> String {
        let entries = self.shard.lock().map(|s| s.len()).unwrap_or(0) as u64;
        let proxies = self.cache.lock().map(|c| c.len()).unwrap_or(0) as u64;
        let rows = [
            (
                "draft_directory_entries",
                "gauge",
                "Name-directory entries this node holds as an owner (actors of any node).",
                entries,
            ),
            (
                "draft_directory_local_names",
                "gauge",
                "This node's named actors, published in the name directory.",
                self.names.len() as u64,
            ),
            (
                "draft_directory_proxies",
                "gauge",
                "Proxies of other nodes' named actors this node resolved and keeps.",
                proxies,
            ),
        ];
        crate::metrics::metrics_text(&rows)
    }

    fn cached(&self, name: &str) -> Option<(ActorCell, bool)> {
        let cache = self.cache.lock().ok()?;
        let (cell, json) = cache.get(name)?;
        (cell.get_status() == ractor::ActorStatus::Running).then(|| (cell.clone(), *json))
    }

    fn remember(&self, name: &str, cell: &ActorCell, json: bool) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (c, _)| c.get_status() == ractor::ActorStatus::Running);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(name.to_string(), (cell.clone(), json));
        }
    }
}

/// One node's changes, as sent to an owner.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    node: String,
    /// `(name, pid, json)` registered.
    put: Vec<(String, u64, bool)>,
    /// `(name, pid)` stopped.
    remove: Vec<(String, u64)>,
}

impl Batch {
    fn new(node: &str) -> Self {
        Batch {
            node: node.to_string(),
            put: Vec::new(),
            remove: Vec::new(),
        }
    }

    fn add(&mut self, change: Change) {
        match change {
            Change::Put { name, pid, json } => self.put.push((name, pid, json)),
            Change::Remove { name, pid } => self.remove.push((name, pid)),
        }
    }

    fn apply(self, shard: &mut Shard) {
        for (name, pid, json) in self.put {
            shard.put(&self.node, &name, pid, json);
        }
        for (name, pid) in self.remove {
            shard.remove(&self.node, &name, pid);
        }
    }

    fn changes(self) -> Vec<Change> {
        let mut out: Vec<Change> = self
            .put
            .into_iter()
            .map(|(name, pid, json)| Change::Put { name, pid, json })
            .collect();
        out.extend(
            self.remove
                .into_iter()
                .map(|(name, pid)| Change::Remove { name, pid }),
        );
        out
    }
}

/// Messages of the directory actor (from any node).
#[derive(RactorClusterMessage)]
pub enum DirectoryMsg {
    /// A node's registrations and removals (JSON); the reply says they were applied.
    #[rpc]
    Update(Vec<u8>, RpcReplyPort<bool>),
    /// Where a name this node owns runs: JSON `Location` or `null`.
    #[rpc]
    Get(String, RpcReplyPort<Vec<u8>>),
    /// Whether this node's actor `pid` still runs and is published.
    #[rpc]
    Alive(u64, RpcReplyPort<bool>),
}

/// The directory actor of a node.
#[derive(Clone)]
pub(crate) struct DirectoryActor {
    pub(crate) node: String,
    pub(crate) directory: Arc<Directory>,
}

impl Actor for DirectoryActor {
    type Msg = DirectoryMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<DirectoryMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(directory_group(&self.node), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<DirectoryMsg>,
        msg: DirectoryMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DirectoryMsg::Update(bytes, reply) => {
                let applied = match serde_json::from_slice::<Batch>(&bytes) {
                    Ok(batch) => {
                        if let Ok(mut shard) = self.directory.shard.lock() {
                            batch.apply(&mut shard);
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!("unreadable directory update: {e}");
                        false
                    }
                };
                let _ = reply.send(applied);
            }
            DirectoryMsg::Get(name, reply) => {
                let loc = self.directory.shard.lock().ok().and_then(|s| s.get(&name));
                let _ = reply.send(serde_json::to_vec(&loc).unwrap_or_else(|_| b"null".to_vec()));
            }
            DirectoryMsg::Alive(pid, reply) => {
                let alive = crate::directory::is_published(pid)
                    && ractor::registry::where_is_pid(ractor::ActorId::Local(pid))
                        .is_some_and(|c| c.get_status() == ractor::ActorStatus::Running);
                let _ = reply.send(alive);
            }
        }
        Ok(())
    }
}

/// The remote directory actor of `node`, if its process group has reached us.
fn directory_of(node: &str) -> Option<ActorRef<DirectoryMsg>> {
    crate::names::remote_member(&directory_group(node))
}

/// The publish task: send this node's changes to their owners, follow the members. Ends when
/// the cluster is gone. Runs as the node's supervised child `directory-publisher`; a restarted
/// one starts from no members, so its first round re-sends every name (what was queued waits in
/// the [`Directory`], not in the loop).
pub(crate) async fn run_publisher(me: String, directory: Weak<Directory>, cluster: Weak<Cluster>) {
    let mut alive: Vec<String> = Vec::new();
    let mut dead: Vec<String> = Vec::new();
    let mut handoff_at: Option<tokio::time::Instant> = None;
    let mut retry: Vec<Change> = Vec::new();
    loop {
        let Some(directory) = directory.upgrade() else {
            break;
        };
        let _ = tokio::time::timeout(ROUND_EVERY, directory.names.changed.notified()).await;
        let Some(c) = cluster.upgrade() else { break };
        let target = directory.queued.load(Ordering::Acquire);
        let (now_alive, now_dead) = c.alive_and_dead().await;
        drop(c);
        let mut changes = std::mem::take(&mut retry);
        if now_alive != alive || now_dead != dead {
            if let Ok(mut shard) = directory.shard.lock() {
                for n in &now_dead {
                    shard.node_dead(n);
                }
                for n in &now_alive {
                    shard.node_back(n);
                }
            }
            // Every name whose owner moved goes to its new owner.
            for change in directory.names.all() {
                let Change::Put { name, .. } = &change else {
                    continue;
                };
                let before = owners(name, alive.iter().map(String::as_str));
                let after = owners(name, now_alive.iter().map(String::as_str));
                if before != after {
                    changes.push(change);
                }
            }
            alive = now_alive;
            dead = now_dead;
            handoff_at = Some(tokio::time::Instant::now() + HANDOFF_GRACE);
        }
        changes.extend(directory.names.take_pending());
        if !changes.is_empty() {
            retry = send(&me, &directory, &alive, changes).await;
        }
        // Acknowledged or not, this round's changes were tried: what failed is retried (and
        // re-sent to new owners when the members change), but spawns do not wait for it.
        {
            directory.acked.send_if_modified(|a| {
                let moved = *a < target;
                *a = (*a).max(target);
                moved
            });
        }
        if handoff_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
            handoff_at = None;
            if let Ok(mut shard) = directory.shard.lock() {
                let dropped = shard.retain_owned(|name| {
                    owners(name, alive.iter().map(String::as_str)).contains(&me.as_str())
                });
                if dropped > 0 {
                    tracing::debug!(dropped, "directory entries handed off to their new owners");
                }
            }
        }
    }
}

/// Send `changes` to their owners among `alive`; what could not be delivered comes back.
async fn send(
    me: &str,
    directory: &Directory,
    alive: &[String],
    changes: Vec<Change>,
) -> Vec<Change> {
    let mut batches: HashMap<String, Batch> = HashMap::new();
    for change in changes {
        let name = match &change {
            Change::Put { name, .. } | Change::Remove { name, .. } => name,
        };
        let mut to: Vec<String> = owners(name, alive.iter().map(String::as_str))
            .into_iter()
            .map(str::to_string)
            .collect();
        if to.is_empty() {
            // No members known yet: this node alone owns everything.
            to.push(me.to_string());
        }
        for owner in to {
            batches
                .entry(owner)
                .or_insert_with(|| Batch::new(me))
                .add(change.clone());
        }
    }
    let mut failed = Vec::new();
    let mut calls = Vec::new();
    for (to, batch) in batches {
        if to == me {
            if let Ok(mut shard) = directory.shard.lock() {
                batch.apply(&mut shard);
            }
            continue;
        }
        let Some(actor) = directory_of(&to) else {
            failed.extend(batch.changes());
            continue;
        };
        calls.push(async move {
            let Ok(bytes) = serde_json::to_vec(&batch) else {
                return Vec::new();
            };
            match actor
                .call(|r| DirectoryMsg::Update(bytes, r), Some(UPDATE_WITHIN))
                .await
            {
                Ok(ractor::rpc::CallResult::Success(true)) => Vec::new(),
                _ => {
                    tracing::debug!(owner = %to, "directory update not acknowledged; will retry");
                    batch.changes()
                }
            }
        });
    }
    for f in futures::future::join_all(calls).await {
        failed.extend(f);
    }
    failed
}

/// What `owner` (this node or another) knows of `name`.
async fn ask_owner(
    me: &str,
    directory: &Directory,
    owner: &str,
    name: &str,
) -> Result<Option<Location>, RuntimeError> {
    if owner == me {
        return Ok(directory.shard.lock().ok().and_then(|s| s.get(name)));
    }
    let Some(actor) = directory_of(owner) else {
        return Err(RuntimeError::Unreachable {
            node: owner.to_string(),
            what: format!("no session to a node that knows where '{name}' runs"),
        });
    };
    match actor
        .call(|r| DirectoryMsg::Get(name.to_string(), r), Some(ASK_WITHIN))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(bytes)) => {
            serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Remote {
                node: owner.to_string(),
                status: 502,
                message: format!("unreadable directory answer: {e}"),
            })
        }
        other => {
            tracing::warn!(owner, name, "directory lookup failed: {other:?}");
            Err(RuntimeError::Unreachable {
                node: owner.to_string(),
                what: format!("it did not say where '{name}' runs"),
            })
        }
    }
}

/// Find `name` through the directory: `(proxy, takes JSON)`.
pub(crate) async fn locate(
    me: &str,
    directory: &Directory,
    cluster: &Cluster,
    name: &str,
) -> Result<(ActorCell, bool), RuntimeError> {
    if let Some(hit) = directory.cached(name) {
        return Ok(hit);
    }
    let (alive, dead) = cluster.alive_and_dead().await;
    let mut loc: Option<Location> = None;
    let mut unanswered: Option<RuntimeError> = None;
    for owner in owners(name, alive.iter().map(String::as_str)) {
        match ask_owner(me, directory, owner, name).await {
            Ok(Some(found)) => {
                loc = Some(found);
                break;
            }
            Ok(None) => {}
            Err(e) => unanswered = Some(e),
        }
    }
    let Some(loc) = loc else {
        // Neither owner knows it; if one could not be asked, say so.
        return Err(unanswered.unwrap_or_else(|| RuntimeError::UnknownActor(name.to_string())));
    };
    // Dead as the owner saw it, or as this node sees it (the owner may not have noticed yet).
    if loc.node_dead || dead.contains(&loc.node) {
        return Err(RuntimeError::NodeDown {
            node: loc.node,
            what: format!("actor '{name}' lived there"),
        });
    }
    if loc.node == me {
        // Ours, but not registered under the name any more (it just stopped).
        return Err(RuntimeError::UnknownActor(name.to_string()));
    }
    let Some(proxy) = cluster.proxy(&loc.node, loc.pid, name).await else {
        return Err(RuntimeError::Unreachable {
            node: loc.node.clone(),
            what: format!("no actor-transport session to it; actor '{name}' lives there"),
        });
    };
    // Asked over the same session as its `Terminate` would come: a yes means the proxy will
    // hear of the actor's end.
    let alive = match directory_of(&loc.node) {
        Some(host) => matches!(
            host.call(|r| DirectoryMsg::Alive(loc.pid, r), Some(ASK_WITHIN))
                .await,
            Ok(ractor::rpc::CallResult::Success(true))
        ),
        None => false,
    };
    if !alive {
        return Err(RuntimeError::UnknownActor(name.to_string()));
    }
    directory.remember(name, &proxy, loc.json);
    Ok((proxy, loc.json))
}
