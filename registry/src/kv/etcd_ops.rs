//! The KV handle's operations in etcd's model (used by the etcd v3 API): transactions, range
//! queries, compaction, the changes of a key range, and what a response header carries.

use super::{
    query::Changes,
    request::{Request, Response},
    txn::{KeyRange, RangeQuery, RangeResult, Txn, TxnResult},
    validate::validate_key,
    CmdResult, Command, Kv, KvError, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// What an etcd response header says about the node that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    /// A 64-bit id of the store (a hash of its id; 0 before it has one).
    pub cluster_id: u64,
    /// This node's Raft id.
    pub member_id: u64,
    /// This node's applied store revision.
    pub revision: u64,
    /// This node's Raft term.
    pub raft_term: u64,
}

/// The 64-bit cluster id of a store id (FNV-1a, like [`super::node_id`]).
pub fn cluster_id(store: &str) -> u64 {
    super::node_id(store)
}

impl Kv {
    /// Run a transaction (etcd's `Txn`; also its `Put` and `DeleteRange`).
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// use registry::kv::{Compare, CompareOp, CompareTarget, KeyRange, Txn, TxnOp};
    /// let r = kv.txn(Txn {
    ///     compares: vec![Compare {
    ///         range: KeyRange::single("k"),
    ///         target: CompareTarget::Create(0),
    ///         op: CompareOp::Equal,
    ///     }],
    ///     success: vec![TxnOp::Put { key: "k".into(), value: Some("v".into()), lease: Some(None) }],
    ///     failure: vec![],
    /// }).await?;
    /// println!("created: {} at revision {}", r.succeeded, r.revision);
    /// # Ok(()) }
    /// ```
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, KvError> {
        validate_txn(&txn)?;
        match self.write(Command::Txn(txn)).await? {
            CmdResult::Txn(r) => Ok(r),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// A range query (linearizable: through the leader after a quorum check; else this
    /// node's copy).
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// use registry::kv::{KeyRange, RangeQuery};
    /// let mut q = RangeQuery::new(KeyRange::from_etcd("app/".into(), b"app0"));
    /// q.limit = 10;
    /// let r = kv.query(q, true).await?;
    /// println!("{} of {} keys at revision {}", r.kvs.len(), r.count, r.revision);
    /// # Ok(()) }
    /// ```
    pub async fn query(
        &self,
        query: RangeQuery,
        linearizable: bool,
    ) -> Result<RangeResult, KvError> {
        validate_range(&query.range)?;
        match self
            .exec(Request::Query {
                query,
                linearizable,
            })
            .await?
        {
            Response::Query(r) => Ok(r),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Drop the watch history before `revision` (etcd's `Compact`).
    pub async fn compact(&self, revision: u64) -> Result<(), KvError> {
        self.write(Command::Compact { revision }).await.map(|_| ())
    }

    /// This node's compact revision (0: never compacted).
    pub async fn compact_revision(&self) -> Result<u64, KvError> {
        self.inner.sm.compact_revision().await
    }

    /// Changes of `range` from revision `from` in this node's copy (it must hold one).
    pub(crate) async fn changes(
        &self,
        range: KeyRange,
        from: u64,
        limit: usize,
    ) -> Result<Changes, KvError> {
        if !self.is_member() {
            return Err(KvError::Unavailable(format!(
                "node '{}' holds no replica of the KV store yet",
                self.inner.node
            )));
        }
        self.inner.sm.changes(range, from, limit).await
    }

    /// Wait until this node's copy has applied `revision` (or the timeout passes).
    pub(crate) async fn wait_revision(&self, revision: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.inner.sm.subscribe_revision();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *rx.borrow_and_update() >= revision {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .map_or(true, |r| r.is_err())
            {
                return *rx.borrow() >= revision;
            }
        }
    }

    /// Wait for the next applied revision after `seen` on this node (or the timeout).
    pub(crate) async fn revision_after(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let mut rx = self.inner.sm.subscribe_revision();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = *rx.borrow_and_update();
            if now > seen {
                return now;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .map_or(true, |r| r.is_err())
            {
                return *rx.borrow();
            }
        }
    }

    /// What an etcd response header carries, as this node knows it now.
    pub fn header_info(&self) -> HeaderInfo {
        let term = self.inner.raft.metrics().borrow().current_term;
        HeaderInfo {
            cluster_id: self.store_id().as_deref().map(cluster_id).unwrap_or(0),
            member_id: self.inner.id,
            revision: self.inner.sm.revision(),
            raft_term: term,
        }
    }

    /// The current leader's Raft id, if known.
    pub fn leader_id(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The stop signal of the store (true once it stops).
    pub(crate) fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Record (and gossip) the address of this node's etcd API.
    pub(crate) async fn set_etcd_addr(&self, addr: std::net::SocketAddr) {
        *self
            .inner
            .etcd_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(addr);
        if let Err(e) = self
            .inner
            .rt
            .gossip_set(crate::etcd::GOSSIP_KEY, &addr.to_string())
            .await
        {
            tracing::error!("kv: cannot publish {}: {e}", crate::etcd::GOSSIP_KEY);
        }
    }

    /// The address of this node's etcd API, once it serves one.
    pub fn etcd_addr(&self) -> Option<std::net::SocketAddr> {
        *self
            .inner
            .etcd_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Gossiped `(node, key, value)` under `prefix`.
    pub(crate) async fn gossip_scan(&self, prefix: &str) -> Vec<(String, String, String)> {
        self.inner.rt.gossip_scan(prefix).await
    }

    /// Bytes on disk of the state machine's database.
    pub fn db_size(&self) -> u64 {
        std::fs::metadata(self.inner.dir.join("kv.redb")).map_or(0, |m| m.len())
    }

    /// This node's Raft id.
    pub fn member_id(&self) -> u64 {
        self.inner.id
    }

    /// `(last log index, last applied index)` of this node.
    pub fn raft_indexes(&self) -> (u64, u64) {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        (
            m.last_log_index.unwrap_or(0),
            m.last_applied.map(|l| l.index).unwrap_or(0),
        )
    }
}

pub(crate) fn validate_range(r: &KeyRange) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::Invalid("etcdserver: key is not provided".into()));
    }
    if r.key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge {
            what: "key".into(),
            size: r.key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn validate_txn(t: &Txn) -> Result<(), KvError> {
    use super::txn::TxnOp;
    for c in &t.compares {
        validate_range(&c.range)?;
    }
    for ops in [&t.success, &t.failure] {
        let mut writes: Vec<&KeyRange> = Vec::new();
        let mut puts = Vec::new();
        for op in ops.iter() {
            match op {
                TxnOp::Range(q) => validate_range(&q.range)?,
                TxnOp::Put { key, value, .. } => {
                    validate_key(key)?;
                    if let Some(v) = value {
                        if v.len() > MAX_VALUE_BYTES {
                            return Err(KvError::TooLarge {
                                what: "value".into(),
                                size: v.len(),
                                limit: MAX_VALUE_BYTES,
                            });
                        }
                    }
                    puts.push(KeyRange::single(key.clone()));
                }
                TxnOp::Delete(r) => {
                    validate_range(r)?;
                    writes.push(r);
                }
            }
        }
        for (i, p) in puts.iter().enumerate() {
            if puts[..i].contains(p) || writes.iter().any(|d| d.overlaps(p)) {
                return Err(KvError::Invalid(
                    "etcdserver: duplicate key given in txn request".into(),
                ));
            }
        }
    }
    Ok(())
}
