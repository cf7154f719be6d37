//! Every file a node writes in its data directory, damaged while the node is down: emptied,
//! cut in half, one byte flipped, replaced by garbage of the same length. On start the node
//! either refuses with an error naming the file, or recovers with nothing acknowledged lost
//! (every KV key, every durable event, the consumer group's offset, the gossip keyring). No
//! file is silently reset. The files are found by listing the data directory after a real run
//! (KV with a snapshot and a compacted log, a durable channel with a consumer group, a
//! generated cookie, an installed gossip key), so a new file cannot go untested; the one file
//! such a run cannot leave, `admin-token` (written only when the admin API is bound off
//! loopback), has a test of its own.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const NAME: &str = "kvf";
const KEYS: usize = 25;

/// A data directory after a real run, and what the node acknowledged in it.
struct Fixture {
    _root: tempfile::TempDir,
    data: PathBuf,
    /// The gossip keyring the node ended with (`dctl keys list`).
    keyring: Vec<String>,
}

fn node_args() -> [&'static str; 2] {
    // a snapshot every 10 entries: snapshot.bin exists and the log is compacted
    ["--kv-snapshot-every", "10"]
}

/// Run `dctl ARGS` against `n`, killed after 20 s (a consume waiting for events that are not
/// there fails instead of hanging the test).
fn dctl_within(n: &NodeProc, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(DCTL)
        .args(["--admin", &n.admin])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dctl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (
                out.status.success(),
                format!("{}{}", stdout(&out), stderr(&out)),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            return (
                false,
                format!("timed out: {}{}", stdout(&out), stderr(&out)),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ok(n: &NodeProc, args: &[&str]) -> String {
    let (good, out) = dctl_within(n, args);
    assert!(good, "dctl {args:?}: {out}");
    out
}

fn keyring_of(n: &NodeProc) -> Vec<String> {
    let v: Value = serde_json::from_str(&ok(n, &["keys", "list", "--json"])).expect("json");
    let mine = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["node"] == NAME))
        .unwrap_or_else(|| panic!("no keys of {NAME} in {v}"));
    mine["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no key list in {mine}"))
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect()
}

fn prepare() -> Fixture {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut n = match NodeProc::try_start_in(NAME, &data, &node_args(), None) {
        Started::Running(n) => n,
        Started::Exited { status, log } => panic!("the first start failed ({status}):\n{log}"),
    };
    for i in 1..=KEYS {
        ok(&n, &["kv", "put", &format!("k{i}"), &format!("v{i}")]);
    }
    ok(&n, &["events", "durable", "orders"]);
    for i in 1..=3 {
        ok(
            &n,
            &[
                "events",
                "produce",
                "orders",
                "--type",
                "t",
                "--source",
                "s",
                "--data",
                &format!("{{\"n\":{i}}}"),
            ],
        );
    }
    // two commits of the group's offset, one event each (the group starts at the beginning,
    // then resumes where it is): the offsets file and its previous copy (`.prev`) both exist
    let first = ok(
        &n,
        &[
            "events",
            "consume",
            "orders",
            "--group",
            "g1",
            "--from",
            "beginning",
            "--count",
            "1",
            "--json",
        ],
    );
    let second = ok(
        &n,
        &[
            "events", "consume", "orders", "--group", "g1", "--count", "1", "--json",
        ],
    );
    assert!(
        first.contains(r#""n":1"#) && second.contains(r#""n":2"#),
        "{first}{second}"
    );
    let key = ok(&n, &["keys", "generate"]).trim().to_string();
    ok(&n, &["keys", "install", &key]);
    let keyring = keyring_of(&n);
    assert_eq!(keyring.len(), 2, "{keyring:?}");
    assert!(n.signal_and_wait("TERM").success());
    Fixture {
        _root: root,
        data,
        keyring,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// Every file under `dir`, relative to it, sorted.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Emptied,
    CutInHalf,
    ByteFlipped,
    Garbage,
}

const DAMAGES: [Damage; 4] = [
    Damage::Emptied,
    Damage::CutInHalf,
    Damage::ByteFlipped,
    Damage::Garbage,
];

fn damage(path: &Path, how: Damage) {
    let mut b = std::fs::read(path).expect("read");
    match how {
        Damage::Emptied => b.clear(),
        Damage::CutInHalf => b.truncate(b.len() / 2),
        Damage::ByteFlipped => {
            let at = b.len() / 2;
            b[at] ^= 0x04;
        }
        Damage::Garbage => {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ b.len() as u64;
            for c in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = x as u8;
            }
        }
    }
    // (std::fs::write keeps the file's mode: a secret file stays 0600)
    std::fs::write(path, &b).expect("write");
}

/// Whether everything the node acknowledged is there: every key, the three durable events,
/// the group's offset (it had taken two), the keyring.
fn check_intact(n: &NodeProc, keyring: &[String]) -> Result<(), String> {
    let (good, out) = dctl_within(n, &["kv", "ls", "--json"]);
    if !good {
        return Err(format!("kv ls: {out}"));
    }
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("kv ls: {e}: {out}"))?;
    let entries = v["entries"]
        .as_array()
        .ok_or_else(|| format!("kv ls: no entries: {out}"))?;
    for i in 1..=KEYS {
        let want = format!("v{i}");
        if !entries
            .iter()
            .any(|e| e["key"] == format!("k{i}") && e["value"] == want.as_str())
        {
            return Err(format!("key k{i} = {want} is gone: {out}"));
        }
    }
    let (good, out) = dctl_within(
        n,
        &[
            "events",
            "consume",
            "orders",
            "--from",
            "beginning",
            "--count",
            "3",
            "--json",
        ],
    );
    let ns: Vec<i64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["data"]["n"].as_i64())
        .collect();
    if !good || ns != [1, 2, 3] {
        return Err(format!("durable events: {out}"));
    }
    let (good, out) = dctl_within(
        n,
        &[
            "events", "consume", "orders", "--group", "g1", "--count", "1", "--json",
        ],
    );
    let next: Vec<i64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["data"]["n"].as_i64())
        .collect();
    // After its 2 events; or after the first one, when the offsets file was restored from the
    // previous good copy the broker keeps (`.prev`): one event again, at least once. Never from
    // the start (a reset).
    if !good || !(next == [3] || next == [2]) {
        return Err(format!("group g1 did not resume after its events: {out}"));
    }
    let ring = keyring_of(n);
    if ring != keyring {
        return Err(format!("keyring {ring:?}, not {keyring:?}"));
    }
    Ok(())
}

/// Damage every file of the fixture under `prefix` in every way, one start each; `must_refuse`:
/// files whose damage cannot be recovered from locally (the node must refuse, naming them).
/// Returns one line per trial.
fn trials(prefix: &str, must_refuse: &[&str]) -> Vec<String> {
    let fx = prepare();
    // the undamaged copy restarts with everything
    {
        let root = tempfile::tempdir().expect("temp dir");
        let data = root.path().join("data");
        copy_dir(&fx.data, &data);
        let n = match NodeProc::try_start_in(NAME, &data, &node_args(), None) {
            Started::Running(n) => n,
            Started::Exited { status, log } => {
                panic!("the undamaged copy did not start ({status}):\n{log}")
            }
        };
        check_intact(&n, &fx.keyring).expect("the undamaged copy has everything");
    }
    let files: Vec<PathBuf> = files_of(&fx.data)
        .into_iter()
        .filter(|f| {
            if prefix.is_empty() {
                f.components().count() == 1
            } else {
                f.starts_with(prefix)
            }
        })
        .collect();
    let mut lines = Vec::new();
    for file in &files {
        for how in DAMAGES {
            let root = tempfile::tempdir().expect("temp dir");
            let data = root.path().join("data");
            copy_dir(&fx.data, &data);
            let path = data.join(file);
            damage(&path, how);
            match NodeProc::try_start_in(NAME, &data, &node_args(), None) {
                Started::Exited { status, log } => {
                    assert!(!status.success(), "{file:?} {how:?}: exit 0\n{log}");
                    let named = path.display().to_string();
                    let error = log
                        .lines()
                        .find(|l| l.starts_with("error:"))
                        .unwrap_or_else(|| panic!("{file:?} {how:?}: no error line\n{log}"));
                    assert!(
                        log.contains(&named),
                        "{file:?} {how:?}: the error does not name {named}: {error}\n{log}"
                    );
                    lines.push(format!("{} {how:?}: refused: {error}", file.display()));
                }
                Started::Running(n) => {
                    let name = file.to_string_lossy();
                    assert!(
                        !must_refuse.iter().any(|m| name == *m),
                        "{file:?} {how:?}: the node started with it"
                    );
                    match check_intact(&n, &fx.keyring) {
                        Ok(()) => lines.push(format!(
                            "{} {how:?}: recovered, nothing lost",
                            file.display()
                        )),
                        // A damaged durable log or offsets file: the node runs, and refuses to
                        // serve that channel with an error naming the file.
                        Err(e)
                            if e.contains(&path.display().to_string())
                                && e.contains("is corrupt") =>
                        {
                            lines.push(format!("{} {how:?}: channel refused: {e}", file.display()))
                        }
                        Err(e) => panic!(
                            "{file:?} {how:?}: the node started but lost data: {e}\n{}",
                            std::fs::read_to_string(n.log_path()).unwrap_or_default()
                        ),
                    }
                }
            }
        }
    }
    lines
}

fn expect_files(prefix: &str, want: &[&str], lines: &[String]) {
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{w} "))),
            "{w} was not among the files under {prefix:?}: {lines:#?}"
        );
    }
    for l in lines {
        eprintln!("{l}");
    }
}

#[test]
fn every_kv_file_damaged_is_refused_by_name_or_recovered_with_nothing_lost() {
    let lines = trials("kv", &["kv/store.id"]);
    expect_files(
        "kv",
        &[
            "kv/kv.redb",
            "kv/log.redb",
            "kv/snapshot.bin",
            "kv/store.id",
        ],
        &lines,
    );
    // an emptied log is never taken for a new one
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("kv/log.redb Emptied: refused")),
        "{lines:#?}"
    );
}

#[test]
fn every_broker_file_damaged_is_refused_by_name_or_recovered_with_nothing_lost() {
    let lines = trials("broker", &[]);
    expect_files(
        "broker",
        &[
            "broker/channels.json",
            "broker/durable.json",
            "broker/orders.log",
            "broker/orders.groups.json",
        ],
        &lines,
    );
}

#[test]
fn every_secret_file_damaged_is_refused_by_name() {
    let lines = trials("", &["cookie", "gossip.keyring"]);
    expect_files("", &["cookie", "gossip.keyring"], &lines);
    // nothing else lives at the top of the data directory
    for l in &lines {
        assert!(
            l.starts_with("cookie ") || l.starts_with("gossip.keyring "),
            "a file this test does not know: {l}"
        );
    }
}

/// How a start with the admin API bound off loopback ended.
enum TokenStart {
    /// It serves; the child and its admin address (on loopback, for the client).
    Serving(std::process::Child, String),
    /// It exited first, with what it logged.
    Exited(std::process::ExitStatus, String),
}

/// Start a node in `data` with its admin API on 0.0.0.0 (so it needs its `admin-token`), and
/// wait until it answers (401 without the token) or exits.
fn start_off_loopback(data: &Path, log: &Path) -> TokenStart {
    let port = free_port();
    let mut child = Command::new(DCTL)
        .args(["--admin", &format!("0.0.0.0:{port}"), "node", "start"])
        .args(["--name", "kvf-token"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gossip", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(data)
        .env("DCTL_COOKIE", TEST_COOKIE)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("dctl node start");
    let admin = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return TokenStart::Exited(status, std::fs::read_to_string(log).unwrap_or_default());
        }
        if std::net::TcpStream::connect(&admin).is_ok()
            && http(&admin, "GET", "/health", &[], b"").0 == 401
        {
            return TokenStart::Serving(child, admin);
        }
        assert!(
            Instant::now() < deadline,
            "the node neither served nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-s", "TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `admin-token` is written only when the admin API is bound off loopback, so the run above
/// does not leave one: this test makes it, then damages it in every way while the node is
/// down. The undamaged copy starts and takes the very token it had (nothing lost: clients
/// holding it still get in); each damaged one is refused with an error naming the file, and
/// the file is left as it was, never regenerated (a new token would lock every client out
/// without a word).
#[test]
fn the_admin_token_file_damaged_is_refused_by_name() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let token = match start_off_loopback(&data, &root.path().join("first.log")) {
        TokenStart::Serving(child, _) => {
            stop(child);
            std::fs::read_to_string(data.join("admin-token")).expect("admin-token written")
        }
        TokenStart::Exited(status, log) => panic!("the first start failed ({status}):\n{log}"),
    };
    {
        let copy = root.path().join("intact");
        copy_dir(&data, &copy);
        match start_off_loopback(&copy, &root.path().join("intact.log")) {
            TokenStart::Serving(child, admin) => {
                let bearer = format!("Bearer {}", token.trim());
                let (status, body) =
                    http(&admin, "GET", "/tree", &[("Authorization", &bearer)], b"");
                stop(child);
                assert_eq!(status, 200, "the old token is refused: {body}");
            }
            TokenStart::Exited(status, log) => {
                panic!("the undamaged copy did not start ({status}):\n{log}")
            }
        }
    }
    let mut lines = Vec::new();
    for how in DAMAGES {
        let copy = root.path().join(format!("{how:?}"));
        copy_dir(&data, &copy);
        let path = copy.join("admin-token");
        damage(&path, how);
        let damaged = std::fs::read(&path).expect("read");
        match start_off_loopback(&copy, &root.path().join(format!("{how:?}.log"))) {
            TokenStart::Serving(child, _) => {
                stop(child);
                panic!("{how:?}: the node started with a damaged admin-token");
            }
            TokenStart::Exited(status, log) => {
                assert!(!status.success(), "{how:?}: exit 0\n{log}");
                let error = log
                    .lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or_else(|| panic!("{how:?}: no error line\n{log}"));
                assert!(
                    error.contains(&path.display().to_string()),
                    "{how:?}: the error does not name {}: {error}",
                    path.display()
                );
                // the way out it gives is the admin token's, not the cookie's
                assert!(
                    matches!(how, Damage::Garbage) || error.contains("DCTL_ADMIN_TOKEN"),
                    "{how:?}: {error}"
                );
                assert!(!error.contains("cookie"), "{how:?}: {error}");
                assert_eq!(
                    std::fs::read(&path).expect("read"),
                    damaged,
                    "{how:?}: the file was rewritten"
                );
                lines.push(format!("admin-token {how:?}: refused: {error}"));
            }
        }
    }
    // left readable by other users: refused too, with the command that fixes it
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let copy = root.path().join("readable");
        copy_dir(&data, &copy);
        let path = copy.join("admin-token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        match start_off_loopback(&copy, &root.path().join("readable.log")) {
            TokenStart::Serving(child, _) => {
                stop(child);
                panic!("the node started with an admin-token others can read");
            }
            TokenStart::Exited(_, log) => assert!(
                log.contains(&format!("run: chmod 600 {}", path.display())),
                "{log}"
            ),
        }
    }
    for l in &lines {
        eprintln!("{l}");
    }
}
