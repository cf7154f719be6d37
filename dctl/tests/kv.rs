//! The KV store across real `dctl node start` processes: replication, cas, watch order, TTL,
//! bad input, leader kill -9 under continuous writes, restart catch-up, whole-cluster restart
//! with snapshots and log compaction.

mod common;
mod kvproc;

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{assert_one_line_error, stdout, wait_until, DCTL};
use kvproc::{cluster, http, ok, wait_leader, KvProc};
use serde_json::Value;

#[test]
fn replication_cas_watch_ttl_and_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = cluster(dir.path(), &[]);
    let (n1, n3) = (&nodes[0], &nodes[2]);

    // A value put on node 1 is read on node 3 (linearizable by default).
    ok(&n1.dctl(&["kv", "put", "app/color", "blue"]));
    assert_eq!(ok(&n3.dctl(&["kv", "get", "app/color"])), "blue\n");
    let missing = n3.dctl(&["kv", "get", "app/nope"]);
    assert_one_line_error(&missing, "key 'app/nope' not found");

    // A watch started before the changes sees every one of them, in order.
    let rev = n1.status().expect("status")["revision"]
        .as_u64()
        .expect("revision");
    let watcher = Command::new(DCTL)
        .args(["--admin", &n3.admin, "kv", "watch", "app/", "--json"])
        .args(["--from", &(rev + 1).to_string(), "--count", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");

    // cas with a wrong expectation fails and changes nothing; with the right one it swaps.
    let bad = nodes[1].dctl(&["kv", "cas", "app/color", "--expect", "red", "green"]);
    assert_one_line_error(&bad, "compare failed for key 'app/color'");
    assert_eq!(ok(&n1.dctl(&["kv", "get", "app/color"])), "blue\n");
    ok(&nodes[1].dctl(&["kv", "cas", "app/color", "--expect", "blue", "green"]));
    assert_eq!(ok(&n3.dctl(&["kv", "get", "app/color"])), "green\n");
    for (i, n) in nodes.iter().enumerate() {
        ok(&n.dctl(&["kv", "put", &format!("app/k{i}"), &format!("v{i}")]));
    }
    ok(&n1.dctl(&["kv", "del", "app/k0"]));
    let out = watcher.wait_with_output().expect("watch output");
    assert!(out.status.success(), "{out:?}");
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json event"))
        .collect();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["key"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("put", "app/color"),
        ("put", "app/k0"),
        ("put", "app/k1"),
        ("put", "app/k2"),
        ("delete", "app/k0"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want);
    let revs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["revision"].as_u64())
        .collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions in order: {revs:?}"
    );

    // ls lists the prefix in key order.
    assert_eq!(
        ok(&n3.dctl(&["kv", "ls", "app/"])),
        "app/color\tgreen\napp/k1\tv1\napp/k2\tv2\n"
    );

    // A key with a TTL disappears after it.
    ok(&n1.dctl(&["kv", "put", "tmp/session", "x", "--ttl", "1"]));
    assert_eq!(ok(&n3.dctl(&["kv", "get", "tmp/session"])), "x\n");
    wait_until("the TTL key to vanish", Duration::from_secs(10), || {
        !n3.dctl(&["kv", "get", "tmp/session"]).status.success()
    });

    // Bad input gets a clear error and changes nothing.
    let big = "v".repeat(registry::kv::MAX_VALUE_BYTES + 1);
    let (code, body) = http(
        &n1.admin,
        "POST",
        "/kv/put",
        &format!(r#"{{"key":"big","value":"{big}"}}"#),
    )
    .expect("http");
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("value is 131073 bytes; the limit is 131072 bytes"),
        "{body}"
    );
    let long_key = "k".repeat(2000);
    let o = n1.dctl(&["kv", "put", &long_key, "v"]);
    assert_one_line_error(&o, "key is 2000 bytes; the limit is 1024 bytes");
    let (code, body) = http(&n1.admin, "POST", "/kv/put", "{not json").expect("http");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad JSON body"), "{body}");
    let (code, body) =
        http(&n1.admin, "POST", "/kv/cas", r#"{"key":"a","value":"b"}"#).expect("http");
    assert_eq!(code, 400, "{body}");
    let (code, _) = http(&n1.admin, "GET", "/kv/get?key=big", "").expect("http");
    assert_eq!(code, 404);
    let o = n1.dctl(&["kv", "put", "x", "y", "--ttl", "0"]);
    assert_one_line_error(&o, "ttl must be 1 to");

    // Status names the leader, the voters, the term and the commit index.
    let s = n3.status().expect("status");
    assert_eq!(s["voters"], serde_json::json!(["n1", "n2", "n3"]));
    assert!(s["leader"].is_string() && s["term"].as_u64() >= Some(1));
    assert!(s["commit_index"].as_u64() >= Some(8), "{s}");

    // Writes without a quorum fail with a clear error; acknowledged data stays.
    let mut nodes = nodes;
    nodes[1].kill9();
    nodes[2].kill9();
    let o = nodes[0].dctl(&["kv", "put", "noquorum", "x"]);
    assert_one_line_error(&o, "no KV quorum");
    nodes[1].spawn();
    nodes[1].wait_healthy();
    wait_leader(&[&nodes[0], &nodes[1]], None);
    assert_eq!(ok(&nodes[1].dctl(&["kv", "get", "app/color"])), "green\n");
}

#[test]
fn leader_kill_under_writes_then_restart_catches_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nodes = cluster(dir.path(), &[]);
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let li = nodes
        .iter()
        .position(|n| n.name == leader)
        .expect("leader index");
    let admins: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.admin.clone()).collect());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..3usize {
        let (admins, acked, stop) = (admins.clone(), acked.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut target = t % admins.len();
            let mut i = 0;
            let mut failures = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("w/{t}-{i:05}");
                let body = format!(r#"{{"key":"{key}","value":"{i}"}}"#);
                match http(&admins[target], "POST", "/kv/put", &body) {
                    Ok((200, _)) => acked.lock().expect("acked").push(key),
                    _ => {
                        failures += 1;
                        target = (target + 1) % admins.len();
                    }
                }
                i += 1;
            }
            failures
        }));
    }
    let count = || acked.lock().expect("acked").len();
    wait_until("writes before the kill", Duration::from_secs(30), || {
        count() >= 60
    });
    nodes[li].kill9();
    let at_kill = count();
    let survivors: Vec<&KvProc> = nodes.iter().filter(|n| n.name != leader).collect();
    let new_leader = wait_leader(&survivors, Some(&leader));
    assert_ne!(new_leader, leader);
    wait_until(
        "writes resume after the kill",
        Duration::from_secs(30),
        || count() >= at_kill + 60,
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let acked: BTreeSet<String> = acked.lock().expect("acked").iter().cloned().collect();

    // Every acknowledged write is on every surviving voter, applied exactly once.
    for n in &survivors {
        wait_until(
            &format!("{} has every acknowledged write", n.name),
            Duration::from_secs(20),
            || {
                n.local_keys("w/").is_some_and(|keys| {
                    let have: BTreeSet<String> = keys.iter().map(|k| k.0.clone()).collect();
                    acked.is_subset(&have)
                })
            },
        );
        let keys = n.local_keys("w/").expect("keys");
        assert!(
            keys.iter().all(|(_, v)| *v == 1),
            "a write was applied twice on {}",
            n.name
        );
    }

    // The killed leader comes back from its disk and the log, and catches up.
    nodes[li].spawn();
    nodes[li].wait_healthy();
    let back = &nodes[li];
    wait_until(
        "the restarted node catches up",
        Duration::from_secs(30),
        || {
            back.local_keys("w/").is_some_and(|keys| {
                let have: BTreeSet<String> = keys.iter().map(|k| k.0.clone()).collect();
                acked.is_subset(&have) && keys.iter().all(|(_, v)| *v == 1)
            })
        },
    );
}

#[test]
fn whole_cluster_restart_keeps_data_with_snapshots() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nodes = cluster(dir.path(), &["--kv-snapshot-every", "40"]);
    // n3 is down while enough is written for snapshots and log compaction on the others, so it
    // can only catch up through a snapshot sent over the actor transport.
    nodes[2].kill9();
    for i in 0..100 {
        let n = &nodes[i % 2];
        let (code, body) = http(
            &n.admin,
            "POST",
            "/kv/put",
            &format!(r#"{{"key":"d/{i:03}","value":"{i}"}}"#),
        )
        .expect("http");
        assert_eq!(code, 200, "{body}");
    }
    wait_until(
        "snapshots and compaction on the running voters",
        Duration::from_secs(20),
        || {
            nodes[..2].iter().all(|n| {
                n.status()
                    .is_some_and(|s| s["purged_index"].as_u64().unwrap_or(0) > 20)
            })
        },
    );
    nodes[2].spawn();
    nodes[2].wait_healthy();
    let n3 = &nodes[2];
    wait_until(
        "n3 catches up from a snapshot",
        Duration::from_secs(30),
        || n3.local_keys("d/").is_some_and(|k| k.len() == 100),
    );
    assert!(n3.status().expect("status")["snapshot_index"]
        .as_u64()
        .is_some());
    for n in nodes.iter_mut() {
        n.term();
    }
    for n in nodes.iter_mut() {
        n.spawn();
    }
    for n in &nodes {
        n.wait_healthy();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    let out = ok(&nodes[2].dctl(&["kv", "ls", "d/", "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    let entries = v["entries"].as_array().expect("entries");
    if entries.len() != 100 {
        for n in &nodes {
            let keys: Vec<String> = n
                .local_keys("d/")
                .unwrap_or_default()
                .into_iter()
                .map(|k| k.0)
                .collect();
            eprintln!(
                "DEBUG {} status {:?} n={} missing {:?}",
                n.name,
                n.status(),
                keys.len(),
                (0..100)
                    .map(|i| format!("d/{i:03}"))
                    .filter(|k| !keys.contains(k))
                    .collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(entries.len(), 100);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["key"], format!("d/{i:03}"));
        assert_eq!(e["value"], i.to_string());
    }
    // And the store still takes writes.
    ok(&nodes[0].dctl(&["kv", "put", "after", "restart"]));
    assert_eq!(ok(&nodes[1].dctl(&["kv", "get", "after"])), "restart\n");
}

/// Acknowledged writes survive kill -9 of every voter at once (applies are not fsync'd; the log
/// is), and the first reads after the restart already see all of them.
#[test]
fn whole_cluster_kill9_right_after_writes_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nodes = cluster(dir.path(), &[]);
    let admins: Vec<String> = nodes.iter().map(|n| n.admin.clone()).collect();
    let writers: Vec<_> = (0..4usize)
        .map(|t| {
            let admin = admins[t % admins.len()].clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let body = format!(r#"{{"key":"k/{t}-{i:03}","value":"{i}"}}"#);
                    let (code, body) = http(&admin, "POST", "/kv/put", &body).expect("http");
                    assert_eq!(code, 200, "{body}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    // Every write above was acknowledged: now kill every voter without warning.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.spawn();
    }
    nodes[1].wait_healthy();
    wait_until("the KV store answers", Duration::from_secs(20), || {
        nodes[1].status().is_some()
    });
    // The first linearizable read that gets an answer must already show every write.
    let out = ok(&nodes[1].dctl(&["kv", "ls", "k/", "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    let keys: BTreeSet<String> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = (0..4)
        .flat_map(|t| (0..40).map(move |i| format!("k/{t}-{i:03}")))
        .collect();
    let missing: Vec<&String> = want.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing after the restart: {missing:?}"
    );
    assert_eq!(keys.len(), want.len());
    // Every voter's own copy gets there too, each write applied once.
    for n in &nodes {
        wait_until(
            &format!("{} re-applies every write", n.name),
            Duration::from_secs(20),
            || {
                n.local_keys("k/").is_some_and(|k| {
                    k.len() == want.len() && k.iter().all(|(_, version)| *version == 1)
                })
            },
        );
    }
}

/// A fourth node started with `--kv-learner` is added by the leader as a learner: it gets what
/// was written before and after it joined, serves reads from its own copy, forwards writes, and
/// `kv status` lists it; after a restart it is still a learner and catches up.
#[test]
fn learner_joins_replicates_and_forwards_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = cluster(dir.path(), &[]);
    let put = |n: &KvProc, key: &str, value: &str| {
        let (code, body) = http(
            &n.admin,
            "POST",
            "/kv/put",
            &format!(r#"{{"key":"{key}","value":"{value}"}}"#),
        )
        .expect("http");
        assert_eq!(code, 200, "{body}");
    };
    for i in 0..20 {
        put(&nodes[i % 3], &format!("l/before-{i:02}"), &i.to_string());
    }
    let mut n4 = KvProc::new(
        dir.path(),
        "n4",
        &["n1", "n2", "n3"],
        Some(nodes[0].gossip.clone()),
        &["--kv-learner"],
    );
    n4.spawn();
    n4.wait_healthy();
    wait_until(
        "the voters list n4 as a learner",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                n.status()
                    .is_some_and(|s| s["learners"] == serde_json::json!(["n4"]))
            })
        },
    );
    let st = nodes[0].status().expect("status");
    assert_eq!(st["voters"], serde_json::json!(["n1", "n2", "n3"]));
    wait_until(
        "n4 holds what was written before it joined",
        Duration::from_secs(30),
        || n4.local_keys("l/before-").is_some_and(|k| k.len() == 20),
    );
    for i in 0..20 {
        put(&nodes[i % 3], &format!("l/after-{i:02}"), &i.to_string());
    }
    wait_until(
        "n4 holds what was written after it joined",
        Duration::from_secs(30),
        || n4.local_keys("l/after-").is_some_and(|k| k.len() == 20),
    );
    let st = n4.status().expect("n4 status");
    assert_eq!(st["role"], "learner", "{st}");
    assert_eq!(st["voters"], serde_json::json!(["n1", "n2", "n3"]));
    assert!(st["leader"].is_string(), "{st}");

    // A write sent to the learner lands (through the leader) and is read back anywhere.
    ok(&n4.dctl(&["kv", "put", "l/from-learner", "yes"]));
    assert_eq!(
        ok(&nodes[2].dctl(&["kv", "get", "l/from-learner"])),
        "yes\n"
    );
    assert_eq!(ok(&n4.dctl(&["kv", "get", "l/from-learner"])), "yes\n");
    let serial = ok(&n4.dctl(&["kv", "get", "--serializable", "l/from-learner"]));
    assert_eq!(serial, "yes\n");

    // Restarted, it is still a learner (not re-added) and catches up from the leader.
    n4.kill9();
    put(&nodes[1], "l/while-down", "1");
    n4.spawn();
    n4.wait_healthy();
    wait_until(
        "the restarted learner catches up",
        Duration::from_secs(30),
        || n4.local_keys("l/while-down").is_some_and(|k| k.len() == 1),
    );
    assert_eq!(n4.status().expect("status")["role"], "learner");
    let st = nodes[1].status().expect("status");
    assert_eq!(st["learners"], serde_json::json!(["n4"]));
    assert_eq!(st["voters"], serde_json::json!(["n1", "n2", "n3"]));
}

/// Start `dctl kv lock` and wait (up to 30 s) for its first stdout line: the lock is held.
fn start_lock(admin: &str, args: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(DCTL)
        .args(["--admin", admin, "--json", "kv", "lock"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dctl kv lock");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the lock was not taken within 30 s");
    (child, line)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the lock command exits", limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("exit status")
}

/// `dctl kv lock`: prints the key and lease when held, excludes a second locker until the
/// holder is interrupted, runs a command under the lock and exits with its code, releases on
/// exit; a holder killed with -9 loses the lock when its lease expires.
#[test]
fn kv_lock_command_holds_excludes_and_releases() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = cluster(dir.path(), &[]);
    let (mut a, line) = start_lock(&nodes[0].admin, &["job", "--ttl", "3"]);
    let held: Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(held["key"], "locks/job");
    let lease = held["lease"].as_u64().expect("lease id");
    let got: Value =
        serde_json::from_str(&ok(&nodes[1].dctl(&["--json", "kv", "get", "locks/job"])))
            .expect("json");
    assert_eq!(got["lease"].as_u64(), Some(lease));
    assert_eq!(got["value"], held["owner"]);

    // A second locker (with a command) waits while the first holds the lock, even past the
    // first one's TTL (its lease is renewed).
    let ran = dir.path().join("b-ran");
    let script = format!("echo \"$DCTL_LOCK_KEY\" > {}; exit 7", ran.display());
    let mut b = Command::new(DCTL)
        .args(["--admin", &nodes[2].admin, "kv", "lock", "job", "--"])
        .args(["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("second lock");
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert!(
            !ran.exists(),
            "the second locker ran while the lock was held"
        );
        assert!(
            b.try_wait().expect("try_wait").is_none(),
            "the second locker gave up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Interrupting the holder releases the lock; the second one gets it, runs its command and
    // exits with the command's code, and releases the lock in turn.
    let _ = Command::new("kill")
        .args(["-INT", &a.id().to_string()])
        .status();
    assert!(wait_exit(&mut a, Duration::from_secs(20)).success());
    let st = wait_exit(&mut b, Duration::from_secs(30));
    assert_eq!(st.code(), Some(7));
    assert_eq!(
        std::fs::read_to_string(&ran).expect("command output"),
        "locks/job\n"
    );
    let o = nodes[0].dctl(&["kv", "get", "locks/job"]);
    assert!(!o.status.success(), "the lock key is still there: {o:?}");

    // A holder killed with -9 cannot release: the lock ends when its lease expires.
    let (mut c, _) = start_lock(&nodes[1].admin, &["job", "--ttl", "2"]);
    let _ = c.kill();
    let _ = c.wait();
    let (mut d, line) = start_lock(&nodes[0].admin, &["job", "--", "true"]);
    assert!(line.contains("locks/job"), "{line}");
    assert!(wait_exit(&mut d, Duration::from_secs(20)).success());
}
