//! End-to-end clustering with real `dctl node start` processes on loopback: convergence,
//! remote spawn, cross-node calls, cluster-wide trees, `kill -9` of a node, joining, wrong
//! cookies and garbage on the cluster ports.

mod common;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn seed_args(seed: &NodeProc) -> [String; 2] {
    ["--seed".to_string(), seed.gossip.clone()]
}

fn start_seeded(name: &str, seed: &NodeProc) -> NodeProc {
    let args = seed_args(seed);
    NodeProc::start_with(name, &[&args[0], &args[1]])
}

fn call(node: &NodeProc, actor: &str, payload: &str) -> std::process::Output {
    node.dctl(&["send", actor, payload, "--call", "--timeout", "2000"])
}

fn tree_all(node: &NodeProc) -> Value {
    let out = node.dctl(&["tree", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON")
}

fn contains_actor(tree: &Value, name: &str) -> bool {
    tree["name"] == name
        || tree["children"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| contains_actor(c, name)))
}

#[test]
fn three_nodes_remote_spawn_cross_node_call_kill_and_join() {
    let n1 = NodeProc::start("c-n1");
    let mut n2 = start_seeded("c-n2", &n1);
    let n3 = start_seeded("c-n3", &n1);
    wait_converged(&[&n1, &n2, &n3], &["c-n1", "c-n2", "c-n3"]);

    // spawn from node 1 onto node 2, call from node 3
    let out = n1.dctl(&["spawn", "echo", "--name", "ce1", "--on", "c-n2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("on c-n2"), "{}", stdout(&out));
    wait_until("ce1 reachable from node 3", Duration::from_secs(10), || {
        call(&n3, "ce1", "{}").status.success()
    });
    let out = call(&n3, "ce1", r#"{"from":"n3","n":[1,2]}"#);
    assert_eq!(
        stdout(&out),
        "{\"from\":\"n3\",\"n\":[1,2]}\n",
        "{}",
        stderr(&out)
    );

    // the cluster tree lists it under node 2 only
    let all = tree_all(&n1);
    let nodes = all["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, vec!["c-n1", "c-n2", "c-n3"]);
    for entry in nodes {
        let here = contains_actor(&entry["tree"], "ce1");
        assert_eq!(here, entry["node"] == "c-n2", "ce1 placement in {entry}");
    }

    // actor counts are gossiped (names are in the directory): node 3 sees node 2 run one
    wait_until(
        "node 3 sees that c-n2 runs one actor",
        Duration::from_secs(10),
        || {
            let out = n3.dctl(&["cluster", "status", "--json"]);
            let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
            v["nodes"].as_array().is_some_and(|ns| {
                ns.iter()
                    .any(|m| m["name"] == "c-n2" && m["actor_count"] == 1)
            })
        },
    );

    // node 1 watches ce1 (a monitor on the remote actor)
    let out = n1.dctl(&[
        "spawn",
        "watch",
        "--name",
        "cw",
        "--args",
        r#"{"target":"ce1"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let watch = |n: &NodeProc| -> Value {
        serde_json::from_str(&stdout(&call(n, "cw", "{}"))).unwrap_or(Value::Null)
    };
    assert_eq!(watch(&n1)["down"], false);

    // kill -9 node 2: the others mark it dead, and calls fail clearly in bounded time
    let killed = Instant::now();
    n2.signal_and_wait("KILL");
    for n in [&n1, &n3] {
        wait_until(
            &format!("{} marks c-n2 dead", n.name),
            Duration::from_secs(15),
            || {
                members(n)
                    .iter()
                    .any(|(name, state, _)| name == "c-n2" && state == "dead")
            },
        );
    }
    eprintln!(
        "c-n2 marked dead on both survivors {:?} after kill -9",
        killed.elapsed()
    );
    let started = Instant::now();
    let out = call(&n3, "ce1", "{}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the failing call must not hang"
    );
    assert_one_line_error(&out, "node 'c-n2' is down");
    wait_until(
        "the watcher on node 1 saw ce1 go down",
        Duration::from_secs(10),
        || watch(&n1)["down"] == true,
    );
    // Erlang's DOWN reason when the node is lost.
    assert_eq!(watch(&n1)["reason"], "noconnection");

    // a new node joins and is used
    let n4 = start_seeded("c-n4", &n3);
    wait_converged(&[&n1, &n3, &n4], &["c-n1", "c-n3", "c-n4"]);
    let out = n3.dctl(&["spawn", "echo", "--name", "ce4", "--on", "c-n4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("ce4 reachable from node 1", Duration::from_secs(10), || {
        call(&n1, "ce4", "{}").status.success()
    });
    assert_eq!(stdout(&call(&n1, "ce4", "[4]")), "[4]\n");
    let status = n1.dctl(&["cluster", "status"]);
    let text = stdout(&status);
    assert!(text.contains("c-n2") && text.contains("dead"), "{text}");
}

#[test]
fn a_node_with_the_wrong_cookie_cannot_join_or_send() {
    let n1 = NodeProc::start("k-n1");
    let n2 = start_seeded("k-n2", &n1);
    wait_converged(&[&n1, &n2], &["k-n1", "k-n2"]);
    assert!(n1
        .dctl(&["spawn", "echo", "--name", "ke", "--on", "k-n2"])
        .status
        .success());

    let args = seed_args(&n1);
    let bad = NodeProc::start_with("k-bad", &[&args[0], &args[1], "--cookie", "not-the-cookie"]);
    // its gossip is sealed with another key (derived from its cookie): dropped and counted
    wait_until(
        "the seed rejects the intruder's gossip",
        Duration::from_secs(15),
        || {
            metric(
                &http_get(&n1.admin, "/metrics"),
                "draft_gossip_datagrams_rejected_total",
            ) >= 3
        },
    );
    // it is not a member anywhere, sees nobody, and cannot reach the cluster's actors
    for n in [&n1, &n2] {
        assert!(!members(n).iter().any(|(name, _, _)| name == "k-bad"));
    }
    // (its membership starts once it gave up looking for a live node with its name: a few s)
    wait_until(
        "the intruder sees only itself",
        Duration::from_secs(10),
        || members(&bad).into_iter().map(|m| m.0).collect::<Vec<_>>() == vec!["k-bad"],
    );
    assert_one_line_error(&call(&bad, "ke", "{}"), "unknown actor 'ke'");
    assert_one_line_error(
        &bad.dctl(&["spawn", "echo", "--name", "kx", "--on", "k-n1"]),
        "unknown node 'k-n1'",
    );
    // the cluster keeps working
    wait_until("ke reachable from node 1", Duration::from_secs(10), || {
        call(&n1, "ke", "1").status.success()
    });
    wait_converged(&[&n1, &n2], &["k-n1", "k-n2"]);
}

#[test]
fn garbage_on_the_cluster_ports_leaves_the_node_running() {
    let n1 = NodeProc::start("g-n1");
    let n2 = start_seeded("g-n2", &n1);
    wait_converged(&[&n1, &n2], &["g-n1", "g-n2"]);

    // TCP actor transport: random bytes, a huge length prefix, a truncated frame
    let payloads: Vec<Vec<u8>> = vec![
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        vec![0xff; 64],
        vec![0, 0, 0, 0, 0, 0, 0, 8, 1, 2],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for p in &payloads {
        if let Ok(mut s) = std::net::TcpStream::connect(&n1.listen) {
            let _ = s.write_all(p);
            let _ = s.flush();
        }
    }
    // UDP gossip: garbage datagrams
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in &payloads {
        let _ = udp.send_to(&p[..p.len().min(1400)], &n1.gossip);
    }

    // still healthy, still clustered, still serving cross-node calls
    assert!(n1.dctl(&["tree"]).status.success());
    assert!(n1
        .dctl(&["spawn", "echo", "--name", "ge", "--on", "g-n2"])
        .status
        .success());
    wait_until("ge reachable from node 1", Duration::from_secs(10), || {
        call(&n1, "ge", "\"after garbage\"").status.success()
    });
    wait_converged(&[&n1, &n2], &["g-n1", "g-n2"]);
}

#[test]
fn remote_call_errors_distinguish_timeout_and_crash() {
    let n1 = NodeProc::start("x-n1");
    let n2 = NodeProc::start_with("x-n2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["x-n1", "x-n2"]);
    assert!(n1
        .dctl(&["spawn", "echo", "--name", "xe", "--on", "x-n2"])
        .status
        .success());
    wait_until("xe reachable from node 1", Duration::from_secs(10), || {
        call(&n1, "xe", "{}").status.success()
    });
    assert_one_line_error(
        &n1.dctl(&[
            "send",
            "xe",
            r#"{"sleep_ms":2000}"#,
            "--call",
            "--timeout",
            "300",
        ]),
        "timed out after 300ms",
    );
    assert_one_line_error(
        &n1.dctl(&[
            "send",
            "xe",
            r#"{"crash":true}"#,
            "--call",
            "--timeout",
            "5000",
        ]),
        "stopped before replying",
    );
    // restarted on node 2, reachable again from node 1
    wait_until("xe back", Duration::from_secs(10), || {
        call(&n1, "xe", "{}").status.success()
    });
}
