//! The direct message lane between nodes: this test process is one node, `dctl node start`
//! processes are the others. Streams arrive complete and in order, large messages cross, a call
//! in flight fails promptly when its node dies, and the lane port refuses a wrong cookie and
//! survives garbage.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use actors::codec::Wire;
use common::*;
use ractor::ActorRef;
use runtime::{counter::CounterMsg, MemberState, Node, RuntimeError};
use serde_json::{json, Value};

/// Wait until `node` has a session and a lane to `peer`.
async fn wait_lane(node: &Node, peer: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let members = node.members().await;
        if members
            .iter()
            .any(|m| m.name == peer && m.state == MemberState::Alive && m.connected && m.lane)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lane to {peer}: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn resolve_remote<M: ractor::Message>(node: &Node, name: &str) -> ActorRef<M> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(cell) = node.resolve(name).await {
            assert!(!cell.get_id().is_local(), "{name} lives on the other node");
            return cell.into();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_calls_cross_the_lane_and_a_dead_node_fails_calls_promptly() {
    let mut remote = tokio::task::spawn_blocking(|| NodeProc::start("ln-remote"))
        .await
        .unwrap();
    let node = Node::builder()
        .cookie(common::TEST_COOKIE)
        .name("ln-local")
        .admin_addr("127.0.0.1:0")
        .seed(remote.gossip.clone())
        .start()
        .await
        .unwrap();
    wait_lane(&node, "ln-remote").await;

    // A typed stream: every Add arrives, in order, before the call that follows it.
    node.spawn_on("ln-remote", "counter", "ln-counter", Value::Null)
        .await
        .unwrap();
    let counter: ActorRef<CounterMsg> = resolve_remote(&node, "ln-counter").await;
    const N: i64 = 20_000;
    for _ in 0..N {
        node.send(&counter, CounterMsg::Add(Wire::new(&1).unwrap()))
            .await
            .unwrap();
    }
    let total = node
        .call(
            &counter,
            |p| CounterMsg::AddAndGet(Wire::new(&0).unwrap(), p),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(total, Ok(N));

    // A large JSON call crosses whole.
    node.spawn_on("ln-remote", "echo", "ln-echo", Value::Null)
        .await
        .unwrap();
    resolve_remote::<runtime::JsonMsg>(&node, "ln-echo").await;
    let big = json!({"blob": "x".repeat(1 << 20)});
    let back = node
        .call_json("ln-echo", big.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(back, big);

    // A message larger than a lane frame is refused up front; the lane stays up for the rest.
    let huge = json!({"blob": "x".repeat(17 << 20)});
    let err = node
        .call_json("ln-echo", huge, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("larger than a lane frame"),
        "{err}"
    );
    assert_eq!(
        node.call_json("ln-echo", json!({"after": 1}), Duration::from_secs(5))
            .await
            .unwrap(),
        json!({"after": 1})
    );

    // A call in flight when its node is killed fails at once with a clear error.
    let caller = {
        let node = node.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let r = node
                .call_json(
                    "ln-echo",
                    json!({"sleep_ms": 20_000}),
                    Duration::from_secs(30),
                )
                .await;
            (r, started.elapsed())
        })
    };
    // the sleeping call has reached the echo once a quick call to it times out (it is busy)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = node
            .call_json("ln-echo", json!({"probe": 1}), Duration::from_millis(200))
            .await;
        if matches!(probe, Err(RuntimeError::Timeout { .. })) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the echo never got busy: {probe:?}"
        );
    }
    let killed_at = tokio::time::Instant::now();
    remote.signal_and_wait("KILL");
    let (result, _) = caller.await.unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Unreachable { .. } | RuntimeError::NodeDown { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ln-remote"), "{err}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "the call failed only after {:?}",
        killed_at.elapsed()
    );
    node.shutdown().await;
}

/// The lane address `node` publishes for itself.
fn lane_addr(node: &NodeProc) -> String {
    let out = node.dctl(&["cluster", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["self"] == true)
        .and_then(|m| m["lane_addr"].as_str())
        .expect("a lane address")
        .to_string()
}

fn lanes_up(node: &NodeProc, peer: &str) -> bool {
    let out = node.dctl(&["cluster", "status", "--json"]);
    let Ok(v) = serde_json::from_str::<Value>(&stdout(&out)) else {
        return false;
    };
    v["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .any(|m| m["name"] == peer && m["lane"] == true)
}

#[test]
fn the_lane_refuses_a_wrong_cookie_and_survives_garbage() {
    let n1 = NodeProc::start("lg-n1");
    let n2 = NodeProc::start_with("lg-n2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["lg-n1", "lg-n2"]);
    wait_until("lanes up both ways", Duration::from_secs(20), || {
        lanes_up(&n1, "lg-n2") && lanes_up(&n2, "lg-n1")
    });
    let lane = lane_addr(&n1);

    // garbage: random bytes, a bad greeting, a greeting with an absurd name length
    let garbage: Vec<Vec<u8>> = vec![
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        [b"DLANE/2\n".as_slice(), &[0xff, 0xff], &[b'a'; 64]].concat(),
    ];
    for g in &garbage {
        let mut s = TcpStream::connect(&lane).unwrap();
        let _ = s.write_all(g);
        let _ = s.flush();
    }

    // a peer that does not know the cookie: greet, read the node's challenge (which must hold
    // no proof of the node's own: only its name and a nonce), answer wrongly
    let mut s = TcpStream::connect(&lane).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = b"intruder";
    let mut hello = b"DLANE/2\n".to_vec();
    hello.extend_from_slice(&((1 + 2 + name.len()) as u16).to_be_bytes());
    hello.push(1);
    hello.extend_from_slice(&(name.len() as u16).to_be_bytes());
    hello.extend_from_slice(name);
    s.write_all(&hello).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut challenge = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut challenge).unwrap();
    assert_eq!(challenge[0], 2, "a challenge");
    assert_eq!(
        challenge.len(),
        1 + 2 + "lg-n1".len() + 32,
        "the challenge is name and nonce only: {challenge:?}"
    );
    let mut proof = (65u16).to_be_bytes().to_vec();
    proof.push(3);
    proof.extend_from_slice(&[7u8; 64]);
    s.write_all(&proof).unwrap();
    let mut verdict = [0u8; 3];
    let refused = match s.read_exact(&mut verdict) {
        Ok(()) => verdict == [0, 1, 5],
        Err(_) => false,
    };
    assert!(refused, "a wrong proof must be refused");
    wait_until("the refusal is logged", Duration::from_secs(5), || {
        std::fs::read_to_string(n1.log_path())
            .unwrap_or_default()
            .contains("does not know our cookie")
    });

    // the node still serves, counted the refusals, and its lane to n2 still carries calls
    assert!(n1.dctl(&["tree"]).status.success());
    wait_until(
        "the four refusals are counted",
        Duration::from_secs(5),
        || {
            metric(
                &http_get(&n1.admin, "/metrics"),
                "draft_lane_handshakes_refused_total",
            ) >= 4
        },
    );
    let m = http_get(&n1.admin, "/metrics");
    assert_eq!(metric(&m, "draft_lanes_up"), 1, "{m}");
    assert!(lanes_up(&n1, "lg-n2"));
    let spawned = n2.dctl(&["spawn", "echo", "--name", "lg-echo", "--on", "lg-n1"]);
    assert!(spawned.status.success(), "{}", stderr(&spawned));
    wait_until("n2 reaches lg-echo", Duration::from_secs(10), || {
        let out = n2.dctl(&[
            "send",
            "lg-echo",
            r#"{"k":1}"#,
            "--call",
            "--timeout",
            "2000",
        ]);
        out.status.success() && stdout(&out).contains(r#""k":1"#)
    });
    let m = http_get(&n2.admin, "/metrics");
    assert!(metric(&m, "draft_lane_frames_sent_total") >= 1, "{m}");
    assert!(metric(&m, "draft_lane_frames_received_total") >= 1, "{m}");
}
