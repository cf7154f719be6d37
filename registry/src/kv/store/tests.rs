//! The stores against openraft's storage suite, and the state machine's own cases.

use super::*;

/// A fresh pair of stores in a temporary directory (kept alive by the returned guard).
struct Builder;

impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
    for Builder
{
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SErr> {
        let dir = tempfile::tempdir().map_err(|e| serr("temp dir", e))?;
        let dbs = open(dir.path()).map_err(|e| serr("open", e))?;
        let sm = StateMachine::new(dbs.sm.clone(), dir.path().to_path_buf())
            .map_err(|e| serr("state machine", e))?;
        Ok((dir, LogStore::new(&dbs), sm))
    }
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(Proposal { request: None, cmd }),
    }
}

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: Some(value.into()),
        lease: Some(None),
    }
}

/// etcd's revision rules: a transaction or a multi-key delete takes one revision for all
/// its changes; a read at a past revision sees the entries as they were; the history keeps
/// every change with the entry before it; compaction refuses older reads.
#[tokio::test]
async fn txns_take_one_revision_and_past_revisions_are_readable() {
    use crate::kv::txn::{Compare, CompareOp, CompareTarget, RangeQuery};
    let dir = tempfile::tempdir().expect("tmp");
    let dbs = open(dir.path()).expect("open");
    let sm = StateMachine::new(dbs.sm.clone(), dir.path().to_path_buf()).expect("sm");
    let txn = |success: Vec<TxnOp>| {
        Command::Txn(Txn {
            compares: vec![],
            success,
            failure: vec![],
        })
    };
    let all = || KeyRange::from_etcd("a".into(), b"\0");
    let entries = vec![
        entry(1, txn(vec![put("a", "1"), put("b", "1")])),
        entry(2, txn(vec![put("a", "2")])),
        entry(
            3,
            Command::Txn(Txn {
                compares: vec![Compare {
                    range: KeyRange::single("a"),
                    target: CompareTarget::Version(2),
                    op: CompareOp::Equal,
                }],
                success: vec![TxnOp::Delete(all())],
                failure: vec![put("never", "x")],
            }),
        ),
        entry(4, txn(vec![put("a", "3")])),
    ];
    let (out, rev, _) = StateMachine::apply_sync(&dbs.sm, entries, false).expect("apply");
    sm.revision.send_replace(rev);
    assert_eq!(rev, 4, "four write requests, four revisions");
    match &out[2] {
        CmdResult::Txn(r) => {
            assert!(r.succeeded);
            assert_eq!(r.revision, 3);
            assert!(matches!(&r.responses[0], TxnOpResult::Delete { prev } if prev.len() == 2));
        }
        other => panic!("{other:?}"),
    }
    let at = |revision: u64| {
        let mut q = RangeQuery::new(all());
        q.revision = revision;
        q
    };
    let r1 = sm.query(at(1)).await.expect("at 1");
    let got: Vec<_> = r1
        .kvs
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str(), e.mod_revision, e.version))
        .collect();
    assert_eq!(got, [("a", "1", 1, 1), ("b", "1", 1, 1)]);
    let r2 = sm.query(at(2)).await.expect("at 2");
    assert_eq!((r2.kvs[0].value.as_str(), r2.kvs[0].version), ("2", 2));
    assert!(sm.query(at(3)).await.expect("at 3").kvs.is_empty());
    let now = sm.query(at(0)).await.expect("now");
    assert_eq!(
        (now.kvs[0].create_revision, now.kvs[0].version, now.count),
        (4, 1, 1),
        "re-created after the delete"
    );
    let ch = sm.changes(all(), 3, 100).await.expect("changes");
    let kinds: Vec<_> = ch
        .changes
        .iter()
        .map(|(r, c)| (*r, c.kind, c.kv.key.as_str(), c.prev.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            (3, EventKind::Delete, "a", true),
            (3, EventKind::Delete, "b", true),
            (4, EventKind::Put, "a", false)
        ]
    );
    // Compaction up to 3: reading or watching below it is refused.
    let (_, rev, _) = StateMachine::apply_sync(
        &dbs.sm,
        vec![entry(5, Command::Compact { revision: 3 })],
        false,
    )
    .expect("compact");
    assert_eq!(rev, 4, "compaction takes no revision");
    assert!(matches!(
        sm.query(at(2)).await,
        Err(crate::kv::KvError::Compacted { oldest: 3, .. })
    ));
    assert!(sm.query(at(3)).await.is_ok());
    assert!(matches!(
        sm.changes(all(), 2, 10).await,
        Err(crate::kv::KvError::Compacted { oldest: 3, .. })
    ));
    let future = sm.query(at(9)).await.expect_err("future");
    assert!(future.to_string().contains(FUTURE_REV), "{future}");
}

/// openraft's own storage conformance suite, on the redb log store and state machine.
#[test]
fn passes_the_openraft_storage_suite() {
    openraft::testing::Suite::test_all(Builder).expect("openraft storage suite");
}

/// A store from before the split (log, vote and state machine in `kv.redb`) opens with its
/// log and vote moved to `log.redb`, its data left in place, and no log tables left behind.
#[test]
fn single_file_store_migrates_its_log_and_vote() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let db = Database::create(dir.path().join("kv.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut logs = txn.open_table(LOGS).expect("logs");
            logs.insert(7u64, b"entry7".as_slice()).expect("insert");
            let mut meta = txn.open_table(RAFT_META).expect("meta");
            meta.insert("vote", b"v".as_slice()).expect("insert");
            let mut data = txn.open_table(DATA).expect("data");
            data.insert("k", b"v".as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    for _ in 0..2 {
        // Opening again (already migrated) changes nothing.
        let dbs = open(dir.path()).expect("open");
        let log = dbs.log.begin_read().expect("read");
        let logs = log.open_table(LOGS).expect("logs");
        assert_eq!(
            logs.get(7u64).expect("get").map(|v| v.value().to_vec()),
            Some(b"entry7".to_vec())
        );
        let meta = log.open_table(RAFT_META).expect("meta");
        assert!(meta.get("vote").expect("get").is_some());
        assert!(meta.get("format").expect("get").is_some());
        let sm = dbs.sm.begin_read().expect("read");
        assert!(sm.open_table(LOGS).is_err(), "old log table left behind");
        let data = sm.open_table(DATA).expect("data");
        assert!(data.get("k").expect("get").is_some());
    }
}
