//! Running the samples' binaries as a user would: real processes on loopback, their stdout read
//! line by line, every wait bounded.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The cookie the test processes share.
pub const COOKIE: &str = "samples-test-cookie";

/// The `dctl` binary, built beside the samples (`cargo build --workspace`, as scripts/test.sh
/// does). Fails, rather than skips, when it is missing.
pub fn dctl() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ping-pong"))
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let dctl = dir.join("dctl");
    assert!(
        dctl.exists(),
        "{} is missing: build it first with `cargo build -p dctl` (scripts/test.sh builds the workspace)",
        dctl.display()
    );
    dctl
}

/// A sample process: its stdout lines, its stderr in a log file; killed on drop.
pub struct Proc {
    pub name: String,
    bin: String,
    args: Vec<String>,
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Proc {
    /// Start `bin` with `args` plus `--cookie` and a data dir of its own.
    pub fn start(name: &str, bin: &str, args: &[&str]) -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(name, bin, args, dir)
    }

    /// Same, in a directory of the caller's.
    pub fn start_in(name: &str, bin: &str, args: &[&str], dir: tempfile::TempDir) -> Proc {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, lines) = spawn(bin, &args, dir.path());
        Proc {
            name: name.to_string(),
            bin: bin.to_string(),
            args,
            child,
            lines,
            seen: Vec::new(),
            dir,
        }
    }

    /// Start it again, same arguments, same data directory (after it exited or was killed).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, lines) = spawn(&self.bin, &self.args, self.dir.path());
        self.child = child;
        self.lines = lines;
        self.seen.clear();
    }

    /// The process's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Wait (at most `limit`) for a stdout line for which `pred` holds, and return it.
    pub fn line(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no such line within {limit:?}; stdout so far: {:#?}\nstderr tail:\n{}",
                    self.name,
                    self.seen,
                    tail(&self.log(), 30)
                ),
            }
        }
    }

    /// The line starting with `prefix`, without the prefix.
    pub fn value(&mut self, limit: Duration, prefix: &str) -> String {
        let l = self.line(limit, |l| l.starts_with(prefix));
        l[prefix.len()..].trim().to_string()
    }

    /// The admin address it printed (`service ... admin API http://ADDR/; ...`).
    pub fn admin(&mut self) -> String {
        let l = self.line(Duration::from_secs(60), |l| l.starts_with("service "));
        between(&l, "admin API http://", "/;")
    }

    /// The HTTP address it printed.
    pub fn http(&mut self) -> String {
        let l = self.line(Duration::from_secs(60), |l| l.starts_with("service "));
        between(&l, "http http://", "/")
    }

    /// The gossip address it printed.
    pub fn gossip(&mut self) -> String {
        self.value(Duration::from_secs(60), "gossip ")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (at most `limit`) for the exit.
    pub fn term(&mut self, limit: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.wait(limit)
    }

    /// Wait (at most `limit`) for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}; stderr tail:\n{}",
                self.name,
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(bin: &str, args: &[String], dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .expect("log file");
    let mut child = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("DCTL_COOKIE", COOKIE)
        .env("RUST_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between(s: &str, start: &str, end: &str) -> String {
    let from = s
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("no '{start}' in '{s}'"));
    let rest = &s[from..];
    let to = rest.find(end).unwrap_or(rest.len());
    rest[..to].to_string()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `dctl --admin ADMIN ARGS...` and return its stdout (it must succeed).
pub fn dctl_ok(admin: &str, args: &[&str]) -> String {
    let out = Command::new(dctl())
        .arg("--admin")
        .arg(admin)
        .args(args)
        .output()
        .expect("run dctl");
    assert!(
        out.status.success(),
        "dctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `cond` every 50 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
