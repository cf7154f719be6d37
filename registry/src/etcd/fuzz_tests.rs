//! Fuzz targets of the etcd API (run with the unit tests; see the `fuzz` crate for long runs):
//! a KV request's protobuf bytes, decoded as tonic would, then turned into our query or
//! transaction by the handlers' pure part, and validated as the store would before writing.

use prost::Message;

use super::{
    kv::{key_range, put_op, range_query, txn_request},
    pb::etcdserverpb::{self as rpc, compare, request_op},
    MAX_TXN_OPS,
};
use crate::kv::{validate_range, validate_txn, RangeEnd};

fn tagged(tag: u8, m: impl Message) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend(m.encode_to_vec());
    b
}

fn range() -> rpc::RangeRequest {
    rpc::RangeRequest {
        key: b"k/".to_vec(),
        range_end: b"k0".to_vec(),
        limit: 5,
        sort_order: 2,
        sort_target: 3,
        min_mod_revision: 2,
        ..Default::default()
    }
}

fn put() -> rpc::PutRequest {
    rpc::PutRequest {
        key: b"k/a".to_vec(),
        value: b"v".to_vec(),
        lease: 7,
        prev_kv: true,
        ..Default::default()
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let txn = rpc::TxnRequest {
        compare: vec![rpc::Compare {
            result: 0,
            target: 3,
            key: b"k/a".to_vec(),
            range_end: vec![],
            target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
        }],
        success: vec![
            rpc::RequestOp {
                request: Some(request_op::Request::RequestPut(put())),
            },
            rpc::RequestOp {
                request: Some(request_op::Request::RequestRange(range())),
            },
        ],
        failure: vec![rpc::RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                rpc::DeleteRangeRequest {
                    key: b"k/".to_vec(),
                    range_end: vec![0],
                    prev_kv: true,
                },
            )),
        }],
    };
    vec![
        tagged(0, range()),
        tagged(1, put()),
        tagged(
            2,
            rpc::DeleteRangeRequest {
                key: b"k".to_vec(),
                range_end: vec![],
                prev_kv: false,
            },
        ),
        tagged(3, txn),
    ]
}

/// Whatever the bytes: a clean gRPC status, or a request whose every key is non-empty UTF-8,
/// whose branches and wants line up, and which the store's validation judges without panicking.
#[test]
fn fuzz_etcd_kv() {
    fuzz::Target::new("etcd_kv").seeds(seeds()).run(|b| {
        let Some((&tag, body)) = b.split_first() else {
            return;
        };
        match tag % 4 {
            0 => {
                if let Ok(r) = rpc::RangeRequest::decode(body) {
                    if let Ok((q, _)) = range_query(r) {
                        assert!(!q.range.key.is_empty());
                        if let RangeEnd::Before(e) = &q.range.end {
                            assert!(!e.is_empty() && e != &[0]);
                        }
                        let _ = validate_range(&q.range);
                    }
                }
            }
            1 => {
                if let Ok(p) = rpc::PutRequest::decode(body) {
                    let _ = put_op(p);
                }
            }
            2 => {
                if let Ok(d) = rpc::DeleteRangeRequest::decode(body) {
                    if let Ok(r) = key_range(d.key, d.range_end) {
                        assert!(!r.key.is_empty());
                    }
                }
            }
            _ => {
                if let Ok(t) = rpc::TxnRequest::decode(body) {
                    if let Ok((txn, ws, wf)) = txn_request(t) {
                        assert_eq!(ws.len(), txn.success.len());
                        assert_eq!(wf.len(), txn.failure.len());
                        assert!(txn.compares.len() <= MAX_TXN_OPS);
                        let _ = validate_txn(&txn);
                    }
                }
            }
        }
    });
}

fn create(c: rpc::WatchCreateRequest) -> Vec<u8> {
    rpc::WatchRequest {
        request_union: Some(rpc::watch_request::RequestUnion::CreateRequest(c)),
    }
    .encode_to_vec()
}

fn watch_seeds() -> Vec<Vec<u8>> {
    let prefix = rpc::WatchCreateRequest {
        key: b"svc/".to_vec(),
        range_end: b"svc0".to_vec(),
        start_revision: 3,
        progress_notify: true,
        filters: vec![1],
        prev_kv: true,
        watch_id: 7,
        fragment: false,
    };
    let everything = rpc::WatchCreateRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        filters: vec![0, 1],
        ..Default::default()
    };
    let single = rpc::WatchCreateRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    vec![
        create(prefix),
        create(everything),
        create(single),
        rpc::WatchRequest {
            request_union: Some(rpc::watch_request::RequestUnion::CancelRequest(
                rpc::WatchCancelRequest { watch_id: 7 },
            )),
        }
        .encode_to_vec(),
    ]
}

/// A watch create request from a client, decoded as tonic would: whatever the bytes, the
/// conversion answers a watch over a non-empty UTF-8 key with the filters and start asked for,
/// or refuses with `InvalidArgument`, exactly when the request is one of the invalid kinds.
#[test]
fn fuzz_etcd_watch_create() {
    use rpc::watch_request::RequestUnion;
    fuzz::Target::new("etcd_watch")
        .seeds(watch_seeds())
        .run(|b| {
            let Ok(req) = rpc::WatchRequest::decode(b) else {
                return;
            };
            let Some(RequestUnion::CreateRequest(c)) = req.request_union else {
                return;
            };
            let invalid = c.key.is_empty()
                || std::str::from_utf8(&c.key).is_err()
                || c.start_revision < 0
                || c.watch_id < 0
                || c.filters.iter().any(|f| !(0..=1).contains(f));
            match super::watch::watch_spec(c.clone()) {
                Ok(w) => {
                    assert!(!invalid, "accepted an invalid create request: {c:?}");
                    assert_eq!(w.range.key.as_bytes(), c.key.as_slice());
                    match &w.range.end {
                        RangeEnd::Single => assert!(c.range_end.is_empty()),
                        RangeEnd::ToEnd => assert_eq!(c.range_end, [0]),
                        RangeEnd::Before(e) => assert_eq!(e, &c.range_end),
                    }
                    assert_eq!(w.id, c.watch_id);
                    assert_eq!(
                        w.from.map(|f| f as i64),
                        (c.start_revision > 0).then_some(c.start_revision)
                    );
                    assert_eq!(w.no_put, c.filters.contains(&0));
                    assert_eq!(w.no_delete, c.filters.contains(&1));
                    assert_eq!((w.prev_kv, w.progress), (c.prev_kv, c.progress_notify));
                }
                Err(s) => {
                    assert!(invalid, "refused a valid create request {c:?}: {s}");
                    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}");
                    assert!(!s.message().is_empty());
                }
            }
        });
}
