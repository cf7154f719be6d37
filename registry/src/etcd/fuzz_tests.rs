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
