//! `v3lockpb.Lock`: etcd's lock service, with etcd's algorithm (its `concurrency.Mutex`): the
//! lock `name` is held by the key `name/<lease in hex>` with the smallest create revision; a
//! locker writes its key (attached to its lease) and waits until every older key is gone. The
//! key vanishes with the lease, so a crashed holder frees the lock when its lease expires.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{
    header,
    pb::v3lockpb::{self as pb, lock_server::Lock as LockApi},
    status::{to_status, utf8},
};
use crate::kv::{
    Compare, CompareOp, CompareTarget, KeyRange, Kv, KvEntry, RangeEnd, RangeQuery, SortTarget,
    Txn, TxnOp, TxnOpResult,
};

pub(crate) struct LockService {
    pub(crate) kv: Kv,
}

/// The key range of every candidate of `name` (`name/...`).
pub(crate) fn candidates(name: &str) -> KeyRange {
    let prefix = format!("{name}/");
    let mut end = prefix.clone().into_bytes();
    if let Some(last) = end.last_mut() {
        *last += 1; // '/' + 1 = '0'
    }
    KeyRange {
        key: prefix,
        end: RangeEnd::Before(end),
    }
}

/// Write `name/<lease>` with `value` unless it exists (then set the value when `value` is
/// given), and answer the entry.
pub(crate) async fn enter(
    kv: &Kv,
    name: &str,
    lease: u64,
    value: Option<String>,
) -> Result<KvEntry, Status> {
    if lease == 0 {
        return Err(Status::invalid_argument(
            "a lease is required (grant one, and keep it alive while you hold the key)",
        ));
    }
    let key = format!("{name}/{lease:x}");
    let r = kv
        .txn(Txn {
            compares: vec![Compare {
                range: KeyRange::single(key.clone()),
                target: CompareTarget::Create(0),
                op: CompareOp::Equal,
            }],
            success: vec![
                TxnOp::Put {
                    key: key.clone(),
                    value: Some(value.clone().unwrap_or_default()),
                    lease: Some(Some(lease)),
                },
                TxnOp::Range(RangeQuery::new(KeyRange::single(key.clone()))),
            ],
            failure: vec![TxnOp::Range(RangeQuery::new(KeyRange::single(key.clone())))],
        })
        .await
        .map_err(to_status)?;
    let existing = match r.responses.into_iter().last() {
        Some(TxnOpResult::Range(rr)) => rr.kvs.into_iter().next(),
        _ => None,
    };
    let entry = existing.ok_or_else(|| Status::internal(format!("'{key}' vanished")))?;
    match value {
        Some(v) if !r.succeeded && entry.value != v => proclaim(kv, &entry, v).await,
        _ => Ok(entry),
    }
}

/// Set the value of a held key, if it is still the one created at `entry.create_revision`.
pub(crate) async fn proclaim(kv: &Kv, entry: &KvEntry, value: String) -> Result<KvEntry, Status> {
    let r = kv
        .txn(Txn {
            compares: vec![Compare {
                range: KeyRange::single(entry.key.clone()),
                target: CompareTarget::Create(entry.create_revision),
                op: CompareOp::Equal,
            }],
            success: vec![
                TxnOp::Put {
                    key: entry.key.clone(),
                    value: Some(value),
                    lease: None,
                },
                TxnOp::Range(RangeQuery::new(KeyRange::single(entry.key.clone()))),
            ],
            failure: vec![],
        })
        .await
        .map_err(to_status)?;
    if !r.succeeded {
        return Err(Status::failed_precondition(
            "etcdserver: election: not leader",
        ));
    }
    match r.responses.into_iter().last() {
        Some(TxnOpResult::Range(rr)) => rr
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the key vanished")),
        _ => Err(Status::internal("unexpected transaction result")),
    }
}

/// The oldest candidate of `name` (the lock holder / the leader), in this node's copy.
pub(crate) async fn first(kv: &Kv, name: &str) -> Result<(Option<KvEntry>, u64), Status> {
    let mut q = RangeQuery::new(candidates(name));
    q.sort = Some((SortTarget::Create, false));
    q.limit = 1;
    let r = kv.query(q, false).await.map_err(to_status)?;
    Ok((r.kvs.into_iter().next(), r.revision))
}

/// Wait until `mine` is the oldest candidate of `name`; fails when it vanished (its lease
/// ended) meanwhile.
pub(crate) async fn wait_turn(kv: &Kv, name: &str, mine: &KvEntry) -> Result<u64, Status> {
    kv.wait_revision(mine.mod_revision, Duration::from_secs(10))
        .await;
    loop {
        let (head, rev) = first(kv, name).await?;
        match head {
            Some(h) if h.key == mine.key && h.create_revision == mine.create_revision => {
                return Ok(rev)
            }
            Some(h) if h.create_revision < mine.create_revision => {}
            _ => {
                return Err(Status::not_found(
                    "etcdserver: requested lease not found (the candidate key vanished)",
                ))
            }
        }
        kv.revision_after(rev, Duration::from_secs(1)).await;
    }
}

#[tonic::async_trait]
impl LockApi for LockService {
    async fn lock(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = req.into_inner();
        let name = utf8(r.name, "lock name")?;
        if name.is_empty() {
            return Err(Status::invalid_argument("the lock name is empty"));
        }
        let mine = enter(&self.kv, &name, r.lease as u64, None).await?;
        let rev = wait_turn(&self.kv, &name, &mine).await?;
        Ok(Response::new(pb::LockResponse {
            header: Some(header(&self.kv, rev)),
            key: mine.key.into_bytes(),
        }))
    }

    async fn unlock(
        &self,
        req: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let key = utf8(req.into_inner().key, "key")?;
        if key.is_empty() {
            return Err(super::status::empty_key());
        }
        let r = self
            .kv
            .txn(Txn {
                compares: vec![],
                success: vec![TxnOp::Delete(KeyRange::single(key))],
                failure: vec![],
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UnlockResponse {
            header: Some(header(&self.kv, r.revision)),
        }))
    }
}
