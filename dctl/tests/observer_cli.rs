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

/// The `stats` of a child of `user` in a `/tree` answer.
fn user_child_stats(tree: &serde_json::Value, name: &str) -> serde_json::Value {
    tree["tree"]["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "user"))
        .and_then(|u| u["children"].as_array())
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .map(|c| c["stats"].clone())
        .unwrap_or_else(|| panic!("{name} not under user: {tree}"))
}

#[test]
fn memory_estimates_in_tree_json_tree_stats_top_and_metrics() {
    let n = NodeProc::start("obs-mem");
    for (factory, name) in [("echo", "obs-hold"), ("counter", "obs-count")] {
        let out = n.dctl(&["spawn", factory, "--name", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // the echo actor keeps 8 MiB and reports them through its memory hook
    let held: u64 = 8 << 20;
    let (s, b) = http(
        &n.admin,
        "POST",
        "/api/actors/obs-hold/call",
        &[],
        format!("{{\"hold_bytes\":{held}}}").as_bytes(),
    );
    assert_eq!(s, 200, "{b}");
    let mut tree = serde_json::Value::Null;
    wait_until("the held buffer reported", Duration::from_secs(15), || {
        // a message after each sampler round lets the hook be asked again
        http(&n.admin, "POST", "/api/actors/obs-hold/tell", &[], b"1");
        tree = serde_json::from_str(&http_get(&n.admin, "/tree")).expect("tree JSON");
        let s = user_child_stats(&tree, "obs-hold");
        s["memory_reported"] == true && s["memory_bytes"].as_u64().unwrap_or(0) >= held
    });
    let count = user_child_stats(&tree, "obs-count");
    assert_eq!(count["memory_reported"], false, "{count}");
    let shallow = count["memory_bytes"].as_u64().expect("a shallow estimate");
    assert!((1024..1 << 20).contains(&shallow), "{count}");
    assert!(
        tree["totals"]["memory_bytes"].as_u64().unwrap_or(0) >= held + shallow,
        "{}",
        tree["totals"]
    );

    let out = n.dctl(&["tree", "--stats"]);
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not in {text}"))
            .to_string()
    };
    assert!(
        line("obs-hold").contains("mem 8.0 MiB (reported)"),
        "{text}"
    );
    assert!(line("obs-count").contains(" KiB (shallow)"), "{text}");
    assert!(
        text.lines()
            .next()
            .unwrap_or("")
            .contains("actors' memory "),
        "{text}"
    );

    let out = n.dctl(&["top", "--once", "--sort", "memory"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let top = stdout(&out);
    let rows: Vec<&str> = top.lines().skip_while(|l| !l.starts_with("NODE")).collect();
    assert!(rows[0].contains(" MEMORY "), "{top}");
    assert!(
        rows[1].contains(" obs-hold ") && rows[1].contains(" 8.0MiB "),
        "{top}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(" obs-count ") && r.contains(" ~")),
        "{top}"
    );

    let metrics = http_get(&n.admin, "/metrics");
    assert!(metric(&metrics, "draft_actor_memory_bytes{actor=\"obs-hold\"}") >= held);
    assert_eq!(
        metric(&metrics, "draft_actor_memory_bytes{actor=\"obs-count\"}"),
        shallow
    );
}
