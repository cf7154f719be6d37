//! The tree page, rendered by headless Chromium against a real node.
//!
//! Needs Chromium (`scripts/test.sh` installs it): without one these tests fail, they never skip.

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::*;

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return PathBuf::from(p);
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("no Chromium installed: run ./scripts/test.sh, which installs it, or set CHROMIUM")
}

/// Load `url` in headless Chromium, let its scripts run, and return the DOM.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn tree_page_shows_the_tree_in_a_browser() {
    let browser = chromium();
    let node = NodeProc::start("e2e-browser");
    assert!(node
        .dctl(&["spawn", "echo", "--name", "page-echo"])
        .status
        .success());
    assert!(node
        .dctl(&["send", "page-echo", r#"{"crash":true}"#])
        .status
        .success());
    wait_until("restart recorded", Duration::from_secs(10), || {
        stdout(&node.dctl(&["tree"])).contains("page-echo (worker, running, restarts: 1)")
    });

    let dom = dump_dom(&browser, &format!("http://{}/", node.admin));
    for name in ["root", "system", "inspector", "user", "page-echo"] {
        assert!(
            dom.contains(&format!("data-name=\"{name}\"")),
            "{name} not drawn:\n{dom}"
        );
    }
    assert!(dom.contains("data-node=\"e2e-browser\""), "{dom}");
    // the worker is drawn as running with its restart count
    let echo = dom
        .split("data-name=\"page-echo\"")
        .nth(1)
        .expect("page-echo element");
    let attrs = &echo[..echo.find('>').unwrap_or(echo.len())];
    assert!(attrs.contains("data-status=\"running\""), "{attrs}");
    assert!(attrs.contains("data-restarts=\"1\""), "{attrs}");
    assert!(
        dom.contains("id=\"updated\" data-refreshes="),
        "page did not finish a refresh:\n{dom}"
    );
}

#[test]
fn tree_page_shows_every_node_of_the_cluster() {
    let browser = chromium();
    let n1 = NodeProc::start("e2e-page-1");
    let n2 = NodeProc::start_with("e2e-page-2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["e2e-page-1", "e2e-page-2"]);
    assert!(n1
        .dctl(&[
            "spawn",
            "echo",
            "--name",
            "page-remote",
            "--on",
            "e2e-page-2"
        ])
        .status
        .success());
    let dom = dump_dom(&browser, &format!("http://{}/", n1.admin));
    for node in ["e2e-page-1", "e2e-page-2"] {
        assert!(
            dom.contains(&format!("data-node=\"{node}\"")),
            "{node} missing:\n{dom}"
        );
    }
    let second = dom
        .find("class=\"node-block\" data-node=\"e2e-page-2\"")
        .map(|i| &dom[i..])
        .unwrap_or("");
    assert!(
        second.contains("data-name=\"page-remote\""),
        "remote actor not drawn under its node"
    );
}
