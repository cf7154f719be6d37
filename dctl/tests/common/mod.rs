//! Helpers for end-to-end tests that run real `dctl` processes on loopback.
#![allow(dead_code)]

pub mod bulk;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const DCTL: &str = env!("CARGO_BIN_EXE_dctl");

/// The cookie the test nodes share (a node without one generates its own, so nodes started by
/// tests get this one through `DCTL_COOKIE`; a `--cookie` argument overrides it).
pub const TEST_COOKIE: &str = "dctl-test-cookie";

/// A free loopback port, TCP and UDP (bound then released), below Linux's ephemeral range
/// (32768-60999): the ports the OS hands out for port 0 and for outgoing connections never land
/// there, so a port found free here is not taken by a node's own connection before the node it
/// is meant for binds it (with 30 nodes starting at once, that happened). Each call of a test
/// process takes the next one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // 12000..32000 (10000 is `--xds-files-listen`'s default)
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + start.wrapping_add(n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port in 12000..32000");
}

/// Poll `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How [`NodeProc::try_start_in`] ended.
pub enum Started {
    /// The node serves.
    Running(NodeProc),
    /// The process exited first: its status and what it logged.
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
}

/// A `dctl node start` process, killed on drop if still running.
pub struct NodeProc {
    pub name: String,
    pub admin: String,
    pub listen: String,
    pub gossip: String,
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
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
                    && !http(&self.admin, "GET", "/health", &[], b"")
                        .1
                        .contains("services (starting)")
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                node.child = None;
                let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                return Started::Exited { status, log };
            }
            // (the node may exit between two probes: a refused connection is "not yet"; a node
            // whose services failed to start answers as it shuts down, unhealthy)
            if node.dctl(&["tree", "--json"]).status.success()
                && TcpStream::connect(&node.admin).is_ok()
                && http(&node.admin, "GET", "/health", &[], b"").0 == 200
            {
                return Started::Running(node);
            }
            assert!(
                Instant::now() < deadline,
                "node {name} neither served nor exited"
            );
            std::thread::sleep(Duration::from_millis(50));
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
        let admin = format!("127.0.0.1:{}", free_port());
        let listen = format!("127.0.0.1:{}", free_port());
        let gossip = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
        let mut cmd = Command::new(DCTL);
        cmd.args(["--admin", &admin, "node", "start", "--name", name])
            .args(["--listen", &listen, "--gossip", &gossip])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env_remove("DCTL_COOKIE")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(c) = cookie {
            cmd.env("DCTL_COOKIE", c);
        }
        let child = cmd.spawn().expect("dctl node start");
        NodeProc {
            name: name.into(),
            admin,
            listen,
            gossip,
            child: Some(child),
            dir,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// Run a client command against this node.
    pub fn dctl(&self, args: &[&str]) -> Output {
        Command::new(DCTL)
            .args(["--admin", &self.admin])
            .args(args)
            .output()
            .expect("run dctl")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Send a signal and wait for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-s", signal, &pid]).status();
        assert!(sent.map(|s| s.success()).unwrap_or(false), "kill -{signal}");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failing test shows what its nodes logged (the temp dir goes with it).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
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

/// A raw HTTP/1.1 request; returns (status, body).
pub fn http(
    admin: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(admin).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub fn http_get(admin: &str, path: &str) -> String {
    http(admin, "GET", path, &[], b"").1
}

/// The value of the sample `name` in a Prometheus text exposition. Panics when the sample is
/// absent or not a number, so a renamed or missing metric fails the test instead of reading 0.
pub fn metric(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("metric {name} is not in the exposition:\n{text}"));
    line.trim()
        .parse()
        .unwrap_or_else(|e| panic!("metric {name} = {line:?} is not a count: {e}"))
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
