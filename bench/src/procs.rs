//! Child processes for the multi-node benchmarks: `dctl node start` nodes on loopback (the
//! shared [`testkit`] harness: [`NodeProcess`], [`free_port`], [`locate_dctl`]), polled over
//! their admin HTTP API, and killed when their [`NodeSet`] guard is dropped (also on errors and
//! panics).
//!
//! ractor keeps process-global registries, so one OS process is one cluster node: every node
//! besides the benchmark's own must be a separate process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{anyhow, Context};
use serde::Deserialize;
pub use testkit::{free_port, locate_dctl, Cookie, NodeProcess, DCTL_BIN_ENV};

/// The first of `paths` that is a file; when none is, install the Debian `package` with
/// apt-get (as root; `apt-get update` first when the plain install fails) and look again. What
/// apt prints goes to stderr, never into a benchmark's report on stdout.
pub fn apt_install(package: &str, paths: &[&str]) -> anyhow::Result<PathBuf> {
    let find = || paths.iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("{package} is missing: installing the Debian package (apt-get install {package})");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-qq", package]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", package]);
    }
    find().ok_or_else(|| {
        anyhow!(
            "{} is not installed and apt-get could not install {package} (run as root: apt-get install {package})",
            paths.first().copied().unwrap_or(package)
        )
    })
}

/// One `dctl node start` child process of a [`NodeSet`].
pub type ChildNode = NodeProcess;

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
    /// The log goes to `$BENCH_LOG_DIR/NAME.log` if that is set.
    pub fn spawn_with(
        &mut self,
        name: &str,
        seed: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<usize> {
        let mut node = NodeProcess::new(&self.dctl, name, self.dir.path())?
            .cookie(Cookie::Arg(self.cookie.clone()))
            .args(seed.map(|s| ["--seed", s]).into_iter().flatten())
            .args(extra.iter().copied());
        if let Some(d) = std::env::var_os("BENCH_LOG_DIR") {
            node = node.log_to(&PathBuf::from(d).join(format!("{name}.log")));
        }
        node.spawn()?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Keep a helper process to be killed with the nodes.
    pub fn adopt(&mut self, child: Child) {
        self.helpers.push(child);
    }

    /// An error if any node that was not killed has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for n in self.nodes.iter_mut().filter(|n| n.is_spawned()) {
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

/// Poll `f` every `every` until it yields `Some`, for at most `limit` ([`testkit::wait_for`]
/// with `anyhow` errors).
pub async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    testkit::wait_for(what, limit, every, f).await
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
