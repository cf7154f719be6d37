//! One request, three nodes, one trace id: `dctl send --call` to a `forward` actor on n2 (sent
//! through n1's admin API) that forwards to a `forward` actor on n3, which forwards to an echo
//! on n3. Every node's log has lines of that request, all with the trace id n1 answered in its
//! `traceparent` header.

mod common;

use std::time::Duration;

use common::*;
use regex::Regex;

fn spawn(node: &NodeProc, factory: &str, name: &str, on: &str, args: &str) {
    let out = node.dctl(&["spawn", factory, "--name", name, "--on", on, "--args", args]);
    assert!(out.status.success(), "spawn {name}: {}", stderr(&out));
}

/// Lines of a node's log that carry `trace_id=ID`.
fn traced_lines(node: &NodeProc, id: &str) -> Vec<String> {
    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    log.lines()
        .filter(|l| l.contains(&format!("trace_id={id}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_call_hopping_through_three_nodes_has_one_trace_id_in_all_their_logs() {
    let n1 = NodeProc::start("tr-1");
    let n2 = NodeProc::start_with("tr-2", &["--seed", &n1.gossip]);
    let n3 = NodeProc::start_with("tr-3", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2, &n3], &["tr-1", "tr-2", "tr-3"]);
    spawn(&n1, "echo", "tr-echo", "tr-3", "null");
    spawn(&n1, "forward", "tr-f3", "tr-3", r#"{"to":"tr-echo"}"#);
    spawn(&n1, "forward", "tr-f2", "tr-2", r#"{"to":"tr-f3"}"#);

    // The CLI's call, through n1.
    let out = n1.dctl(&["send", "tr-f2", r#"{"hop":3}"#, "--call"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        r#"{"hop":3}"#,
        "the echo's reply came back"
    );

    // The same over HTTP with a traceparent of ours: every hop continues our trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, body) = http(
        &n1.admin,
        "POST",
        "/api/actors/tr-f2/call",
        &[("traceparent", &parent)],
        br#"{"hop":"mine"}"#,
    );
    assert_eq!(status, 200, "{body}");

    // n1 logged the admin request of the CLI's call: its trace id.
    let id_re = Regex::new(r"trace_id=([0-9a-f]{32})").unwrap();
    let n1_log = std::fs::read_to_string(n1.log_path()).unwrap();
    let cli_trace = n1_log
        .lines()
        .filter(|l| l.contains("admin request") && l.contains("path=/api/actors/tr-f2/call"))
        .find_map(|l| id_re.captures(l).map(|c| c[1].to_string()))
        .unwrap_or_else(|| panic!("n1 logged no traced admin request:\n{n1_log}"));
    assert_ne!(cli_trace, trace);

    for id in [cli_trace.as_str(), trace] {
        wait_until(
            &format!("every node logged trace {id}"),
            Duration::from_secs(10),
            || {
                let on2 = traced_lines(&n2, id);
                let on3 = traced_lines(&n3, id);
                !traced_lines(&n1, id).is_empty()
                    && on2.iter().any(|l| l.contains("actor=tr-f2"))
                    && on3.iter().any(|l| l.contains("actor=tr-f3"))
                    && on3.iter().any(|l| l.contains("actor=tr-echo"))
            },
        );
    }
    // The span ids differ per hop, and each hop names its parent.
    let f2 = traced_lines(&n2, trace)
        .into_iter()
        .find(|l| l.contains("actor=tr-f2"))
        .unwrap();
    assert!(f2.contains("parent_span_id="), "{f2}");
    assert!(
        !f2.contains("span_id=00f067aa0ba902b7 "),
        "a hop has a span of its own: {f2}"
    );
}

#[test]
fn an_event_produced_in_a_trace_carries_the_traceparent_extension() {
    let n = NodeProc::start("tr-ce");
    let (s, b) = http(
        &n.admin,
        "PUT",
        "/broker/channels/tr-orders/durable",
        &[],
        b"",
    );
    assert_eq!(s, 200, "{b}");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = format!("00-{trace}-b7ad6b7169203331-01");
    let event = br#"{"specversion":"1.0","id":"e1","source":"test","type":"order","data":{"n":1}}"#;
    let (s, b) = http(
        &n.admin,
        "POST",
        "/broker/channels/tr-orders/events",
        &[
            ("traceparent", &parent),
            ("Content-Type", "application/cloudevents+json"),
        ],
        event,
    );
    assert_eq!(s, 200, "{b}");
    // An event whose producer set its own traceparent keeps it.
    let own = br#"{"specversion":"1.0","id":"e2","source":"test","type":"order","traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}"#;
    let (s, b) = http(
        &n.admin,
        "POST",
        "/broker/channels/tr-orders/events",
        &[
            ("traceparent", &parent),
            ("Content-Type", "application/cloudevents+json"),
        ],
        own,
    );
    assert_eq!(s, 200, "{b}");
    let (s, body) = http(
        &n.admin,
        "GET",
        "/broker/channels/tr-orders/events?from=beginning&count=2",
        &[],
        b"",
    );
    assert_eq!(s, 200, "{body}");
    let re = Regex::new(r#""traceparent":"00-([0-9a-f]{32})-([0-9a-f]{16})-01""#).unwrap();
    let found: Vec<(String, String)> = re
        .captures_iter(&body)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    assert_eq!(found.len(), 2, "{body}");
    assert_eq!(found[0].0, trace, "the request's trace: {body}");
    assert_ne!(found[0].1, "b7ad6b7169203331", "a span of the broker's own");
    assert_eq!(found[1].0, "11111111111111111111111111111111", "{body}");
}
