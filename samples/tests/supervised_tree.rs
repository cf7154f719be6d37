//! `supervised-tree` as a user runs it: a crash in the one_for_all pool restarts the whole pool,
//! a crash in the rest_for_one pipeline restarts the stage and those after it, as `dctl tree`
//! and the tree page's JSON show.

mod common;

use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_supervised-tree");

fn post(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("HTTP request");
        let code = r.status().as_u16();
        (code, r.text().await.expect("HTTP body"))
    })
}

/// The `restarts` of each named child in the `dctl tree --json` output.
fn restarts(admin: &str, names: &[&str]) -> Vec<u64> {
    let tree: serde_json::Value =
        serde_json::from_str(&dctl_ok(admin, &["tree", "--json"])).expect("tree JSON");
    names
        .iter()
        .map(|n| {
            find(&tree, n)
                .and_then(|c| c["restarts"].as_u64())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

fn find<'a>(t: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    if t["name"] == name && t["status"] == "running" {
        return Some(t);
    }
    t["children"].as_array()?.iter().find_map(|c| find(c, name))
}

#[test]
fn crashes_restart_what_each_strategy_says_and_dctl_tree_shows_it() {
    let mut p = Proc::start("tree", BIN, &["--name", "tree-node"]);
    let admin = p.admin();
    let http = p.http();
    let tree = dctl_ok(&admin, &["tree"]);
    for line in [
        "svc:supervised-tree (supervisor",
        "db-pool (supervisor, running, one_for_all",
        "pipeline (supervisor, running, rest_for_one",
    ] {
        assert!(tree.contains(line), "missing '{line}' in:\n{tree}");
    }
    assert_eq!(
        post(&format!("http://{http}/items/apple")),
        (200, "st(tr(in(apple))) #1".into())
    );

    let stages = ["ingest", "transform", "store"];
    assert_eq!(post(&format!("http://{http}/crash/transform")).0, 200);
    wait_for(
        "transform and store restarted",
        Duration::from_secs(10),
        || (restarts(&admin, &stages) == [0, 1, 1]).then_some(()),
    );
    let tree = dctl_ok(&admin, &["tree"]);
    assert!(
        tree.contains("transform (worker, running, restarts: 1)"),
        "{tree}"
    );
    assert!(
        tree.contains("store (worker, running, restarts: 1)"),
        "{tree}"
    );
    assert!(
        tree.contains("ingest (worker, running)"),
        "ingest is before the crash: not restarted\n{tree}"
    );
    // The restarted store starts afresh (rest_for_one restarted it with its arguments).
    assert_eq!(
        post(&format!("http://{http}/items/pear")),
        (200, "st(tr(in(pear))) #1".into())
    );

    let pool = ["db-conn-1", "db-conn-2", "db-conn-3"];
    assert_eq!(post(&format!("http://{http}/crash/db-conn-2")).0, 200);
    wait_for("the whole pool restarted", Duration::from_secs(10), || {
        (restarts(&admin, &pool) == [1, 1, 1]).then_some(())
    });
    assert_eq!(
        restarts(&admin, &stages),
        [0, 1, 1],
        "the pipeline is not touched"
    );
    assert_eq!(post(&format!("http://{http}/crash/nobody")).0, 404);
    assert!(p.term(Duration::from_secs(20)).success());
}
