//! One `dctl node start` child process on loopback: its ports (chosen once, so a restart
//! keeps them), data directory, log and cookie; spawned, respawned, stopped by a signal or
//! killed, and killed on drop (also when the caller fails or panics).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, wait_until, Error, Result};

/// Environment variable naming the `dctl` binary to run nodes with (see [`locate_dctl`]).
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

/// How a node gets its cluster cookie. `DCTL_COOKIE` is always removed from the environment
/// the node inherits, so only this choice counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cookie {
    /// Through the `DCTL_COOKIE` environment variable.
    Env(String),
    /// Through `--cookie`.
    Arg(String),
    /// None at all, as a user who gives no flags would (the node generates one, or reads its
    /// data directory's).
    None,
}

/// A `dctl node start` process (or one to be spawned): `--admin`, `--listen` and `--gossip` on
/// free loopback ports, `--data-dir`, stderr appended to a log file. Killed on drop.
#[derive(Debug)]
pub struct NodeProcess {
    /// Node name (`--name`).
    pub name: String,
    /// Admin HTTP address, `127.0.0.1:PORT`.
    pub admin: String,
    /// Actor-transport address.
    pub listen: String,
    /// Gossip address (what other nodes use as a seed).
    pub gossip: String,
    /// Data directory (`--data-dir`); outlives the process, so a respawn finds it.
    pub data_dir: PathBuf,
    /// The node's stderr: its log.
    pub log: PathBuf,
    /// When the process was last spawned.
    pub spawned_at: Option<Instant>,
    dctl: PathBuf,
    cookie: Cookie,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    child: Option<Child>,
    spawns: u32,
}

impl NodeProcess {
    /// A node named `name` run with `dctl`, on new free ports, with data in `dir/name` and its
    /// log in `dir/name.log`, the cookie [`Cookie::None`] and no more arguments. Not spawned.
    pub fn new(dctl: &Path, name: &str, dir: &Path) -> Result<NodeProcess> {
        Ok(NodeProcess {
            name: name.to_string(),
            admin: format!("127.0.0.1:{}", free_port()?),
            listen: format!("127.0.0.1:{}", free_port()?),
            gossip: format!("127.0.0.1:{}", free_port()?),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            spawned_at: None,
            dctl: dctl.to_path_buf(),
            cookie: Cookie::None,
            args: Vec::new(),
            env: Vec::new(),
            child: None,
            spawns: 0,
        })
    }

    /// Use `cookie`.
    pub fn cookie(mut self, cookie: Cookie) -> Self {
        self.cookie = cookie;
        self
    }

    /// Keep data in `dir` instead.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = dir.to_path_buf();
        self
    }

    /// Write the log to `path` instead.
    pub fn log_to(mut self, path: &Path) -> Self {
        self.log = path.to_path_buf();
        self
    }

    /// Add `dctl node start` arguments (after the ones this type sets).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable of the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Spawn the process without waiting for it to serve. The first spawn starts the log
    /// afresh, a respawn appends to it. An error if it is still running.
    pub fn spawn(&mut self) -> Result<()> {
        self.spawn_with(&[])
    }

    /// [`NodeProcess::spawn`] with `more` arguments for this run only (after the others).
    pub fn spawn_with(&mut self, more: &[&str]) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::io(
                format!("spawn node {}", self.name),
                std::io::Error::other("it is already running"),
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.spawns > 0)
            .truncate(self.spawns == 0)
            .open(&self.log)
            .map_err(|e| Error::io(format!("open {}", self.log.display()), e))?;
        let mut cmd = Command::new(&self.dctl);
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
        .arg(&self.data_dir)
        .env_remove("DCTL_COOKIE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        match &self.cookie {
            Cookie::Env(c) => {
                cmd.env("DCTL_COOKIE", c);
            }
            Cookie::Arg(c) => {
                cmd.args(["--cookie", c]);
            }
            Cookie::None => {}
        }
        cmd.args(&self.args).args(more);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let spawned_at = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("run {}", self.dctl.display()), e))?;
        self.child = Some(child);
        self.spawned_at = Some(spawned_at);
        self.spawns += 1;
        Ok(())
    }

    /// Whether a spawned process is held (not yet killed, stopped or seen exited).
    pub fn is_spawned(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while one is held.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited on its own (it is then no longer held);
    /// `None` while it runs. [`Error::NotRunning`] if none is held.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        let Some(c) = self.child.as_mut() else {
            return Err(self.not_running());
        };
        let status = c
            .try_wait()
            .map_err(|e| Error::io(format!("wait for node {}", self.name), e))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Ok while the process runs; [`Error::Exited`] (with the last log line) if it exited on
    /// its own, [`Error::NotRunning`] if it was killed or never spawned.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_exit()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status,
                last_line: self
                    .log_text()
                    .lines()
                    .last()
                    .unwrap_or("(empty log)")
                    .to_string(),
            }),
        }
    }

    /// Kill the process with SIGKILL and reap it; nothing if none is held.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()
                .map_err(|e| Error::io(format!("kill node {}", self.name), e))?;
            c.wait()
                .map_err(|e| Error::io(format!("reap node {}", self.name), e))?;
        }
        Ok(())
    }

    /// Send `signal` (a name `kill -s` takes: `TERM`, `INT`, `KILL`...) and wait up to `limit`
    /// for the exit status. On a timeout the process is killed and the error is
    /// [`Error::TimedOut`].
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            return Err(self.not_running());
        };
        let sent = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .map_err(|e| Error::io("run kill", e))?;
        if !sent.success() {
            return Err(Error::io(
                format!("kill -s {signal} {pid}"),
                std::io::Error::other(format!("kill exited {sent}")),
            ));
        }
        let waited = self.wait_exit(limit);
        if waited.is_err() {
            let _ = self.kill();
        }
        waited
    }

    /// Wait up to `limit` for the process to exit on its own: its exit status (it is then no
    /// longer held). [`Error::TimedOut`] if it still runs (it is left running),
    /// [`Error::NotRunning`] if none is held.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let mut status = None;
        let mut failed = None;
        wait_until(&format!("node {} to exit", self.name), limit, || {
            match self.try_exit() {
                Ok(Some(s)) => status = Some(s),
                Ok(None) => return false,
                Err(e) => failed = Some(e),
            }
            true
        })?;
        match (status, failed) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => Err(self.not_running()),
        }
    }

    /// Run `dctl --admin ADMIN ARGS...` (a client command against this node) and collect its
    /// output.
    pub fn dctl(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.dctl)
            .args(["--admin", &self.admin])
            .args(args)
            .output()
            .map_err(|e| Error::io(format!("run {}", self.dctl.display()), e))
    }

    /// What the node has logged so far (empty if the log cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    fn not_running(&self) -> Error {
        Error::NotRunning {
            name: self.name.clone(),
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `dctl`: a shell script that logs its arguments and cookie, then runs
    /// until killed (or exits at once when its name is `quit`).
    fn fake_dctl(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-dctl");
        std::fs::write(
            &path,
            "#!/bin/sh\necho \"args: $*\" >&2\necho \"cookie: ${DCTL_COOKIE-unset}\" >&2\n\
             case \"$*\" in *'--name quit'*) echo bye >&2; exit 3;; esac\n\
             trap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n",
        )
        .expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn spawns_with_its_ports_cookie_and_args_then_stops_on_a_signal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dctl = fake_dctl(dir.path());
        let mut n = NodeProcess::new(&dctl, "a", dir.path())
            .expect("ports")
            .cookie(Cookie::Env("c1".into()))
            .args(["--seed", "x:1"]);
        n.spawn().expect("spawned");
        wait_until("the script logged", Duration::from_secs(10), || {
            n.log_text().contains("cookie:")
        })
        .expect("logged");
        let log = n.log_text();
        let want = format!(
            "args: --admin {} node start --name a --listen {} --gossip {} --data-dir {} --seed x:1",
            n.admin,
            n.listen,
            n.gossip,
            dir.path().join("a").display()
        );
        assert!(log.contains(&want), "{log}");
        assert!(log.contains("cookie: c1"), "{log}");
        n.check_running().expect("still running");
        let status = n
            .signal_and_wait("TERM", Duration::from_secs(10))
            .expect("exits on TERM");
        assert!(status.success(), "{status}");
        assert!(matches!(n.check_running(), Err(Error::NotRunning { .. })));
    }

    #[test]
    fn an_exit_is_reported_with_the_last_log_line_and_a_respawn_appends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dctl = fake_dctl(dir.path());
        let mut n = NodeProcess::new(&dctl, "quit", dir.path())
            .expect("ports")
            .cookie(Cookie::Arg("c2".into()));
        n.spawn().expect("spawned");
        let mut exited = None;
        wait_until("the script exited", Duration::from_secs(10), || {
            match n.check_running() {
                Ok(()) => false,
                Err(e) => {
                    exited = Some(e);
                    true
                }
            }
        })
        .expect("exits");
        match exited {
            Some(Error::Exited {
                status, last_line, ..
            }) => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(last_line, "bye");
            }
            other => panic!("expected Exited, got {other:?}"),
        }
        assert!(n.log_text().contains("--cookie c2"), "{}", n.log_text());
        assert!(n.log_text().contains("cookie: unset"), "{}", n.log_text());
        n.spawn().expect("respawned");
        wait_until("the second run exited", Duration::from_secs(10), || {
            n.try_exit().map_or(true, |s| s.is_some())
        })
        .expect("exits again");
        assert_eq!(n.log_text().matches("bye").count(), 2, "{}", n.log_text());
        assert_eq!(n.log_tail(1), vec!["bye".to_string()]);
    }

    #[test]
    fn drop_kills_the_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dctl = fake_dctl(dir.path());
        let mut n = NodeProcess::new(&dctl, "b", dir.path()).expect("ports");
        n.spawn().expect("spawned");
        let pid = n.pid().expect("a pid");
        drop(n);
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .expect("run kill -0");
        assert!(!alive.success(), "process {pid} outlived its guard");
    }
}
