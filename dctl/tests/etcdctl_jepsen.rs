//! A Jepsen-style check with Debian's `etcdctl` as the client: three concurrent writers put
//! unique keys through the etcd API of a 3-node cluster while the nemesis kills the KV leader
//! with `kill -9` every 10 s for 60 s (restarting it on the same data dir). Afterwards every
//! acknowledged put is present with its value, and no put was applied twice (every key has
//! version 1: a retried write after a leader change is applied once).

mod common;
mod kvproc;

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use base64::Engine;
use common::free_port;
use kvproc::{wait_leader, KvProc};

const WRITERS: usize = 3;
const RUN: Duration = Duration::from_secs(60);
const KILL_EVERY: Duration = Duration::from_secs(10);

fn etcdctl(endpoints: &str, args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run etcdctl ({e}): install Debian's etcd-client (scripts/test.sh does)")
        })
}

#[test]
fn acknowledged_puts_survive_leader_kills_and_apply_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let voters = ["n1", "n2", "n3"];
    let etcd: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes: Vec<KvProc> = Vec::new();
    for (i, name) in voters.iter().enumerate() {
        let seed = nodes.first().map(|n: &KvProc| n.gossip.clone());
        nodes.push(KvProc::new(
            dir.path(),
            name,
            &voters,
            seed,
            &["--etcd-listen", &etcd[i]],
        ));
    }
    for n in nodes.iter_mut() {
        n.spawn();
    }
    for n in &nodes {
        n.wait_healthy();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let endpoints = etcd.join(",");

    // Writers: unique keys jep/<writer>/<seq>; the history records what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let (fail_tx, fail_rx) = mpsc::channel::<String>();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, endpoints, fail) = (stop.clone(), endpoints.clone(), fail_tx.clone());
            std::thread::spawn(move || {
                let mut history: Vec<(u64, bool)> = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = format!("jep/{w}/{seq:06}");
                    let o = etcdctl(&endpoints, &["put", &key, &seq.to_string()]);
                    let acked = o.status.success() && o.stdout == b"OK\n";
                    if o.status.success() && !acked {
                        let _ = fail.send(format!("put {key} printed {:?}", o.stdout));
                    }
                    history.push((seq, acked));
                }
                history
            })
        })
        .collect();
    drop(fail_tx);

    // Nemesis: kill -9 the leader every 10 s, restart it on its data dir.
    let start = Instant::now();
    let mut kills = 0;
    while start.elapsed() < RUN {
        let tick = start + KILL_EVERY * (kills + 1);
        // Wait for the next kill, or fail early on a writer's bad output.
        if let Ok(m) = fail_rx.recv_timeout(tick.saturating_duration_since(Instant::now())) {
            panic!("writer: {m}");
        }
        let live: Vec<&KvProc> = nodes.iter().collect();
        let leader = wait_leader(&live, None);
        let i = nodes
            .iter()
            .position(|n| n.name == leader)
            .expect("leader node");
        nodes[i].kill9();
        nodes[i].spawn();
        nodes[i].wait_healthy();
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let histories: Vec<Vec<(u64, bool)>> = writers
        .into_iter()
        .map(|w| w.join().expect("writer thread"))
        .collect();
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);

    // Read everything back (linearizable).
    let o = etcdctl(&endpoints, &["get", "jep/", "--prefix", "-w", "json"]);
    assert!(
        o.status.success(),
        "final read failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut found: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for kv in v["kvs"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let dec = |f: &str| {
            String::from_utf8(b64.decode(kv[f].as_str().unwrap_or_default()).expect("b64"))
                .expect("utf8")
        };
        let version = kv["version"].as_u64().expect("version");
        found.insert(dec("key"), (dec("value"), version));
    }
    let mut acked = 0;
    let mut unacked_present = 0;
    for (w, h) in histories.iter().enumerate() {
        for &(seq, ok) in h {
            let key = format!("jep/{w}/{seq:06}");
            match (ok, found.get(&key)) {
                (true, Some((value, _))) => {
                    assert_eq!(value, &seq.to_string(), "{key}");
                    acked += 1;
                }
                (true, None) => {
                    panic!("acknowledged put {key} is missing after {kills} leader kills")
                }
                (false, Some(_)) => unacked_present += 1,
                (false, None) => {}
            }
        }
    }
    let twice: Vec<_> = found.iter().filter(|(_, (_, ver))| *ver != 1).collect();
    assert!(twice.is_empty(), "puts applied more than once: {twice:?}");
    assert!(kills >= 5, "only {kills} leader kills");
    assert!(acked >= 100, "only {acked} acknowledged puts in {RUN:?}");
    eprintln!(
        "jepsen: {kills} leader kills, {acked} acknowledged puts all present, {unacked_present} unacknowledged ones applied, {} keys each applied once",
        found.len()
    );
}
