//! The dashboard (`GET /`) in headless Chromium, driven over the DevTools protocol, against a
//! cluster of three real `dctl` nodes on loopback: members, live restart counts and mailboxes
//! without a reload, actions from the page, and the token guard off loopback. Screenshots are
//! saved under `target/test-artifacts/` (their paths are printed).
//!
//! Needs Chromium (`scripts/test.sh` installs it): without one these tests fail, never skip.

mod cdp;
mod common;

use std::time::Duration;

use cdp::Browser;
use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

fn three_nodes(prefix: &str) -> (NodeProc, NodeProc, NodeProc) {
    let n1 = NodeProc::start(&format!("{prefix}-1"));
    let n2 = NodeProc::start_with(&format!("{prefix}-2"), &["--seed", &n1.gossip]);
    let n3 = NodeProc::start_with(&format!("{prefix}-3"), &["--seed", &n1.gossip]);
    let names = [
        format!("{prefix}-1"),
        format!("{prefix}-2"),
        format!("{prefix}-3"),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_converged(&[&n1, &n2, &n3], &names);
    (n1, n2, n3)
}

fn spawn(node: &NodeProc, factory: &str, name: &str, on: &str) {
    let out = node.dctl(&["spawn", factory, "--name", name, "--on", on]);
    assert!(out.status.success(), "spawn {name}: {}", stderr(&out));
}

/// The tree node of `name` in `dctl tree --all --json` (panics when absent).
fn tree_entry(node: &NodeProc, name: &str) -> Value {
    let out = node.dctl(&["tree", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("tree --all --json is JSON");
    fn find(t: &Value, name: &str) -> Option<Value> {
        if t["name"] == name {
            return Some(t.clone());
        }
        t["children"].as_array()?.iter().find_map(|c| find(c, name))
    }
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find_map(|n| find(&n["tree"], name))
        .unwrap_or_else(|| panic!("{name} not in any tree: {v}"))
}

/// A script reading an attribute of the page's tree node for `name`.
fn attr(name: &str, attr: &str) -> String {
    format!("(() => {{ const e = document.querySelector('li.tree-node[data-name=\"{name}\"]'); return e ? e.getAttribute('{attr}') : null; }})()")
}

#[test]
fn the_page_follows_the_cluster_live_a_crash_and_a_flood() {
    let (n1, _n2, _n3) = three_nodes("dash");
    spawn(&n1, "echo", "dash-crashy", "dash-2");
    spawn(&n1, "echo", "dash-slow", "dash-3");
    let browser = Browser::launch();
    let mut page = browser.open(&format!("http://{}/", n1.admin));

    page.wait_for(
        "three members, all alive",
        LONG,
        "document.querySelectorAll('#members tr[data-member][data-state=alive]').length === 3",
    );
    let blocks = page.wait_for(
        "three trees",
        LONG,
        "(() => { const b = [...document.querySelectorAll('.node-block')].map(e => e.dataset.node); return b.length === 3 ? b : null; })()",
    );
    assert_eq!(blocks, serde_json::json!(["dash-1", "dash-2", "dash-3"]));
    page.wait_for(
        "dash-crashy drawn with no restarts",
        LONG,
        &format!("{} === '0'", attr("dash-crashy", "data-restarts")),
    );
    page.screenshot("dashboard-three-nodes");

    // A crash: the restart count rises on the page, without a reload (the marker survives).
    page.eval("window.__no_reload = 42");
    let out = n1.dctl(&["send", "dash-crashy", r#"{"crash":true}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    page.wait_for(
        "the restart count of dash-crashy rises to 1",
        LONG,
        &format!("{} === '1'", attr("dash-crashy", "data-restarts")),
    );
    assert_eq!(page.eval("window.__no_reload"), serde_json::json!(42));
    let highlighted = page.eval(
        "document.querySelector('li.tree-node[data-name=\"dash-crashy\"]').classList.contains('restarted')",
    );
    assert_eq!(highlighted, Value::Bool(true), "a restart is highlighted");
    page.screenshot("dashboard-after-crash");

    // A flood to one actor: its mailbox grows on the page and it is highlighted.
    for _ in 0..80 {
        let (status, body) = http(
            &n1.admin,
            "POST",
            "/api/actors/dash-slow/tell",
            &[],
            br#"{"sleep_ms":100}"#,
        );
        assert_eq!(status, 202, "{body}");
    }
    let mailbox = page.wait_for(
        "dash-slow's mailbox grows past 10 and is highlighted",
        LONG,
        "(() => { const e = document.querySelector('li.tree-node[data-name=\"dash-slow\"]'); return e && e.classList.contains('hot') && Number(e.dataset.mailbox) >= 10 ? Number(e.dataset.mailbox) : null; })()",
    );
    assert!(mailbox.as_u64().unwrap_or(0) >= 10, "{mailbox}");
    let others_hot = page.eval("document.querySelectorAll('li.tree-node.hot').length");
    assert_eq!(
        others_hot,
        serde_json::json!(1),
        "only the flooded actor is hot"
    );
    page.eval("document.querySelector('li.tree-node[data-name=\"dash-slow\"]').scrollIntoView({block: 'center'})");
    page.screenshot("dashboard-flood");

    // Search by name hides the rest of the trees.
    page.eval("document.getElementById('search').value = 'dash-slow'; document.getElementById('search').dispatchEvent(new Event('input'))");
    let visible = page.eval("[...document.querySelectorAll('li.tree-node[data-kind=worker]')].filter(e => e.offsetParent !== null).map(e => e.dataset.name)");
    assert_eq!(visible, serde_json::json!(["dash-slow"]));
}

#[test]
fn restart_clicked_in_the_page_restarts_the_child() {
    let (n1, _n2, _n3) = three_nodes("dact");
    spawn(&n1, "echo", "dact-victim", "dact-2");
    let before = tree_entry(&n1, "dact-victim");
    assert_eq!(before["restarts"], 0);
    let browser = Browser::launch();
    let mut page = browser.open(&format!("http://{}/", n1.admin));
    page.wait_for(
        "dact-victim drawn",
        LONG,
        &format!("{} !== null", attr("dact-victim", "data-restarts")),
    );
    page.click("li.tree-node[data-name=\"dact-victim\"] > .row");
    page.wait_for(
        "its detail with the actions",
        LONG,
        "document.getElementById('action-restart') !== null && document.getElementById('detail-body').dataset.name === 'dact-victim'",
    );
    page.click("#action-restart");
    // The page asks first; nothing happens until confirmed.
    page.wait_for(
        "the confirmation",
        LONG,
        "document.getElementById('confirm').classList.contains('show')",
    );
    let text = page.eval("document.getElementById('confirm-text').textContent");
    assert_eq!(text, serde_json::json!("restart dact-victim?"));
    page.screenshot("dashboard-confirm-restart");
    assert_eq!(tree_entry(&n1, "dact-victim")["restarts"], 0);
    page.click("#confirm-yes");
    page.wait_for(
        "the action's answer",
        LONG,
        "document.getElementById('result').dataset.outcome === 'ok'",
    );
    wait_until("dctl tree shows the restart", LONG, || {
        let t = tree_entry(&n1, "dact-victim");
        t["restarts"] == 1 && t["status"] == "running"
    });
    let after = tree_entry(&n1, "dact-victim");
    assert_ne!(after["actor_id"], before["actor_id"], "a new actor runs");
    page.wait_for(
        "the page shows the restart",
        LONG,
        &format!("{} === '1'", attr("dact-victim", "data-restarts")),
    );
    page.screenshot("dashboard-after-restart");
}

#[test]
fn off_loopback_an_action_without_the_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = std::process::Command::new(DCTL)
        .args([
            "--admin",
            &format!("0.0.0.0:{port}"),
            "node",
            "start",
            "--name",
            "dtok",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gossip", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("DCTL_COOKIE", TEST_COOKIE)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{port}");
    let token_file = dir.path().join("data").join("admin-token");
    wait_until("the node answers 401", LONG, || {
        std::net::TcpStream::connect(&admin).is_ok()
            && http(&admin, "GET", "/health", &[], b"").0 == 401
            && token_file.exists()
    });
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    wait_until("services started", LONG, || {
        http(&admin, "GET", "/health", &auth, b"").0 == 200
    });
    let (s, b) = http(
        &admin,
        "POST",
        "/api/spawn",
        &auth,
        br#"{"factory":"echo","name":"dtok-echo"}"#,
    );
    assert_eq!(s, 201, "{b}");

    let browser = Browser::launch();
    let mut page = browser.open(&format!("http://{admin}/"));
    // The page itself loads (it holds no data) and says the token is needed.
    page.wait_for(
        "the token banner",
        LONG,
        "document.getElementById('banner').textContent.includes('requires its admin token')",
    );
    assert_eq!(
        page.eval("document.querySelectorAll('.node-block').length"),
        serde_json::json!(0),
        "no tree without the token"
    );
    // An action from the page without the token: confirmed, then refused with 401.
    page.eval("void act('restart dtok-echo', 'POST', 'api/actors/dtok-echo/restart')");
    page.wait_for(
        "the confirmation",
        LONG,
        "document.getElementById('confirm').classList.contains('show')",
    );
    page.click("#confirm-yes");
    let result = page.wait_for(
        "the refusal",
        LONG,
        "document.getElementById('result').dataset.outcome === 'error' && document.getElementById('result').textContent",
    );
    assert!(
        result.as_str().unwrap_or("").contains("Authorization"),
        "{result}"
    );
    page.screenshot("dashboard-token-refused");
    let (_, tree) = http(&admin, "GET", "/tree", &auth, b"");
    let tree: Value = serde_json::from_str(&tree).unwrap();
    let echo = tree["tree"]["children"][1]["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "dtok-echo").cloned())
        .unwrap_or_else(|| panic!("dtok-echo not under user: {tree}"));
    assert_eq!(echo["restarts"], 0, "the refused action did nothing");

    // With the token typed in, the same page shows the tree and the action goes through.
    let set = format!(
        "const t = document.getElementById('token'); t.value = {}; t.dispatchEvent(new Event('change'))",
        serde_json::to_string(&token).unwrap()
    );
    page.eval(&set);
    page.wait_for(
        "the tree with the token",
        LONG,
        &format!("{} === '0'", attr("dtok-echo", "data-restarts")),
    );
    page.eval("void act('restart dtok-echo', 'POST', 'api/actors/dtok-echo/restart')");
    page.click("#confirm-yes");
    page.wait_for(
        "the restart shows",
        LONG,
        &format!("{} === '1'", attr("dtok-echo", "data-restarts")),
    );
    let _ = child.kill();
    let _ = child.wait();
}
