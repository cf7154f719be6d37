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

mod apply;
mod log;
mod snapshot_file;
mod state_machine;
#[cfg(test)]
mod tests;

use apply::*;
pub(crate) use apply::{compact_revision, scan, FUTURE_REV};
pub(crate) use log::LogStore;
pub(crate) use snapshot_file::check_snapshot_file;
use snapshot_file::*;
pub(crate) use state_machine::{run_blocking, StateMachine};
