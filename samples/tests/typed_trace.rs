//! A typed (chassis, bincode) call across two nodes keeps its trace: this test process is one
//! node and calls, inside a trace of its own, the `ping-pong` sample's actors on the other (a
//! worker of the service's spec, and one spawned from the sample's factory). The other node
//! handles each call once, in a span of that trace whose parent is the caller's span.

mod common;

use std::time::Duration;

use common::*;
use runtime::{MemberState, Node, TraceContext};
use samples::pingpong::PingMsg;

const BIN: &str = env!("CARGO_BIN_EXE_ping-pong");

/// The lines of `log` handling a message of trace `trace`.
fn handled(log: &str, trace: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("trace_id={trace}")) && l.contains("handling a traced"))
        .map(str::to_string)
        .collect()
}

async fn wait_for(what: &str, b: &Proc, mut cond: impl FnMut(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = b.log();
        if cond(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_call_to_another_node_continues_the_callers_trace() {
    let mut b = tokio::task::spawn_blocking(|| Proc::start("tt-b", BIN, &["--name", "tt-b"]))
        .await
        .unwrap();
    let gossip = b.gossip();
    let node = Node::builder()
        .cookie(COOKIE)
        .name("tt-a")
        .admin_addr("127.0.0.1:0")
        .data_dir(tempfile::tempdir().unwrap().keep())
        .seed(gossip)
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let members = node.members().await;
        if members
            .iter()
            .any(|m| m.name == "tt-b" && m.state == MemberState::Alive && m.connected)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session to tt-b: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The service's worker (a hand-made spec: the typed wrapper continues the trace).
    let pong = chassis::Remote::<PingMsg>::new(&node, "pong-tt-b").timeout(Duration::from_secs(10));
    assert_eq!(pong.call(&PingMsg::Ping(1)).await.unwrap(), 2, "untraced");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let ours = TraceContext::parse(&format!("00-{trace}-00f067aa0ba902b7-01")).unwrap();
    let n = runtime::in_trace(ours, pong.call(&PingMsg::Ping(5))).await;
    assert_eq!(n.unwrap(), 6);
    let log = wait_for("tt-b handled the traced call", &b, |l| {
        !handled(l, trace).is_empty()
    })
    .await;
    let lines = handled(&log, trace);
    assert_eq!(lines.len(), 1, "handled once: {lines:#?}");
    assert!(lines[0].contains("actor=pong-tt-b"), "{}", lines[0]);
    assert!(
        lines[0].contains("parent_span_id=00f067aa0ba902b7"),
        "the caller's span is the parent: {}",
        lines[0]
    );
    assert!(
        !lines[0].contains(" span_id=00f067aa0ba902b7"),
        "a span of its own: {}",
        lines[0]
    );

    // One spawned through the node from the sample's factory (the node's wrapper continues it).
    node.spawn_on("tt-b", "ponger", "tt-spawned", serde_json::json!(100))
        .await
        .unwrap();
    let spawned =
        chassis::Remote::<PingMsg>::new(&node, "tt-spawned").timeout(Duration::from_secs(10));
    let trace2 = "0af7651916cd43dd8448eb211c80319c";
    let ours2 = TraceContext::parse(&format!("00-{trace2}-b7ad6b7169203331-01")).unwrap();
    let n = runtime::in_trace(ours2, spawned.call(&PingMsg::Ping(1))).await;
    assert_eq!(n.unwrap(), 101);
    // A tell in the trace too.
    runtime::in_trace(ours2, spawned.tell(&PingMsg::Note("traced".into())))
        .await
        .unwrap();
    let log = wait_for("tt-b handled the traced call and tell", &b, |l| {
        handled(l, trace2).len() >= 2
    })
    .await;
    let lines = handled(&log, trace2);
    assert_eq!(lines.len(), 2, "each message handled once: {lines:#?}");
    for l in &lines {
        assert!(l.contains("actor=tt-spawned"), "{l}");
        assert!(l.contains("parent_span_id=b7ad6b7169203331"), "{l}");
    }
    // The untraced call left nothing behind: only the two traces appear.
    let traced: std::collections::HashSet<String> = log
        .lines()
        .filter(|l| l.contains("handling a traced"))
        .filter_map(|l| {
            l.split("trace_id=")
                .nth(1)
                .map(|r| r.chars().take(32).collect())
        })
        .collect();
    assert_eq!(
        traced,
        [trace.to_string(), trace2.to_string()]
            .into_iter()
            .collect(),
        "{log}"
    );
    node.shutdown().await;
    b.kill9();
}
