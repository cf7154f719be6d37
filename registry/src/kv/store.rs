//! The Raft log and vote in one redb database (`<data_dir>/kv/log.redb`), the state machine in
//! another (`<data_dir>/kv/kv.redb`), and the latest snapshot in `<data_dir>/kv/snapshot.bin`.
//!
//! Durability: log appends, votes, purges and truncations commit with `Durability::Immediate`
//! (fsync) before they are acknowledged; so do snapshot installs. State-machine applies commit
//! with `Durability::None` (an fsync'd commit at most every [`SM_SYNC_EVERY`]): a crash can only
//! lose applies of entries that are still in the fsync'd log. On start, openraft re-applies the
//! log from the durable `last_applied` up to the saved committed index (written with each
//! append). A purge first makes the state machine durable, so the log never loses an entry that
//! is not durably applied. Two databases, so that an apply never waits for a log fsync (redb has
//! one writer per database) and a log fsync writes only log pages.
//!
//! Reads after a restart: a leader restored in its old term would take its (possibly lagging)
//! commit index from disk as the read index, so reads could miss acknowledged writes. Therefore
//! [`LogStore::read_vote`] hands the vote back as *not committed*: a restarted node never resumes
//! leadership without an election; the next leader commits a blank entry of its new term, and
//! linearizable reads wait for that (see `Kv::linearize`), which re-applies every earlier
//! committed entry first. The uncommitted vote still forbids voting for anyone else in that
//! term, so safety is unchanged.

use std::{
    fmt::Debug,
    io::{Cursor, Write},
    ops::RangeBounds,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use openraft::{
    storage::{LogFlushed, RaftLogStorage, RaftStateMachine},
    AnyError, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::watch;

use super::db_file::{open_checked, DbOpenError};
use super::txn::{KeyRange, RangeEnd, Txn, TxnOp, TxnOpResult, TxnResult};
use super::types::{
    CmdResult, Command, EventKind, Expect, KvEntry, KvNode, Lease, NodeId, Proposal, TypeConfig,
    WatchBatch, WatchEvent,
};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("kv_data");
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("kv_leases");
/// Revision -> the [`Change`]s made at it (several for a transaction or a lease revoke).
pub(crate) const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("kv_history");
/// The format of [`HISTORY`]'s values (1: one `WatchEvent` per revision; 2: `Vec<Change>`).
const HISTORY_FORMAT: u32 = 2;
const DEDUP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv_dedup");

/// How many past revisions are kept for watches that start in the past.
pub(crate) const HISTORY_KEEP: u64 = 100_000;
/// How many log entries a request id is remembered for (retries within that window apply once).
const DEDUP_WINDOW: u64 = 200_000;

type SErr = StorageError<NodeId>;

fn serr(what: &str, e: impl std::fmt::Display) -> SErr {
    StorageError::IO {
        source: StorageIOError::write(AnyError::error(format!("{what}: {e}"))),
    }
}

/// One change of one key, as the watch history keeps it: the entry after the change (for a
/// delete: the key and the delete's revision, like etcd's delete events) and the entry before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// Put or delete.
    pub(crate) kind: EventKind,
    /// The entry after the change.
    pub(crate) kv: KvEntry,
    /// The entry before the change.
    pub(crate) prev: Option<KvEntry>,
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    actors::codec::encode(v).map_err(|e| e.to_string())
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    actors::codec::decode(b).map_err(|e| e.to_string())
}

pub(crate) fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, SErr> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(serr(what, e)),
        Err(e) => Err(serr(what, e)),
    }
}

/// The longest a state-machine apply goes without an fsync'd commit (bounds the work of
/// re-applying on start, and lets redb reuse the pages freed since).
pub(crate) const SM_SYNC_EVERY: Duration = Duration::from_secs(1);

/// The two databases of a KV member.
pub(crate) struct Dbs {
    /// Raft log and vote.
    pub(crate) log: Arc<Database>,
    /// State machine.
    pub(crate) sm: Arc<Database>,
}

/// Open (or create) the databases and their tables. A data directory from before the split
/// (log and state machine both in `kv.redb`) has its log and vote moved to `log.redb`.
///
/// Both files are verified as they open (see [`super::db_file`]). A damaged log (`log.redb`)
/// is refused: it holds the node's vote and log entries it acknowledged, which only the other
/// voters can give back. A damaged state machine (`kv.redb`) is moved aside to
/// `kv.redb.corrupt` and rebuilt from the latest snapshot (`snapshot.bin`) and the log after it
/// (re-applied by Raft on start), or from the whole log when none of it was compacted; when
/// neither is possible it is refused.
pub(crate) fn open(dir: &Path) -> Result<Dbs, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sm_path = dir.join("kv.redb");
    let log_path = dir.join("log.redb");
    let log = match open_checked(&log_path) {
        Ok(db) => db,
        Err(DbOpenError::Corrupt(why)) => {
            return Err(format!(
                "{} is corrupt ({why}). It holds this node's Raft log and vote, which cannot be rebuilt here (the other KV voters hold every acknowledged entry). To recover: on a live node run `dctl kv members remove <this node>`, move {} away, and start this node again: it joins as a new member",
                log_path.display(),
                dir.display()
            ))
        }
        Err(DbOpenError::Other(why)) => {
            return Err(format!("cannot open {}: {why}", log_path.display()))
        }
    };
    let sm = match open_checked(&sm_path) {
        Ok(db) => db,
        Err(DbOpenError::Corrupt(why)) => rebuild_sm(dir, &log, &why)?,
        Err(DbOpenError::Other(why)) => {
            return Err(format!("cannot open {}: {why}", sm_path.display()))
        }
    };
    let txn = sm.begin_write().map_err(s)?;
    {
        txn.open_table(DATA).map_err(s)?;
        let mut meta = txn.open_table(SM_META).map_err(s)?;
        txn.open_table(LEASES).map_err(s)?;
        let mut history = txn.open_table(HISTORY).map_err(s)?;
        txn.open_table(DEDUP).map_err(s)?;
        let format: Option<u32> = match meta.get("history_format").map_err(s)? {
            Some(v) => Some(dec(v.value())?),
            None => None,
        };
        if format != Some(HISTORY_FORMAT) {
            // A store from before transactions: its history (one event per revision) is
            // dropped, as a compaction up to the current revision.
            let rev: u64 = match meta.get("revision").map_err(s)? {
                Some(v) => dec(v.value())?,
                None => 0,
            };
            history.retain(|_, _| false).map_err(s)?;
            meta.insert("history_first", enc(&(rev + 1))?.as_slice())
                .map_err(s)?;
            meta.insert("history_format", enc(&HISTORY_FORMAT)?.as_slice())
                .map_err(s)?;
        }
    }
    txn.commit().map_err(s)?;
    let formatted = {
        let txn = log.begin_write().map_err(s)?;
        let done = {
            let mut meta = txn.open_table(RAFT_META).map_err(s)?;
            txn.open_table(LOGS).map_err(s)?;
            let done = meta.get("format").map_err(s)?.is_some();
            if !done {
                // Move (copy, then drop below) the log and vote of a single-file store; the
                // copy and the format mark commit together, so a crash just redoes it.
                let old = sm.begin_read().map_err(s)?;
                let mut logs = txn.open_table(LOGS).map_err(s)?;
                match old.open_table(LOGS) {
                    Ok(t) => {
                        for item in t.iter().map_err(s)? {
                            let (k, v) = item.map_err(s)?;
                            logs.insert(k.value(), v.value()).map_err(s)?;
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(s(e)),
                }
                match old.open_table(RAFT_META) {
                    Ok(t) => {
                        for item in t.iter().map_err(s)? {
                            let (k, v) = item.map_err(s)?;
                            meta.insert(k.value(), v.value()).map_err(s)?;
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(s(e)),
                }
                meta.insert("format", enc(&2u32)?.as_slice()).map_err(s)?;
            }
            done
        };
        txn.commit().map_err(s)?;
        done
    };
    if !formatted {
        let txn = sm.begin_write().map_err(s)?;
        txn.delete_table(LOGS).map_err(s)?;
        txn.delete_table(RAFT_META).map_err(s)?;
        txn.commit().map_err(s)?;
    }
    Ok(Dbs {
        log: Arc::new(log),
        sm: Arc::new(sm),
    })
}

/// A fresh state machine in place of the damaged `kv.redb` (moved to `kv.redb.corrupt`): the
/// latest snapshot installed, or nothing when the log was never compacted; Raft re-applies the
/// log after it on start.
fn rebuild_sm(dir: &Path, log: &Database, why: &str) -> Result<Database, String> {
    let sm_path = dir.join("kv.redb");
    let snapshot = read_snapshot_file(dir).map_err(|e| {
        format!(
            "{} is corrupt ({why}), and it cannot be rebuilt: {e}",
            sm_path.display()
        )
    })?;
    let purged: Option<LogId<NodeId>> = {
        let txn = log.begin_read().map_err(s)?;
        match txn.open_table(RAFT_META) {
            Ok(t) => match t.get("last_purged").map_err(s)? {
                Some(v) => dec::<Option<LogId<NodeId>>>(v.value())?,
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(s(e)),
        }
    };
    if snapshot.is_none() && purged.is_some() {
        return Err(format!(
            "{} is corrupt ({why}), and it cannot be rebuilt here: the log was compacted and {} is missing. To recover: on a live node run `dctl kv members remove <this node>`, move {} away, and start this node again: it joins as a new member",
            sm_path.display(),
            dir.join("snapshot.bin").display(),
            dir.display()
        ));
    }
    let aside = dir.join("kv.redb.corrupt");
    std::fs::rename(&sm_path, &aside)
        .map_err(|e| format!("cannot move {} aside: {e}", sm_path.display()))?;
    let db = open_checked(&sm_path)
        .map_err(|e| format!("cannot create {}: {e:?}", sm_path.display()))?;
    if let Some(f) = &snapshot {
        StateMachine::install_sync(&db, dir, &f.meta, &f.body)?;
    }
    tracing::warn!(
        file = %sm_path.display(),
        moved_to = %aside.display(),
        from_snapshot = ?snapshot.as_ref().map(|f| f.meta.snapshot_id.clone()),
        "kv: the state machine was corrupt ({why}); rebuilt from the snapshot and the log"
    );
    Ok(db)
}

/// Make every state-machine commit so far durable.
fn sync_sm(sm: &Database) -> Result<(), String> {
    let mut txn = sm.begin_write().map_err(s)?;
    txn.set_durability(Durability::Immediate).map_err(s)?;
    {
        let mut m = txn.open_table(SM_META).map_err(s)?;
        m.insert("synced", enc(&true)?.as_slice()).map_err(s)?;
    }
    txn.commit().map_err(s)
}

fn meta_get<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(s)?;
    let t = txn.open_table(table).map_err(s)?;
    match t.get(key).map_err(s)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

fn meta_put<T: Serialize>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), String> {
    let bytes = enc(value)?;
    let mut txn = db.begin_write().map_err(s)?;
    txn.set_durability(durability).map_err(s)?;
    {
        let mut t = txn.open_table(table).map_err(s)?;
        t.insert(key, bytes.as_slice()).map_err(s)?;
    }
    txn.commit().map_err(s)
}

// ---------------------------------------------------------------------------------------------
// Log store

/// The Raft log and vote.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    /// The state machine's database, made durable before a purge.
    sm: Arc<Database>,
    /// The latest committed log id told by openraft, written with the next append.
    committed: Arc<Mutex<Option<LogId<NodeId>>>>,
}

impl LogStore {
    pub(crate) fn new(dbs: &Dbs) -> Self {
        LogStore {
            db: dbs.log.clone(),
            sm: dbs.sm.clone(),
            committed: Arc::new(Mutex::new(None)),
        }
    }

    fn take_committed(&self) -> Option<LogId<NodeId>> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        // Inline, not on the blocking pool: the entries asked for (replication, apply) are the
        // log's tail, just written and in redb's cache, and a read transaction never waits for
        // the writer; a thread hand-off would cost more than the read.
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let read = || -> Result<Vec<Entry<TypeConfig>>, String> {
            let txn = self.db.begin_read().map_err(s)?;
            let t = txn.open_table(LOGS).map_err(s)?;
            let mut out = Vec::new();
            for item in t.range::<u64>((start, end)).map_err(s)? {
                let (_, v) = item.map_err(s)?;
                out.push(dec::<Entry<TypeConfig>>(v.value())?);
            }
            Ok(out)
        };
        read().map_err(|e| serr("read log", e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let db = self.db.clone();
        blocking("log state", move || {
            let purged: Option<LogId<NodeId>> = meta_get(&db, RAFT_META, "last_purged")?.flatten();
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(LOGS).map_err(s)?;
            let last = match t.last().map_err(s)? {
                Some((_, v)) => Some(dec::<Entry<TypeConfig>>(v.value())?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let db = self.db.clone();
        let vote = *vote;
        blocking("save vote", move || {
            meta_put(&db, RAFT_META, "vote", &vote, Durability::Immediate)
        })
        .await
    }

    /// The saved vote, always as not committed (see the module docs: a restarted leader must
    /// win an election before it serves again).
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        let db = self.db.clone();
        let vote: Option<Vote<NodeId>> =
            blocking("read vote", move || meta_get(&db, RAFT_META, "vote")).await?;
        Ok(vote.map(|v| Vote {
            committed: false,
            ..v
        }))
    }

    /// Kept in memory and written with the next append (it only saves re-applying work on
    /// start; correctness does not depend on it).
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        if committed.is_some() {
            *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = committed;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let db = self.db.clone();
        blocking("read committed", move || {
            Ok(meta_get::<Option<LogId<NodeId>>>(&db, RAFT_META, "committed")?.flatten())
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((
                e.log_id.index,
                enc(&e).map_err(|e| serr("encode entry", e))?,
            ));
        }
        let db = self.db.clone();
        let committed = match self.take_committed() {
            Some(c) => Some(enc(&Some(c)).map_err(|e| serr("encode committed", e))?),
            None => None,
        };
        let res = blocking("append", move || {
            let txn = db.begin_write().map_err(s)?;
            {
                let mut t = txn.open_table(LOGS).map_err(s)?;
                for (i, b) in &encoded {
                    t.insert(*i, b.as_slice()).map_err(s)?;
                }
                if let Some(c) = &committed {
                    let mut m = txn.open_table(RAFT_META).map_err(s)?;
                    m.insert("committed", c.as_slice()).map_err(s)?;
                }
            }
            txn.commit().map_err(s)
        })
        .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let db = self.db.clone();
        blocking("truncate", move || {
            let txn = db.begin_write().map_err(s)?;
            {
                let mut t = txn.open_table(LOGS).map_err(s)?;
                t.retain_in(log_id.index.., |_, _| false).map_err(s)?;
            }
            txn.commit().map_err(s)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let db = self.db.clone();
        let sm = self.sm.clone();
        blocking("purge", move || {
            // openraft purges only what is applied (and snapshotted): make that durable first.
            sync_sm(&sm)?;
            let bytes = enc(&Some(log_id))?;
            let txn = db.begin_write().map_err(s)?;
            {
                let mut m = txn.open_table(RAFT_META).map_err(s)?;
                m.insert("last_purged", bytes.as_slice()).map_err(s)?;
                let mut t = txn.open_table(LOGS).map_err(s)?;
                t.retain_in(..=log_id.index, |_, _| false).map_err(s)?;
            }
            txn.commit().map_err(s)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    revision: u64,
    entries: Vec<KvEntry>,
    leases: Vec<(u64, Lease)>,
    dedup: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, KvNode>,
    body: Vec<u8>,
}

/// The KV state machine (data, leases, watch history) and its snapshots.
#[derive(Clone)]
pub(crate) struct StateMachine {
    pub(crate) db: Arc<Database>,
    dir: PathBuf,
    /// When the state machine was last made durable.
    synced: Arc<Mutex<Instant>>,
    revision: watch::Sender<u64>,
    /// Notified after every apply with the last applied index, for the lease reaper's wake-ups.
    applied: watch::Sender<u64>,
}

struct Tables<'t> {
    data: Table<'t, &'static str, &'static [u8]>,
    leases: Table<'t, u64, &'static [u8]>,
    history: Table<'t, u64, &'static [u8]>,
    /// Changes of the command being applied (one revision for all of them).
    pending: Vec<Change>,
    /// Whether the command being applied took a new revision already.
    bumped: bool,
    /// The first revision the history keeps (see `compact_revision`).
    first: u64,
}

/// etcd's compact revision for a history that keeps revisions from `first` on (0: never
/// compacted).
pub(crate) fn compact_revision(first: u64) -> u64 {
    if first <= 1 {
        0
    } else {
        first
    }
}

/// The revision of the command being applied: a new one at its first change.
fn bump(t: &mut Tables<'_>, rev: &mut u64) -> u64 {
    if !t.bumped {
        *rev += 1;
        t.bumped = true;
    }
    *rev
}

/// Write the changes of the command just applied to the history, under its revision.
fn flush(t: &mut Tables<'_>, rev: u64) -> Result<(), String> {
    if t.bumped {
        let changes = std::mem::take(&mut t.pending);
        t.history
            .insert(rev, enc(&changes)?.as_slice())
            .map_err(s)?;
        t.bumped = false;
    }
    Ok(())
}

impl StateMachine {
    pub(crate) fn new(db: Arc<Database>, dir: PathBuf) -> Result<Self, String> {
        let rev: u64 = meta_get(&db, SM_META, "revision")?.unwrap_or(0);
        let (revision, _) = watch::channel(rev);
        let (applied, _) = watch::channel(0);
        Ok(StateMachine {
            db,
            dir,
            synced: Arc::new(Mutex::new(Instant::now())),
            revision,
            applied,
        })
    }

    pub(crate) fn subscribe_revision(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    pub(crate) fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Read one key.
    pub(crate) async fn get(&self, key: String) -> Result<(Option<KvEntry>, u64), String> {
        let db = self.db.clone();
        let rev = self.revision();
        run_blocking(move || {
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(DATA).map_err(s)?;
            let v = match t.get(key.as_str()).map_err(s)? {
                Some(v) => Some(dec::<KvEntry>(v.value())?),
                None => None,
            };
            Ok((v, rev))
        })
        .await
    }

    /// Every key starting with `prefix`, in key order.
    pub(crate) async fn range(
        &self,
        prefix: String,
        limit: usize,
    ) -> Result<(Vec<KvEntry>, u64), String> {
        let db = self.db.clone();
        let rev = self.revision();
        run_blocking(move || {
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(DATA).map_err(s)?;
            let mut out = Vec::new();
            for item in t.range::<&str>(prefix.as_str()..).map_err(s)? {
                let (k, v) = item.map_err(s)?;
                if !k.value().starts_with(prefix.as_str()) || out.len() >= limit {
                    break;
                }
                out.push(dec::<KvEntry>(v.value())?);
            }
            Ok((out, rev))
        })
        .await
    }

    /// Every lease, in id order.
    pub(crate) async fn leases(&self) -> Result<Vec<(u64, Lease)>, String> {
        let db = self.db.clone();
        run_blocking(move || {
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(LEASES).map_err(s)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(s)? {
                let (k, v) = item.map_err(s)?;
                out.push((k.value(), dec::<Lease>(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// One lease.
    pub(crate) async fn lease(&self, id: u64) -> Result<Option<Lease>, String> {
        let db = self.db.clone();
        run_blocking(move || {
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(LEASES).map_err(s)?;
            match t.get(id).map_err(s)? {
                Some(v) => Ok(Some(dec::<Lease>(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Events with revision `>= from` under `prefix` (at most `limit`), or an error when `from`
    /// is older than the kept history.
    pub(crate) async fn history(
        &self,
        prefix: String,
        from: u64,
        limit: usize,
    ) -> Result<WatchBatch, super::KvError> {
        let db = self.db.clone();
        let current = self.revision();
        let res = run_blocking(move || {
            let first: u64 = meta_get(&db, SM_META, "history_first")?.unwrap_or(1);
            if from < first && from <= current {
                return Ok(Err(first));
            }
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(HISTORY).map_err(s)?;
            let mut events = Vec::new();
            let mut next = from.max(first);
            for item in t.range(from..).map_err(s)? {
                let (k, v) = item.map_err(s)?;
                let revision = k.value();
                next = revision + 1;
                for c in dec::<Vec<Change>>(v.value())? {
                    if c.kv.key.starts_with(prefix.as_str()) {
                        events.push(WatchEvent {
                            revision,
                            kind: c.kind,
                            key: c.kv.key,
                            value: (c.kind == EventKind::Put).then_some(c.kv.value),
                        });
                    }
                }
                // Never split a revision between two pages.
                if events.len() >= limit {
                    break;
                }
            }
            if events.len() < limit {
                next = next.max(current + 1);
            }
            Ok(Ok(WatchBatch { events, next }))
        })
        .await
        .map_err(super::KvError::Storage)?;
        res.map_err(|oldest| super::KvError::Compacted { from, oldest })
    }

    fn apply_sync(
        db: &Database,
        entries: Vec<Entry<TypeConfig>>,
        durable: bool,
    ) -> Result<(Vec<CmdResult>, u64, u64), String> {
        // Mostly not fsync'd: the log is (see the module docs).
        let mut txn = db.begin_write().map_err(s)?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(s)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut rev: u64;
        let mut last_index = 0;
        {
            let mut meta = txn.open_table(SM_META).map_err(s)?;
            rev = match meta.get("revision").map_err(s)? {
                Some(v) => dec(v.value())?,
                None => 0,
            };
            let mut dedup = txn.open_table(DEDUP).map_err(s)?;
            let first: u64 = match meta.get("history_first").map_err(s)? {
                Some(v) => dec(v.value())?,
                None => 1,
            };
            let mut tables = Tables {
                data: txn.open_table(DATA).map_err(s)?,
                leases: txn.open_table(LEASES).map_err(s)?,
                history: txn.open_table(HISTORY).map_err(s)?,
                pending: Vec::new(),
                bumped: false,
                first,
            };
            let mut last_applied = None;
            let mut membership = None;
            for entry in entries {
                let index = entry.log_id.index;
                last_index = index;
                last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CmdResult::None,
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        CmdResult::None
                    }
                    EntryPayload::Normal(p) => match p.cmd {
                        Command::Batch(items) => {
                            let mut results = Vec::with_capacity(items.len());
                            for item in items {
                                results.push(apply_proposal(
                                    &mut tables,
                                    &mut dedup,
                                    item,
                                    index,
                                    &mut rev,
                                )?);
                            }
                            CmdResult::Batch(results)
                        }
                        cmd => apply_proposal(
                            &mut tables,
                            &mut dedup,
                            Proposal {
                                request: p.request,
                                cmd,
                            },
                            index,
                            &mut rev,
                        )?,
                    },
                };
                out.push(result);
                if index % 4096 == 0 && index > DEDUP_WINDOW {
                    let cut = index - DEDUP_WINDOW;
                    dedup
                        .retain(|_, v| {
                            dec::<(u64, CmdResult)>(v)
                                .map(|x| x.0 >= cut)
                                .unwrap_or(false)
                        })
                        .map_err(s)?;
                }
            }
            let mut cut = tables.first;
            if rev > HISTORY_KEEP {
                cut = cut.max(rev - HISTORY_KEEP);
            }
            if first < cut {
                tables.history.retain_in(..cut, |_, _| false).map_err(s)?;
                meta.insert("history_first", enc(&cut)?.as_slice())
                    .map_err(s)?;
            }
            meta.insert("revision", enc(&rev)?.as_slice()).map_err(s)?;
            if let Some(la) = last_applied {
                meta.insert("last_applied", enc(&Some(la))?.as_slice())
                    .map_err(s)?;
            }
            if let Some(m) = membership {
                meta.insert("membership", enc(&m)?.as_slice()).map_err(s)?;
            }
        }
        txn.commit().map_err(s)?;
        Ok((out, rev, last_index))
    }

    fn build_snapshot_sync(
        db: &Database,
        dir: &Path,
    ) -> Result<(SnapshotMeta<NodeId, KvNode>, Vec<u8>), String> {
        let txn = db.begin_read().map_err(s)?;
        let meta = txn.open_table(SM_META).map_err(s)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, String> {
            Ok(meta.get(k).map_err(s)?.map(|v| v.value().to_vec()))
        };
        let last_applied: Option<LogId<NodeId>> = match get("last_applied")? {
            Some(b) => dec(&b)?,
            None => None,
        };
        let membership: StoredMembership<NodeId, KvNode> = match get("membership")? {
            Some(b) => dec(&b)?,
            None => StoredMembership::default(),
        };
        let revision: u64 = match get("revision")? {
            Some(b) => dec(&b)?,
            None => 0,
        };
        let mut entries = Vec::new();
        for item in txn.open_table(DATA).map_err(s)?.iter().map_err(s)? {
            let (_, v) = item.map_err(s)?;
            entries.push(dec::<KvEntry>(v.value())?);
        }
        let mut leases = Vec::new();
        for item in txn.open_table(LEASES).map_err(s)?.iter().map_err(s)? {
            let (k, v) = item.map_err(s)?;
            leases.push((k.value(), dec::<Lease>(v.value())?));
        }
        let mut dedup = Vec::new();
        for item in txn.open_table(DEDUP).map_err(s)?.iter().map_err(s)? {
            let (k, v) = item.map_err(s)?;
            dedup.push((k.value().to_vec(), v.value().to_vec()));
        }
        let body = enc(&SnapshotBody {
            revision,
            entries,
            leases,
            dedup,
        })?;
        let snap_meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}",
                last_applied.map(|l| l.index).unwrap_or(0),
                revision
            ),
        };
        write_snapshot_file(dir, &snap_meta, &body)?;
        Ok((snap_meta, body))
    }

    fn install_sync(
        db: &Database,
        dir: &Path,
        meta: &SnapshotMeta<NodeId, KvNode>,
        body: &[u8],
    ) -> Result<u64, String> {
        let snap: SnapshotBody = dec(body)?;
        let txn: WriteTransaction = db.begin_write().map_err(s)?;
        {
            let mut data = txn.open_table(DATA).map_err(s)?;
            data.retain(|_, _| false).map_err(s)?;
            for e in &snap.entries {
                data.insert(e.key.as_str(), enc(e)?.as_slice()).map_err(s)?;
            }
            let mut leases = txn.open_table(LEASES).map_err(s)?;
            leases.retain(|_, _| false).map_err(s)?;
            for (id, l) in &snap.leases {
                leases.insert(*id, enc(l)?.as_slice()).map_err(s)?;
            }
            let mut dedup = txn.open_table(DEDUP).map_err(s)?;
            dedup.retain(|_, _| false).map_err(s)?;
            for (k, v) in &snap.dedup {
                dedup.insert(k.as_slice(), v.as_slice()).map_err(s)?;
            }
            let mut history = txn.open_table(HISTORY).map_err(s)?;
            history.retain(|_, _| false).map_err(s)?;
            let mut m = txn.open_table(SM_META).map_err(s)?;
            m.insert("revision", enc(&snap.revision)?.as_slice())
                .map_err(s)?;
            m.insert("history_first", enc(&(snap.revision + 1))?.as_slice())
                .map_err(s)?;
            m.insert("last_applied", enc(&meta.last_log_id)?.as_slice())
                .map_err(s)?;
            m.insert("membership", enc(&meta.last_membership)?.as_slice())
                .map_err(s)?;
        }
        txn.commit().map_err(s)?;
        write_snapshot_file(dir, meta, body)?;
        Ok(snap.revision)
    }
}

pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))?
}

fn write_snapshot_file(
    dir: &Path,
    meta: &SnapshotMeta<NodeId, KvNode>,
    body: &[u8],
) -> Result<(), String> {
    let bytes = seal_snapshot(&enc(&SnapshotFile {
        meta: meta.clone(),
        body: body.to_vec(),
    })?);
    let tmp = dir.join("snapshot.bin.tmp");
    let dst = dir.join("snapshot.bin");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&bytes).map_err(s)?;
    f.sync_all().map_err(s)?;
    std::fs::rename(&tmp, &dst).map_err(s)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The first bytes of a snapshot file; a SHA-256 of the rest follows.
const SNAPSHOT_MAGIC: &[u8] = b"draft-kv-snapshot 1\n";

/// The snapshot file's bytes: [`SNAPSHOT_MAGIC`], the SHA-256 of `payload`, `payload`.
fn seal_snapshot(payload: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&sha2::Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of a snapshot file's bytes, if they are whole.
fn open_snapshot(b: &[u8]) -> Result<&[u8], &'static str> {
    use sha2::Digest;
    let rest = b
        .strip_prefix(SNAPSHOT_MAGIC)
        .ok_or("not a KV snapshot file (no header)")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (sum, payload) = rest.split_at(32);
    if sha2::Sha256::digest(payload).as_slice() != sum {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// The latest snapshot (`None`: none was taken). A damaged file is an error naming it.
fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, String> {
    let path = dir.join("snapshot.bin");
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let payload =
        open_snapshot(&b).map_err(|why| format!("{} is corrupt ({why})", path.display()))?;
    dec(payload)
        .map(Some)
        .map_err(|e| format!("{} is corrupt ({e})", path.display()))
}

/// Check `snapshot.bin` on start. It is a copy of the state machine at one log index, kept to
/// send to members that lag behind the compacted log: when it is damaged (and the state machine
/// is whole), it is moved to `snapshot.bin.corrupt` and written again from the state machine.
pub(crate) fn check_snapshot_file(sm: &StateMachine) -> Result<(), String> {
    let dir = &sm.dir;
    let path = dir.join("snapshot.bin");
    let Err(why) = read_snapshot_file(dir) else {
        return Ok(());
    };
    if !path.exists() {
        return Err(why);
    }
    let aside = dir.join("snapshot.bin.corrupt");
    std::fs::rename(&path, &aside).map_err(|e| format!("{why}; cannot move it aside: {e}"))?;
    let (meta, _) = StateMachine::build_snapshot_sync(&sm.db, dir)?;
    tracing::warn!(file = %path.display(), moved_to = %aside.display(), snapshot = %meta.snapshot_id, "kv: {why}; written again from the state machine");
    Ok(())
}

fn get_entry(
    t: &Table<'_, &'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KvEntry>, String> {
    match t.get(key).map_err(s)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

fn get_lease(t: &Table<'_, u64, &'static [u8]>, id: u64) -> Result<Option<Lease>, String> {
    match t.get(id).map_err(s)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

fn record(t: &mut Tables<'_>, change: Change) {
    t.pending.push(change);
}

fn detach(t: &mut Tables<'_>, lease: Option<u64>, key: &str) -> Result<(), String> {
    if let Some(id) = lease {
        if let Some(mut l) = get_lease(&t.leases, id)? {
            l.keys.retain(|k| k != key);
            t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
        }
    }
    Ok(())
}

fn do_put(
    t: &mut Tables<'_>,
    key: String,
    value: String,
    lease: Option<u64>,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    let mut new_lease = None;
    if let Some(id) = lease {
        match get_lease(&t.leases, id)? {
            Some(l) => new_lease = Some(l),
            None => {
                return Ok(CmdResult::Refused(format!(
                    "lease {id} not found (expired or revoked)"
                )))
            }
        }
    }
    let prev = get_entry(&t.data, &key)?;
    let r = bump(t, rev);
    let entry = KvEntry {
        key: key.clone(),
        value,
        create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(r),
        mod_revision: r,
        version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
        lease,
    };
    let prev_lease = prev.as_ref().and_then(|p| p.lease);
    if prev_lease != lease {
        detach(t, prev_lease, &key)?;
        if let (Some(id), Some(mut l)) = (lease, new_lease) {
            l.keys.push(key.clone());
            t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
        }
    }
    t.data
        .insert(key.as_str(), enc(&entry)?.as_slice())
        .map_err(s)?;
    record(
        t,
        Change {
            kind: EventKind::Put,
            kv: entry,
            prev: prev.clone(),
        },
    );
    Ok(CmdResult::Put { revision: r, prev })
}

fn do_delete(t: &mut Tables<'_>, key: String, rev: &mut u64) -> Result<CmdResult, String> {
    let prev = match t.data.remove(key.as_str()).map_err(s)? {
        Some(v) => Some(dec::<KvEntry>(v.value())?),
        None => None,
    };
    if let Some(p) = &prev {
        let r = bump(t, rev);
        detach(t, p.lease, &key)?;
        record(
            t,
            Change {
                kind: EventKind::Delete,
                kv: KvEntry {
                    key,
                    value: String::new(),
                    create_revision: 0,
                    mod_revision: r,
                    version: 0,
                    lease: None,
                },
                prev: prev.clone(),
            },
        );
    }
    Ok(CmdResult::Delete {
        revision: *rev,
        prev,
    })
}

fn do_revoke(t: &mut Tables<'_>, id: u64, rev: &mut u64) -> Result<Option<Lease>, String> {
    let lease = match t.leases.remove(id).map_err(s)? {
        Some(v) => dec::<Lease>(v.value())?,
        None => return Ok(None),
    };
    for key in &lease.keys {
        if get_entry(&t.data, key)?.and_then(|e| e.lease) == Some(id) {
            do_delete(t, key.clone(), rev)?;
        }
    }
    Ok(Some(lease))
}

/// etcd's message for a revision above the current one.
pub(crate) const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's message for a revision below the compact revision.
pub(crate) const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// The entries of a key range, in key order.
pub(crate) fn scan<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    r: &KeyRange,
) -> Result<Vec<KvEntry>, String> {
    let mut out = Vec::new();
    if r.end == RangeEnd::Single {
        if let Some(v) = t.get(r.key.as_str()).map_err(s)? {
            out.push(dec(v.value())?);
        }
        return Ok(out);
    }
    for item in t.range::<&str>(r.key.as_str()..).map_err(s)? {
        let (k, v) = item.map_err(s)?;
        if r.past(k.value()) {
            break;
        }
        out.push(dec(v.value())?);
    }
    Ok(out)
}

/// A transaction: compares, then one branch, all at one revision. A put naming a missing
/// lease, or keeping the value or lease of a missing key, refuses the whole transaction
/// before anything changes (as etcd does).
fn do_txn(t: &mut Tables<'_>, txn: Txn, rev: &mut u64) -> Result<CmdResult, String> {
    let mut succeeded = true;
    for c in &txn.compares {
        if !c.holds(&scan(&t.data, &c.range)?) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { txn.success } else { txn.failure };
    for op in &ops {
        if let TxnOp::Put { key, value, lease } = op {
            if let Some(Some(id)) = lease {
                if get_lease(&t.leases, *id)?.is_none() {
                    return Ok(CmdResult::Refused(format!(
                        "lease {id} not found (expired or revoked)"
                    )));
                }
            }
            if (value.is_none() || lease.is_none()) && get_entry(&t.data, key)?.is_none() {
                return Ok(CmdResult::Refused(format!(
                    "{KEY_NOT_FOUND}: '{key}' (keeping the value or lease needs an existing key)"
                )));
            }
        }
    }
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            TxnOp::Range(q) => {
                let kvs = scan(&t.data, &q.range)?;
                responses.push(TxnOpResult::Range(q.finish(kvs, *rev)));
            }
            TxnOp::Put { key, value, lease } => {
                let cur = get_entry(&t.data, &key)?;
                let value = match value {
                    Some(v) => v,
                    None => cur.as_ref().map(|c| c.value.clone()).unwrap_or_default(),
                };
                let lease = lease.unwrap_or_else(|| cur.and_then(|c| c.lease));
                match do_put(t, key, value, lease, rev)? {
                    CmdResult::Put { prev, .. } => responses.push(TxnOpResult::Put { prev }),
                    other => return Ok(other),
                }
            }
            TxnOp::Delete(r) => {
                let keys: Vec<String> = scan(&t.data, &r)?.into_iter().map(|e| e.key).collect();
                let mut prev = Vec::with_capacity(keys.len());
                for k in keys {
                    if let CmdResult::Delete { prev: Some(p), .. } = do_delete(t, k, rev)? {
                        prev.push(p);
                    }
                }
                responses.push(TxnOpResult::Delete { prev });
            }
        }
    }
    Ok(CmdResult::Txn(TxnResult {
        succeeded,
        revision: *rev,
        responses,
    }))
}

/// etcd's message for a put that keeps the value or lease of a missing key.
pub(crate) const KEY_NOT_FOUND: &str = "etcdserver: key not found";

/// Apply one proposal once: a request id seen before gets its first result again.
fn apply_proposal(
    t: &mut Tables<'_>,
    dedup: &mut Table<'_, &'static [u8], &'static [u8]>,
    p: Proposal,
    index: u64,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    let key = p.request.map(|(c, q)| {
        let mut k = c.to_be_bytes().to_vec();
        k.extend_from_slice(&q.to_be_bytes());
        k
    });
    if let Some(k) = &key {
        if let Some(v) = dedup.get(k.as_slice()).map_err(s)? {
            return Ok(dec::<(u64, CmdResult)>(v.value())?.1);
        }
    }
    let r = apply_cmd(t, p.cmd, index, rev)?;
    flush(t, *rev)?;
    if let Some(k) = key {
        let b = enc(&(index, r.clone()))?;
        dedup.insert(k.as_slice(), b.as_slice()).map_err(s)?;
    }
    Ok(r)
}

fn apply_cmd(
    t: &mut Tables<'_>,
    cmd: Command,
    index: u64,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    match cmd {
        Command::Put { key, value, lease } => do_put(t, key, value, lease, rev),
        Command::Delete { key } => do_delete(t, key, rev),
        Command::Cas {
            key,
            expect,
            new,
            lease,
        } => {
            let current = get_entry(&t.data, &key)?;
            let ok = match &expect {
                Expect::Value(v) => current.as_ref().map(|c| &c.value) == v.as_ref(),
                Expect::Revision(r) => current.as_ref().map(|c| c.mod_revision).unwrap_or(0) == *r,
            };
            if !ok {
                return Ok(CmdResult::Cas {
                    ok: false,
                    revision: *rev,
                    current,
                });
            }
            let r = match new {
                Some(v) => do_put(t, key, v, lease, rev)?,
                None => do_delete(t, key, rev)?,
            };
            if let CmdResult::Refused(m) = r {
                return Ok(CmdResult::Refused(m));
            }
            Ok(CmdResult::Cas {
                ok: true,
                revision: *rev,
                current,
            })
        }
        Command::Grant { ttl_ms, now_ms } => {
            let l = Lease {
                ttl_ms,
                expires_at_ms: now_ms.saturating_add(ttl_ms),
                keys: Vec::new(),
            };
            t.leases.insert(index, enc(&l)?.as_slice()).map_err(s)?;
            Ok(CmdResult::Lease { id: index, ttl_ms })
        }
        Command::KeepAlive { id, now_ms } => match get_lease(&t.leases, id)? {
            Some(mut l) => {
                l.expires_at_ms = now_ms.saturating_add(l.ttl_ms);
                t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
                Ok(CmdResult::Lease {
                    id,
                    ttl_ms: l.ttl_ms,
                })
            }
            None => Ok(CmdResult::Refused(format!(
                "lease {id} not found (expired or revoked)"
            ))),
        },
        Command::Revoke { id } => match do_revoke(t, id, rev)? {
            Some(l) => Ok(CmdResult::Lease {
                id,
                ttl_ms: l.ttl_ms,
            }),
            None => Ok(CmdResult::Refused(format!(
                "lease {id} not found (expired or revoked)"
            ))),
        },
        Command::Expire { now_ms } => {
            let mut expired = Vec::new();
            for item in t.leases.iter().map_err(s)? {
                let (k, v) = item.map_err(s)?;
                if dec::<Lease>(v.value())?.expires_at_ms <= now_ms {
                    expired.push(k.value());
                }
            }
            for id in expired {
                do_revoke(t, id, rev)?;
            }
            Ok(CmdResult::None)
        }
        // Batches are only built by the leader's batcher, never nested.
        Command::Batch(_) => Ok(CmdResult::Refused("a batch cannot hold a batch".into())),
        Command::Txn(txn) => do_txn(t, txn, rev),
        Command::Compact { revision } => {
            if revision > *rev {
                Ok(CmdResult::Refused(format!(
                    "{FUTURE_REV}: {revision} > {}",
                    *rev
                )))
            } else if revision <= compact_revision(t.first) {
                Ok(CmdResult::Refused(format!(
                    "{COMPACTED}: {revision} <= {}",
                    compact_revision(t.first)
                )))
            } else {
                t.first = revision;
                Ok(CmdResult::None)
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let db = self.db.clone();
        let dir = self.dir.clone();
        let (meta, body) = blocking("build snapshot", move || {
            Self::build_snapshot_sync(&db, &dir)
        })
        .await?;
        tracing::info!(snapshot = %meta, "kv: snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(body)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, KvNode>), SErr> {
        let db = self.db.clone();
        blocking("applied state", move || {
            let la: Option<LogId<NodeId>> = meta_get(&db, SM_META, "last_applied")?.flatten();
            let m: StoredMembership<NodeId, KvNode> =
                meta_get(&db, SM_META, "membership")?.unwrap_or_default();
            Ok((la, m))
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CmdResult>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let db = self.db.clone();
        let durable = {
            let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
            let due = synced.elapsed() >= SM_SYNC_EVERY;
            if due {
                *synced = Instant::now();
            }
            due
        };
        let (out, rev, last) =
            blocking("apply", move || Self::apply_sync(&db, entries, durable)).await?;
        self.revision.send_replace(rev);
        self.applied.send_replace(last);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, KvNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let db = self.db.clone();
        let dir = self.dir.clone();
        let meta2 = meta.clone();
        let body = snapshot.into_inner();
        let rev = blocking("install snapshot", move || {
            Self::install_sync(&db, &dir, &meta2, &body)
        })
        .await?;
        tracing::info!(snapshot = %meta, "kv: snapshot installed");
        self.revision.send_replace(rev);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let dir = self.dir.clone();
        let file = blocking("read snapshot", move || read_snapshot_file(&dir)).await?;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.body)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh pair of stores in a temporary directory (kept alive by the returned guard).
    struct Builder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for Builder
    {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SErr> {
            let dir = tempfile::tempdir().map_err(|e| serr("temp dir", e))?;
            let dbs = open(dir.path()).map_err(|e| serr("open", e))?;
            let sm = StateMachine::new(dbs.sm.clone(), dir.path().to_path_buf())
                .map_err(|e| serr("state machine", e))?;
            Ok((dir, LogStore::new(&dbs), sm))
        }
    }

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(Proposal { request: None, cmd }),
        }
    }

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: Some(value.into()),
            lease: Some(None),
        }
    }

    /// etcd's revision rules: a transaction or a multi-key delete takes one revision for all
    /// its changes; a read at a past revision sees the entries as they were; the history keeps
    /// every change with the entry before it; compaction refuses older reads.
    #[tokio::test]
    async fn txns_take_one_revision_and_past_revisions_are_readable() {
        use crate::kv::txn::{Compare, CompareOp, CompareTarget, RangeQuery};
        let dir = tempfile::tempdir().expect("tmp");
        let dbs = open(dir.path()).expect("open");
        let sm = StateMachine::new(dbs.sm.clone(), dir.path().to_path_buf()).expect("sm");
        let txn = |success: Vec<TxnOp>| {
            Command::Txn(Txn {
                compares: vec![],
                success,
                failure: vec![],
            })
        };
        let all = || KeyRange::from_etcd("a".into(), b"\0");
        let entries = vec![
            entry(1, txn(vec![put("a", "1"), put("b", "1")])),
            entry(2, txn(vec![put("a", "2")])),
            entry(
                3,
                Command::Txn(Txn {
                    compares: vec![Compare {
                        range: KeyRange::single("a"),
                        target: CompareTarget::Version(2),
                        op: CompareOp::Equal,
                    }],
                    success: vec![TxnOp::Delete(all())],
                    failure: vec![put("never", "x")],
                }),
            ),
            entry(4, txn(vec![put("a", "3")])),
        ];
        let (out, rev, _) = StateMachine::apply_sync(&dbs.sm, entries, false).expect("apply");
        sm.revision.send_replace(rev);
        assert_eq!(rev, 4, "four write requests, four revisions");
        match &out[2] {
            CmdResult::Txn(r) => {
                assert!(r.succeeded);
                assert_eq!(r.revision, 3);
                assert!(matches!(&r.responses[0], TxnOpResult::Delete { prev } if prev.len() == 2));
            }
            other => panic!("{other:?}"),
        }
        let at = |revision: u64| {
            let mut q = RangeQuery::new(all());
            q.revision = revision;
            q
        };
        let r1 = sm.query(at(1)).await.expect("at 1");
        let got: Vec<_> = r1
            .kvs
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.mod_revision, e.version))
            .collect();
        assert_eq!(got, [("a", "1", 1, 1), ("b", "1", 1, 1)]);
        let r2 = sm.query(at(2)).await.expect("at 2");
        assert_eq!((r2.kvs[0].value.as_str(), r2.kvs[0].version), ("2", 2));
        assert!(sm.query(at(3)).await.expect("at 3").kvs.is_empty());
        let now = sm.query(at(0)).await.expect("now");
        assert_eq!(
            (now.kvs[0].create_revision, now.kvs[0].version, now.count),
            (4, 1, 1),
            "re-created after the delete"
        );
        let ch = sm.changes(all(), 3, 100).await.expect("changes");
        let kinds: Vec<_> = ch
            .changes
            .iter()
            .map(|(r, c)| (*r, c.kind, c.kv.key.as_str(), c.prev.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                (3, EventKind::Delete, "a", true),
                (3, EventKind::Delete, "b", true),
                (4, EventKind::Put, "a", false)
            ]
        );
        // Compaction up to 3: reading or watching below it is refused.
        let (_, rev, _) = StateMachine::apply_sync(
            &dbs.sm,
            vec![entry(5, Command::Compact { revision: 3 })],
            false,
        )
        .expect("compact");
        assert_eq!(rev, 4, "compaction takes no revision");
        assert!(matches!(
            sm.query(at(2)).await,
            Err(crate::kv::KvError::Compacted { oldest: 3, .. })
        ));
        assert!(sm.query(at(3)).await.is_ok());
        assert!(matches!(
            sm.changes(all(), 2, 10).await,
            Err(crate::kv::KvError::Compacted { oldest: 3, .. })
        ));
        let future = sm.query(at(9)).await.expect_err("future");
        assert!(future.to_string().contains(FUTURE_REV), "{future}");
    }

    /// openraft's own storage conformance suite, on the redb log store and state machine.
    #[test]
    fn passes_the_openraft_storage_suite() {
        openraft::testing::Suite::test_all(Builder).expect("openraft storage suite");
    }

    /// A store from before the split (log, vote and state machine in `kv.redb`) opens with its
    /// log and vote moved to `log.redb`, its data left in place, and no log tables left behind.
    #[test]
    fn single_file_store_migrates_its_log_and_vote() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let db = Database::create(dir.path().join("kv.redb")).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut logs = txn.open_table(LOGS).expect("logs");
                logs.insert(7u64, b"entry7".as_slice()).expect("insert");
                let mut meta = txn.open_table(RAFT_META).expect("meta");
                meta.insert("vote", b"v".as_slice()).expect("insert");
                let mut data = txn.open_table(DATA).expect("data");
                data.insert("k", b"v".as_slice()).expect("insert");
            }
            txn.commit().expect("commit");
        }
        for _ in 0..2 {
            // Opening again (already migrated) changes nothing.
            let dbs = open(dir.path()).expect("open");
            let log = dbs.log.begin_read().expect("read");
            let logs = log.open_table(LOGS).expect("logs");
            assert_eq!(
                logs.get(7u64).expect("get").map(|v| v.value().to_vec()),
                Some(b"entry7".to_vec())
            );
            let meta = log.open_table(RAFT_META).expect("meta");
            assert!(meta.get("vote").expect("get").is_some());
            assert!(meta.get("format").expect("get").is_some());
            let sm = dbs.sm.begin_read().expect("read");
            assert!(sm.open_table(LOGS).is_err(), "old log table left behind");
            let data = sm.open_table(DATA).expect("data");
            assert!(data.get("k").expect("get").is_some());
        }
    }
}
