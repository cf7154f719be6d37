//! `dctl new demo && dctl run demo --instances 2` against a running `dctl up`: both instances
//! are in the registry and the trees; `kill -9` of one is restarted by `dctl run`; Ctrl-C stops
//! them gracefully (they deregister).

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if pred(&l) {
                    return l;
                }
            }
            Err(_) => panic!("no such line within {limit:?}; dctl run printed: {seen:#?}"),
        }
    }
}

fn json(admin: &str, cwd: &Path, args: &[&str]) -> Value {
    let out = Command::new(DCTL)
        .arg("--admin")
        .arg(admin)
        .args(args)
        .arg("--json")
        .current_dir(cwd)
        .output()
        .expect("dctl");
    assert!(
        out.status.success(),
        "dctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn instances(admin: &str, cwd: &Path) -> Vec<(String, String, String)> {
    let v = json(admin, cwd, &["svc", "ls", "demo"]);
    let mut out: Vec<_> = v["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
                    (
                        s("id"),
                        s("health"),
                        i["metadata"]["admin"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn dctl_new_and_run_two_supervised_instances_in_the_local_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let admin = format!("127.0.0.1:{}", free_port());
    let up = Killed(
        Command::new(DCTL)
            .args(["--admin", &admin, "up", "--nodes", "1"])
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dctl up"),
    );
    wait_until("dctl up's state file", Duration::from_secs(60), || {
        cwd.join(".dctl/up/cluster.json").exists()
    });

    let out = Command::new(DCTL)
        .args(["new", "demo"])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.join("demo/src/main.rs").exists() && cwd.join("demo/Cargo.lock").exists());
    let again = Command::new(DCTL)
        .args(["new", "demo"])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing directory is not overwritten"
    );

    // Build into the workspace's target directory: the dependencies are mostly built already.
    let target = Path::new(DCTL)
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    let mut run = Killed(
        Command::new(DCTL)
            .args(["run", "demo", "--instances", "2"])
            .current_dir(cwd)
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_INCREMENTAL", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dctl run"),
    );
    let stdout = run.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let first = line(&rx, &mut seen, Duration::from_secs(900), |l| {
        l.starts_with("instance demo-1 running, pid ")
    });
    line(&rx, &mut seen, Duration::from_secs(10), |l| {
        l.starts_with("instance demo-2 running, pid ")
    });
    let pid: i32 = first["instance demo-1 running, pid ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let before = wait_for_value("both instances passing", Duration::from_secs(60), || {
        let i = instances(&admin, cwd);
        (i.len() == 2 && i.iter().all(|(_, h, _)| h == "passing")).then_some(i)
    });
    assert_eq!(before[0].0, "demo-1");
    assert_eq!(before[1].0, "demo-2");
    let trees = json(&admin, cwd, &["tree", "--all"]);
    for node in ["demo-1", "demo-2"] {
        let t = trees["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .unwrap_or_else(|| panic!("no {node} in {trees}"));
        let text = t["tree"].to_string();
        assert!(
            text.contains("\"svc:demo\"") && text.contains("\"greeter\""),
            "{text}"
        );
    }

    // SAFETY: kill(2) on an instance dctl run started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    line(&rx, &mut seen, Duration::from_secs(20), |l| {
        l.starts_with("instance demo-1 exited (signal: 9 (SIGKILL)); restarted, pid ")
    });
    wait_for_value(
        "demo-1 back, a new process",
        Duration::from_secs(60),
        || {
            let i = instances(&admin, cwd);
            (i.len() == 2 && i[0].1 == "passing" && i[0].2 != before[0].2).then_some(())
        },
    );

    signal(&run.0, libc::SIGINT);
    line(&rx, &mut seen, Duration::from_secs(30), |l| {
        l == "instance demo-1 stopped (exit status: 0)"
    });
    line(&rx, &mut seen, Duration::from_secs(30), |l| {
        l == "instance demo-2 stopped (exit status: 0)"
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "dctl run did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    wait_for_value(
        "the instances deregistered",
        Duration::from_secs(10),
        || instances(&admin, cwd).is_empty().then_some(()),
    );
    signal(&up.0, libc::SIGTERM);
}

fn wait_for_value<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
