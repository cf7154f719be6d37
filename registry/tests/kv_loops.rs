//! The KV's loops are supervised children of the node's `system` supervisor: each comes back
//! after a kill, and the write batcher keeps the writes queued while it was down.

use std::time::Duration;

use actors::ChildStatus;
use registry::kv::{self, KvConfig};

const LOOPS: [&str; 3] = ["kv-batcher", "kv-membership", "kv-lease-reaper"];

/// Wait until `f` holds (polled every 20 ms, for at most 10 s); panic naming `what` if not.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait_until_async(what, Duration::from_secs(10), Duration::from_millis(20), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn status(node: &runtime::Node, id: &str) -> Option<(ChildStatus, u32)> {
    let tree = node.tree().await.ok()?;
    tree.find(id).map(|c| (c.status, c.restarts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_loops_come_back_and_the_batcher_keeps_queued_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = runtime::Node::builder()
        .name("kv-loops")
        .admin_addr("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .await
        .expect("node");
    let kv = kv::start(&node, KvConfig::default()).await.expect("kv");
    kv.put("a", "1").await.expect("a first write");
    let sup = node.system_supervisor().expect("system");

    for id in LOOPS {
        assert_eq!(
            status(&node, id).await,
            Some((ChildStatus::Running, 0)),
            "{id}"
        );
        let cell = actors::child_cell(&sup, id).await.expect("ask").expect(id);
        cell.kill();
        eventually(&format!("{id} restarted"), || async {
            status(&node, id).await == Some((ChildStatus::Running, 1))
        })
        .await;
    }
    kv.put("b", "2")
        .await
        .expect("a write through the restarted batcher");

    // With the batcher stopped a write waits in its queue; the batcher started again takes the
    // same queue and proposes it.
    actors::terminate_child(&sup, "kv-batcher")
        .await
        .expect("terminate");
    let writer = kv.clone();
    let mut queued = tokio::spawn(async move { writer.put("c", "3").await });
    // Not answered while no batcher runs (well within the KV's 8 s operation timeout).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut queued)
            .await
            .is_err(),
        "a write was answered with the batcher stopped"
    );
    actors::restart_child(&sup, "kv-batcher")
        .await
        .expect("restart");
    tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("the queued write is answered")
        .expect("task")
        .expect("the queued write succeeds");
    let c = kv.get("c").await.expect("get").map(|e| e.value);
    assert_eq!(c.as_deref(), Some("3"));
    let health = node.health().await;
    assert!(health.is_healthy(), "{:?}", health.down);
    node.shutdown().await;
}
