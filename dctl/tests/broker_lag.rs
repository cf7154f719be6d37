//! Durable consumer groups' lag: `GET /broker/groups` on any node reports, per durable channel,
//! each group's committed offset and lag (head - committed) as the channel's home knows them;
//! the lag rises while a group is behind and falls to 0 once it has consumed everything. The
//! dashboard's broker panel shows the same rows, a lagging group highlighted (headless
//! Chromium over the DevTools protocol; screenshots under `target/test-artifacts/`).

mod cdp;
mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

fn groups(node: &NodeProc) -> Value {
    let (s, body) = http(&node.admin, "GET", "/broker/groups", &[], b"");
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// `(head, committed, lag)` of `group` on `channel`, as `node` reports them.
fn lag_of(node: &NodeProc, channel: &str, group: &str) -> Option<(u64, u64, u64)> {
    let v = groups(node);
    let c = v["channels"]
        .as_array()?
        .iter()
        .find(|c| c["channel"] == channel)?
        .clone();
    let g = c["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"] == group)?
        .clone();
    Some((
        c["head"].as_u64()?,
        g["committed"].as_u64()?,
        g["lag"].as_u64()?,
    ))
}

fn produce(node: &NodeProc, channel: &str, ids: std::ops::Range<usize>) {
    let batch: Vec<Value> = ids
        .map(|i| {
            serde_json::json!({"specversion":"1.0","id":i.to_string(),"source":"/tests",
                "type":"test.n","data":{"n":i}})
        })
        .collect();
    let mut child = Command::new(DCTL)
        .args([
            "--admin",
            &node.admin,
            "events",
            "produce",
            channel,
            "--file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(batch).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A group member reads `count` events (then the stream ends): from the beginning when
/// `first`, else from the group's committed offset.
fn consume(node: &NodeProc, channel: &str, group: &str, count: usize, first: bool) {
    let count_s = count.to_string();
    let mut args = vec![
        "events", "consume", channel, "--group", group, "--count", &count_s,
    ];
    if first {
        args.extend(["--from", "beginning"]);
    }
    let out = node.dctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), count, "{}", stdout(&out));
}

fn wait_lag(nodes: &[&NodeProc], channel: &str, group: &str, want: (u64, u64, u64)) {
    for n in nodes {
        wait_until(
            &format!(
                "{} reports {channel}/{group} (head, committed, lag) = {want:?}",
                n.name
            ),
            LONG,
            || lag_of(n, channel, group) == Some(want),
        );
    }
}

#[test]
fn a_lagging_group_is_reported_and_shown_until_it_catches_up() {
    let n1 = NodeProc::start("lag-1");
    let n2 = NodeProc::start_with("lag-2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["lag-1", "lag-2"]);
    let out = n1.dctl(&["events", "durable", "lag-orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("lag-2 knows the durable channel", LONG, || {
        groups(&n2)["channels"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["channel"] == "lag-orders" && c["home"] == "lag-1")
        })
    });
    assert_eq!(lag_of(&n2, "lag-orders", "billing"), None, "no group yet");

    produce(&n2, "lag-orders", 0..6);
    consume(&n2, "lag-orders", "billing", 2, true);
    // Asked on the home and on the other node (which asks the home).
    wait_lag(&[&n1, &n2], "lag-orders", "billing", (6, 2, 4));

    // More events while the group is idle: its lag rises.
    produce(&n1, "lag-orders", 6..9);
    wait_lag(&[&n2], "lag-orders", "billing", (9, 2, 7));

    // The dashboard's broker panel shows the lagging group, highlighted.
    let browser = cdp::Browser::launch();
    let mut page = browser.open(&format!("http://{}/", n2.admin));
    let row = "document.querySelector('#broker-groups tr[data-group=\"lag-orders/billing\"]')";
    page.wait_for(
        "the page shows billing 7 behind, highlighted",
        LONG,
        &format!("(() => {{ const r = {row}; return r && r.dataset.lag === '7' && r.classList.contains('lagging'); }})()"),
    );
    page.eval(&format!("{row}.scrollIntoView({{block: 'center'}})"));
    page.screenshot("dashboard-group-lag");

    // The group consumes the rest: its lag falls to 0.
    consume(&n2, "lag-orders", "billing", 7, false);
    wait_lag(&[&n1, &n2], "lag-orders", "billing", (9, 9, 0));
    page.wait_for(
        "the page shows billing caught up, not highlighted",
        LONG,
        &format!("(() => {{ const r = {row}; return r && r.dataset.lag === '0' && !r.classList.contains('lagging'); }})()"),
    );
    page.screenshot("dashboard-group-caught-up");
}
