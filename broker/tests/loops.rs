//! The broker's two gossip loops are supervised children of the node's `system` supervisor:
//! killed, each comes back, and the restarted interest publisher gossips a new consumer.

use std::time::Duration;

use actors::ChildStatus;
use broker::{Broker, ConsumeOptions};
use runtime::Node;

/// Wait until `f` holds (polled every 20 ms, for at most 15 s); panic naming `what` if not.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait_until_async(what, Duration::from_secs(15), Duration::from_millis(20), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_gossip_loops_come_back_and_interest_is_still_published() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = Node::builder()
        .name("broker-loops")
        .admin_addr("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .await
        .expect("node");
    let broker = Broker::start(&node).await.expect("broker");
    let system = node.system_supervisor().expect("system");
    for id in ["broker-interest", "broker-gossip-watch"] {
        let cell = actors::child_cell(&system, id)
            .await
            .expect("ask")
            .unwrap_or_else(|| panic!("{id} runs"));
        cell.kill();
        eventually(&format!("{id} restarted"), || async {
            let Ok(tree) = node.tree().await else {
                return false;
            };
            tree.find(id)
                .is_some_and(|c| c.status == ChildStatus::Running && c.restarts == 1)
        })
        .await;
    }
    let _consumer = broker
        .consume("after-restart", ConsumeOptions::default())
        .await
        .expect("consume");
    eventually("this node's interest in the channel gossiped", || async {
        node.gossip_scan("broker/i/")
            .await
            .iter()
            .any(|(_, key, _)| key == "broker/i/after-restart")
    })
    .await;
    node.shutdown().await;
}
