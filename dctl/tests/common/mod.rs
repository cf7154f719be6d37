//! Helpers for end-to-end tests that run real `dctl` processes on loopback.
#![allow(dead_code)]

pub mod bulk;

use std::{
    io::Read,
    net::TcpStream,
    ops::{Deref, DerefMut},
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use testkit::{Cookie, NodeProcess};

pub const DCTL: &str = env!("CARGO_BIN_EXE_dctl");

/// The cookie the test nodes share (a node without one generates its own, so nodes started by
/// tests get this one through `DCTL_COOKIE`; a `--cookie` argument overrides it).
pub const TEST_COOKIE: &str = "dctl-test-cookie";

/// A free loopback port, TCP and UDP, below Linux's ephemeral range ([`testkit::free_port`]).
pub fn free_port() -> u16 {
    testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// Poll `cond` every 50 ms until it holds; fail the test if `limit` passes first.
pub fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    if let Err(e) = testkit::wait_until(what, limit, cond) {
        panic!("{e}");
    }
}

/// How [`NodeProc::try_start_in`] ended.
// (one value per start, matched at once: boxing the node would only add `*` at every caller)
#[allow(clippy::large_enum_variant)]
pub enum Started {
    /// The node serves.
    Running(NodeProc),
    /// The process exited first: its status and what it logged.
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
}

/// A `dctl node start` process in a temporary directory (data in `data/`, log in `node.log`),
/// killed on drop if still running. Its fields (`name`, `admin`, `listen`, `gossip`, ...) are
/// the [`NodeProcess`]'s.
pub struct NodeProc {
    node: NodeProcess,
    pub dir: tempfile::TempDir,
}

impl Deref for NodeProc {
    type Target = NodeProcess;
    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

impl DerefMut for NodeProc {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.node
    }
}

impl NodeProc {
    pub fn start(name: &str) -> NodeProc {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, extra: &[&str]) -> NodeProc {
        Self::spawn(name, None, extra)
    }

    /// Start with no cookie at all (neither `--cookie` nor `DCTL_COOKIE`), as a user who gives
    /// no flags would.
    pub fn start_without_cookie(name: &str, extra: &[&str]) -> NodeProc {
        Self::spawn_cookie(name, None, extra, None)
    }

    /// Start with a data directory of the caller's (kept across restarts).
    pub fn start_in(name: &str, data: &std::path::Path, extra: &[&str]) -> NodeProc {
        Self::spawn(name, Some(data), extra)
    }

    fn spawn(name: &str, data: Option<&std::path::Path>, extra: &[&str]) -> NodeProc {
        Self::spawn_cookie(name, data, extra, Some(TEST_COOKIE))
    }

    /// Spawn the process (with the test cookie) without waiting for it: many nodes can start
    /// at once, then [`NodeProc::wait_started`] each.
    pub fn launch_with(name: &str, extra: &[&str]) -> NodeProc {
        Self::launch(name, None, extra, Some(TEST_COOKIE))
    }

    /// Wait until a launched node serves with its services started.
    pub fn wait_started(&self, limit: Duration) {
        wait_until(
            &format!("node {} started its services", self.name),
            limit,
            || {
                self.dctl(&["tree", "--json"]).status.success()
                    && testkit::http::get(&self.admin, "/health")
                        .is_ok_and(|r| !r.body.contains("services (starting)"))
            },
        );
    }

    /// Start in `data` with `cookie` (`None`: no cookie at all, the data directory's is used)
    /// and wait until the node serves with its services started, or exits (a refused start).
    pub fn try_start_in(
        name: &str,
        data: &std::path::Path,
        extra: &[&str],
        cookie: Option<&str>,
    ) -> Started {
        let mut node = Self::launch(name, Some(data), extra, cookie);
        let mut exited = None;
        // (the node may exit between two probes: a refused connection is "not yet"; a node
        // whose services failed to start answers as it shuts down, unhealthy)
        wait_until(
            &format!("node {name} to serve or exit"),
            Duration::from_secs(30),
            || {
                match node.node.try_exit() {
                    Ok(Some(status)) => {
                        exited = Some(status);
                        return true;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("{e}"),
                }
                node.dctl(&["tree", "--json"]).status.success()
                    && testkit::http::get(&node.admin, "/health").is_ok_and(|r| r.status == 200)
            },
        );
        match exited {
            Some(status) => Started::Exited {
                status,
                log: node.log_text(),
            },
            None => Started::Running(node),
        }
    }

    fn spawn_cookie(
        name: &str,
        data: Option<&std::path::Path>,
        extra: &[&str],
        cookie: Option<&str>,
    ) -> NodeProc {
        let node = Self::launch(name, data, extra, cookie);
        // generous: several test binaries' nodes share 2 cores in CI (20 s ran out there)
        node.wait_started(Duration::from_secs(60));
        node
    }

    /// Spawn the process, without waiting for it to serve.
    fn launch(
        name: &str,
        data: Option<&std::path::Path>,
        extra: &[&str],
        cookie: Option<&str>,
    ) -> NodeProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = data
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        let mut node = NodeProcess::new(DCTL.as_ref(), name, dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .data_dir(&data)
            .log_to(&dir.path().join("node.log"))
            .cookie(cookie.map_or(Cookie::None, |c| Cookie::Env(c.to_string())))
            .args(extra.iter().copied());
        node.spawn().unwrap_or_else(|e| panic!("{e}"));
        NodeProc { node, dir }
    }

    pub fn log_path(&self) -> PathBuf {
        self.node.log.clone()
    }

    /// Run a client command against this node.
    pub fn dctl(&self, args: &[&str]) -> Output {
        self.node.dctl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The process id (0 once it is gone).
    pub fn pid(&self) -> u32 {
        self.node.pid().unwrap_or(0)
    }

    /// Send a signal and wait for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        self.node
            .signal_and_wait(signal, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wait for the process to exit on its own (after a fault it must not survive).
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.node.wait_exit(limit).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.node.kill();
        // A failing test shows what its nodes logged (the temp dir goes with it).
        if std::thread::panicking() {
            let tail = self.node.log_tail(60);
            eprintln!("--- last {} lines of {}'s log ---", tail.len(), self.name);
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert a command failed with exactly one line on stderr that contains `needle`.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got {o:?}");
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
}

/// The cluster as one node sees it: (name, state, connected) per member. Panics with the
/// node's answer when `cluster status` fails or is not the documented JSON (a test must not
/// read a failure as "no members").
pub fn members(node: &NodeProc) -> Vec<(String, String, bool)> {
    let out = node.dctl(&["cluster", "status", "--json"]);
    assert!(
        out.status.success(),
        "cluster status on {} failed: {}",
        node.name,
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("cluster status --json is not JSON ({e}): {}", stdout(&out)));
    let nodes = v["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("cluster status --json has no \"nodes\" array: {v}"));
    nodes
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("member name").to_string(),
                m["state"].as_str().expect("member state").to_string(),
                m["connected"] == true,
            )
        })
        .collect()
}

/// Wait until every node sees exactly `alive` as its alive-and-connected members.
pub fn wait_converged(nodes: &[&NodeProc], alive: &[&str]) {
    for n in nodes {
        wait_until(
            &format!("{} sees {alive:?} alive and connected", n.name),
            Duration::from_secs(30),
            || {
                let mut up: Vec<String> = members(n)
                    .into_iter()
                    .filter(|(_, s, c)| s == "alive" && *c)
                    .map(|(name, _, _)| name)
                    .collect();
                up.sort();
                up == alive
            },
        );
    }
}

/// A raw HTTP/1.1 request ([`testkit::http::request`]); returns (status, body). Fails the
/// test when the node does not answer with HTTP.
pub fn http(
    admin: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let r = testkit::http::request(admin, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, r.body)
}

pub fn http_get(admin: &str, path: &str) -> String {
    http(admin, "GET", path, &[], b"").1
}

/// The value of the sample `name` in a Prometheus text exposition. Panics when the sample is
/// absent or not a count, so a renamed or missing metric fails the test instead of reading 0.
pub fn metric(text: &str, name: &str) -> u64 {
    testkit::metric::count(text, name).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// Read from `conn` until the peer closes it (EOF or reset) or `deadline` passes: whether it
/// was closed in time. Bytes the peer sends first (an error answer) are read and ignored.
pub fn closed_by(conn: &mut TcpStream, deadline: Instant) -> bool {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    if conn.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    let mut b = [0u8; 256];
    loop {
        match conn.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
