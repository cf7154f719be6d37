//! The cluster under test: `dctl node start` processes, node `i` (from 0) named `n{i+1}` on
//! loopback alias `127.0.0.{i+2}` (its admin API, transport, lane and gossip all bound there),
//! every node a KV voter (`--kv-voter` for each), the cookie given explicitly, and its own group
//! id (see [`crate::net`]). Processes are killed (and paused ones continued) on drop, and die
//! with the runner if it is killed (`PR_SET_PDEATHSIG`).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let mut c = chaos::cluster::Cluster::new("target/debug/dctl".into(), dir.path(), 3, false)?;
//! c.start_all()?;
//! c.wait_ready(std::time::Duration::from_secs(60)).await?;
//! c.kill(0)?;
//! c.start(0)?;
//! # Ok(()) }
//! ```

use std::{
    net::{TcpListener, UdpSocket},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{client::Client, net::Member};

/// Where Debian's libfaketime lives.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One node's addresses and files.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...
    pub name: String,
    /// `127.0.0.2`, ...
    pub ip: String,
    /// Admin HTTP address.
    pub admin: String,
    /// Actor transport.
    pub listen: String,
    /// Direct lane.
    pub lane: String,
    /// Gossip (UDP).
    pub gossip: String,
    /// Group id of the process.
    pub gid: u32,
    /// Data directory (kept across restarts).
    pub data: PathBuf,
    /// Log file (appended across restarts).
    pub log: PathBuf,
    /// libfaketime's offset file, when the clock can be skewed.
    pub faketime: Option<PathBuf>,
}

/// The node processes.
#[derive(Debug)]
pub struct Cluster {
    dctl: PathBuf,
    /// The nodes' specs, by index.
    pub specs: Vec<NodeSpec>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    cookie: String,
    client: Client,
}

fn free_tcp(ip: &str) -> anyhow::Result<String> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}"))?;
    Ok(l.local_addr()?.to_string())
}

fn free_udp(ip: &str) -> anyhow::Result<String> {
    let s = UdpSocket::bind((ip, 0)).with_context(|| format!("bind {ip}"))?;
    Ok(s.local_addr()?.to_string())
}

fn signal(pid: u32, sig: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) with a pid of a child this process started; no memory is touched.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Cluster {
    /// Plan `n` nodes with data under `dir`; `clock`: run them under libfaketime.
    pub fn new(dctl: PathBuf, dir: &Path, n: usize, clock: bool) -> anyhow::Result<Cluster> {
        if !dctl.exists() {
            bail!(
                "{} not found: build it first (cargo build -p dctl) or pass --dctl",
                dctl.display()
            );
        }
        if clock && !Path::new(LIBFAKETIME).exists() {
            bail!(
                "{LIBFAKETIME} is missing (apt-get install libfaketime; ./scripts/test.sh does it)"
            );
        }
        let gid_base = 40_000 + (std::process::id() % 2_000) * 16;
        let mut specs = Vec::new();
        for i in 0..n {
            let ip = format!("127.0.0.{}", i + 2);
            let name = format!("n{}", i + 1);
            let data = dir.join(&name);
            std::fs::create_dir_all(&data)?;
            let faketime = clock.then(|| dir.join(format!("{name}.faketime")));
            if let Some(f) = &faketime {
                std::fs::write(f, "+0\n")?;
            }
            specs.push(NodeSpec {
                admin: free_tcp(&ip)?,
                listen: free_tcp(&ip)?,
                lane: free_tcp(&ip)?,
                gossip: free_udp(&ip)?,
                gid: gid_base + i as u32,
                log: dir.join(format!("{name}.log")),
                data,
                faketime,
                name,
                ip,
            });
        }
        Ok(Cluster {
            dctl,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            specs,
            cookie: format!("chaos-{}", std::process::id()),
            client: Client::new()?,
        })
    }

    /// The firewall's view of the nodes.
    pub fn members(&self) -> Vec<Member> {
        self.specs
            .iter()
            .map(|s| Member {
                ip: s.ip.clone(),
                gid: s.gid,
            })
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Start node `i` (on its data dir, same addresses as before).
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let s = &self.specs[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)?;
        let mut cmd = Command::new(&self.dctl);
        cmd.args(["--admin", &s.admin, "node", "start", "--name", &s.name])
            .args(["--listen", &s.listen, "--gossip", &s.gossip])
            .args(["--lane-listen", &s.lane, "--cookie", &self.cookie])
            .arg("--data-dir")
            .arg(&s.data);
        for other in self.specs.iter().filter(|o| o.name != s.name) {
            cmd.args(["--seed", &other.gossip]);
        }
        for v in &self.specs {
            cmd.args(["--kv-voter", &v.name]);
        }
        if let Some(f) = &s.faketime {
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", f)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .gid(s.gid);
        // SAFETY: prctl(2) only sets a flag of the new process between fork and exec: it is
        // async-signal-safe and touches no memory of the parent. A node must not outlive a
        // runner that was killed (SIGKILL skips the Drop that stops the nodes).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("start {}", s.name))?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    /// Start every node.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            c.wait()?;
        }
        self.paused[i] = false;
        Ok(())
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(c) = &self.children[i] {
            signal(c.id(), libc::SIGSTOP)?;
            self.paused[i] = true;
        }
        Ok(())
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(c) = &self.children[i] {
            signal(c.id(), libc::SIGCONT)?;
        }
        self.paused[i] = false;
        Ok(())
    }

    /// Set node `i`'s wall-clock offset (seconds; libfaketime re-reads it within a second).
    pub fn skew_clock(&self, i: usize, secs: i64) -> anyhow::Result<()> {
        let Some(f) = &self.specs[i].faketime else {
            bail!("the cluster was not started for clock faults");
        };
        std::fs::write(f, format!("{secs:+}\n"))?;
        Ok(())
    }

    /// Whether node `i`'s process is running (not exited).
    pub fn running(&mut self, i: usize) -> bool {
        match &mut self.children[i] {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.specs[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Wait until node `i` answers `/health` and its services are mounted, or fail (with its log) when it exits or `limit`
    /// passes.
    pub async fn wait_healthy(&mut self, i: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            // `/health` is 503 (`services (starting)`) until every service is mounted.
            let admin = &self.specs[i].admin;
            if self.client.get(admin, "/health").await.status() == Some(200) {
                return Ok(());
            }
            if !self.running(i) {
                bail!(
                    "node {} exited:\n{}",
                    self.specs[i].name,
                    self.log_tail(i, 10)
                );
            }
            if Instant::now() > deadline {
                bail!("node {} not healthy after {limit:?}", self.specs[i].name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The members node `i` sees alive and connected.
    pub async fn connected(&self, i: usize) -> Vec<String> {
        let v = self
            .client
            .get(&self.specs[i].admin, "/cluster")
            .await
            .json();
        let mut out: Vec<String> = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["state"] == "alive" && m["connected"] == true)
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out
    }

    /// The KV status as node `i` reports it.
    pub async fn kv_status(&self, i: usize) -> Value {
        self.client
            .get(&self.specs[i].admin, "/kv/status")
            .await
            .json()
    }

    /// The KV leader's index, if a running, unpaused node names one that all agree on.
    pub async fn kv_leader(&self) -> Option<usize> {
        let mut leader = None;
        for i in (0..self.len()).filter(|i| !self.paused[*i] && self.children[*i].is_some()) {
            let name = self.kv_status(i).await["leader"].as_str()?.to_string();
            if leader.get_or_insert(name.clone()) != &name {
                return None;
            }
        }
        leader.and_then(|l| self.specs.iter().position(|s| s.name == l))
    }

    /// Wait (bounded) until every node is healthy, sees all others connected, and they agree on
    /// a KV leader.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for i in 0..self.len() {
            self.wait_healthy(i, limit).await?;
        }
        let all: Vec<String> = {
            let mut v: Vec<String> = self.specs.iter().map(|s| s.name.clone()).collect();
            v.sort();
            v
        };
        loop {
            let mut ok = self.kv_leader().await.is_some();
            for i in 0..self.len() {
                ok = ok && self.connected(i).await == all;
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let views: Vec<String> = {
                    let mut v = Vec::new();
                    for i in 0..self.len() {
                        v.push(format!(
                            "{}: {:?}",
                            self.specs[i].name,
                            self.connected(i).await
                        ));
                    }
                    v
                };
                bail!(
                    "cluster not ready after {limit:?} (leader {:?}; connected: {})",
                    self.kv_leader().await,
                    views.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The regular files under node `i`'s data dir, sorted.
    pub fn data_files(&self, i: usize) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
            if depth > 4 {
                return;
            }
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out, depth + 1);
                } else if p.is_file() {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.specs[i].data, &mut out, 0);
        out.sort();
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            if self.paused[i] {
                let _ = self.resume(i);
            }
            let _ = self.kill(i);
        }
    }
}
