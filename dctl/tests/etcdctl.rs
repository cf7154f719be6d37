//! Debian's `etcdctl` (etcd 3.4, `ETCDCTL_API=3`), a client nobody here wrote, against three
//! real `dctl node start` processes: put / get / del / txn / watch / lease grant, keep-alive and
//! time-to-live / lock / elect / member list / endpoint status, each answered in the output
//! shape etcd gives. Fails (does not skip) when `etcdctl` is missing: `scripts/test.sh`
//! installs it.

mod common;
mod kvproc;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use kvproc::{cluster, KvProc};
use regex::Regex;

fn etcd_addr(n: &KvProc) -> String {
    let s = n.status().expect("kv status");
    s["etcd_addr"].as_str().expect("etcd_addr").to_string()
}

fn etcdctl_cmd(endpoints: &str, args: &[&str]) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args);
    c
}

fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_cmd(endpoints, args).output().unwrap_or_else(|e| {
        panic!("cannot run etcdctl ({e}): install Debian's etcd-client (scripts/test.sh does)")
    })
}

fn ok(endpoints: &str, args: &[&str]) -> String {
    let o = etcdctl(endpoints, args);
    assert!(
        o.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A long-running etcdctl whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(endpoints: &str, args: &[&str]) -> Running {
        let mut child = etcdctl_cmd(endpoints, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The next `n` lines, each within `limit`.
    fn lines(&self, n: usize, limit: Duration) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(limit)
                    .unwrap_or_else(|_| panic!("etcdctl printed only {i} of {n} lines"))
            })
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcdctl_commands_get_etcds_output_shapes() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = cluster(dir.path(), &[]);
    let addrs: Vec<String> = nodes.iter().map(etcd_addr).collect();
    let all = addrs.join(",");
    let one = addrs[2].as_str();
    let wait = Duration::from_secs(10);
    // `dctl cluster status --json` and `dctl kv status` name the same etcd API address.
    let cs: serde_json::Value = serde_json::from_str(&common::stdout(
        &nodes[0].dctl(&["cluster", "status", "--json"]),
    ))
    .expect("cluster status json");
    assert_eq!(cs["etcd_addr"].as_str(), Some(addrs[0].as_str()), "{cs}");
    let ks = common::stdout(&nodes[0].dctl(&["kv", "status"]));
    assert!(ks.contains(&format!("etcd_addr: {}", addrs[0])), "{ks}");

    // put / get / del
    assert_eq!(ok(&all, &["put", "greeting", "hello"]), "OK\n");
    assert_eq!(ok(one, &["get", "greeting"]), "greeting\nhello\n");
    assert_eq!(
        ok(&all, &["put", "greeting", "hi", "--prev-kv"]),
        "OK\ngreeting\nhello\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(one, &["get", "greeting", "-w", "json"])).expect("json");
    assert!(
        j["header"]["cluster_id"].as_u64().is_some_and(|c| c != 0),
        "{j}"
    );
    assert!(
        j["header"]["raft_term"].as_u64().is_some_and(|t| t > 0),
        "{j}"
    );
    assert_eq!(j["count"], 1);
    assert_eq!(j["kvs"][0]["version"], 2);
    assert_eq!(j["kvs"][0]["key"], "Z3JlZXRpbmc="); // base64 of "greeting"
    ok(&all, &["put", "p/a", "1"]);
    ok(&all, &["put", "p/b", "2"]);
    assert_eq!(
        ok(one, &["get", "p/", "--prefix", "--keys-only"]),
        "p/a\n\np/b\n\n"
    );
    assert_eq!(ok(&all, &["del", "p/", "--prefix"]), "2\n");
    assert_eq!(ok(one, &["get", "p/", "--prefix"]), "");

    // txn (interactive form on stdin): compares, success ops, failure ops
    let txn = |script: &str| -> String {
        let mut c = etcdctl_cmd(&all, &["txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("etcdctl txn");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        let o = c.wait_with_output().expect("txn");
        assert!(o.status.success(), "txn failed");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        txn("value(\"greeting\") = \"hi\"\n\nput t yes\n\nput t no\n\n"),
        "SUCCESS\n\nOK\n"
    );
    assert_eq!(
        txn("value(\"greeting\") = \"nope\"\n\nput t yes\n\nget t\n\n"),
        "FAILURE\n\nt\nyes\n"
    );

    // watch
    let w = Running::start(one, &["watch", "w/", "--prefix"]);
    // The watch is created before its first put is acknowledged? Put until it shows up.
    let deadline = std::time::Instant::now() + wait;
    let first = loop {
        ok(&all, &["put", "w/1", "a"]);
        if let Ok(l) = w.lines.recv_timeout(Duration::from_millis(500)) {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watch printed nothing"
        );
    };
    assert_eq!(first, "PUT");
    assert_eq!(w.lines(2, wait), ["w/1", "a"]);
    ok(&all, &["del", "w/1"]);
    // Drain repeated puts, then expect the delete.
    let deadline = std::time::Instant::now() + wait;
    loop {
        let l = w.lines(1, wait).remove(0);
        if l == "DELETE" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no DELETE event");
    }
    assert_eq!(w.lines(2, wait), ["w/1", ""]);
    drop(w);

    // leases
    let granted = ok(&all, &["lease", "grant", "60"]);
    let re = Regex::new(r"^lease ([0-9a-f]{16}) granted with TTL\(60s\)\n$").expect("re");
    let id = re
        .captures(&granted)
        .unwrap_or_else(|| panic!("lease grant printed {granted:?}"))[1]
        .to_string();
    assert_eq!(
        ok(&all, &["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    ok(&all, &["put", "leased", "v", &format!("--lease={id}")]);
    let ttl = ok(one, &["lease", "timetolive", &id, "--keys"]);
    let re = Regex::new(&format!(
        r"^lease {id} granted with TTL\(60s\), remaining\((\d+)s\), attached keys\(\[leased\]\)\n$"
    ))
    .expect("re");
    let left: u64 = re
        .captures(&ttl)
        .unwrap_or_else(|| panic!("timetolive printed {ttl:?}"))[1]
        .parse()
        .expect("secs");
    assert!(left > 50 && left <= 60, "{ttl}");
    assert!(ok(one, &["lease", "list"]).contains(&id));
    assert_eq!(
        ok(&all, &["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(ok(one, &["get", "leased"]), "");

    // lock: runs the command while holding the lock
    assert_eq!(ok(&all, &["lock", "jobs", "echo", "held"]), "held\n");
    let holder = Running::start(&all, &["lock", "jobs"]);
    let key = holder.lines(1, wait).remove(0);
    assert!(key.starts_with("jobs/"), "{key}");

    // elect: a campaigner prints its key and value; an observer sees the leader
    let camp = Running::start(&all, &["elect", "e1", "first"]);
    let lines = camp.lines(2, wait);
    assert!(
        lines[0].starts_with("e1/") && lines[1] == "first",
        "{lines:?}"
    );
    let obs = Running::start(one, &["elect", "-l", "e1"]);
    assert_eq!(obs.lines(2, wait), lines);

    // member list / endpoint status
    let members = ok(one, &["member", "list"]);
    let re = Regex::new(r"^[0-9a-f]+, started, (n[123]), , http://(127\.0\.0\.1:\d+), false$")
        .expect("re");
    let mut seen: Vec<(String, String)> = members
        .lines()
        .map(|l| {
            let c = re
                .captures(l)
                .unwrap_or_else(|| panic!("member list line {l:?}"));
            (c[1].to_string(), c[2].to_string())
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String)> = nodes
        .iter()
        .zip(&addrs)
        .map(|(n, a)| (n.name.clone(), a.clone()))
        .collect();
    assert_eq!(seen, want);
    let status = ok(&all, &["endpoint", "status"]);
    let re = Regex::new(
        r"^(127\.0\.0\.1:\d+), [0-9a-f]+, 3\.4\.0, [0-9.]+ [kMG]?B, (true|false), false, (\d+), (\d+), (\d+), $",
    )
    .expect("re");
    let leaders = status
        .lines()
        .map(|l| {
            let c = re
                .captures(l)
                .unwrap_or_else(|| panic!("endpoint status line {l:?}"));
            assert!(c[3].parse::<u64>().expect("term") > 0);
            &c[2] == "true"
        })
        .filter(|l| *l)
        .count();
    assert_eq!((status.lines().count(), leaders), (3, 1), "{status}");
    // Unsupported calls say so.
    let o = etcdctl(one, &["defrag"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Unimplemented desc = defragment is not supported"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop((holder, camp, obs));
}
