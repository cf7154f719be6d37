//! Typed (bincode-2) messages across nodes: this test process is one node, a `dctl node start`
//! process is the other. A malformed payload is an error for the caller; the remote node lives on.

mod common;

use std::time::Duration;

use actors::codec::Wire;
use common::*;
use ractor::ActorRef;
use runtime::{counter::CounterMsg, MemberState, Node, RuntimeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_messages_cross_nodes_and_decode_failures_are_errors() {
    let remote = tokio::task::spawn_blocking(|| NodeProc::start("ty-remote"))
        .await
        .unwrap();
    let node = Node::builder()
        .cookie(common::TEST_COOKIE)
        .name("ty-local")
        .admin_addr("127.0.0.1:0")
        .seed(remote.gossip.clone())
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let members = node.members().await;
        if members
            .iter()
            .any(|m| m.name == "ty-remote" && m.state == MemberState::Alive && m.connected)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session to ty-remote: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    node.spawn_on(
        "ty-remote",
        "counter",
        "ty-counter",
        serde_json::Value::Null,
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let counter: ActorRef<CounterMsg> = loop {
        if let Ok(cell) = node.resolve("ty-counter").await {
            break cell.into();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ty-counter never resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !counter.get_id().is_local(),
        "the counter lives on the other node"
    );

    let add = |n: Wire<i64>| {
        let counter = counter.clone();
        let node = node.clone();
        async move {
            node.call(
                &counter,
                |p| CounterMsg::AddAndGet(n, p),
                Duration::from_secs(5),
            )
            .await
            .unwrap()
            .decode()
            .unwrap()
        }
    };
    // node.tell and node.call share one path to the remote node, so the tell lands first
    node.tell(&counter, CounterMsg::Add(Wire::new(&5).unwrap()))
        .unwrap();
    assert_eq!(add(Wire::new(&7).unwrap()).await, Ok(12));

    // garbage where an i64 should be: the caller gets the decode error, nothing is added
    let answer = add(Wire::from_raw(vec![0xff, 0xff, 0xff, 0xff, 0xff])).await;
    let err = answer.unwrap_err();
    assert!(err.contains("cannot decode"), "{err}");
    node.tell(&counter, CounterMsg::Add(Wire::from_raw(vec![0xfe])))
        .unwrap();
    assert_eq!(add(Wire::new(&0).unwrap()).await, Ok(12));

    // a JSON call to a typed remote actor is refused up front (not silently dropped)
    let err = node
        .call_json("ty-counter", serde_json::json!(1), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::WrongMessageType(..)), "{err}");
    // and the remote node is fine
    assert!(remote.dctl(&["tree"]).status.success());
    node.shutdown().await;
}
