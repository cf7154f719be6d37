//! Reads of the state machine in etcd's model: a key range at the current or a past revision,
//! and the changes of a key range from a revision (for watches).
//!
//! A past revision is read from the current entries and the watch history: an entry changed
//! since that revision is replaced by the entry before its first later change (every history
//! record keeps it). So a read at revision `r` needs the history after `r`: revisions below the
//! compact revision answer [`KvError::Compacted`].

use std::collections::{BTreeMap, HashSet};

use redb::ReadableDatabase;

use super::{
    store::{
        compact_revision, dec, run_blocking, s, scan, Change, StateMachine, DATA, FUTURE_REV,
        HISTORY, SM_META,
    },
    txn::{KeyRange, RangeQuery, RangeResult},
    KvError,
};

/// A page of changes from the history: `(revision, change)` in order, and where to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) changes: Vec<(u64, Change)>,
    pub(crate) next: u64,
}

impl StateMachine {
    /// The first revision the history keeps.
    fn history_first(db: &redb::Database) -> Result<u64, String> {
        let txn = db.begin_read().map_err(s)?;
        let t = txn.open_table(SM_META).map_err(s)?;
        match t.get("history_first").map_err(s)? {
            Some(v) => dec(v.value()),
            None => Ok(1),
        }
    }

    /// etcd's compact revision of this replica (0: never compacted).
    pub(crate) async fn compact_revision(&self) -> Result<u64, KvError> {
        let db = self.db.clone();
        run_blocking(move || Self::history_first(&db).map(compact_revision))
            .await
            .map_err(KvError::Storage)
    }

    /// A range query, at the current revision or a retained past one.
    pub(crate) async fn query(&self, q: RangeQuery) -> Result<RangeResult, KvError> {
        let db = self.db.clone();
        let current = self.revision();
        let res = run_blocking(move || -> Result<Result<RangeResult, KvError>, String> {
            let txn = db.begin_read().map_err(s)?;
            let data = txn.open_table(DATA).map_err(s)?;
            if q.revision == 0 || q.revision >= current {
                if q.revision > current {
                    return Ok(Err(KvError::Invalid(format!(
                        "{FUTURE_REV} ({} > {current})",
                        q.revision
                    ))));
                }
                let kvs = scan(&data, &q.range)?;
                return Ok(Ok(q.finish(kvs, current)));
            }
            let compacted = compact_revision(Self::history_first(&db)?);
            if q.revision < compacted {
                return Ok(Err(KvError::Compacted {
                    from: q.revision,
                    oldest: compacted,
                }));
            }
            let at = q.revision;
            let mut found: BTreeMap<String, _> = scan(&data, &q.range)?
                .into_iter()
                .filter(|e| e.mod_revision <= at)
                .map(|e| (e.key.clone(), e))
                .collect();
            let history = txn.open_table(HISTORY).map_err(s)?;
            let mut seen = HashSet::new();
            for item in history.range(at + 1..).map_err(s)? {
                let (_, v) = item.map_err(s)?;
                for c in dec::<Vec<Change>>(v.value())? {
                    if q.range.contains(&c.kv.key) && seen.insert(c.kv.key.clone()) {
                        if let Some(p) = c.prev {
                            found.insert(c.kv.key, p);
                        }
                    }
                }
            }
            Ok(Ok(q.finish(found.into_values().collect(), current)))
        })
        .await
        .map_err(KvError::Storage)?;
        res
    }

    /// Changes of keys in `range` from revision `from` on (at most about `limit`: a revision is
    /// never split), or [`KvError::Compacted`] when `from` is below the compact revision.
    pub(crate) async fn changes(
        &self,
        range: KeyRange,
        from: u64,
        limit: usize,
    ) -> Result<Changes, KvError> {
        let db = self.db.clone();
        let current = self.revision();
        let res = run_blocking(move || -> Result<Result<Changes, KvError>, String> {
            let first = Self::history_first(&db)?;
            if from < compact_revision(first) && from <= current {
                return Ok(Err(KvError::Compacted {
                    from,
                    oldest: compact_revision(first),
                }));
            }
            let txn = db.begin_read().map_err(s)?;
            let t = txn.open_table(HISTORY).map_err(s)?;
            let mut changes = Vec::new();
            let mut next = from.max(first);
            for item in t.range(from..).map_err(s)? {
                let (k, v) = item.map_err(s)?;
                let rev = k.value();
                next = rev + 1;
                for c in dec::<Vec<Change>>(v.value())? {
                    if range.contains(&c.kv.key) {
                        changes.push((rev, c));
                    }
                }
                if changes.len() >= limit {
                    return Ok(Ok(Changes { changes, next }));
                }
            }
            Ok(Ok(Changes {
                changes,
                next: next.max(current + 1),
            }))
        })
        .await
        .map_err(KvError::Storage)?;
        res
    }
}
