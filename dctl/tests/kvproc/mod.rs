//! A `dctl node start` process for KV tests whose data directory outlives it (so it can be
//! restarted), and helpers shared by the KV test files.
#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{free_port, stdout, wait_until, DCTL};

/// A node process whose data directory outlives it (so it can be restarted).
pub struct KvProc {
    pub name: String,
    pub admin: String,
    pub listen: String,
    pub gossip: String,
    pub data: PathBuf,
    pub log: PathBuf,
    pub voters: Vec<String>,
    pub extra: Vec<String>,
    pub seed: Option<String>,
    pub child: Option<Child>,
}

pub fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free udp port")
        .port()
}

impl KvProc {
    pub fn new(
        dir: &std::path::Path,
        name: &str,
        voters: &[&str],
        seed: Option<String>,
        extra: &[&str],
    ) -> KvProc {
        KvProc {
            name: name.into(),
            admin: format!("127.0.0.1:{}", free_port()),
            listen: format!("127.0.0.1:{}", free_port()),
            gossip: format!("127.0.0.1:{}", free_udp()),
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            voters: voters.iter().map(|v| v.to_string()).collect(),
            extra: extra.iter().map(|v| v.to_string()).collect(),
            seed,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(DCTL);
        cmd.args([
            "--admin",
            &self.admin,
            "node",
            "start",
            "--name",
            &self.name,
        ])
        .args(["--listen", &self.listen, "--gossip", &self.gossip])
        .arg("--data-dir")
        .arg(&self.data)
        .args(&self.extra)
        .env("RUST_LOG", "info,openraft=warn")
        .env("DCTL_COOKIE", crate::common::TEST_COOKIE)
        .stdout(Stdio::null())
        .stderr(log);
        for v in &self.voters {
            cmd.args(["--kv-voter", v]);
        }
        if let Some(s) = &self.seed {
            cmd.args(["--seed", s]);
        }
        self.child = Some(cmd.spawn().expect("dctl node start"));
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
        Command::new(DCTL)
            .args(["--admin", &self.admin])
            .args(args)
            .output()
            .expect("run dctl")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn status(&self) -> Option<Value> {
        let o = self.dctl(&["kv", "status", "--json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_str(&stdout(&o)).ok()
    }

    /// Keys under `prefix` in this node's own copy, with their versions.
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
                        e["key"].as_str().unwrap_or_default().to_string(),
                        e["version"].as_u64().unwrap_or(0),
                    )
                })
                .collect(),
        )
    }
}

impl Drop for KvProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A raw HTTP/1.1 request with timeouts (so tests can send anything, malformed bodies
/// included): (status, body), or why it failed.
pub fn http(admin: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let addr: std::net::SocketAddr = admin.parse().map_err(|e| format!("{e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((code, body))
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
