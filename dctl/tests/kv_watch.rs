//! `dctl kv watch --from 0` / `--from beginning` replay the retained history, then follow live;
//! without `--from` only new changes are printed.

mod common;
mod kvproc;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{wait_until, DCTL};
use kvproc::{ok, KvProc};

#[test]
fn watch_from_0_and_from_beginning_replay_the_history() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut n = KvProc::new(dir.path(), "w1", &[], None, &[]);
    n.spawn();
    n.wait_healthy();
    for i in 1..=5 {
        ok(&n.dctl(&["kv", "put", &format!("h/{i}"), &i.to_string()]));
    }
    ok(&n.dctl(&["kv", "del", "h/2"]));
    let want = "1 PUT h/1 1\n2 PUT h/2 2\n3 PUT h/3 3\n4 PUT h/4 4\n5 PUT h/5 5\n6 DELETE h/2\n";
    for from in ["0", "beginning"] {
        let o = n.dctl(&["kv", "watch", "h/", "--from", from, "--count", "6"]);
        assert_eq!(ok(&o), want, "--from {from}");
        assert_eq!(common::stderr(&o), "", "nothing was compacted");
    }
    let o = n.dctl(&["kv", "watch", "--from", "yesterday", "--count", "1"]);
    common::assert_one_line_error(&o, "--from takes a revision number, 0 or 'beginning'");

    // Without --from: only what happens after the watch started.
    let mut child = Command::new(DCTL)
        .args(["--admin", &n.admin, "kv", "watch", "h/", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    // The watch is live once a put made after it started reaches it; keep writing until then.
    let mut got = None;
    let mut i = 0;
    wait_until(
        "the live watch prints a new change",
        Duration::from_secs(20),
        || {
            i += 1;
            ok(&n.dctl(&["kv", "put", "h/live", &i.to_string()]));
            got = rx.recv_timeout(Duration::from_millis(200)).ok();
            got.is_some()
        },
    );
    let line = got.expect("line");
    assert!(line.contains("PUT h/live"), "{line}");
    let rev: u64 = line
        .split_whitespace()
        .next()
        .and_then(|r| r.parse().ok())
        .expect("revision");
    assert!(rev > 6, "an old revision was replayed: {line}");
    let _ = child.wait();
}
