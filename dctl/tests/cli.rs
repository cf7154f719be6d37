//! End-to-end: a real `dctl node start` process driven by `dctl` client commands.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn tree_json(node: &NodeProc) -> Value {
    let out = node.dctl(&["tree", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("tree --json is JSON")
}

fn find<'a>(tree: &'a Value, name: &str) -> Option<&'a Value> {
    if tree["name"] == name {
        return Some(tree);
    }
    tree["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

#[test]
fn spawn_call_crash_restart_and_sigterm() {
    let mut node = NodeProc::start("e2e-main");

    let out = node.dctl(&["spawn", "echo", "--name", "e1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("spawned e1"), "{}", stdout(&out));

    let out = node.dctl(&["send", "e1", r#"{"x":1}"#, "--call"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"x\":1}\n");

    let out = node.dctl(&["send", "e1", r#"{"crash":true}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("e1 restarted", Duration::from_secs(10), || {
        find(&tree_json(&node), "e1")
            .is_some_and(|e| e["status"] == "running" && e["restarts"].as_u64() >= Some(1))
    });
    let tree = tree_json(&node);
    let e1 = find(&tree, "e1").unwrap();
    assert_eq!(e1["kind"], "worker");
    assert!(e1["children"].as_array().unwrap().is_empty());
    assert_eq!(tree["kind"], "supervisor");

    let human = stdout(&node.dctl(&["tree"]));
    assert!(
        human.contains("e1 (worker, running, restarts: 1)"),
        "{human}"
    );
    assert!(human.starts_with("node e2e-main\n"), "{human}");

    let out = node.dctl(&["send", "e1", r#"{"x":2}"#, "--call"]);
    assert_eq!(stdout(&out), "{\"x\":2}\n");

    let status = node.signal_and_wait("TERM");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must stop the node with exit 0"
    );
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(log.contains("node stopped"), "{log}");
}

#[test]
fn errors_are_one_line_with_nonzero_exit_and_the_node_keeps_running() {
    let node = NodeProc::start("e2e-errors");
    assert!(node
        .dctl(&["spawn", "echo", "--name", "e2"])
        .status
        .success());

    assert_one_line_error(
        &node.dctl(&["send", "ghost", "{}", "--call"]),
        "unknown actor 'ghost'",
    );
    assert_one_line_error(
        &node.dctl(&["send", "ghost", "{}"]),
        "unknown actor 'ghost'",
    );
    assert_one_line_error(
        &node.dctl(&["spawn", "nofactory", "--name", "z"]),
        "unknown factory 'nofactory'",
    );
    assert_one_line_error(
        &node.dctl(&["send", "e2", "{oops", "--call"]),
        "not valid JSON",
    );
    assert_one_line_error(
        &node.dctl(&[
            "send",
            "e2",
            r#"{"sleep_ms":3000}"#,
            "--call",
            "--timeout",
            "200",
        ]),
        "timed out after 200ms",
    );
    assert_one_line_error(
        &node.dctl(&["spawn", "echo", "--name", "e2"]),
        "already exists",
    );
    assert_one_line_error(
        &node.dctl(&["spawn", "echo", "--name", "e3", "--on", "elsewhere"]),
        "unknown node 'elsewhere'",
    );

    // still serving after all of that
    let out = node.dctl(&["send", "e2", r#""ok""#, "--call"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"ok\"\n");
}

#[test]
fn a_client_with_no_node_to_talk_to_fails_clearly() {
    let port = free_port();
    let out = std::process::Command::new(DCTL)
        .args(["--admin", &format!("127.0.0.1:{port}"), "tree"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "cannot reach the node's admin API");
}

#[test]
fn a_node_that_cannot_bind_its_admin_port_exits_nonzero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(DCTL)
        .args(["--admin", &addr, "node", "start", "--name", "e2e-bind"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot listen on"),
        "{}",
        stderr(&out)
    );
}

/// `dctl tree | head -0`: a client whose stdout is closed ends like `ls` does (SIGPIPE), with
/// no panic message.
#[test]
fn closed_stdout_ends_a_client_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let node = NodeProc::start("e2e-pipe");
    let mut child = Command::new(DCTL)
        .args(["--admin", &node.admin, "tree"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dctl tree");
    drop(child.stdout.take()); // the reader goes away before anything is written
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc_sigpipe()), "{out:?}");
    assert!(node.dctl(&["tree"]).status.success());
}

fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux
}

/// A node started with `--max-actors 1` refuses a second spawn with a one-line error naming the
/// limit, from this node and from the HTTP API (503), and keeps serving the first actor.
#[test]
fn a_node_at_its_actor_limit_refuses_spawns_and_keeps_running() {
    let node = NodeProc::start_with("e2e-limit", &["--max-actors", "1"]);
    assert!(node
        .dctl(&["spawn", "echo", "--name", "l1"])
        .status
        .success());
    assert_one_line_error(
        &node.dctl(&["spawn", "echo", "--name", "l2"]),
        "node 'e2e-limit' is at its actor limit (--max-actors 1)",
    );
    let out = node.dctl(&["send", "l1", r#"{"still":"here"}"#, "--call"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("here"), "{}", stdout(&out));
}
