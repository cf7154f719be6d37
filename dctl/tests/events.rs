//! Broker end to end: real `dctl node start` processes, `dctl events` producers and consumers,
//! and the HTTP binding.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// A `dctl events consume` process whose stdout lines are collected.
struct Consumer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _stderr: Option<tempfile::NamedTempFile>,
}

impl Consumer {
    fn start(node: &NodeProc, args: &[&str]) -> Consumer {
        Self::start_logged(node, args, None)
    }

    fn start_logged(
        node: &NodeProc,
        args: &[&str],
        stderr: Option<tempfile::NamedTempFile>,
    ) -> Consumer {
        let err = match &stderr {
            Some(f) => Stdio::from(f.reopen().expect("stderr file")),
            None => Stdio::null(),
        };
        let mut child = Command::new(DCTL)
            .args(["--admin", &node.admin, "events", "consume"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("dctl events consume");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Consumer {
            child,
            lines,
            _stderr: stderr,
        }
    }

    /// The `id`s received so far.
    fn ids(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("one JSON event per line")["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    fn wait_for(&self, n: usize, what: &str) {
        self.wait_for_within(n, what, Duration::from_secs(20));
    }

    fn wait_for_within(&self, n: usize, what: &str, limit: Duration) {
        wait_until(what, limit, || self.lines.lock().unwrap().len() >= n);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Interest in `channel` as `node` sees it: node -> (broadcast, group members of `group`).
fn interest(node: &NodeProc, channel: &str, group: &str) -> Vec<(String, u64, u64)> {
    channels_json(node)["channels"][channel]["nodes"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(n, i)| {
            (
                n,
                i["b"].as_u64().unwrap_or(0),
                i["g"][group].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// `dctl events channels --json` of a node (which must answer).
fn channels_json(node: &NodeProc) -> Value {
    let out = node.dctl(&["--json", "events", "channels"]);
    assert!(out.status.success(), "events channels: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("events channels prints JSON")
}

fn produce(node: &NodeProc, channel: &str, id: &str) -> Value {
    let out = node.dctl(&[
        "--json",
        "events",
        "produce",
        channel,
        "--type",
        "test.n",
        "--source",
        "/tests",
        "--data",
        &format!("{{\"n\":\"{id}\"}}"),
        "--id",
        id,
    ]);
    assert!(out.status.success(), "produce {id}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("json")
}

/// Produce a batch through `--file -` (one request, order kept).
fn produce_batch(node: &NodeProc, channel: &str, ids: impl Iterator<Item = usize>) {
    produce_batch_to(&node.admin, channel, ids)
}

/// [`produce_batch`] to a node's admin address.
fn produce_batch_to(admin: &str, channel: &str, ids: impl Iterator<Item = usize>) {
    let batch: Vec<Value> = ids
        .map(|i| {
            serde_json::json!({"specversion":"1.0","id":i.to_string(),"source":"/tests",
                "type":"test.n","datacontenttype":"application/json","data":{"n":i}})
        })
        .collect();
    let mut child = Command::new(DCTL)
        .args([
            "--admin", admin, "events", "produce", channel, "--file", "-",
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

fn seq(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| i.to_string()).collect()
}

fn three_nodes() -> (NodeProc, NodeProc, NodeProc) {
    let n1 = NodeProc::start("n1");
    let n2 = NodeProc::start_with("n2", &["--seed", &n1.gossip]);
    let n3 = NodeProc::start_with("n3", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    for n in [&n1, &n2, &n3] {
        wait_broker(n);
    }
    (n1, n2, n3)
}

/// The node's services start after its admin API: wait for the broker's routes.
fn wait_broker(n: &NodeProc) {
    wait_until(
        &format!("{} broker up", n.name),
        Duration::from_secs(20),
        || n.dctl(&["events", "channels"]).status.success(),
    );
}

#[test]
fn broadcast_across_nodes_and_queue_group_failover() {
    let (n1, n2, n3) = three_nodes();
    let c1 = Consumer::start(&n1, &["orders", "--count", "151"]);
    let c2 = Consumer::start(&n2, &["orders", "--count", "151"]);
    let mut g1 = Consumer::start(&n1, &["orders", "--group", "workers"]);
    let g2 = Consumer::start(&n2, &["orders", "--group", "workers"]);
    wait_until(
        "n3 sees both nodes' interest",
        Duration::from_secs(20),
        || {
            let mut i = interest(&n3, "orders", "workers");
            i.sort();
            i == vec![("n1".into(), 1, 1), ("n2".into(), 1, 1)]
        },
    );

    // 100 events from one producer on n3: 50 single calls, then a batch of 50.
    for i in 0..50 {
        produce(&n3, "orders", &i.to_string());
    }
    produce_batch(&n3, "orders", 50..100);
    c1.wait_for(100, "c1 gets 100");
    c2.wait_for(100, "c2 gets 100");
    assert_eq!(c1.ids(), seq(0..100), "every event, in order, once (n1)");
    assert_eq!(c2.ids(), seq(0..100), "every event, in order, once (n2)");
    wait_until("the group gets 100", Duration::from_secs(20), || {
        g1.ids().len() + g2.ids().len() >= 100
    });
    let (a, b) = (g1.ids(), g2.ids());
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both members got a share: {} / {}",
        a.len(),
        b.len()
    );
    let mut all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    all.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(all, seq(0..100), "each event to exactly one member");

    // Kill one member: once the cluster has noticed, the survivor gets the rest.
    g1.kill();
    wait_until(
        "n3 sees the group only on n2",
        Duration::from_secs(20),
        || {
            let mut i = interest(&n3, "orders", "workers");
            i.sort();
            i == vec![("n1".into(), 1, 0), ("n2".into(), 1, 1)]
        },
    );
    produce_batch(&n3, "orders", 100..150);
    // A last event from the same producer: events reach a consumer in production order, so
    // once it has arrived anything extra (a duplicate of 100..150) would have arrived before.
    produce(&n3, "orders", "150");
    g2.wait_for(b.len() + 51, "the survivor gets the rest");
    assert_eq!(g2.ids()[b.len()..].to_vec(), seq(100..151));
    c1.wait_for(151, "c1 gets 151");
    assert_eq!(c1.ids(), seq(0..151));
    c2.wait_for(151, "c2 gets 151");
    assert_eq!(c2.ids(), seq(0..151));
    // One network crossing per interested node: n3 forwarded each of the 151 events once to
    // each of n1 and n2 (a group event rides with the broadcast copy).
    let m = http_get(&n3.admin, "/broker/metrics");
    let forwarded: u64 = metric(&m, "broker_events_forwarded_total");
    assert!((302..=310).contains(&forwarded), "forwarded {forwarded}");
}

#[test]
fn invalid_events_get_clear_errors_and_the_broker_keeps_serving() {
    let n = NodeProc::start("solo");
    wait_broker(&n);
    let c = Consumer::start(&n, &["ch", "--count", "2"]);
    wait_until("subscribed", Duration::from_secs(10), || {
        interest(&n, "ch", "").iter().any(|(_, b, _)| *b == 1)
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.json");
    std::fs::write(&f, r#"{"specversion":"1.0","source":"/s","type":"t"}"#).unwrap();
    let out = n.dctl(&["events", "produce", "ch", "--file", f.to_str().unwrap()]);
    assert_one_line_error(&out, "required attribute 'id' is missing (HTTP 400)");
    std::fs::write(
        &f,
        r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#,
    )
    .unwrap();
    let out = n.dctl(&["events", "produce", "ch", "--file", f.to_str().unwrap()]);
    assert_one_line_error(&out, "unsupported specversion \"0.3\"");
    let out = n.dctl(&[
        "events", "produce", "ch", "--type", "t", "--source", "s", "--data", "{oops",
    ]);
    assert_one_line_error(&out, "--data is not valid JSON");
    let out = n.dctl(&[
        "events", "produce", "bad/name", "--type", "t", "--source", "s",
    ]);
    assert_one_line_error(&out, "invalid channel name 'bad/name'");

    // HTTP binding: binary mode with a non-JSON body, structured mode without an id.
    let ce = [
        ("ce-specversion", "1.0"),
        ("ce-id", "x1"),
        ("ce-source", "/http"),
        ("ce-type", "t"),
        ("content-type", "application/json"),
    ];
    let (status, body) = http(
        &n.admin,
        "POST",
        "/broker/channels/ch/events",
        &ce,
        b"{not json",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, body) = http(
        &n.admin,
        "POST",
        "/broker/channels/ch/events",
        &[("content-type", "application/cloudevents+json")],
        br#"{"specversion":"1.0","source":"/s","type":"t"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'id' is missing"), "{body}");
    let (status, body) = http(
        &n.admin,
        "POST",
        "/broker/channels/ch/events",
        &ce[1..],
        b"{}",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'specversion' is missing"), "{body}");

    // Still serving: a binary-mode event and a CLI event both arrive, extensions intact.
    let mut with_ext = ce.to_vec();
    with_ext.push(("ce-traceparent", "00-abc"));
    let (status, body) = http(
        &n.admin,
        "POST",
        "/broker/channels/ch/events",
        &with_ext,
        br#"{"ok":true}"#,
    );
    assert_eq!(status, 200, "{body}");
    produce(&n, "ch", "x2");
    c.wait_for(2, "two valid events");
    assert_eq!(c.ids(), vec!["x1", "x2"]);
    let first: Value = serde_json::from_str(&c.lines.lock().unwrap()[0]).unwrap();
    assert_eq!(first["traceparent"], "00-abc");
    assert_eq!(first["data"], serde_json::json!({"ok": true}));
    assert_eq!(first["datacontenttype"], "application/json");
    let m = http_get(&n.admin, "/broker/metrics");
    assert!(metric(&m, "broker_events_rejected_total") >= 3, "{m}");
}

/// A node process with a data directory of our choosing (kept across restarts).
fn start_node(name: &str, data: &Path, seed: Option<&str>) -> NodeProc {
    match seed {
        Some(s) => NodeProc::start_in(name, &data.join(name), &["--seed", s]),
        None => NodeProc::start_in(name, &data.join(name), &[]),
    }
}

fn durable_home(node: &NodeProc, channel: &str) -> Option<String> {
    channels_json(node)["channels"][channel]["durable_home"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn durable_channel_survives_a_whole_cluster_restart() {
    let data = tempfile::tempdir().unwrap();
    let cluster = |data: &Path| {
        let n1 = start_node("n1", data, None);
        let n2 = start_node("n2", data, Some(&n1.gossip));
        let n3 = start_node("n3", data, Some(&n1.gossip));
        wait_converged(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
        for n in [&n1, &n2, &n3] {
            wait_broker(n);
        }
        (n1, n2, n3)
    };
    let (mut n1, mut n2, mut n3) = cluster(data.path());
    let out = n1.dctl(&["events", "durable", "ledger"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("log on node n1"), "{}", stdout(&out));
    wait_until(
        "n3 knows ledger is durable",
        Duration::from_secs(20),
        || durable_home(&n3, "ledger").as_deref() == Some("n1"),
    );
    // Produced on n3 (the log is on n1): each acknowledgement carries the offset.
    for i in 0..20 {
        let ack = produce(&n3, "ledger", &i.to_string());
        assert_eq!(ack["offsets"][0], i, "{ack}");
    }
    produce_batch(&n2, "ledger", 20..30);
    // A queue group reads 10 from the beginning; its offset is committed.
    let g = Consumer::start(
        &n2,
        &[
            "ledger",
            "--group",
            "audit",
            "--from",
            "beginning",
            "--count",
            "10",
        ],
    );
    g.wait_for(10, "group reads 10");
    assert_eq!(g.ids(), seq(0..10));
    wait_until(
        "n1 has committed the group's offset",
        Duration::from_secs(10),
        || channels_json(&n1)["channels"]["ledger"]["committed"]["audit"] == 10,
    );

    // Restart everything (SIGKILL: nothing is flushed on the way out).
    for n in [&mut n1, &mut n2, &mut n3] {
        n.signal_and_wait("KILL");
    }
    let (n1b, n2b, _n3b) = cluster(data.path());
    wait_until(
        "n2 knows ledger is durable",
        Duration::from_secs(20),
        || durable_home(&n2b, "ledger").as_deref() == Some("n1"),
    );
    let r = Consumer::start(&n2b, &["ledger", "--from", "beginning", "--count", "30"]);
    r.wait_for(30, "replay returns 30");
    assert_eq!(r.ids(), seq(0..30), "every acknowledged event, in order");
    // Replay then live: a consumer from offset 28 sees 28, 29 and then a new event.
    let live = Consumer::start(&n1b, &["ledger", "--from", "28", "--count", "3"]);
    live.wait_for(2, "replayed 28, 29");
    let ack = produce(&n2b, "ledger", "30");
    assert_eq!(ack["offsets"][0], 30);
    live.wait_for(3, "live 30");
    assert_eq!(live.ids(), seq(28..31));
    // The group resumes after its committed offset.
    let g = Consumer::start(&n2b, &["ledger", "--group", "audit", "--count", "5"]);
    g.wait_for(5, "group resumes");
    assert_eq!(g.ids(), seq(10..15));
}

#[test]
fn drop_policy_slow_consumer_loses_counted_events_and_stalls_no_one() {
    let n1 = NodeProc::start("d1");
    let n2 = NodeProc::start_with("d2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["d1", "d2"]);
    wait_broker(&n1);
    wait_broker(&n2);
    let total = 40_000;
    let fast = Consumer::start(&n1, &["flow", "--count", &total.to_string()]);
    let err = tempfile::NamedTempFile::new().unwrap();
    let err_path = err.path().to_path_buf();
    let slow = Consumer::start_logged(
        &n2,
        &["flow", "--policy", "drop", "--capacity", "16"],
        Some(err),
    );
    wait_until("d1 sees both consumers", Duration::from_secs(20), || {
        let mut i = interest(&n1, "flow", "");
        i.sort();
        i == vec![("d1".into(), 1, 0), ("d2".into(), 1, 0)]
    });
    // The slow consumer stops reading altogether.
    let pid = slow.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    for start in (0..total).step_by(2_000) {
        produce_batch(&n1, "flow", start..start + 2_000);
    }
    fast.wait_for(total, "the fast consumer gets everything");
    assert_eq!(fast.ids(), seq(0..total), "in order, nothing lost");
    wait_until("d2 counts dropped events", Duration::from_secs(20), || {
        metric(
            &http_get(&n2.admin, "/broker/metrics"),
            "broker_events_dropped_total",
        ) > 0
    });
    // the node's own /metrics carries the broker's families too
    assert!(
        metric(
            &http_get(&n2.admin, "/metrics"),
            "broker_events_dropped_total"
        ) > 0,
        "broker metrics missing from /metrics"
    );
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("the slow consumer is told", Duration::from_secs(20), || {
        std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .contains("event(s) dropped")
    });
    // What it did get is in order, ending with the last event.
    wait_until(
        "the slow consumer catches up",
        Duration::from_secs(20),
        || slow.ids().last().map(String::as_str) == Some("39999"),
    );
    let got: Vec<u64> = slow.ids().iter().map(|s| s.parse().unwrap()).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!((got.len() as u64) < total as u64, "some were dropped");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn block_policy_paused_consumer_on_another_node_holds_the_producer_back_and_loses_nothing() {
    let n1 = NodeProc::start("k1");
    let n2 = NodeProc::start_with("k2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["k1", "k2"]);
    wait_broker(&n1);
    wait_broker(&n2);
    // More events than everything between the producer and a paused consumer can buffer
    // (its 16-event buffer, the link and window to k2, the SSE socket).
    let (total, batch) = (100_000usize, 5_000usize);
    let err = tempfile::NamedTempFile::new().unwrap();
    let err_path = err.path().to_path_buf();
    let slow = Consumer::start_logged(
        &n2,
        &[
            "steady",
            "--policy",
            "block",
            "--capacity",
            "16",
            // Held back for as long as this test pauses it (the deadline is tested below).
            "--block-deadline-ms",
            "120000",
            "--count",
            &total.to_string(),
        ],
        Some(err),
    );
    wait_until("k1 sees k2's consumer", Duration::from_secs(20), || {
        interest(&n1, "steady", "") == vec![("k2".into(), 1, 0)]
    });
    signal(slow.child.id(), "-STOP");

    // The producer on k1, one batch after the other.
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = {
        let (admin, produced) = (n1.admin.clone(), produced.clone());
        std::thread::spawn(move || {
            for start in (0..total).step_by(batch) {
                produce_batch_to(&admin, "steady", start..start + batch);
                produced.fetch_add(batch, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    // Held back: its progress stops short of the end while the consumer is paused.
    let mut last = (usize::MAX, std::time::Instant::now());
    wait_until(
        "the producer makes no more progress",
        Duration::from_secs(120),
        || {
            let now = produced.load(std::sync::atomic::Ordering::SeqCst);
            if now != last.0 {
                last = (now, std::time::Instant::now());
            }
            now == total || last.1.elapsed() > Duration::from_secs(2)
        },
    );
    let held = produced.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        held < total,
        "the producer got all {total} events accepted while the only consumer was paused"
    );
    assert!(slow.ids().len() < total);

    // Resumed: the producer finishes and the consumer gets every event, in order, none lost.
    signal(slow.child.id(), "-CONT");
    wait_until("the producer finishes", Duration::from_secs(180), || {
        producer.is_finished()
    });
    producer.join().expect("producer thread");
    slow.wait_for_within(
        total,
        "the consumer gets everything",
        Duration::from_secs(180),
    );
    assert_eq!(slow.ids(), seq(0..total), "every event, in order, once");
    let err_text = std::fs::read_to_string(&err_path).expect("consumer's stderr");
    assert!(!err_text.contains("dropped"), "{err_text}");
    let m = http_get(&n2.admin, "/broker/metrics");
    assert_eq!(metric(&m, "broker_events_dropped_total"), 0, "{m}");
    assert_eq!(metric(&m, "broker_consumers_cut_off_total"), 0, "{m}");
}

#[test]
fn durable_channel_is_never_taken_as_plain_after_a_restart_and_a_down_home_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let mut n1 = start_node("n1", data.path(), None);
    let mut n2 = start_node("n2", data.path(), Some(&n1.gossip));
    let mut n3 = start_node("n3", data.path(), Some(&n1.gossip));
    wait_converged(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    for n in [&n1, &n2, &n3] {
        wait_broker(n);
    }
    let out = n1.dctl(&["events", "durable", "ledger"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for n in [&n2, &n3] {
        wait_until(
            &format!("{} knows ledger is durable", n.name),
            Duration::from_secs(20),
            || durable_home(n, "ledger").as_deref() == Some("n1"),
        );
    }
    for i in 0..3 {
        assert_eq!(produce(&n3, "ledger", &i.to_string())["offsets"][0], i);
    }
    let refused = |n: &NodeProc, id: &str| {
        let out = n.dctl(&[
            "events", "produce", "ledger", "--type", "t", "--source", "/s", "--id", id,
        ]);
        assert_one_line_error(
            &out,
            "durable channel 'ledger' lives on node 'n1', which is unavailable",
        );
    };

    // The home is down, the others run: producing there is refused, clearly.
    n1.signal_and_wait("KILL");
    refused(&n2, "x1");
    let (status, body) = http(
        &n3.admin,
        "POST",
        "/broker/channels/ledger/events",
        &[("content-type", "application/cloudevents+json")],
        br#"{"specversion":"1.0","id":"x2","source":"/s","type":"t"}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    // A replay through another node needs the home's log: refused, not an empty stream.
    let out = n2.dctl(&[
        "events",
        "consume",
        "ledger",
        "--from",
        "beginning",
        "--count",
        "3",
    ]);
    assert_one_line_error(
        &out,
        "durable channel 'ledger' lives on node 'n1', which is unavailable",
    );
    // So does a consumer from the head: only the home can route the events to it.
    let out = n2.dctl(&["events", "consume", "ledger", "--count", "1"]);
    assert_one_line_error(
        &out,
        "durable channel 'ledger' lives on node 'n1', which is unavailable",
    );

    // The whole cluster goes down; n3 comes back alone, before any gossip: it still knows the
    // channel is durable, so it refuses instead of accepting an event that no log keeps.
    n2.signal_and_wait("KILL");
    n3.signal_and_wait("KILL");
    let n3b = start_node("n3", data.path(), None);
    wait_broker(&n3b);
    assert_eq!(durable_home(&n3b, "ledger").as_deref(), Some("n1"));
    refused(&n3b, "x3");

    // n1 and n2 come back and a brand-new node n4 joins; producing on each right away is either
    // refused (home not reachable yet) or logged, never accepted without an offset.
    let n1b = start_node("n1", data.path(), Some(&n3b.gossip));
    let n2b = start_node("n2", data.path(), Some(&n3b.gossip));
    let n4 = NodeProc::start_with("n4", &["--seed", &n3b.gossip]);
    for (i, n) in [&n4, &n2b, &n3b].into_iter().enumerate() {
        wait_broker(n);
        let id = (3 + i).to_string();
        wait_until(
            &format!("event {id} produced on {} is logged", n.name),
            Duration::from_secs(30),
            || {
                let out = n.dctl(&[
                    "--json", "events", "produce", "ledger", "--type", "test.n", "--source",
                    "/tests", "--id", &id,
                ]);
                if !out.status.success() {
                    assert!(stderr(&out).contains("unavailable"), "{}", stderr(&out));
                    return false;
                }
                let ack: Value = serde_json::from_str(&stdout(&out)).expect("json");
                assert_eq!(
                    ack["offsets"][0],
                    3 + i,
                    "acknowledged without its log offset"
                );
                true
            },
        );
    }
    let r = Consumer::start(&n1b, &["ledger", "--from", "beginning", "--count", "6"]);
    r.wait_for(6, "replay returns 6");
    assert_eq!(
        r.ids(),
        seq(0..6),
        "every acknowledged event, in order, nothing else"
    );
}

/// Produce a batch over HTTP with a server-side timeout; returns (status, body).
fn produce_http(
    admin: &str,
    channel: &str,
    ids: std::ops::Range<usize>,
    timeout_ms: u64,
) -> (u16, String) {
    let batch: Vec<Value> = ids
        .map(|i| {
            serde_json::json!({"specversion":"1.0","id":i.to_string(),"source":"/tests",
                "type":"test.n","data":{"n":i}})
        })
        .collect();
    http(
        admin,
        "POST",
        &format!("/broker/channels/{channel}/events?timeout_ms={timeout_ms}"),
        &[("content-type", "application/cloudevents-batch+json")],
        Value::Array(batch).to_string().as_bytes(),
    )
}

/// Wait (bounded) for a child process to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn block_policy_consumer_that_stops_reading_is_cut_off_after_its_deadline_and_told() {
    let n1 = NodeProc::start("s1");
    let n2 = NodeProc::start_with("s2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["s1", "s2"]);
    wait_broker(&n1);
    wait_broker(&n2);
    let err = tempfile::NamedTempFile::new().unwrap();
    let err_path = err.path().to_path_buf();
    let mut stuck = Consumer::start_logged(
        &n2,
        &["stuck", "--capacity", "16", "--block-deadline-ms", "1000"],
        Some(err),
    );
    wait_until("s1 sees s2's consumer", Duration::from_secs(20), || {
        interest(&n1, "stuck", "") == vec![("s2".into(), 1, 0)]
    });
    signal(stuck.child.id(), "-STOP");
    // Far more than the buffers between the producer and the paused consumer hold: without
    // the deadline the producer would wait for as long as the consumer is paused.
    let (total, batch) = (100_000usize, 5_000usize);
    for start in (0..total).step_by(batch) {
        let (status, body) = produce_http(&n1.admin, "stuck", start..start + batch, 60_000);
        assert_eq!(status, 200, "batch at {start}: {body}");
    }
    let m = http_get(&n2.admin, "/broker/metrics");
    assert_eq!(metric(&m, "broker_consumers_cut_off_total"), 1, "{m}");
    // Its interest is withdrawn: producers stop sending to s2.
    wait_until(
        "s1 no longer sees the consumer",
        Duration::from_secs(20),
        || interest(&n1, "stuck", "").is_empty(),
    );
    // Resumed, the consumer reads what was buffered for it (in order) and is told why it was
    // cut off.
    signal(stuck.child.id(), "-CONT");
    let status = wait_exit(&mut stuck.child, Duration::from_secs(60));
    assert!(!status.success());
    let err_text = std::fs::read_to_string(&err_path).expect("consumer's stderr");
    assert!(
        err_text.contains("error: the node ended the subscription: consumer too slow"),
        "{err_text}"
    );
    let got = stuck.ids();
    assert!(got.len() < total, "it did not get everything");
    assert_eq!(
        got,
        seq(0..got.len()),
        "what it got is in order, without gaps"
    );
}

#[test]
fn a_produce_held_back_by_a_consumer_past_its_timeout_is_answered_503() {
    let n = NodeProc::start("t1");
    wait_broker(&n);
    // A patient consumer (cut off only after 10 minutes) that stops reading.
    let c = Consumer::start(
        &n,
        &["jam", "--capacity", "16", "--block-deadline-ms", "600000"],
    );
    wait_until("subscribed", Duration::from_secs(10), || {
        interest(&n, "jam", "") == vec![("t1".into(), 1, 0)]
    });
    signal(c.child.id(), "-STOP");
    let mut answer = None;
    for round in 0..40 {
        let started = std::time::Instant::now();
        let ids = round * 5_000..(round + 1) * 5_000;
        let (status, body) = produce_http(&n.admin, "jam", ids, 1_000);
        if status != 200 {
            answer = Some((status, body, started.elapsed()));
            break;
        }
    }
    let (status, body, took) = answer.expect("a produce request was held back");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("producing to channel 'jam' did not complete within 1000 ms"),
        "{body}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let m = http_get(&n.admin, "/broker/metrics");
    assert!(metric(&m, "broker_produce_timeouts_total") >= 1, "{m}");
    // The node still serves: another channel takes events at once.
    let (status, body) = produce_http(&n.admin, "other", 0..1, 1_000);
    assert_eq!(status, 200, "{body}");
    signal(c.child.id(), "-CONT");
}

/// Ways to damage a file while its node is down.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    Truncate,
    FlipByte,
    Garbage,
}

fn damage(path: &Path, how: Damage) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match how {
        Damage::Truncate => bytes.truncate(bytes.len() / 2),
        Damage::FlipByte => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x04;
        }
        Damage::Garbage => bytes = b"\x00\xffnot what was written\n".repeat(8),
    }
    std::fs::write(path, bytes).expect("write damaged file");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Start a node on `data`: `Ok` once its broker answers, `Err(stderr)` when it exits instead.
fn start_or_refuse(name: &str, data: &Path) -> Result<NodeProc, String> {
    let admin = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(DCTL)
        .args(["--admin", &admin, "node", "start", "--name", name])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gossip", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .expect("dctl node start");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "the node exited successfully");
            return Err(std::fs::read_to_string(log.path()).unwrap());
        }
        let up = Command::new(DCTL)
            .args(["--admin", &admin, "events", "channels"])
            .output()
            .expect("dctl");
        if up.status.success() {
            let _ = child.kill();
            let _ = child.wait();
            // Hand over to a NodeProc on the same data directory.
            let n = NodeProc::start_in(name, data, &[]);
            wait_broker(&n);
            return Ok(n);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node neither up nor refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn damaged_broker_files_are_recovered_without_loss_or_refused_by_name() {
    let data = tempfile::tempdir().unwrap();
    let pristine = data.path().join("pristine");
    {
        let mut n = NodeProc::start_in("disk", &pristine, &[]);
        wait_broker(&n);
        let out = n.dctl(&["events", "durable", "ledger"]);
        assert!(out.status.success(), "{}", stderr(&out));
        for i in 0..5 {
            assert_eq!(produce(&n, "ledger", &i.to_string())["offsets"][0], i);
        }
        let g = Consumer::start(
            &n,
            &[
                "ledger",
                "--group",
                "audit",
                "--from",
                "beginning",
                "--count",
                "3",
            ],
        );
        g.wait_for(3, "the group reads 3");
        wait_until(
            "the group's offset is committed",
            Duration::from_secs(10),
            || channels_json(&n)["channels"]["ledger"]["committed"]["audit"] == 3,
        );
        // A second version of each file (so that a previous copy exists): another durable
        // channel, and the group reads one more.
        let out = n.dctl(&["events", "durable", "second"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let g = Consumer::start(&n, &["ledger", "--group", "audit", "--count", "1"]);
        g.wait_for(1, "the group reads one more");
        assert_eq!(g.ids(), vec!["3"]);
        wait_until(
            "the group's offset is committed again",
            Duration::from_secs(10),
            || channels_json(&n)["channels"]["ledger"]["committed"]["audit"] == 4,
        );
        n.signal_and_wait("KILL");
    }
    let files = [
        "channels.json",
        "durable.json",
        "ledger.groups.json",
        "ledger.log",
    ];
    for f in files {
        assert!(pristine.join("broker").join(f).exists(), "{f} is written");
    }
    let mut case = 0;
    for file in files {
        for how in [Damage::Truncate, Damage::FlipByte, Damage::Garbage] {
            // A log cut short is indistinguishable from an append cut short by a crash (its
            // tail is dropped, see the README); every other damage to it must be caught.
            if file == "ledger.log" && how == Damage::Truncate {
                continue;
            }
            let has_prev = pristine
                .join("broker")
                .join(format!("{file}.prev"))
                .exists();
            for keep_prev in [true, false] {
                if keep_prev && !has_prev {
                    continue; // the same case as without one
                }
                case += 1;
                let run = data.path().join(format!("case{case}"));
                copy_dir(&pristine, &run);
                let path = run.join("broker").join(file);
                damage(&path, how);
                if !keep_prev {
                    let _ = std::fs::remove_file(run.join("broker").join(format!("{file}.prev")));
                }
                let what = format!("{file} {how:?} (previous copy kept: {keep_prev})");
                match start_or_refuse("disk", &run) {
                    Err(log) => {
                        eprintln!("{what}: the node refuses to start");
                        assert!(
                            log.contains(&path.display().to_string()) && log.contains("corrupt"),
                            "{what}: refused without naming the file: {log}"
                        );
                        assert!(log.contains("move it away"), "{what}: no way out: {log}");
                    }
                    Ok(n) => {
                        let ch = channels_json(&n)["channels"]["ledger"].clone();
                        if let Some(reason) = ch["refused"].as_str() {
                            // The channel is not served, and the node says why.
                            eprintln!("{what}: the channel is refused");
                            let name = path.display().to_string();
                            assert!(reason.contains(&name), "{what}: {reason}");
                            let out = n.dctl(&[
                                "events", "produce", "ledger", "--type", "t", "--source", "/s",
                            ]);
                            assert_one_line_error(&out, "is corrupt");
                            continue;
                        }
                        eprintln!("{what}: recovered from the previous copy");
                        // Recovered: every acknowledged event is there, and the group resumes
                        // no later than its committed offset.
                        assert!(keep_prev, "{what}: recovered from nothing: {ch}");
                        assert_eq!(ch["durable_home"], "disk", "{what}: {ch}");
                        assert_eq!(ch["log_length"], 5, "{what}: {ch}");
                        let committed = ch["committed"]["audit"].as_u64().unwrap_or(0);
                        assert!(committed <= 4, "{what}: {ch}");
                        let second = &channels_json(&n)["channels"]["second"];
                        assert_eq!(second["durable_home"], "disk", "{what}: {second}");
                        let r =
                            Consumer::start(&n, &["ledger", "--from", "beginning", "--count", "5"]);
                        r.wait_for(5, "replay");
                        assert_eq!(r.ids(), seq(0..5), "{what}");
                    }
                }
            }
        }
    }
}

/// A Server-Sent Events stream read over a plain HTTP connection, so that the test sees the
/// `event: subscribed` that answers the subscription (`dctl events consume` does not print it).
struct Sse {
    conn: std::net::TcpStream,
    buf: String,
    /// The response's status line.
    status: String,
    subscribed: bool,
    /// `(log offset, event id)` in the order received.
    events: Vec<(Option<u64>, String)>,
    /// The `closed` reason or the error body, if any.
    other: Vec<String>,
    id: Option<u64>,
}

impl Sse {
    fn open(admin: &str, path: &str) -> Sse {
        let mut conn = std::net::TcpStream::connect(admin).expect("connect");
        write!(conn, "GET {path} HTTP/1.1\r\nHost: {admin}\r\n\r\n").expect("write");
        Sse {
            conn,
            buf: String::new(),
            status: String::new(),
            subscribed: false,
            events: Vec::new(),
            other: Vec::new(),
            id: None,
        }
    }

    /// Read what arrives until `done` holds or `limit` passes; whether it holds.
    fn read_until(&mut self, limit: Duration, done: impl Fn(&Sse) -> bool) -> bool {
        use std::io::Read;
        let deadline = std::time::Instant::now() + limit;
        let mut block = [0u8; 8192];
        while !done(self) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            self.conn.set_read_timeout(Some(left)).expect("timeout");
            match self.conn.read(&mut block) {
                Ok(0) => return done(self),
                Ok(n) => {
                    self.buf.push_str(&String::from_utf8_lossy(&block[..n]));
                    self.parse();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return done(self)
                }
                Err(e) => panic!("reading the event stream: {e}"),
            }
        }
        true
    }

    /// Complete lines only; chunk-size lines of the chunked body are not SSE fields and are
    /// passed over (each chunk holds whole events).
    fn parse(&mut self) {
        while let Some(end) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=end).collect();
            let line = line.trim_end();
            if line.starts_with("HTTP/1.1 ") && self.status.is_empty() {
                self.status = line.to_string();
            } else if line == "event: subscribed" {
                self.subscribed = true;
            } else if let Some(v) = line.strip_prefix("id: ") {
                self.id = v.parse().ok();
            } else if let Some(d) = line.strip_prefix("data: ") {
                match serde_json::from_str::<Value>(d) {
                    Ok(v) if v["specversion"].is_string() => {
                        let id = v["id"].as_str().unwrap_or("?").to_string();
                        self.events.push((self.id.take(), id));
                    }
                    Ok(v) if v == serde_json::json!({}) => {}
                    _ => self.other.push(d.to_string()),
                }
            } else if line.starts_with('{') {
                // An error answer's body.
                self.other.push(line.to_string());
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        self.events.iter().map(|(_, id)| id.clone()).collect()
    }
}

/// Produce one event over HTTP (structured mode): as fast as the node answers, no process.
fn produce_now(admin: &str, channel: &str, id: &str) -> Value {
    let event = serde_json::json!({"specversion":"1.0","id":id,"source":"/tests","type":"test.n"});
    let (status, body) = http(
        admin,
        "POST",
        &format!("/broker/channels/{channel}/events"),
        &[("content-type", "application/cloudevents+json")],
        event.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "produce {id}: {body}");
    serde_json::from_str(&body).expect("produce answers JSON")
}

/// The gap between a durable consumer's replay and the moment the channel's home hears of it:
/// the consumer is on n2, the log on n1, and an event is produced on n1 as soon as the
/// subscription is answered, on a channel n2 never had consumers for (so only the subscription
/// itself can have told n1). Before the home was told directly, gossip brought n2's interest a
/// round or two later: the event was in the log but never sent to n2, and a replaying consumer
/// got it only with the next event, a queue group's only member never, and a consumer without
/// `from` got the whole log again with the next event. Broadcast from the beginning, broadcast
/// from the head, and a new queue group, each several times.
#[test]
fn a_durable_consumer_on_another_node_gets_every_event_produced_once_it_is_subscribed() {
    let n1 = NodeProc::start("n1");
    let n2 = NodeProc::start_with("n2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["n1", "n2"]);
    for n in [&n1, &n2] {
        wait_broker(n);
    }
    for round in 0..12 {
        let channel = format!("race-{round}");
        let out = n1.dctl(&["events", "durable", &channel]);
        assert!(out.status.success(), "{}", stderr(&out));
        wait_until(
            &format!("n2 knows {channel} is durable"),
            Duration::from_secs(20),
            || durable_home(&n2, &channel).as_deref() == Some("n1"),
        );
        let old: Vec<String> = (0..2).map(|i| format!("{channel}-old{i}")).collect();
        for (i, id) in old.iter().enumerate() {
            assert_eq!(produce_now(&n1.admin, &channel, id)["offsets"][0], i);
        }
        let new = format!("{channel}-new");
        let (how, query, want) = match round % 3 {
            0 => (
                "replay from the beginning",
                "from=beginning",
                vec![
                    (Some(0), old[0].clone()),
                    (Some(1), old[1].clone()),
                    (Some(2), new.clone()),
                ],
            ),
            1 => ("broadcast from the head", "", vec![(Some(2), new.clone())]),
            _ => ("a new queue group", "group=g", vec![(Some(2), new.clone())]),
        };
        let mut sse = Sse::open(
            &n2.admin,
            &format!("/broker/channels/{channel}/events?{query}"),
        );
        assert!(
            sse.read_until(Duration::from_secs(10), |s| s.subscribed),
            "round {round} ({how}): not subscribed: {} {:?}",
            sse.status,
            sse.other
        );
        assert_eq!(produce_now(&n1.admin, &channel, &new)["offsets"][0], 2);
        // Events reach a consumer in offset order: once `new` is there, so is all before it.
        let arrived = sse.read_until(Duration::from_secs(10), |s| {
            s.events.iter().any(|(_, id)| *id == new)
        });
        assert!(
            arrived,
            "round {round} ({how}): {new}, produced on the home right after the subscription \
             on n2 was answered, did not arrive within 10 s; got {:?} {:?}",
            sse.ids(),
            sse.other
        );
        assert_eq!(sse.events, want, "round {round} ({how})");
    }
}
