//! The etcd v3 gRPC API, driven by the `etcd-client` crate (a client nobody here wrote)
//! against three real `dctl node start` processes: KV with etcd's revision semantics, txn,
//! watch (also across a leader change), leases, lock, election, member list, status, and bad
//! input answered with etcd's gRPC statuses while the node keeps serving.

mod common;
mod kvproc;

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseTimeToLiveOptions, LockOptions,
    ProclaimOptions, PutOptions, ResignOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use kvproc::{cluster, wait_leader, KvProc};

/// The etcd API address of a node, from `dctl kv status --json`.
fn etcd_addr(n: &KvProc) -> String {
    let s = n.status().expect("kv status");
    s["etcd_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no etcd_addr in {s}"))
        .to_string()
}

async fn connect(addr: &str) -> Client {
    Client::connect(
        [addr],
        Some(ConnectOptions::new().with_connect_timeout(Duration::from_secs(5))),
    )
    .await
    .expect("connect to the etcd API")
}

fn code(e: etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Events of a watch stream until `n` arrived (within `limit`).
async fn events(
    w: &mut etcd_client::WatchStream,
    n: usize,
    limit: Duration,
) -> Vec<(bool, String, String, i64)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout_at(deadline, w.message())
            .await
            .unwrap_or_else(|_| panic!("only {out:?} of {n} watch events within {limit:?}"))
            .expect("watch stream")
            .expect("watch stream open");
        for e in msg.events() {
            let kv = e.kv().expect("event kv");
            out.push((
                e.event_type() == etcd_client::EventType::Put,
                kv.key_str().expect("utf8").to_string(),
                kv.value_str().expect("utf8").to_string(),
                kv.mod_revision(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_client_kv_txn_watch_lease_lock_election_and_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nodes = cluster(dir.path(), &[]);
    let addrs: Vec<String> = nodes.iter().map(etcd_addr).collect();
    let mut c = connect(&addrs[0]).await;

    // ---- KV: revisions, versions, prev_kv, headers -------------------------------------
    let r1 = c.put("app/a", "1", None).await.expect("put");
    let h1 = r1.header().expect("header").clone();
    assert!(h1.cluster_id() != 0 && h1.raft_term() > 0, "{h1:?}");
    let rev1 = h1.revision();
    let r2 = c
        .put("app/a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put");
    assert_eq!(
        r2.prev_key().map(|k| k.value().to_vec()),
        Some(b"1".to_vec())
    );
    assert_eq!(r2.header().expect("header").revision(), rev1 + 1);
    let g = c.get("app/a", None).await.expect("get");
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (rev1, rev1 + 1, 2)
    );
    // Another node answers with the same cluster id, its own member id.
    let mut c2 = connect(&addrs[1]).await;
    let g2 = c2.get("app/a", None).await.expect("get on node 2");
    let h2 = g2.header().expect("header");
    assert_eq!(h2.cluster_id(), h1.cluster_id());
    assert_ne!(h2.member_id(), h1.member_id());
    assert_eq!(g2.kvs()[0].value(), b"2");
    // A read at the past revision sees the old value.
    let old = c
        .get("app/a", Some(GetOptions::new().with_revision(rev1)))
        .await
        .expect("get at rev");
    assert_eq!(old.kvs()[0].value(), b"1");
    let future = c
        .get("app/a", Some(GetOptions::new().with_revision(rev1 + 1000)))
        .await
        .expect_err("future revision");
    assert_eq!(code(future).0, tonic::Code::OutOfRange);

    // ---- Range: prefix, limit, sort, keys_only, count_only -----------------------------
    c.put("app/b", "x", None).await.expect("put");
    c.put("app/c", "y", None).await.expect("put");
    let p = c
        .get("app/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("prefix");
    assert_eq!((p.kvs().len(), p.more(), p.count()), (2, true, 3));
    let s = c
        .get(
            "app/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Mod, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .expect("sorted");
    assert_eq!(s.kvs()[0].key(), b"app/c");
    let k = c
        .get(
            "app/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .expect("keys only");
    assert!(k.kvs().iter().all(|kv| kv.value().is_empty()) && k.kvs().len() == 3);
    let n = c
        .get(
            "app/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count only");
    assert_eq!((n.kvs().len(), n.count()), (0, 3));
    // An end below the key is an empty range, not an error (as in etcd).
    let empty = c
        .get("b", Some(GetOptions::new().with_range("a")))
        .await
        .expect("inverted range");
    assert_eq!(empty.count(), 0);

    // ---- Txn: compares, both branches, one revision for all changes --------------------
    let before = c
        .get("app/a", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    let t = c
        .txn(
            Txn::new()
                .when([Compare::value("app/a", CompareOp::Equal, "2")])
                .and_then([
                    TxnOp::put("app/t1", "a", None),
                    TxnOp::put("app/t2", "b", None),
                    TxnOp::get("app/t1", None),
                ])
                .or_else([TxnOp::put("app/never", "x", None)]),
        )
        .await
        .expect("txn");
    assert!(t.succeeded());
    let rev = t.header().expect("h").revision();
    assert_eq!(rev, before + 1, "one revision for the whole transaction");
    match &t.op_responses()[2] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].mod_revision(), rev),
        other => panic!("expected a get response, got {other:?}"),
    }
    let t2 = c
        .txn(
            Txn::new()
                .when([Compare::version("app/a", CompareOp::Greater, 5)])
                .and_then([TxnOp::put("app/never", "x", None)])
                .or_else([TxnOp::delete(
                    "app/t",
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )]),
        )
        .await
        .expect("txn");
    assert!(!t2.succeeded());
    match &t2.op_responses()[0] {
        TxnOpResponse::Delete(d) => assert_eq!(d.deleted(), 2),
        other => panic!("expected a delete response, got {other:?}"),
    }
    assert_eq!(t2.header().expect("h").revision(), rev + 1);
    assert!(c
        .get("app/never", None)
        .await
        .expect("get")
        .kvs()
        .is_empty());

    // ---- Bad input: etcd's statuses, and the node keeps serving ------------------------
    let ops: Vec<TxnOp> = (0..10_000)
        .map(|i| TxnOp::put(format!("big/{i}"), "v", None))
        .collect();
    let (code_ops, msg) = code(
        c.txn(Txn::new().and_then(ops))
            .await
            .expect_err("10 000 ops"),
    );
    assert_eq!(code_ops, tonic::Code::InvalidArgument);
    assert!(msg.contains("too many operations"), "{msg}");
    let (c_key, m_key) = code(
        c.put("k".repeat(2000), "v", None)
            .await
            .expect_err("long key"),
    );
    assert_eq!(c_key, tonic::Code::InvalidArgument, "{m_key}");
    let (c_big, _) = code(
        c.put("big", vec![b'x'; 3 << 20], None)
            .await
            .expect_err("3 MiB value"),
    );
    assert_eq!(c_big, tonic::Code::ResourceExhausted);
    let (c_empty, m_empty) = code(c.put("", "v", None).await.expect_err("empty key"));
    assert_eq!(
        (c_empty, m_empty.as_str()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided"
        )
    );
    let (c_dup, _) = code(
        c.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
            .await
            .expect_err("duplicate key"),
    );
    assert_eq!(c_dup, tonic::Code::InvalidArgument);
    {
        let mut s = TcpStream::connect(&addrs[0]).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\xff garbage \x16\x03\x01")
            .expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    assert_eq!(
        c.get("app/a", None)
            .await
            .expect("still serving")
            .kvs()
            .len(),
        1
    );

    // ---- Compaction: reads and watches below it are refused ----------------------------
    let now = c
        .get("app/a", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    c.compact(now - 1, None).await.expect("compact");
    let (c_comp, m_comp) = code(
        c.get("app/a", Some(GetOptions::new().with_revision(now - 2)))
            .await
            .expect_err("compacted read"),
    );
    assert_eq!(c_comp, tonic::Code::OutOfRange, "{m_comp}");
    assert!(m_comp.contains("compacted"), "{m_comp}");
    let mut w = c
        .watch(
            "app/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(now - 3),
            ),
        )
        .await
        .expect("watch");
    let deadline = Instant::now() + Duration::from_secs(10);
    let compacted = loop {
        assert!(Instant::now() < deadline, "no compacted answer");
        let m = w.message().await.expect("watch").expect("open");
        if m.compact_revision() != 0 {
            break m;
        }
    };
    assert!(compacted.canceled());
    assert_eq!(compacted.compact_revision(), now - 1);

    // ---- Watch from a revision, prefix, progress ---------------------------------------
    let mut w = c
        .watch(
            "app/",
            Some(WatchOptions::new().with_prefix().with_start_revision(now)),
        )
        .await
        .expect("watch");
    c.put("app/w", "1", None).await.expect("put");
    c.delete("app/w", None).await.expect("delete");
    let ev = events(&mut w, 4, Duration::from_secs(10)).await;
    // Replayed from `now`: the failed txn's delete of both app/t* keys, at one revision.
    assert_eq!(ev[0], (false, "app/t1".into(), String::new(), now));
    assert_eq!(ev[1], (false, "app/t2".into(), String::new(), now));
    assert_eq!(
        (ev[2].0, ev[2].1.as_str(), ev[2].3),
        (true, "app/w", now + 1)
    );
    assert_eq!(
        (ev[3].0, ev[3].1.as_str(), ev[3].3),
        (false, "app/w", now + 2)
    );
    let ev = &ev[1..];
    w.request_progress().await.expect("progress");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no progress answer");
        let m = w.message().await.expect("watch").expect("open");
        if m.events().is_empty() && !m.created() {
            assert!(m.header().expect("h").revision() >= ev[2].3);
            break;
        }
    }

    // ---- Leases: grant, attach, time to live, keep-alive, revoke, expiry ---------------
    let l = c.lease_grant(30, None).await.expect("grant");
    assert_eq!(l.ttl(), 30);
    c.put("lease/k", "v", Some(PutOptions::new().with_lease(l.id())))
        .await
        .expect("put with lease");
    let ttl = c
        .lease_time_to_live(l.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("ttl");
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 30 && ttl.granted_ttl() == 30);
    assert_eq!(ttl.keys(), [b"lease/k".to_vec()]);
    let (mut keeper, mut stream) = c.lease_keep_alive(l.id()).await.expect("keep alive");
    keeper.keep_alive().await.expect("send keep-alive");
    let ka = stream
        .message()
        .await
        .expect("keep-alive answer")
        .expect("open");
    assert_eq!((ka.id(), ka.ttl()), (l.id(), 30));
    assert!(c
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .any(|s| s.id() == l.id()));
    c.lease_revoke(l.id()).await.expect("revoke");
    assert!(c.get("lease/k", None).await.expect("get").kvs().is_empty());
    assert_eq!(
        c.lease_time_to_live(l.id(), None).await.expect("ttl").ttl(),
        -1
    );
    let (c_nl, _) = code(c.lease_revoke(l.id()).await.expect_err("revoked twice"));
    assert_eq!(c_nl, tonic::Code::NotFound);
    let short = c.lease_grant(2, None).await.expect("grant");
    c.put(
        "lease/short",
        "v",
        Some(PutOptions::new().with_lease(short.id())),
    )
    .await
    .expect("put");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .get("lease/short", None)
        .await
        .expect("get")
        .kvs()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the 2 s lease did not expire within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ---- Lock: exclusive, released by unlock --------------------------------------------
    let la = c.lease_grant(30, None).await.expect("grant").id();
    let lb = c.lease_grant(30, None).await.expect("grant").id();
    let held = c
        .lock("jobs", Some(LockOptions::new().with_lease(la)))
        .await
        .expect("lock");
    let key_a = held.key().to_vec();
    assert!(key_a.starts_with(b"jobs/"));
    let mut c3 = connect(&addrs[2]).await;
    let waiter = tokio::spawn(async move {
        c3.lock("jobs", Some(LockOptions::new().with_lease(lb)))
            .await
            .map(|r| r.key().to_vec())
    });
    let mut waiter = waiter;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut waiter)
            .await
            .is_err(),
        "the second locker got the lock while it was held"
    );
    c.unlock(key_a.clone()).await.expect("unlock");
    let key_b = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("second locker within 10 s")
        .expect("task")
        .expect("lock");
    assert!(key_b.starts_with(b"jobs/") && key_b != key_a);

    // ---- Election: campaign, leader, proclaim, resign ------------------------------------
    let le = c.lease_grant(30, None).await.expect("grant").id();
    let camp = c.campaign("leader", "n-a", le).await.expect("campaign");
    let lk = camp.leader().expect("leader key").clone();
    let who = c.leader("leader").await.expect("leader");
    assert_eq!(who.kv().expect("kv").value(), b"n-a");
    c.proclaim("n-b", Some(ProclaimOptions::new().with_leader(lk.clone())))
        .await
        .expect("proclaim");
    assert_eq!(
        c2.leader("leader")
            .await
            .expect("leader")
            .kv()
            .expect("kv")
            .value(),
        b"n-b"
    );
    c.resign(Some(ResignOptions::new().with_leader(lk)))
        .await
        .expect("resign");
    let (c_nol, _) = code(c.leader("leader").await.expect_err("no leader"));
    assert_eq!(c_nol, tonic::Code::Unavailable);

    // ---- Member list and status ----------------------------------------------------------
    let ml = c.member_list().await.expect("member list");
    let mut names: Vec<&str> = ml.members().iter().map(|m| m.name()).collect();
    names.sort();
    assert_eq!(names, ["n1", "n2", "n3"]);
    for m in ml.members() {
        assert!(!m.is_learner());
        let url = m.client_urls().first().expect("client url");
        assert!(addrs.iter().any(|a| url == &format!("http://{a}")), "{url}");
    }
    let st = c.status().await.expect("status");
    assert!(ml.members().iter().any(|m| m.id() == st.leader()));
    assert!(st.raft_term() > 0 && st.raft_index() > 0 && st.db_size() > 0);
    let (c_def, _) = code(c.defragment().await.expect_err("defragment"));
    assert_eq!(c_def, tonic::Code::Unimplemented);

    // ---- A watch on a follower survives a leader change ----------------------------------
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let li = nodes.iter().position(|n| n.name == leader).expect("leader");
    let fi = (li + 1) % 3;
    let oi = (li + 2) % 3;
    let mut wc = connect(&addrs[fi]).await;
    let mut w = wc
        .watch("survive/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let mut writer = connect(&addrs[oi]).await;
    writer.put("survive/1", "before", None).await.expect("put");
    assert_eq!(
        events(&mut w, 1, Duration::from_secs(10)).await[0].2,
        "before"
    );
    nodes[li].kill9();
    let rest: Vec<&KvProc> = [fi, oi].iter().map(|i| &nodes[*i]).collect();
    wait_leader(&rest, Some(&leader));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match writer.put("survive/2", "after", None).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("put after the leader change: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no write after the leader change: {e}"),
        }
    }
    let ev = events(&mut w, 1, Duration::from_secs(15)).await;
    assert_eq!((ev[0].1.as_str(), ev[0].2.as_str()), ("survive/2", "after"));
}
