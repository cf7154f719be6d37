//! End-to-end service registry with real `dctl node start` processes: propagation, watch,
//! node death, graceful stop, bad input.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn start_seeded(name: &str, seed: &NodeProc) -> NodeProc {
    NodeProc::start_with(name, &["--seed", &seed.gossip])
}

fn instances(node: &NodeProc, service: &str) -> Vec<Value> {
    let out = node.dctl(&["svc", "ls", service, "--json"]);
    assert!(out.status.success(), "svc ls failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("svc ls --json is not JSON ({e}): {}", stdout(&out)));
    v["instances"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("svc ls --json has no \"instances\" array: {v}"))
}

#[test]
fn instances_propagate_are_watched_and_vanish_with_their_node() {
    let n1 = NodeProc::start("r-n1");
    let mut n2 = start_seeded("r-n2", &n1);
    let n3 = start_seeded("r-n3", &n1);
    wait_converged(&[&n1, &n2, &n3], &["r-n1", "r-n2", "r-n3"]);

    // a watcher on node 1, started before anything is registered
    let mut watcher = Command::new(DCTL)
        .args(["--admin", &n1.admin, "svc", "watch", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pipe = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let out = n2.dctl(&[
        "svc",
        "register",
        "web",
        "--addr",
        "127.0.0.1:18081",
        "--meta",
        "zone=a",
        "--id",
        "web-1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let registered = Instant::now();
    wait_until("web-1 listed on node 1", Duration::from_secs(10), || {
        instances(&n1, "web").len() == 1
    });
    eprintln!(
        "registration visible on node 1 after {:?}",
        registered.elapsed()
    );
    let i = &instances(&n1, "web")[0];
    assert_eq!(i["id"], "web-1");
    assert_eq!(i["node"], "r-n2");
    assert_eq!(i["address"], "127.0.0.1:18081");
    assert_eq!(i["metadata"]["zone"], "a");
    wait_until("web-1 listed on node 3", Duration::from_secs(10), || {
        instances(&n3, "web").len() == 1
    });
    let human = stdout(&n1.dctl(&["svc", "ls"]));
    assert!(
        human.contains("web-1") && human.contains("zone=a"),
        "{human}"
    );

    let killed = Instant::now();
    n2.signal_and_wait("KILL");
    wait_until("web-1 gone from node 1", Duration::from_secs(15), || {
        instances(&n1, "web").is_empty()
    });
    eprintln!(
        "instance of the killed node gone after {:?}",
        killed.elapsed()
    );

    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            events.push(serde_json::from_str::<Value>(&line).expect("one JSON event per line"));
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or(""),
                e["instance"]["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds, vec![("added", "web-1"), ("removed", "web-1")]);
}

#[test]
fn a_gracefully_stopping_node_deregisters_first() {
    let n1 = NodeProc::start("rg-n1");
    let mut n2 = start_seeded("rg-n2", &n1);
    wait_converged(&[&n1, &n2], &["rg-n1", "rg-n2"]);
    assert!(n2
        .dctl(&["svc", "register", "api", "--addr", "127.0.0.1:18082"])
        .status
        .success());
    wait_until("api listed on node 1", Duration::from_secs(10), || {
        instances(&n1, "api").len() == 1
    });
    let status = n2.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(n2.log_path()).unwrap();
    assert!(log.contains("deregistered this node's instances"), "{log}");
    wait_until("api gone from node 1", Duration::from_secs(10), || {
        instances(&n1, "api").is_empty()
    });
}

/// The fast path: a registration and a deregistration reach the other node as hints over the
/// lane (counted on both sides), and gossip then agrees with them.
#[test]
fn changes_are_pushed_to_the_other_nodes_ahead_of_gossip() {
    let n1 = NodeProc::start("rh-n1");
    let n2 = start_seeded("rh-n2", &n1);
    wait_converged(&[&n1, &n2], &["rh-n1", "rh-n2"]);
    let hints = |n: &NodeProc, which: &str| {
        metric(
            &http_get(&n.admin, "/metrics"),
            &format!("draft_registry_hints_{which}_total"),
        )
    };
    // The other node's registry door is known once its process group reached us: register
    // until a hint is sent (bounded), each attempt a new instance.
    let mut registered = Vec::new();
    for k in 0..20 {
        let id = format!("fast-{k}");
        let addr = format!("127.0.0.1:{}", 18100 + k);
        let out = n2.dctl(&["svc", "register", "fast", "--addr", &addr, "--id", &id]);
        assert!(out.status.success(), "{}", stderr(&out));
        registered.push(id);
        if hints(&n2, "sent") > 0 {
            break;
        }
        wait_until(
            "the registration listed on node 1",
            Duration::from_secs(10),
            || instances(&n1, "fast").len() == registered.len(),
        );
    }
    assert!(
        hints(&n2, "sent") > 0,
        "no hint was sent in 20 registrations"
    );
    wait_until("node 1 received a hint", Duration::from_secs(10), || {
        hints(&n1, "received") > 0
    });
    wait_until(
        "every registration listed on node 1",
        Duration::from_secs(10),
        || instances(&n1, "fast").len() == registered.len(),
    );

    let received = hints(&n1, "received");
    let last = registered.last().expect("one registration at least");
    let out = n2.dctl(&["svc", "deregister", "fast", "--id", last]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "the deregistration received as a hint",
        Duration::from_secs(10),
        || hints(&n1, "received") > received,
    );
    wait_until(
        "the instance gone from node 1",
        Duration::from_secs(10),
        || {
            instances(&n1, "fast")
                .iter()
                .all(|i| i["id"].as_str() != Some(last.as_str()))
        },
    );
    assert_eq!(hints(&n1, "refused"), 0);
    assert_eq!(
        hints(&n2, "received"),
        0,
        "node 2 changed nothing of node 1's"
    );
}

#[test]
fn bad_registry_requests_get_clear_errors() {
    let n1 = NodeProc::start("rb-n1");
    let n2 = start_seeded("rb-n2", &n1);
    wait_converged(&[&n1, &n2], &["rb-n1", "rb-n2"]);
    assert_one_line_error(
        &n1.dctl(&["svc", "register", "web", "--addr", "nohost"]),
        "must be HOST:PORT",
    );
    assert_one_line_error(
        &n1.dctl(&["svc", "register", "bad name", "--addr", "127.0.0.1:1"]),
        "service name 'bad name'",
    );
    assert_one_line_error(
        &n1.dctl(&[
            "svc",
            "register",
            "web",
            "--addr",
            "127.0.0.1:1",
            "--meta",
            "novalue",
        ]),
        "KEY=VALUE",
    );
    assert_one_line_error(
        &n1.dctl(&["svc", "deregister", "web", "--id", "nope"]),
        "no instance 'nope'",
    );
    assert!(n2
        .dctl(&[
            "svc",
            "register",
            "web",
            "--addr",
            "127.0.0.1:18083",
            "--id",
            "w2"
        ])
        .status
        .success());
    wait_until("w2 listed on node 1", Duration::from_secs(10), || {
        instances(&n1, "web").len() == 1
    });
    assert_one_line_error(
        &n1.dctl(&["svc", "deregister", "web", "--id", "w2"]),
        "registered on node 'rb-n2'",
    );
    // still serving
    assert_eq!(instances(&n1, "web").len(), 1);
}

/// The instance's size as gossiped, as the registry counts it: its JSON and its key.
fn gossiped_size(service: &str, id: &str, node: &str, addr: &str, pad: &str) -> usize {
    let instance = serde_json::json!({
        "service": service, "id": id, "node": node, "address": addr,
        "protocol": "http", "metadata": {"pad": pad}, "health": "passing",
    });
    format!("svc:{service}:{id}").len() + instance.to_string().len()
}

/// Gossip carries at most 64 000 bytes of one key-value: an instance one byte larger is refused
/// (the CLI's one-line error and the API's 413 name the limit) and nothing is registered; one of
/// exactly that size reaches the other node, and a node that joins later, which learns it by
/// gossip alone; so does an instance registered after it (gossip did not stall behind it).
#[test]
fn an_instance_too_large_to_gossip_is_refused_and_one_at_the_limit_reaches_every_node() {
    const LIMIT: usize = 64_000;
    let n1 = NodeProc::start("rl-n1");
    let n2 = start_seeded("rl-n2", &n1);
    wait_converged(&[&n1, &n2], &["rl-n1", "rl-n2"]);
    let addr = "127.0.0.1:18090";
    let fits = LIMIT - gossiped_size("big", "big-1", "rl-n1", addr, "");
    let register = |pad: &str| {
        n1.dctl(&[
            "svc",
            "register",
            "big",
            "--addr",
            addr,
            "--id",
            "big-1",
            "--meta",
            &format!("pad={pad}"),
        ])
    };

    let over = "v".repeat(fits + 1);
    assert_one_line_error(&register(&over), "the limit is 64000 bytes");
    let body = serde_json::json!({
        "service": "big", "address": addr, "id": "big-1", "metadata": {"pad": over},
    })
    .to_string();
    let (status, text) = http(
        &n1.admin,
        "POST",
        "/registry/services",
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let error = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(
        error.contains(&format!("is {} bytes", LIMIT + 1)) && error.contains("limit is 64000"),
        "{error}"
    );
    assert!(instances(&n1, "big").is_empty());

    let out = register(&"v".repeat(fits));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n1.dctl(&[
        "svc",
        "register",
        "small",
        "--addr",
        "127.0.0.1:18091",
        "--id",
        "small-1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let has_both = |n: &NodeProc| {
        let big = instances(n, "big");
        big.len() == 1
            && big[0]["metadata"]["pad"].as_str().map(str::len) == Some(fits)
            && instances(n, "small").len() == 1
    };
    wait_until(
        "node 2 sees both instances",
        Duration::from_secs(15),
        || has_both(&n2),
    );
    let n3 = start_seeded("rl-n3", &n2);
    let joined = Instant::now();
    wait_until(
        "node 3, started after, sees both instances",
        Duration::from_secs(15),
        || has_both(&n3),
    );
    eprintln!(
        "a node that joined saw the {LIMIT}-byte instance after {:?}",
        joined.elapsed()
    );
    assert_eq!(instances(&n3, "big")[0]["node"], "rl-n1");
}
