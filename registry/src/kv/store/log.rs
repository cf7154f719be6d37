//! The Raft log and vote (`log.redb`): openraft's log storage.

use super::*;

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
