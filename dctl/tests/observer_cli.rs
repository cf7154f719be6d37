//! The live figures from the CLI against a real node: `dctl top --once`, `dctl tree --stats`,
//! `dctl restart` / `dctl kill`, and the `draft_actor_*` metric families.

mod common;

use std::time::Duration;

use common::*;

fn restarts(node: &NodeProc, name: &str) -> u64 {
    let out = node.dctl(&["tree", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("tree JSON");
    let user = v["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "user"))
        .unwrap_or_else(|| panic!("no user supervisor: {v}"));
    user["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} not under user: {v}"))["restarts"]
        .as_u64()
        .expect("restarts")
}

#[test]
fn top_tree_stats_restart_and_kill_from_the_cli() {
    let n = NodeProc::start("obs-cli");
    for name in ["obs-slow", "obs-idle"] {
        let out = n.dctl(&["spawn", "echo", "--name", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for _ in 0..60 {
        let (s, b) = http(
            &n.admin,
            "POST",
            "/api/actors/obs-slow/tell",
            &[],
            br#"{"sleep_ms":100}"#,
        );
        assert_eq!(s, 202, "{b}");
    }
    // One frame, sorted by mailbox: the flooded actor first, no escape codes (not a terminal).
    let out = n.dctl(&["top", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "escape codes in a pipe: {text:?}");
    assert!(
        text.starts_with("node obs-cli: 2 actors, mailbox "),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .collect();
    assert!(rows[0].contains(" obs-slow "), "{text}");
    let mailbox: u64 = rows[0]
        .split_whitespace()
        .nth(3)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mailbox column: {}", rows[0]));
    assert!(mailbox >= 30, "60 messages of 100 ms sent: {}", rows[0]);
    assert!(rows.iter().any(|r| r.contains(" obs-idle ")), "{text}");

    let out = n.dctl(&["tree", "--stats"]);
    let tree = stdout(&out);
    assert!(
        tree.lines()
            .next()
            .unwrap_or("")
            .contains("timed actors, mailbox "),
        "{tree}"
    );
    let slow = tree
        .lines()
        .find(|l| l.contains("obs-slow"))
        .unwrap_or_else(|| panic!("{tree}"));
    assert!(
        slow.contains("[mailbox ") && slow.contains("msg/s"),
        "{slow}"
    );

    let metrics = http_get(&n.admin, "/metrics");
    assert!(
        metrics.contains("draft_actor_mailbox{actor=\"obs-slow\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("draft_actor_messages_handled_total{actor=\"obs-idle\"} 0\n"));

    // restart: stopped and started again by its supervisor, one restart counted
    let out = n.dctl(&["restart", "obs-idle"]);
    assert_eq!(
        stdout(&out).trim(),
        "restarted obs-idle on obs-cli",
        "{}",
        stderr(&out)
    );
    wait_until("a restart counted", Duration::from_secs(10), || {
        restarts(&n, "obs-idle") == 1
    });
    let out = n.dctl(&["kill", "obs-idle"]);
    assert_eq!(
        stdout(&out).trim(),
        "killed obs-idle on obs-cli",
        "{}",
        stderr(&out)
    );
    wait_until("a second restart counted", Duration::from_secs(10), || {
        restarts(&n, "obs-idle") == 2
    });
    assert_one_line_error(&n.dctl(&["kill", "obs-nobody"]), "obs-nobody");
    // an actor that is not a spawned one cannot be acted on
    assert_one_line_error(&n.dctl(&["restart", "inspector"]), "inspector");
}
