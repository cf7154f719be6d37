//! `ping-pong` as a user runs it: two processes, typed call/tell across them, a remote spawn,
//! a `DOWN` when the other node is killed, and `dctl spawn` of the sample's factory.

mod common;

use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ping-pong");
const T: Duration = Duration::from_secs(60);

#[test]
fn two_nodes_call_tell_spawn_remotely_and_see_down_when_one_is_killed() {
    let mut b = Proc::start("pp-b", BIN, &["--name", "pp-b"]);
    let gossip = b.gossip();
    let b_admin = b.admin();
    let mut a = Proc::start(
        "pp-a",
        BIN,
        &["--name", "pp-a", "--seed", &gossip, "--ping", "pp-b"],
    );

    assert_eq!(
        a.line(T, |l| l.starts_with("call pong-pp-b Ping(1)")),
        "call pong-pp-b Ping(1) -> 2"
    );
    assert_eq!(
        a.line(T, |l| l.starts_with("tell ")),
        "tell pong-pp-b Note x3 -> pong-pp-b has 3 notes"
    );
    assert_eq!(
        a.line(T, |l| l.starts_with("call pong-pp-b Ping(0)")),
        "call pong-pp-b Ping(0) -> error: ZeroPing",
        "the actor's own error, typed on the caller's side"
    );
    assert_eq!(
        a.line(T, |l| l.starts_with("remote spawn")),
        "remote spawn spawned-on-pp-b on pp-b -> Ping(1) -> 101"
    );
    a.line(T, |l| l == "watching pong-pp-b");

    // The sample's factory through dctl, from a's side onto b.
    let a_admin = a.admin();
    let out = dctl_ok(
        &a_admin,
        &[
            "spawn", "ponger", "--name", "by-dctl", "--on", "pp-b", "--args", "5",
        ],
    );
    assert!(
        out.contains("spawned by-dctl (ponger)") && out.contains("on pp-b"),
        "{out}"
    );
    let tree = dctl_ok(&b_admin, &["tree"]);
    assert!(tree.contains("by-dctl"), "{tree}");

    b.kill9();
    let down = a.line(Duration::from_secs(20), |l| l.starts_with("DOWN pong-pp-b"));
    assert!(down.starts_with("DOWN pong-pp-b: "), "{down}");
    assert!(
        a.term(Duration::from_secs(20)).success(),
        "SIGTERM stops a cleanly"
    );
}
