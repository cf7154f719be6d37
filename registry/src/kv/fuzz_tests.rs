//! Fuzz targets of the KV store's network messages (run with the unit tests; see the `fuzz`
//! crate for long runs): client requests and answers forwarded between nodes and Raft RPCs, as
//! bincode bytes from a peer, then the validation and the pure query evaluation they reach.

use actors::codec::{self, Wire};
use openraft::{raft::VoteRequest, Vote};
use serde::Serialize;

use super::{
    etcd_ops::{validate_range, validate_txn},
    net::{RaftEnvelope, RaftReq, RaftResp},
    request::{LeaseOp, MemberOp, Request, Response},
    txn::{Compare, CompareOp, CompareTarget, RangeQuery, SortTarget, Txn, TxnOp},
    validate::validate,
    Command, Expect, KeyRange, KvEntry, KvError, RangeEnd,
};

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v).expect("seed encodes")
}

fn entries() -> Vec<KvEntry> {
    (0..6u64)
        .map(|i| KvEntry {
            key: format!("k/{}", (b'a' + (i * 7 % 6) as u8) as char),
            value: format!("v{}", 5 - i),
            create_revision: i + 1,
            mod_revision: 10 - i,
            version: i % 3 + 1,
            lease: (i % 2 == 0).then_some(i),
        })
        .collect()
}

/// A query that passed validation, evaluated over entries in key order, answers as etcd
/// does: `count` is the range's size, `limit` is respected and says `more`, filters and sort
/// hold, `count_only` returns no entries.
fn check_query(q: &RangeQuery) {
    let mut kvs: Vec<KvEntry> = entries()
        .into_iter()
        .filter(|e| q.range.contains(&e.key))
        .collect();
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    let n = kvs.len() as u64;
    let r = q.finish(kvs, 42);
    assert_eq!((r.count, r.revision), (n, 42));
    if q.limit > 0 {
        assert!(r.kvs.len() as u64 <= q.limit || q.count_only);
    }
    if q.count_only {
        assert!(r.kvs.is_empty());
    }
    if q.keys_only {
        assert!(r.kvs.iter().all(|e| e.value.is_empty()));
    }
    let within = |v: u64, (lo, hi): (u64, u64)| (lo == 0 || v >= lo) && (hi == 0 || v <= hi);
    for e in &r.kvs {
        assert!(
            within(e.mod_revision, q.mod_revision) && within(e.create_revision, q.create_revision)
        );
    }
    if let Some((SortTarget::Key, descend)) = q.sort {
        assert!(r
            .kvs
            .windows(2)
            .all(|w| (w[0].key <= w[1].key) != descend || w[0].key == w[1].key));
    }
}

fn check_ops(ops: &[TxnOp]) {
    for op in ops {
        if let TxnOp::Range(q) = op {
            check_query(q);
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let query = RangeQuery {
        range: KeyRange {
            key: "k/".into(),
            end: RangeEnd::Before(b"k0".to_vec()),
        },
        limit: 2,
        revision: 0,
        sort: Some((SortTarget::Mod, true)),
        keys_only: false,
        count_only: false,
        mod_revision: (3, 9),
        create_revision: (0, 0),
    };
    let txn = Txn {
        compares: vec![Compare {
            range: KeyRange::single("k/a"),
            target: CompareTarget::Value("v".into()),
            op: CompareOp::Equal,
        }],
        success: vec![
            TxnOp::Put {
                key: "k/b".into(),
                value: Some("x".into()),
                lease: Some(None),
            },
            TxnOp::Range(query.clone()),
        ],
        failure: vec![TxnOp::Delete(KeyRange {
            key: "k/".into(),
            end: RangeEnd::ToEnd,
        })],
    };
    let requests = vec![
        Request::Write {
            id: Some((1, 2)),
            cmd: Command::Put {
                key: "k/a".into(),
                value: "v".into(),
                lease: Some(3),
            },
        },
        Request::Write {
            id: None,
            cmd: Command::Cas {
                key: "k".into(),
                expect: Expect::Value(None),
                new: Some("n".into()),
                lease: None,
            },
        },
        Request::Write {
            id: None,
            cmd: Command::Grant {
                ttl_ms: 5000,
                now_ms: 1 << 42,
            },
        },
        Request::Write {
            id: None,
            cmd: Command::Txn(txn),
        },
        Request::Get {
            key: "k/a".into(),
            linearizable: true,
        },
        Request::Range {
            prefix: "k/".into(),
            linearizable: false,
            limit: 10,
        },
        Request::Status,
        Request::Watch {
            prefix: "k/".into(),
            from: 3,
            wait_ms: 100,
        },
        Request::Join {
            name: "n2".into(),
            store: "s".into(),
        },
        Request::Members(MemberOp::Add {
            name: "n3".into(),
            learner: true,
        }),
        Request::Lease(LeaseOp::Renew { id: 9 }),
        Request::Query {
            query,
            linearizable: true,
        },
    ];
    let mut out: Vec<Vec<u8>> = requests.iter().map(enc).collect();
    out.push(enc(&Ok::<Response, KvError>(Response::Get(
        entries().into_iter().next(),
        7,
    ))));
    out.push(enc(&Err::<Response, KvError>(KvError::Invalid(
        "no".into(),
    ))));
    out.push(enc(&RaftEnvelope {
        store: "s".into(),
        req: RaftReq::Vote(VoteRequest::new(Vote::new(3, 1), None)),
    }));
    out.push(enc(&RaftResp::Refused("x".into())));
    out
}

/// Bytes from a peer as each message the KV actor receives or a client gets back: an error, or
/// a value that re-encodes stably; a decoded request goes through validation, and its queries
/// through evaluation, without panicking.
#[test]
fn fuzz_kv_messages() {
    fuzz::Target::new("kv_messages").seeds(seeds()).run(|b| {
        if let Ok(r) = Wire::<Request>::from_raw(b.to_vec()).decode() {
            let once = enc(&r);
            let again: Request = codec::decode(&once).expect("re-encoded request decodes");
            assert_eq!(enc(&again), once, "{r:?}");
            match &r {
                Request::Write {
                    cmd: cmd @ Command::Txn(t),
                    ..
                } if validate(cmd).is_ok() && validate_txn(t).is_ok() => {
                    check_ops(&t.success);
                    check_ops(&t.failure);
                }
                Request::Write { cmd, .. } => {
                    let _ = validate(cmd);
                }
                Request::Query { query, .. } if validate_range(&query.range).is_ok() => {
                    check_query(query);
                }
                _ => {}
            }
        }
        let _ = codec::decode::<Result<Response, KvError>>(b);
        let _ = codec::decode::<RaftEnvelope>(b);
        let _ = codec::decode::<RaftResp>(b);
    });
}
