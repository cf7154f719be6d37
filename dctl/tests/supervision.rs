//! Supervision across real `dctl node start` processes (3 KV voters):
//!
//! * the crash storm of issue 10 (spawn an `echo`, send it 11 `{"crash":true}`, repeat; about
//!   130 requests as fast as they go) aimed at the KV leader: the crash-looping actor is
//!   stopped alone (status `failed`, with its reason, in `dctl tree --all`), bystanders on
//!   every node keep their incarnation, every node stays healthy, and KV writes through every
//!   node keep succeeding during and after the storm;
//! * forcing `root` over its intensity (killing a system service 11 times through the
//!   `--diagnostics` route) makes that node leave and exit non-zero, the others elect a new
//!   KV leader, and no acknowledged write is lost.

mod common;
mod kvproc;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{http_get, metric, stdout, wait_converged, wait_until, NodeProc};
use kvproc::http;
use serde_json::{json, Value};

fn json_of(admin: &str, path: &str) -> Option<Value> {
    match http(admin, "GET", path, "") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Three KV voters n1..n3 with the diagnostic routes, converged, with an agreed leader.
fn cluster() -> Vec<NodeProc> {
    let voters = ["--kv-voter", "n1", "--kv-voter", "n2", "--kv-voter", "n3"];
    let mut args: Vec<&str> = voters.to_vec();
    args.push("--diagnostics");
    let n1 = NodeProc::start_with("n1", &args);
    let seed = n1.gossip.clone();
    args.extend(["--seed", seed.as_str()]);
    let n2 = NodeProc::start_with("n2", &args);
    let n3 = NodeProc::start_with("n3", &args);
    wait_converged(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    let nodes = vec![n1, n2, n3];
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    nodes
}

/// Wait until every given node names the same leader (not `not`); returns it.
fn wait_leader(nodes: &[&NodeProc], not: Option<&str>) -> String {
    let mut leader = String::new();
    wait_until(
        "a KV leader all nodes agree on",
        Duration::from_secs(30),
        || {
            let leaders: Vec<Option<String>> = nodes
                .iter()
                .map(|n| {
                    json_of(&n.admin, "/kv/status")
                        .and_then(|s| s["leader"].as_str().map(str::to_string))
                })
                .collect();
            match leaders.first() {
                Some(Some(l))
                    if leaders.iter().all(|x| x.as_deref() == Some(l))
                        && Some(l.as_str()) != not =>
                {
                    leader = l.clone();
                    true
                }
                _ => false,
            }
        },
    );
    leader
}

/// Puts `k{i}` through the given nodes in turn until stopped; returns the acknowledged keys and
/// the failures seen (node, error).
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(prefix: &str, admins: Vec<(String, String)>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (s, a, f, prefix) = (
            stop.clone(),
            acked.clone(),
            failed.clone(),
            prefix.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let mut i = 0usize;
            // Bounded: at most 20 000 writes or 5 minutes.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::SeqCst) && i < 20_000 && Instant::now() < deadline {
                let (name, admin) = &admins[i % admins.len()];
                let key = format!("{prefix}/{i}");
                let body = json!({"key": key, "value": format!("v{i}")}).to_string();
                match http(admin, "POST", "/kv/put", &body) {
                    Ok((200, _)) => a.lock().unwrap().push(key),
                    Ok((code, body)) => f.lock().unwrap().push(format!("{name}: {code} {body}")),
                    Err(e) => f.lock().unwrap().push(format!("{name}: {e}")),
                }
                i += 1;
            }
        });
        Writer {
            stop,
            acked,
            failed,
            thread,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("writer thread");
        let acked = self.acked.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (acked, failed)
    }
}

fn find<'a>(tree: &'a Value, name: &str) -> Option<&'a Value> {
    if tree["name"] == name {
        return Some(tree);
    }
    tree["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

/// `(node, tree)` for every node, from `dctl tree --all --json` on `via`.
fn trees(via: &NodeProc) -> Vec<(String, Value)> {
    let out = via.dctl(&["tree", "--all", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).expect("tree json");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("").to_string(),
                n["tree"].clone(),
            )
        })
        .collect()
}

fn healthy(n: &NodeProc) -> bool {
    matches!(http(&n.admin, "GET", "/health", ""), Ok((200, _)))
}

#[test]
fn crash_storm_stops_the_looping_actor_alone_and_kv_keeps_serving() {
    let nodes = cluster();
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let target = nodes.iter().find(|n| n.name == leader).expect("leader");
    for n in &nodes {
        let out = n.dctl(&["spawn", "echo", "--name", &format!("by-{}", n.name)]);
        assert!(out.status.success(), "{out:?}");
    }
    let before = trees(&nodes[0]);
    let writer = Writer::start(
        "storm",
        nodes
            .iter()
            .map(|n| (n.name.clone(), n.admin.clone()))
            .collect(),
    );

    // The hostile storm: 10 rounds of spawn + 11 crashes, fired without waiting (130 requests).
    let started = Instant::now();
    let mut requests = 0;
    for _ in 0..10 {
        let body = json!({"factory": "echo", "name": "storm"}).to_string();
        let _ = http(&target.admin, "POST", "/api/spawn", &body);
        requests += 1;
        for _ in 0..12 {
            let _ = http(
                &target.admin,
                "POST",
                "/api/actors/storm/tell",
                r#"{"crash":true}"#,
            );
            requests += 1;
        }
    }
    eprintln!("storm: {requests} requests in {:?}", started.elapsed());

    // Whatever state the storm left it in (failed, restarting, running), it can be stopped.
    let out = target.dctl(&["stop", "storm"]);
    assert!(out.status.success(), "{out:?}");
    let given_up_before = metric(
        &http_get(&target.admin, "/metrics"),
        "draft_children_given_up_total",
    );
    // Then one round in lock-step, so the 11th crash surely lands on an incarnation.
    let out = target.dctl(&["spawn", "echo", "--name", "looper"]);
    assert!(out.status.success(), "{out:?}");
    for n in 0..11u64 {
        wait_until("looper running", Duration::from_secs(10), || {
            json_of(&target.admin, "/tree").is_some_and(|t| {
                find(&t["tree"], "looper")
                    .is_some_and(|l| l["status"] == "running" && l["restarts"] == n)
            })
        });
        let (code, _) = http(
            &target.admin,
            "POST",
            "/api/actors/looper/tell",
            r#"{"crash":true}"#,
        )
        .expect("tell");
        assert_eq!(code, 202);
    }
    wait_until("looper given up", Duration::from_secs(10), || {
        json_of(&target.admin, "/tree")
            .is_some_and(|t| find(&t["tree"], "looper").is_some_and(|l| l["status"] == "failed"))
    });
    // KV writes kept going through every node: wait for a few more after the storm.
    let acked_after_storm = writer.acked();
    wait_until("writes after the storm", Duration::from_secs(20), || {
        writer.acked() >= acked_after_storm + 30
    });
    let (acked, failed) = writer.finish();
    assert!(
        failed.is_empty(),
        "KV writes failed during the storm: {failed:?}"
    );
    assert!(acked.len() >= 30, "{}", acked.len());

    let after = trees(&nodes[0]);
    assert_eq!(after.len(), 3, "every node still answers: {after:?}");
    for (node, tree) in &after {
        let (_, old) = before.iter().find(|(n, _)| n == node).expect("node before");
        let by = format!("by-{node}");
        let (now, then) = (
            find(tree, &by).expect("bystander"),
            find(old, &by).expect("bystander"),
        );
        assert_eq!(now["status"], "running", "{node}");
        assert_eq!(
            now["actor_id"], then["actor_id"],
            "{by} kept its incarnation"
        );
        // The services, and every long-lived loop: each a supervised child in the tree.
        for service in [
            "system",
            "user",
            "inspector",
            "spawner",
            "kv",
            "broker",
            "actor-stats-sampler",
            "directory-publisher",
            "gossip-changes",
            "cluster-reconcile",
            "kv-batcher",
            "kv-membership",
            "kv-lease-reaper",
            "broker-interest",
            "broker-gossip-watch",
            "proxy",
            "proxy-controller",
            "proxy-registry-watch",
            "proxy-routes-watch",
        ] {
            let s = find(tree, service).unwrap_or_else(|| panic!("{service} on {node}"));
            assert_eq!(s["status"], "running", "{service} on {node}: {s}");
            assert_eq!(s["restarts"], 0, "{service} on {node} never restarted");
        }
    }
    let (_, tree) = after
        .iter()
        .find(|(n, _)| *n == leader)
        .expect("target tree");
    let looper = find(tree, "looper").expect("looper in the tree");
    let reason = looper["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("more than 10 restarts") && reason.contains("echo asked to crash"),
        "{looper}"
    );
    let text = stdout(&nodes[0].dctl(&["tree", "--all"]));
    assert!(text.contains("looper (worker, failed"), "{text}");
    let metrics = http_get(&target.admin, "/metrics");
    assert_eq!(
        metric(&metrics, "draft_children_given_up_total"),
        given_up_before + 1,
        "the looper was given up once"
    );
    for n in &nodes {
        assert!(healthy(n), "{} healthy", n.name);
    }

    // `dctl stop` from another node removes it, wherever it runs.
    let other = nodes
        .iter()
        .find(|n| n.name != leader)
        .expect("another node");
    let out = other.dctl(&["stop", "looper"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), format!("stopped looper on {leader}\n"));
    let t = json_of(&target.admin, "/tree").expect("tree");
    assert!(find(&t["tree"], "looper").is_none(), "{t}");
    let out = other.dctl(&["stop", "looper"]);
    common::assert_one_line_error(&out, "unknown actor 'looper'");
}

#[test]
fn a_node_whose_root_gives_up_exits_non_zero_and_loses_no_acknowledged_write() {
    let mut nodes = cluster();
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let idx = nodes.iter().position(|n| n.name == leader).expect("leader");
    let survivors: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| n.name != leader)
        .map(|n| (n.name.clone(), n.admin.clone()))
        .collect();
    let writer = Writer::start("root", survivors);
    wait_until("first writes", Duration::from_secs(20), || {
        writer.acked() >= 20
    });

    // `system` allows 10 restarts in 10 s: the 11th kill of its inspector makes it give up,
    // and root (which restarts nothing) with it.
    let doomed = &nodes[idx];
    // Each kill is sent as soon as the restarted inspector is back (404 while it restarts),
    // with no health round trips in between, so the 11 kills fall inside the 10 s window
    // even on a loaded machine.
    for kill in 1..=11 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, body) =
                http(&doomed.admin, "POST", "/api/diag/kill/inspector", "").expect("kill");
            if code == 200 {
                break;
            }
            assert_eq!(code, 404, "kill {kill}: {body}");
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the inspector did not come back: {body}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let killed_at = Instant::now();
    let status = nodes[idx].wait_exit(Duration::from_secs(30));
    let exited_after = killed_at.elapsed();
    assert!(!status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(nodes[idx].log_path()).unwrap_or_default();
    assert!(log.contains("its root supervisor gave up"), "{log}");

    let survivors: Vec<&NodeProc> = nodes.iter().filter(|n| n.name != leader).collect();
    let new_leader = wait_leader(&survivors, Some(&leader));
    let elected_after = killed_at.elapsed();
    eprintln!("node exited {exited_after:?} after the last kill; {new_leader} leads after {elected_after:?}");
    let acked_then = writer.acked();
    wait_until(
        "writes under the new leader",
        Duration::from_secs(20),
        || writer.acked() >= acked_then + 20,
    );
    let (acked, _failed_during_election) = writer.finish();
    // Every acknowledged write is there, read linearizably through each survivor.
    for n in &survivors {
        for key in &acked {
            let (code, body) =
                http(&n.admin, "GET", &format!("/kv/get?key={key}"), "").expect("get");
            assert_eq!(code, 200, "{key} on {}: {body}", n.name);
        }
    }
}
