//! One KV store per cluster, with live membership, across real `dctl node start` processes:
//! nodes started with only `--seed` form one store, later nodes join as learners and are
//! promoted when a voter goes, a voter killed with -9 is replaced after the grace period without
//! losing an acknowledged write, a membership change that would lose the quorum is refused, and
//! a data dir of another cluster is refused at start.

mod common;
mod kvproc;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{stdout, wait_until};
use kvproc::{http, ok, wait_leader, KvProc};
use serde_json::Value;

/// `(name, role)` of every member, as `dctl kv members --json` on `n` tells.
fn members(n: &KvProc) -> Option<Vec<(String, String)>> {
    let o = n.dctl(&["kv", "members", "--json"]);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_str(&stdout(&o)).ok()?;
    Some(
        v["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["role"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

fn voters_of(m: &[(String, String)]) -> BTreeSet<String> {
    m.iter()
        .filter(|(_, r)| r == "voter")
        .map(|(n, _)| n.clone())
        .collect()
}

/// `n1` alone, then the others with only `--seed n1` (no KV flags): the README's "by hand" way.
fn seeded(dir: &std::path::Path, names: &[&str], extra: &[&str]) -> Vec<KvProc> {
    let mut nodes = vec![KvProc::new(dir, names[0], &[], None, extra)];
    nodes[0].spawn();
    nodes[0].wait_healthy();
    let seed = nodes[0].gossip.clone();
    for n in &names[1..] {
        let mut p = KvProc::new(dir, n, &[], Some(seed.clone()), extra);
        p.spawn();
        nodes.push(p);
    }
    for n in &nodes {
        n.wait_healthy();
    }
    nodes
}

fn put(n: &KvProc, key: &str, value: &str) -> Result<(), String> {
    let (code, body) = http(
        &n.admin,
        "POST",
        "/kv/put",
        &format!(r#"{{"key":"{key}","value":"{value}"}}"#),
    )?;
    if code == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {code}: {body}"))
    }
}

#[test]
fn three_nodes_started_with_only_seed_form_one_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = seeded(dir.path(), &["n1", "n2", "n3"], &[]);
    wait_until(
        "every node lists the voters n1, n2, n3",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                n.status()
                    .is_some_and(|s| s["voters"] == serde_json::json!(["n1", "n2", "n3"]))
            })
        },
    );
    let stores: BTreeSet<String> = nodes
        .iter()
        .map(|n| {
            n.status().expect("status")["store"]
                .as_str()
                .expect("a store id")
                .to_string()
        })
        .collect();
    assert_eq!(stores.len(), 1, "more than one store: {stores:?}");
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    ok(&nodes[0].dctl(&["kv", "put", "hello", "world"]));
    assert_eq!(ok(&nodes[2].dctl(&["kv", "get", "hello"])), "world\n");
    ok(&nodes[2].dctl(&["kv", "put", "from3", "x"]));
    assert_eq!(ok(&nodes[1].dctl(&["kv", "get", "from3"])), "x\n");
    let text = ok(&nodes[1].dctl(&["kv", "members"]));
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

fn learners_of(m: &[(String, String)]) -> BTreeSet<String> {
    m.iter()
        .filter(|(_, r)| r == "learner")
        .map(|(n, _)| n.clone())
        .collect()
}

/// Wait for `voters` voters and `learners` learners; returns (voters, learners).
fn wait_shape(n: &KvProc, voters: usize, learners: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut shape = (BTreeSet::new(), BTreeSet::new());
    wait_until(
        &format!("{voters} voters and {learners} learners"),
        Duration::from_secs(40),
        || {
            members(n).is_some_and(|m| {
                shape = (voters_of(&m), learners_of(&m));
                shape.0.len() == voters && shape.1.len() == learners
            })
        },
    );
    shape
}

#[test]
fn fourth_and_fifth_join_as_learners_and_are_promoted_when_voters_are_removed() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = seeded(dir.path(), &["n1", "n2", "n3", "n4", "n5"], &[]);
    let (voters, learners) = wait_shape(&nodes[0], 3, 2);
    assert!(
        voters.contains("n1"),
        "the bootstrapper is a voter: {voters:?}"
    );
    ok(&nodes[0].dctl(&["kv", "put", "k", "before"]));
    let by_name = |n: &str| nodes.iter().find(|p| p.name == n).expect("node");
    for l in &learners {
        wait_until("a learner holds the data", Duration::from_secs(20), || {
            by_name(l).local_keys("k").is_some_and(|k| k.len() == 1)
        });
    }

    // Remove the voters other than n1, one by one: each time the leader promotes a learner
    // to get back to three voters.
    let mut removed = BTreeSet::new();
    for v in voters.iter().filter(|v| *v != "n1") {
        ok(&nodes[0].dctl(&["kv", "members", "remove", v]));
        removed.insert(v.clone());
        wait_until(
            &format!("three voters again after removing {v}"),
            Duration::from_secs(30),
            || {
                members(&nodes[0]).is_some_and(|m| {
                    let now = voters_of(&m);
                    now.len() == 3
                        && now.is_disjoint(&removed)
                        && !m.iter().any(|(n, _)| removed.contains(n))
                })
            },
        );
    }
    let mut want = learners.clone();
    want.insert("n1".into());
    assert_eq!(voters_of(&members(&nodes[0]).expect("members")), want);
    // The promoted voters serve the data written before, and new writes.
    let l: Vec<&String> = learners.iter().collect();
    assert_eq!(ok(&by_name(l[0]).dctl(&["kv", "get", "k"])), "before\n");
    ok(&by_name(l[1]).dctl(&["kv", "put", "k", "after"]));
    assert_eq!(ok(&nodes[0].dctl(&["kv", "get", "k"])), "after\n");

    let o = nodes[0].dctl(&["kv", "members", "promote", "n1"]);
    assert!(!o.status.success());
    assert!(common::stderr(&o).contains("is a voter already"), "{o:?}");
    let o = nodes[0].dctl(&["kv", "members", "remove", "nobody"]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("not a member of this store"),
        "{o:?}"
    );
}

#[test]
fn killed_voter_is_replaced_after_grace_keeping_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let extra = ["--kv-dead-grace", "2"];
    let mut nodes = seeded(dir.path(), &["n1", "n2", "n3", "n4"], &extra);
    let (_, learners) = wait_shape(&nodes[0], 3, 1);
    let spare = learners.into_iter().next().expect("a learner");
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None);

    // Writers on every node but the one to be killed, recording what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let targets: Vec<String> = nodes
        .iter()
        .filter(|n| n.name != leader)
        .map(|n| n.admin.clone())
        .collect();
    let mut writers = Vec::new();
    for (w, admin) in targets.into_iter().enumerate() {
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut i = 0u32;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let key = format!("w/{w}-{i:05}");
                let body = format!(r#"{{"key":"{key}","value":"{i}"}}"#);
                if let Ok((200, _)) = http(&admin, "POST", "/kv/put", &body) {
                    acked.lock().expect("lock").push(key);
                }
                i += 1;
            }
        }));
    }
    wait_until("some writes acknowledged", Duration::from_secs(20), || {
        acked.lock().expect("lock").len() >= 20
    });
    let idx = nodes.iter().position(|n| n.name == leader).expect("leader");
    nodes[idx].kill9();
    let rest: Vec<&KvProc> = nodes.iter().filter(|n| n.name != leader).collect();
    wait_until(
        "the dead voter is replaced by the learner",
        Duration::from_secs(60),
        || {
            members(rest[0]).is_some_and(|m| {
                voters_of(&m).len() == 3
                    && voters_of(&m).contains(&spare)
                    && !m.iter().any(|(n, _)| *n == leader)
            })
        },
    );
    let before = acked.lock().expect("lock").len();
    wait_until(
        "writes acknowledged after the replacement",
        Duration::from_secs(20),
        || acked.lock().expect("lock").len() >= before + 20,
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    let (code, body) = http(&rest[0].admin, "GET", "/kv/range?prefix=w/", "").expect("range");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let present: BTreeSet<String> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["key"].as_str().unwrap_or_default().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );

    // Kill a second voter: removing a live one now would leave one of two voters up: refused.
    let voters: Vec<String> = voters_of(&members(rest[0]).expect("members"))
        .into_iter()
        .collect();
    let victim = voters.iter().find(|v| **v != spare).expect("voter").clone();
    let keep = voters
        .iter()
        .find(|v| **v != spare && **v != victim)
        .expect("voter")
        .clone();
    let vi = nodes.iter().position(|n| n.name == victim).expect("victim");
    nodes[vi].kill9();
    let n4 = nodes.iter().find(|n| n.name == spare).expect("spare");
    wait_until(
        "the leader sees the second victim dead",
        Duration::from_secs(30),
        || {
            let o = n4.dctl(&["kv", "members", "--json"]);
            serde_json::from_str::<Value>(&stdout(&o)).is_ok_and(|v| {
                v["members"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|x| x["name"] == victim.as_str() && x["state"] != "alive")
                })
            })
        },
    );
    let o = n4.dctl(&["kv", "members", "remove", &keep]);
    assert!(
        !o.status.success(),
        "the quorum-losing removal was done: {o:?}"
    );
    let err = common::stderr(&o);
    assert!(err.contains("would lose the quorum"), "{err}");
    assert!(err.contains(&victim), "{err}");
    // Nothing changed: the store still has its three voters and takes writes.
    let m = members(n4).expect("members");
    assert_eq!(voters_of(&m).len(), 3, "{m:?}");
    put(n4, "after/refusal", "1").expect("a write with two of three voters");
}

#[test]
fn a_data_dir_of_another_cluster_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut a1 = KvProc::new(dir.path(), "a1", &[], None, &[]);
    a1.spawn();
    a1.wait_healthy();
    ok(&a1.dctl(&["kv", "put", "cluster", "a"]));
    a1.term();

    let b1 = {
        let mut b = KvProc::new(dir.path(), "b1", &[], None, &[]);
        b.spawn();
        b.wait_healthy();
        b
    };
    ok(&b1.dctl(&["kv", "put", "cluster", "b"]));
    // a1 again, with its data dir, pointed at cluster B.
    a1.seed = Some(b1.gossip.clone());
    a1.spawn();
    // a node with another cluster's data dir must not keep running
    let status = a1.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = std::fs::read_to_string(&a1.log).expect("log");
    assert!(
        log.contains("belongs to another cluster") && log.contains("fresh --data-dir"),
        "{log}"
    );
    // Cluster B is untouched.
    assert_eq!(ok(&b1.dctl(&["kv", "get", "cluster"])), "b\n");
}
