//! The proxy route table and the proxy controller with real `dctl node start` processes:
//! routes live in the KV store (visible from every node), bad routes are refused with the
//! reason, and each node's controller builds a snapshot from the registry and the routes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("JSON output")
}

fn snapshot(node: &NodeProc) -> Value {
    serde_json::from_str(&http_get(&node.admin, "/proxy/snapshot")).unwrap_or(Value::Null)
}

#[test]
fn routes_are_stored_refused_with_reasons_and_built_into_every_nodes_snapshot() {
    let n1 = NodeProc::start_with("p-n1", &["--kv-voter", "p-n1"]);
    let n2 = NodeProc::start_with("p-n2", &["--seed", &n1.gossip, "--kv-voter", "p-n1"]);
    wait_converged(&[&n1, &n2], &["p-n1", "p-n2"]);

    // the controller and its two watches are in the tree, under system/proxy
    let tree = json(&n1.dctl(&["tree", "--json"]));
    let system = tree["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "system"))
        .expect("system supervisor")
        .clone();
    let proxy = system["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "proxy"))
        .unwrap_or_else(|| panic!("proxy not under system: {system}"));
    assert_eq!(proxy["kind"], "supervisor", "{proxy}");
    let children: Vec<&str> = proxy["children"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        children,
        [
            "proxy-controller",
            "proxy-registry-watch",
            "proxy-routes-watch"
        ],
        "{proxy}"
    );

    let out = n1.dctl(&[
        "routes",
        "add",
        "web",
        "--prefix",
        "/web",
        "--service",
        "web",
        "--host",
        "shop.local",
        "--header",
        "x-env=prod",
        "--timeout",
        "2000",
        "--retries",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added route web"), "{}", stdout(&out));

    // listed from the other node (the route table is in the KV store)
    let ls = json(&n2.dctl(&["routes", "ls", "--json"]));
    let routes = ls["routes"].as_array().cloned().unwrap_or_default();
    assert_eq!(routes.len(), 1, "{ls}");
    assert_eq!(routes[0]["match"]["host"], "shop.local");
    assert_eq!(routes[0]["match"]["headers"][0]["name"], "x-env");
    assert_eq!(routes[0]["timeout_ms"], 2000);
    let human = stdout(&n2.dctl(&["routes", "ls"]));
    assert!(
        human.contains("prefix /web") && human.contains("host shop.local"),
        "{human}"
    );

    // refused, with the reason, and nothing written
    assert_one_line_error(
        &n2.dctl(&[
            "routes",
            "add",
            "web",
            "--prefix",
            "/",
            "--service",
            "other",
        ]),
        "a route named 'web' already exists",
    );
    assert_one_line_error(
        &n1.dctl(&["routes", "add", "bad", "--regex", "/a(", "--service", "s"]),
        "invalid regex",
    );
    assert_one_line_error(
        &n1.dctl(&[
            "routes",
            "add",
            "zero",
            "--prefix",
            "/",
            "--service",
            "a",
            "--weight",
            "a=0",
            "--weight",
            "b=0",
        ]),
        "sum to 0",
    );
    let (status, body) = http(
        &n1.admin,
        "POST",
        "/proxy/routes",
        &[("content-type", "application/json")],
        br#"{"name":"x","match":{"path":{"prefix":"/"}},"service":"s","colour":"red"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field `colour`"), "{body}");
    let (status, body) = http(&n1.admin, "POST", "/proxy/routes", &[], b"\xff\xfe");
    assert_eq!(status, 400, "{body}");
    let ls = json(&n1.dctl(&["routes", "ls", "--json"]));
    assert_eq!(ls["routes"].as_array().map(Vec::len), Some(1), "{ls}");

    // a registered instance and the route show up in the other node's snapshot
    let out = n1.dctl(&[
        "svc",
        "register",
        "web",
        "--addr",
        "127.0.0.1:18500",
        "--id",
        "w1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("w1 in p-n2's snapshot", Duration::from_secs(10), || {
        let s = snapshot(&n2);
        s["endpoints"]["resources"] == serde_json::json!(["web"])
            && s["clusters"]["resources"] == serde_json::json!(["web"])
            && s["active_routes"] == serde_json::json!(["web"])
    });
    let before = snapshot(&n2);
    assert_eq!(
        before["routes"]["resources"],
        serde_json::json!(["ingress"])
    );

    // rm changes the route configuration's version on both nodes; rm again is a 404
    let out = n2.dctl(&["routes", "rm", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for n in [&n1, &n2] {
        wait_until(
            "the route's removal reaches the snapshot",
            Duration::from_secs(10),
            || {
                let s = snapshot(n);
                s["routes"]["version"] != before["routes"]["version"]
                    && s["active_routes"] == serde_json::json!([])
            },
        );
    }
    assert_one_line_error(&n1.dctl(&["routes", "rm", "web"]), "no route named 'web'");
    assert!(json(&n1.dctl(&["routes", "ls", "--json"]))["routes"]
        .as_array()
        .is_some_and(Vec::is_empty));
}
