//! KV helpers on a single-voter node in this process: dynamic config, locks, leases.

use std::time::Duration;

use registry::kv::{self, ConfigWatcher, Expect, KvConfig, KvError};

async fn node(name: &str, dir: &std::path::Path) -> (runtime::Node, kv::Kv) {
    let node = runtime::Node::builder()
        .name(name)
        .admin_addr("127.0.0.1:0")
        .data_dir(dir)
        .start()
        .await
        .expect("node");
    let kv = kv::start(&node, KvConfig::default()).await.expect("kv");
    (node, kv)
}

/// Wait until `f` holds (polled every 50 ms, for at most 10 s); panic naming `what` if not.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait_until_async(what, Duration::from_secs(10), Duration::from_millis(50), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_lock_lease_and_persistence() {
    let dir = tempfile::tempdir().expect("tmp");
    let (node, kv) = node("kv-helpers", dir.path()).await;

    // Dynamic config: the current value, then every change live (deletion included).
    kv.put("config/billing", r#"{"rate":1}"#)
        .await
        .expect("put");
    let mut cfg = ConfigWatcher::start(kv.clone(), "config/billing")
        .await
        .expect("watcher");
    assert_eq!(cfg.current().as_deref(), Some(r#"{"rate":1}"#));
    kv.put("config/billing-other", "x").await.expect("put");
    kv.put("config/billing", r#"{"rate":2}"#)
        .await
        .expect("put");
    let changed = tokio::time::timeout(Duration::from_secs(5), cfg.changed())
        .await
        .expect("a change in time");
    assert_eq!(changed, Some(Some(r#"{"rate":2}"#.to_string())));
    kv.delete("config/billing").await.expect("delete");
    let changed = tokio::time::timeout(Duration::from_secs(5), cfg.changed())
        .await
        .expect("a change in time");
    assert_eq!(changed, Some(None));

    // Lock / leader election: one holder at a time; the next one gets it on unlock.
    let a = kv
        .lock("leader", "a", Duration::from_secs(2))
        .await
        .expect("lock a");
    assert_eq!(
        kv.lock_owner("leader").await.expect("owner").as_deref(),
        Some("a")
    );
    let kv2 = kv.clone();
    let b = tokio::spawn(async move { kv2.lock("leader", "b", Duration::from_secs(2)).await });
    // a's lease is renewed, so b keeps waiting past a's TTL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!b.is_finished(), "b must wait while a holds the lock");
    assert_eq!(
        kv.lock_owner("leader").await.expect("owner").as_deref(),
        Some("a")
    );
    a.unlock().await.expect("unlock");
    let b = tokio::time::timeout(Duration::from_secs(5), b)
        .await
        .expect("b gets the lock")
        .expect("task")
        .expect("lock b");
    assert_eq!(
        kv.lock_owner("leader").await.expect("owner").as_deref(),
        Some("b")
    );
    // A holder that stops renewing (crash) loses the lock when its lease expires.
    drop(b);
    eventually("the dropped holder's lock expires", || async {
        kv.lock_owner("leader").await.ok() == Some(None)
    })
    .await;

    // Leases: keys vanish with their lease; an unknown lease is refused.
    let lease = kv.grant(Duration::from_secs(1)).await.expect("grant");
    kv.put_with_lease("eph/1", "x", lease).await.expect("put");
    eventually("the leased key vanishes", || async {
        kv.get("eph/1").await.ok() == Some(None)
    })
    .await;
    let err = kv.put_with_lease("eph/2", "x", lease).await.unwrap_err();
    assert!(matches!(err, KvError::Lease(_)), "{err}");

    // cas on revision.
    let rev = kv.put("r", "1").await.expect("put");
    assert!(
        !kv.cas("r", Expect::Revision(rev + 100), Some("2".into()))
            .await
            .expect("cas")
            .ok
    );
    assert!(
        kv.cas("r", Expect::Revision(rev), Some("2".into()))
            .await
            .expect("cas")
            .ok
    );

    // Watch from the past replays in order.
    let mut w = kv.watch("config/", Some(1)).await.expect("watch");
    let mut revs = Vec::new();
    for _ in 0..4 {
        revs.push(w.next().await.expect("event").revision);
    }
    assert!(revs.windows(2).all(|p| p[0] < p[1]), "{revs:?}");

    node.shutdown().await;
}
