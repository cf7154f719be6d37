//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use tonic::{Request, Response, Status};

use super::{
    header, key_value,
    pb::etcdserverpb::{
        self as rpc, compare, kv_server::Kv as KvApi, range_request, request_op, response_op,
    },
    status::{empty_key, to_status, utf8},
    MAX_TXN_OPS,
};
use crate::kv::{
    Compare, CompareOp, CompareTarget, KeyRange, Kv, RangeQuery, RangeResult, SortTarget, Txn,
    TxnOp, TxnOpResult,
};

pub(crate) struct KvService {
    pub(crate) kv: Kv,
}

/// A key range from etcd's `key` / `range_end`.
pub(crate) fn key_range(key: Vec<u8>, range_end: Vec<u8>) -> Result<KeyRange, Status> {
    if key.is_empty() {
        return Err(empty_key());
    }
    Ok(KeyRange::from_etcd(utf8(key, "key")?, &range_end))
}

fn nonneg(v: i64) -> u64 {
    v.max(0) as u64
}

/// etcd's `RangeRequest` as a query (and whether it is serializable).
pub(crate) fn range_query(r: rpc::RangeRequest) -> Result<(RangeQuery, bool), Status> {
    use range_request::{SortOrder, SortTarget as T};
    if r.revision < 0 {
        return Err(Status::invalid_argument("etcdserver: revision is negative"));
    }
    let target = match T::try_from(r.sort_target) {
        Ok(T::Key) => SortTarget::Key,
        Ok(T::Version) => SortTarget::Version,
        Ok(T::Create) => SortTarget::Create,
        Ok(T::Mod) => SortTarget::Mod,
        Ok(T::Value) => SortTarget::Value,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort target")),
    };
    let sort = match SortOrder::try_from(r.sort_order) {
        // etcd: no order with a target other than the key means ascending.
        Ok(SortOrder::None) if target == SortTarget::Key => None,
        Ok(SortOrder::None) | Ok(SortOrder::Ascend) => Some((target, false)),
        Ok(SortOrder::Descend) => Some((target, true)),
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort order")),
    };
    let serializable = r.serializable;
    let q = RangeQuery {
        range: key_range(r.key, r.range_end)?,
        limit: nonneg(r.limit),
        revision: nonneg(r.revision),
        sort,
        keys_only: r.keys_only,
        count_only: r.count_only,
        mod_revision: (nonneg(r.min_mod_revision), nonneg(r.max_mod_revision)),
        create_revision: (nonneg(r.min_create_revision), nonneg(r.max_create_revision)),
    };
    Ok((q, serializable))
}

fn range_response(kv: &Kv, r: RangeResult, rev: u64) -> rpc::RangeResponse {
    rpc::RangeResponse {
        header: Some(header(kv, rev)),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count as i64,
    }
}

/// etcd's `PutRequest` as a txn op (and whether the previous entry is wanted).
pub(crate) fn put_op(p: rpc::PutRequest) -> Result<(TxnOp, bool), Status> {
    if p.key.is_empty() {
        return Err(empty_key());
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Status::invalid_argument("etcdserver: value is provided"));
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Status::invalid_argument("etcdserver: lease is provided"));
    }
    let op = TxnOp::Put {
        key: utf8(p.key, "key")?,
        value: if p.ignore_value {
            None
        } else {
            Some(utf8(p.value, "value")?)
        },
        lease: if p.ignore_lease {
            None
        } else {
            Some((p.lease != 0).then_some(p.lease as u64))
        },
    };
    Ok((op, p.prev_kv))
}

fn compare(c: rpc::Compare) -> Result<Compare, Status> {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let op = match R::try_from(c.result) {
        Ok(R::Equal) => CompareOp::Equal,
        Ok(R::Greater) => CompareOp::Greater,
        Ok(R::Less) => CompareOp::Less,
        Ok(R::NotEqual) => CompareOp::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare result",
            ))
        }
    };
    let n = |v: i64| v.max(0) as u64;
    let target = match (T::try_from(c.target), c.target_union) {
        (Ok(T::Version), Some(U::Version(v))) => CompareTarget::Version(n(v)),
        (Ok(T::Create), Some(U::CreateRevision(v))) => CompareTarget::Create(n(v)),
        (Ok(T::Mod), Some(U::ModRevision(v))) => CompareTarget::Mod(n(v)),
        (Ok(T::Value), Some(U::Value(v))) => CompareTarget::Value(utf8(v, "value")?),
        (Ok(T::Lease), Some(U::Lease(v))) => CompareTarget::Lease(n(v)),
        // proto3 leaves a zero operand out: the target alone says what it is.
        (Ok(T::Version), None) => CompareTarget::Version(0),
        (Ok(T::Create), None) => CompareTarget::Create(0),
        (Ok(T::Mod), None) => CompareTarget::Mod(0),
        (Ok(T::Value), None) => CompareTarget::Value(String::new()),
        (Ok(T::Lease), None) => CompareTarget::Lease(0),
        _ => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare target",
            ))
        }
    };
    Ok(Compare {
        range: key_range(c.key, c.range_end)?,
        target,
        op,
    })
}

/// What each op of a branch wants back beyond our result (prev entries).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    Range,
    Put { prev: bool },
    Delete { prev: bool },
}

fn ops(list: Vec<rpc::RequestOp>) -> Result<(Vec<TxnOp>, Vec<Want>), Status> {
    let mut out = Vec::with_capacity(list.len());
    let mut wants = Vec::with_capacity(list.len());
    for op in list {
        match op.request {
            Some(request_op::Request::RequestRange(r)) => {
                let (q, _) = range_query(r)?;
                if q.revision != 0 {
                    return Err(Status::unimplemented(
                        "a range at a past revision inside a transaction is not supported",
                    ));
                }
                out.push(TxnOp::Range(q));
                wants.push(Want::Range);
            }
            Some(request_op::Request::RequestPut(p)) => {
                let (op, prev) = put_op(p)?;
                out.push(op);
                wants.push(Want::Put { prev });
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push(TxnOp::Delete(key_range(d.key, d.range_end)?));
                wants.push(Want::Delete { prev: d.prev_kv });
            }
            Some(request_op::Request::RequestTxn(_)) => {
                return Err(Status::unimplemented(
                    "nested transactions are not supported",
                ))
            }
            None => return Err(Status::invalid_argument("etcdserver: empty request op")),
        }
    }
    Ok((out, wants))
}

/// etcd's `TxnRequest` as a transaction, with what each op of either branch wants back.
pub(crate) fn txn_request(t: rpc::TxnRequest) -> Result<(Txn, Vec<Want>, Vec<Want>), Status> {
    if t.compare.len() > MAX_TXN_OPS
        || t.success.len() > MAX_TXN_OPS
        || t.failure.len() > MAX_TXN_OPS
    {
        return Err(Status::invalid_argument(
            "etcdserver: too many operations in txn request",
        ));
    }
    let compares = t
        .compare
        .into_iter()
        .map(compare)
        .collect::<Result<Vec<_>, _>>()?;
    let (success, want_s) = ops(t.success)?;
    let (failure, want_f) = ops(t.failure)?;
    Ok((
        Txn {
            compares,
            success,
            failure,
        },
        want_s,
        want_f,
    ))
}

#[tonic::async_trait]
impl KvApi for KvService {
    async fn range(
        &self,
        req: Request<rpc::RangeRequest>,
    ) -> Result<Response<rpc::RangeResponse>, Status> {
        let (q, serializable) = range_query(req.into_inner())?;
        let r = self.kv.query(q, !serializable).await.map_err(to_status)?;
        let rev = r.revision;
        Ok(Response::new(range_response(&self.kv, r, rev)))
    }

    async fn put(
        &self,
        req: Request<rpc::PutRequest>,
    ) -> Result<Response<rpc::PutResponse>, Status> {
        let (op, want_prev) = put_op(req.into_inner())?;
        let txn = Txn {
            compares: vec![],
            success: vec![op],
            failure: vec![],
        };
        let r = self.kv.txn(txn).await.map_err(to_status)?;
        let prev = match r.responses.into_iter().next() {
            Some(TxnOpResult::Put { prev }) => prev,
            _ => None,
        };
        Ok(Response::new(rpc::PutResponse {
            header: Some(header(&self.kv, r.revision)),
            prev_kv: prev.filter(|_| want_prev).map(key_value),
        }))
    }

    async fn delete_range(
        &self,
        req: Request<rpc::DeleteRangeRequest>,
    ) -> Result<Response<rpc::DeleteRangeResponse>, Status> {
        let d = req.into_inner();
        let txn = Txn {
            compares: vec![],
            success: vec![TxnOp::Delete(key_range(d.key, d.range_end)?)],
            failure: vec![],
        };
        let r = self.kv.txn(txn).await.map_err(to_status)?;
        let prev = match r.responses.into_iter().next() {
            Some(TxnOpResult::Delete { prev }) => prev,
            _ => Vec::new(),
        };
        Ok(Response::new(rpc::DeleteRangeResponse {
            header: Some(header(&self.kv, r.revision)),
            deleted: prev.len() as i64,
            prev_kvs: if d.prev_kv {
                prev.into_iter().map(key_value).collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn txn(
        &self,
        req: Request<rpc::TxnRequest>,
    ) -> Result<Response<rpc::TxnResponse>, Status> {
        let (txn, want_s, want_f) = txn_request(req.into_inner())?;
        let r = self.kv.txn(txn).await.map_err(to_status)?;
        let wants = if r.succeeded { want_s } else { want_f };
        let rev = r.revision;
        let responses = r
            .responses
            .into_iter()
            .zip(wants)
            .map(|(res, want)| {
                let response = match (res, want) {
                    (TxnOpResult::Range(rr), _) => {
                        response_op::Response::ResponseRange(range_response(&self.kv, rr, rev))
                    }
                    (TxnOpResult::Put { prev }, w) => {
                        let keep = matches!(w, Want::Put { prev: true });
                        response_op::Response::ResponsePut(rpc::PutResponse {
                            header: Some(header(&self.kv, rev)),
                            prev_kv: prev.filter(|_| keep).map(key_value),
                        })
                    }
                    (TxnOpResult::Delete { prev }, w) => {
                        let keep = matches!(w, Want::Delete { prev: true });
                        response_op::Response::ResponseDeleteRange(rpc::DeleteRangeResponse {
                            header: Some(header(&self.kv, rev)),
                            deleted: prev.len() as i64,
                            prev_kvs: if keep {
                                prev.into_iter().map(key_value).collect()
                            } else {
                                Vec::new()
                            },
                        })
                    }
                };
                rpc::ResponseOp {
                    response: Some(response),
                }
            })
            .collect();
        Ok(Response::new(rpc::TxnResponse {
            header: Some(header(&self.kv, rev)),
            succeeded: r.succeeded,
            responses,
        }))
    }

    async fn compact(
        &self,
        req: Request<rpc::CompactionRequest>,
    ) -> Result<Response<rpc::CompactionResponse>, Status> {
        let rev = req.into_inner().revision;
        let current = self.kv.header_info().revision;
        if rev < 0 || rev as u64 > current {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        let compacted = self.kv.compact_revision().await.map_err(to_status)?;
        if rev as u64 <= compacted {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        self.kv.compact(rev as u64).await.map_err(to_status)?;
        Ok(Response::new(rpc::CompactionResponse {
            header: Some(header(&self.kv, 0)),
        }))
    }
}
