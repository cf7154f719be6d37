//! Found by the `kv-lock` workload's reasoning, kept as a regression test: a KV leader cut off
//! from the others goes on believing it leads until it hears of a newer term, and it used to
//! answer lease keep-alives from that belief alone. The majority's new leader re-arms every
//! lease with one TTL from its election, so a renewal the deposed leader acknowledged later
//! promised the holder more time than the store kept: another client could take the lock while
//! the first still counted on it. A renewal is now acknowledged only after a majority confirmed
//! the leadership. 3 real `dctl` nodes on loopback aliases, the leader cut off with iptables
//! (rules removed at the end, also on failure). Needs root and iptables (installed by the
//! README's test command) and target/debug/dctl.

use std::time::{Duration, Instant};

use chaos::{client::Client, cluster::Cluster, net::Firewall};
use serde_json::json;

const CHAOS: &str = env!("CARGO_BIN_EXE_chaos");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_kv_leader_does_not_renew_leases() -> anyhow::Result<()> {
    let dctl = std::path::Path::new(CHAOS).with_file_name("dctl");
    assert!(
        dctl.exists(),
        "{} missing: cargo build -p dctl",
        dctl.display()
    );
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::new(dctl, dir.path(), 3, false)?;
    let mut fw = Firewall::new(&cluster.members())?;
    cluster.start_all()?;
    cluster.wait_ready(Duration::from_secs(60)).await?;
    let leader = cluster
        .kv_leader()
        .await
        .expect("the nodes agree on a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // The cut-off leader gives up confirming its leadership after 5 s and answers 503: wait
    // longer than that for its answer (the default client's 5 s raced it).
    let client = Client::with_timeout(Duration::from_secs(15))?;
    let old = cluster.specs[leader].admin.clone();

    let grant = client
        .post_json(&old, "/kv/lease/grant", &json!({"ttl_secs": 60}))
        .await;
    assert_eq!(grant.status(), Some(200), "{}", grant.error());
    let id = grant.json()["id"].as_u64().expect("a lease id");
    let renew = client
        .post_json(&old, "/kv/lease/keepalive", &json!({"id": id}))
        .await;
    assert_eq!(
        renew.status(),
        Some(200),
        "a renewal by the leader: {}",
        renew.error()
    );

    fw.cut(&[(leader, others[0]), (leader, others[1])])?;
    let old_name = cluster.specs[leader].name.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster.kv_status(others[0]).await;
        if s["leader"].as_str().is_some_and(|l| l != old_name) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader in the majority: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = cluster.kv_status(leader).await;
    eprintln!("the cut-off node's own view: {s}");

    let renew = client
        .post_json(&old, "/kv/lease/keepalive", &json!({"id": id}))
        .await;
    assert_ne!(
        renew.status(),
        Some(200),
        "the deposed leader renewed lease {id} on its own word"
    );
    assert_eq!(renew.status(), Some(503), "{}", renew.error());
    assert!(renew.error().contains("no KV quorum"), "{}", renew.error());

    // Through the majority the lease is still there and renews.
    let renew = client
        .post_json(
            &cluster.specs[others[0]].admin,
            "/kv/lease/keepalive",
            &json!({"id": id}),
        )
        .await;
    assert_eq!(renew.status(), Some(200), "{}", renew.error());
    fw.heal()?;
    Ok(())
}
