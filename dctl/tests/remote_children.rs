//! Remote children with real `dctl node start` processes on loopback: a supervisor on one node
//! (the built-in `supervisor` factory) whose children run on other nodes, placed by node role or
//! "any other node", restarted on a live node when theirs is killed, counted in the
//! supervisor's restart intensity, and reached by name wherever they run.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn start_seeded(name: &str, seed: &NodeProc, extra: &[&str]) -> NodeProc {
    let mut args = vec!["--seed", seed.gossip.as_str()];
    args.extend_from_slice(extra);
    NodeProc::start_with(name, &args)
}

fn tree_all(node: &NodeProc) -> Value {
    let out = node.dctl(&["tree", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON")
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

/// The tree node `name` in node `on`'s tree, from a `tree --all` answer.
fn in_tree<'a>(all: &'a Value, on: &str, name: &str) -> Option<&'a Value> {
    all["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == on)
        .and_then(|n| find(&n["tree"], name))
}

fn call(node: &NodeProc, actor: &str, payload: &str) -> std::process::Output {
    node.dctl(&["send", actor, payload, "--call", "--timeout", "2000"])
}

/// Wait until the guard `child` under `rsup` on rc-n1 runs on `host` with `restarts` restarts.
fn wait_placed(n1: &NodeProc, child: &str, host: &str, restarts: u64, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_until(
        &format!("{child} running on {host} after {restarts} restarts"),
        limit,
        || {
            let all = tree_all(n1);
            match in_tree(&all, "rc-n1", child) {
                Some(c) => {
                    last = c.clone();
                    c["status"] == "running" && c["runs_on"] == host && c["restarts"] == restarts
                }
                None => false,
            }
        },
    );
    last
}

#[test]
fn remote_children_move_to_a_live_node_when_theirs_is_killed() {
    let n1 = NodeProc::start("rc-n1");
    let mut n2 = start_seeded("rc-n2", &n1, &[]);
    let n3 = start_seeded("rc-n3", &n1, &["--role", "edge"]);
    wait_converged(&[&n1, &n2, &n3], &["rc-n1", "rc-n2", "rc-n3"]);

    // A bad declaration is refused with the reason, and nothing is started.
    let out = n1.dctl(&[
        "spawn",
        "supervisor",
        "--name",
        "bad",
        "--args",
        r#"{"children":[{"id":"x","factory":"echo","on":"zone:a"}]}"#,
    ]);
    assert_one_line_error(
        &out,
        "placement 'zone:a' is not any, other, role:NAME, node:NAME or a node name",
    );

    let spec = r#"{"strategy":"one_for_one","max_restarts":3,"period_ms":60000,"children":[
        {"id":"rc-any","factory":"echo","on":"other"},
        {"id":"rc-edge","factory":"echo","on":"role:edge"}]}"#;
    let out = n1.dctl(&["spawn", "supervisor", "--name", "rsup", "--args", spec]);
    assert!(out.status.success(), "{}", stderr(&out));

    // "other" picks the first other node by name, "role:edge" the one node with that role.
    wait_placed(&n1, "rc-any", "rc-n2", 0, Duration::from_secs(10));
    wait_placed(&n1, "rc-edge", "rc-n3", 0, Duration::from_secs(10));
    let all = tree_all(&n1);
    let hosted = in_tree(&all, "rc-n2", "rc-any").expect("rc-any in rc-n2's tree");
    assert_eq!(hosted["supervised_from"], "rc-n1/rsup", "{hosted}");
    assert_eq!(hosted["restart"], "temporary", "{hosted}");
    let text = stdout(&n1.dctl(&["tree", "--all"]));
    assert!(
        text.contains("rc-any (worker, running, on rc-n2)"),
        "{text}"
    );
    assert!(
        text.contains("rc-any (worker, running, supervised from rc-n1/rsup)"),
        "{text}"
    );
    // Callers on any node reach the children by name.
    let out = call(&n3, "rc-any", r#"{"hello":1}"#);
    assert_eq!(stdout(&out), "{\"hello\":1}\n", "{}", stderr(&out));

    // kill -9 the node of rc-any: the supervisor restarts it on the only other live node.
    let killed = Instant::now();
    n2.signal_and_wait("KILL");
    wait_placed(&n1, "rc-any", "rc-n3", 1, Duration::from_secs(15));
    eprintln!(
        "rc-any runs again on rc-n3 {:?} after kill -9 of rc-n2",
        killed.elapsed()
    );
    let out = call(&n1, "rc-any", r#"{"again":true}"#);
    assert_eq!(stdout(&out), "{\"again\":true}\n", "{}", stderr(&out));
    let all = tree_all(&n1);
    assert_eq!(
        in_tree(&all, "rc-n3", "rc-any").expect("on rc-n3")["supervised_from"],
        "rc-n1/rsup"
    );

    // A crash of the actor on its node is a restart there, and counts in the same intensity:
    // kill (1) + 2 crashes = 3 restarts are allowed, the 4th makes `rsup` give up, and `user`
    // restarts `rsup` with fresh children.
    for k in 1..=2u64 {
        let out = n1.dctl(&["send", "rc-edge", r#"{"crash":true}"#]);
        assert!(out.status.success(), "{}", stderr(&out));
        let c = wait_placed(&n1, "rc-edge", "rc-n3", k, Duration::from_secs(10));
        assert_eq!(c["status"], "running", "{c}");
    }
    let out = n1.dctl(&["send", "rc-edge", r#"{"crash":true}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "rsup restarted by user after giving up",
        Duration::from_secs(20),
        || {
            let all = tree_all(&n1);
            let sup = in_tree(&all, "rc-n1", "rsup");
            let any = in_tree(&all, "rc-n1", "rc-any");
            sup.is_some_and(|s| s["restarts"] == 1 && s["status"] == "running")
                && any.is_some_and(|a| a["restarts"] == 0 && a["status"] == "running")
        },
    );
    let out = call(&n3, "rc-edge", r#"{"after":"restart"}"#);
    assert_eq!(
        stdout(&out),
        "{\"after\":\"restart\"}\n",
        "{}",
        stderr(&out)
    );

    // Stopping the supervisor stops its remote children on their nodes.
    let out = n1.dctl(&["stop", "rsup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("remote children stopped", Duration::from_secs(15), || {
        let all = tree_all(&n1);
        in_tree(&all, "rc-n3", "rc-any").is_none() && in_tree(&all, "rc-n3", "rc-edge").is_none()
    });
}
