//! The KV state machine (data, leases, watch history) on redb (`kv.redb`): reads, applies in
//! batches, snapshots built and installed; openraft's state-machine storage.

use super::*;
use crate::kv::KvError;

/// The KV state machine (data, leases, watch history) and its snapshots.
#[derive(Clone)]
pub(crate) struct StateMachine {
    pub(crate) db: Arc<Database>,
    pub(super) dir: PathBuf,
    /// When the state machine was last made durable.
    pub(super) synced: Arc<Mutex<Instant>>,
    pub(super) revision: watch::Sender<u64>,
    /// Notified after every apply with the last applied index, for the lease reaper's wake-ups.
    pub(super) applied: watch::Sender<u64>,
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
    ) -> Result<WatchBatch, KvError> {
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
        .map_err(KvError::Storage)?;
        res.map_err(|oldest| KvError::Compacted { from, oldest })
    }

    pub(super) fn apply_sync(
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

    pub(super) fn build_snapshot_sync(
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

    pub(super) fn install_sync(
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
