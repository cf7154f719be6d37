//! Child processes for the multi-node benchmarks: `dctl node start` nodes on loopback, found
//! through [`locate_dctl`], polled over their admin HTTP API, and killed when their
//! [`NodeSet`] guard is dropped (also on errors and panics).
//!
//! ractor keeps process-global registries, so one OS process is one cluster node: every node
//! besides the benchmark's own must be a separate process.

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

/// Environment variable naming the `dctl` binary to run nodes with.
pub const DCTL_BIN_ENV: &str = "DCTL_BIN";

/// Find the `dctl` binary: `$DCTL_BIN` if set, else next to the running executable (also one
/// directory up, for test binaries in `target/<profile>/deps/`), else in the workspace's
/// `target/release` or `target/debug`. `None` when none of these exists.
pub fn locate_dctl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(DCTL_BIN_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let name = format!("dctl{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(&name));
            if let Some(up) = dir.parent() {
                candidates.push(up.join(&name));
            }
        }
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    candidates.push(target.join("release").join(&name));
    candidates.push(target.join("debug").join(&name));
    candidates.into_iter().find(|p| p.is_file())
}

/// A free loopback port, TCP and UDP (bound then released), below Linux's ephemeral range
/// (32768-60999), a new one at each call. A port 0 binding hands out an ephemeral port, which
/// with 25 nodes starting at once one of their outgoing connections took before the node meant
/// for it bound it ("Address already in use"); below that range the OS never hands one out.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + start.wrapping_add(n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(anyhow::anyhow!("no free loopback port in 12000..32000"))
}

/// A free loopback TCP port (see [`free_port`]).
pub fn free_tcp_port() -> anyhow::Result<u16> {
    free_port()
}

/// A free loopback UDP port (see [`free_port`]).
pub fn free_udp_port() -> anyhow::Result<u16> {
    free_port()
}

/// One `dctl node start` child process.
#[derive(Debug)]
pub struct ChildNode {
    /// Node name.
    pub name: String,
    /// Admin HTTP address, `127.0.0.1:PORT`.
    pub admin: String,
    /// Actor-transport address.
    pub listen: String,
    /// Gossip address (what other nodes use as a seed).
    pub gossip: String,
    /// Its stderr (the node's log).
    pub log: PathBuf,
    /// When the process was spawned.
    pub spawned_at: Instant,
    child: Option<Child>,
}

impl ChildNode {
    /// Kill the process with SIGKILL (`kill -9`) and reap it. Returns when it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()
                .with_context(|| format!("cannot kill node {}", self.name))?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// The process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// If the process has exited on its own: an error naming its status and last log line.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(c) = self.child.as_mut() else {
            bail!("node {} was killed", self.name);
        };
        if let Some(status) = c.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let last = log.lines().last().unwrap_or("(empty log)").to_string();
            bail!("node {} exited ({status}): {last}", self.name);
        }
        Ok(())
    }
}

/// A set of child processes (nodes and helpers) in a temporary directory, all killed on drop.
pub struct NodeSet {
    dctl: PathBuf,
    cookie: String,
    /// The node processes, in spawn order.
    pub nodes: Vec<ChildNode>,
    helpers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl NodeSet {
    /// An empty set whose nodes run `dctl` and share `cookie`.
    pub fn new(dctl: &Path, cookie: &str) -> anyhow::Result<NodeSet> {
        Ok(NodeSet {
            dctl: dctl.to_path_buf(),
            cookie: cookie.to_string(),
            nodes: Vec::new(),
            helpers: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("bench-cluster-")
                .tempdir()
                .context("cannot create a temporary directory")?,
        })
    }

    /// The temporary directory holding the nodes' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Spawn `dctl node start --name NAME` on free loopback ports, joining `seed` (a gossip
    /// address) if given. Does not wait for the node to be up. Returns its index in `nodes`.
    pub fn spawn(&mut self, name: &str, seed: Option<&str>) -> anyhow::Result<usize> {
        self.spawn_with(name, seed, &[])
    }

    /// [`NodeSet::spawn`] with more `dctl node start` arguments (e.g. `--kv-voter N`).
    pub fn spawn_with(
        &mut self,
        name: &str,
        seed: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<usize> {
        let admin = format!("127.0.0.1:{}", free_tcp_port()?);
        let listen = format!("127.0.0.1:{}", free_tcp_port()?);
        let gossip = format!("127.0.0.1:{}", free_udp_port()?);
        let log = match std::env::var_os("BENCH_LOG_DIR") {
            Some(d) => std::path::PathBuf::from(d).join(format!("{name}.log")),
            None => self.dir.path().join(format!("{name}.log")),
        };
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(&self.dctl);
        cmd.args(["--admin", &admin, "node", "start", "--name", name])
            .args(["--listen", &listen, "--gossip", &gossip])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .args(["--cookie", &self.cookie])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(s) = seed {
            cmd.args(["--seed", s]);
        }
        cmd.args(extra);
        let spawned_at = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.dctl.display()))?;
        self.nodes.push(ChildNode {
            name: name.to_string(),
            admin,
            listen,
            gossip,
            log,
            spawned_at,
            child: Some(child),
        });
        Ok(self.nodes.len() - 1)
    }

    /// Keep a helper process to be killed with the nodes.
    pub fn adopt(&mut self, child: Child) {
        self.helpers.push(child);
    }

    /// An error if any node that was not killed has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for n in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
            n.check_running()?;
        }
        Ok(())
    }

    /// Kill every process now (also done on drop).
    pub fn kill_all(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
        }
        for mut h in self.helpers.drain(..) {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

impl Drop for NodeSet {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// One member as a node's `GET /cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// `"alive"` or `"dead"`.
    pub state: String,
    /// Whether an actor-transport session to it is up.
    #[serde(default)]
    pub connected: bool,
}

#[derive(Deserialize)]
struct ClusterView {
    nodes: Vec<MemberView>,
}

/// An HTTP client for polling nodes' admin APIs (short timeouts, no proxy).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")
}

/// `GET http://ADMIN/cluster`: the members as that node sees them.
pub async fn cluster_view(
    client: &reqwest::Client,
    admin: &str,
) -> anyhow::Result<Vec<MemberView>> {
    let resp = client
        .get(format!("http://{admin}/cluster"))
        .send()
        .await
        .with_context(|| format!("GET {admin}/cluster"))?;
    if !resp.status().is_success() {
        return Err(anyhow!("GET {admin}/cluster: {}", resp.status()));
    }
    let view: ClusterView = resp
        .json()
        .await
        .with_context(|| format!("GET {admin}/cluster: unexpected body"))?;
    Ok(view.nodes)
}

/// Whether `members` has exactly `names` alive and connected (self counts as connected).
pub fn sees_exactly(members: &[MemberView], names: &[&str]) -> bool {
    let mut up: Vec<&str> = members
        .iter()
        .filter(|m| m.state == "alive" && m.connected)
        .map(|m| m.name.as_str())
        .collect();
    up.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    up == want
}

/// Whether `members` reports `name` dead.
pub fn sees_dead(members: &[MemberView], name: &str) -> bool {
    members.iter().any(|m| m.name == name && m.state == "dead")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, state: &str, connected: bool) -> MemberView {
        MemberView {
            name: name.into(),
            state: state.into(),
            connected,
        }
    }

    #[test]
    fn membership_predicates() {
        let ms = vec![
            m("b", "alive", true),
            m("a", "alive", true),
            m("c", "dead", false),
        ];
        assert!(sees_exactly(&ms, &["a", "b"]));
        assert!(!sees_exactly(&ms, &["a", "b", "c"]));
        assert!(sees_dead(&ms, "c"));
        assert!(!sees_dead(&ms, "a"));
        let not_connected = vec![m("a", "alive", true), m("b", "alive", false)];
        assert!(!sees_exactly(&not_connected, &["a", "b"]));
    }
}
