//! A `dctl node start` process for KV tests whose data directory outlives it (so it can be
//! restarted), and helpers shared by the KV test files.
#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    ops::{Deref, DerefMut},
    process::Output,
    time::Duration,
};

use serde_json::Value;
use testkit::{Cookie, NodeProcess};

use crate::common::{stdout, wait_until, DCTL, TEST_COOKIE};

/// A node process whose data directory (`dir/name`) and log (`dir/name.log`, appended to)
/// outlive it, so it can be restarted on the same ports. Its fields (`name`, `admin`,
/// `gossip`, `log`, ...) are the [`NodeProcess`]'s; `voters` and `seed` are read at each
/// [`KvProc::spawn`].
pub struct KvProc {
    node: NodeProcess,
    pub voters: Vec<String>,
    pub seed: Option<String>,
}

impl Deref for KvProc {
    type Target = NodeProcess;
    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

impl DerefMut for KvProc {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.node
    }
}

impl KvProc {
    pub fn new(
        dir: &std::path::Path,
        name: &str,
        voters: &[&str],
        seed: Option<String>,
        extra: &[&str],
    ) -> KvProc {
        let node = NodeProcess::new(DCTL.as_ref(), name, dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .cookie(Cookie::Env(TEST_COOKIE.to_string()))
            .env("RUST_LOG", "info,openraft=warn")
            .args(extra.iter().copied());
        KvProc {
            node,
            voters: voters.iter().map(|v| v.to_string()).collect(),
            seed,
        }
    }

    /// Spawn the process (again) with the current `voters` and `seed`.
    pub fn spawn(&mut self) {
        let mut more: Vec<&str> = Vec::new();
        for v in &self.voters {
            more.extend(["--kv-voter", v]);
        }
        if let Some(s) = &self.seed {
            more.extend(["--seed", s]);
        }
        self.node
            .spawn_with(&more)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn wait_healthy(&self) {
        wait_until(
            &format!("node {} healthy with its KV routes", self.name),
            // generous: this binary's tests start 3-5 nodes each at once on 2 shared cores
            Duration::from_secs(60),
            || {
                self.dctl(&["tree", "--json"]).status.success()
                    && http(&self.admin, "GET", "/health", "")
                        .is_ok_and(|(_, body)| !body.contains("services (starting)"))
                    && http(&self.admin, "GET", "/kv/status", "").is_ok_and(|(code, _)| code != 404)
            },
        );
    }

    pub fn dctl(&self, args: &[&str]) -> Output {
        self.node.dctl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kill the process with SIGKILL (nothing if it is not running).
    pub fn kill9(&mut self) {
        self.node.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stop the process with SIGTERM, waiting up to 30 s (then SIGKILL).
    pub fn term(&mut self) {
        if self.node.is_spawned() {
            // a timeout has killed it: either way it is gone, as a restart needs
            let _ = self.node.signal_and_wait("TERM", Duration::from_secs(30));
        }
    }

    /// Wait for the process to exit on its own (a start it must refuse).
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.node.wait_exit(limit).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kv status --json`, or `None` while the node does not answer it (a poller's "not yet").
    pub fn status(&self) -> Option<Value> {
        let o = self.dctl(&["kv", "status", "--json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_str(&stdout(&o)).ok()
    }

    /// Keys under `prefix` in this node's own copy, with their versions; `None` while the
    /// node does not answer (a poller's "not yet"). An entry without a key or version fails
    /// the test.
    pub fn local_keys(&self, prefix: &str) -> Option<Vec<(String, u64)>> {
        let (code, body) = http(
            &self.admin,
            "GET",
            &format!("/kv/range?prefix={prefix}&serializable=true"),
            "",
        )
        .ok()?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        Some(
            v["entries"]
                .as_array()?
                .iter()
                .map(|e| {
                    (
                        e["key"]
                            .as_str()
                            .unwrap_or_else(|| panic!("entry without a key: {e}"))
                            .to_string(),
                        e["version"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("entry without a version: {e}")),
                    )
                })
                .collect(),
        )
    }
}

/// A raw HTTP/1.1 request with a JSON content type and timeouts (so tests can send anything,
/// malformed bodies included): (status, body), or why it failed.
pub fn http(admin: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    testkit::http::request(
        admin,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .map(|r| (r.status, r.body))
    .map_err(|e| e.to_string())
}

/// Start three voters (n1..n3) and wait until they agree on a leader.
pub fn cluster(dir: &std::path::Path, extra: &[&str]) -> Vec<KvProc> {
    let voters = ["n1", "n2", "n3"];
    let mut nodes = vec![KvProc::new(dir, "n1", &voters, None, extra)];
    let seed = nodes[0].gossip.clone();
    for n in ["n2", "n3"] {
        nodes.push(KvProc::new(dir, n, &voters, Some(seed.clone()), extra));
    }
    for n in nodes.iter_mut() {
        n.spawn();
    }
    for n in &nodes {
        n.wait_healthy();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None);
    nodes
}

/// Wait until every given node names the same leader (not `not`); returns it.
pub fn wait_leader(nodes: &[&KvProc], not: Option<&str>) -> String {
    let mut leader = String::new();
    wait_until(
        "a KV leader all nodes agree on",
        Duration::from_secs(30),
        || {
            let leaders: BTreeSet<Option<String>> = nodes
                .iter()
                .map(|n| {
                    n.status()
                        .and_then(|s| s["leader"].as_str().map(str::to_string))
                })
                .collect();
            match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(l)] if Some(l.as_str()) != not => {
                    leader = l.clone();
                    true
                }
                _ => false,
            }
        },
    );
    leader
}

pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed: {o:?}");
    stdout(o)
}
