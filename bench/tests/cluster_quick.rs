//! Smoke test of the `cluster` benchmark in quick mode: it runs end to end with real
//! `dctl node start` child processes and produces a well-formed report. No timing assertions
//! (targets are reported, not enforced).
//!
//! The nodes run the `dctl` binary of this workspace, found via `$DCTL_BIN` or in
//! `target/{debug,release}/dctl` (`cargo build -p dctl` first: a bench crate cannot depend on
//! the dctl binary crate); without it the test fails, saying so.

mod common;

use bench::{procs::locate_dctl, run_cluster, ClusterConfig, RawServerMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_quick_produces_a_sane_report() {
    let dctl = locate_dctl()
        .expect("no dctl binary: build it with `cargo build -p dctl`, or set DCTL_BIN");
    let config = ClusterConfig {
        dctl: Some(dctl),
        raw_server: RawServerMode::Process(env!("CARGO_BIN_EXE_bench").into()),
        node_name: "bench-quick-a".into(),
        progress: true,
        ..ClusterConfig::quick()
    };
    let report = run_cluster(&config)
        .await
        .expect("the quick cluster bench runs");

    let positive = |what: &str, x: f64| assert!(x.is_finite() && x > 0.0, "{what}: {x}");
    assert_eq!(report.raw_server, "child process");
    assert_eq!(report.latency.len(), config.payloads.len());
    for (row, &bytes) in report.latency.iter().zip(&config.payloads) {
        assert_eq!(row.payload_bytes, bytes);
        for (side, s) in [("raw", &row.raw), ("runtime", &row.runtime)] {
            assert_eq!(s.p50_ns.values.len(), config.rounds, "{side} {bytes} B");
            positive(&format!("{side} {bytes} B p50"), s.p50_ns.median);
            positive(&format!("{side} {bytes} B p99"), s.p99_ns.median);
            positive(&format!("{side} {bytes} B mean"), s.mean_ns.median);
            assert!(
                s.p50_ns.median <= s.p99_ns.median,
                "{side} {bytes} B p50 <= p99"
            );
        }
        positive("ratio p50", row.ratio_p50);
        positive("ratio p99", row.ratio_p99);
        positive("ratio mean", row.ratio_mean);
    }
    assert_eq!(report.throughput.len(), config.payloads.len());
    for row in &report.throughput {
        let b = row.payload_bytes;
        positive(&format!("raw {b} B msg/s"), row.raw_msgs_per_s.median);
        positive(
            &format!("runtime {b} B msg/s"),
            row.runtime_msgs_per_s.median,
        );
        positive(&format!("raw {b} B MB/s"), row.raw_mb_per_s);
        positive(&format!("runtime {b} B MB/s"), row.runtime_mb_per_s);
        positive(&format!("{b} B ratio"), row.ratio);
        positive(
            &format!("raw write/frame {b} B msg/s"),
            row.raw_unbatched_msgs_per_s.median,
        );
        positive(
            &format!("in-process {b} B msg/s"),
            row.in_process_msgs_per_s.median,
        );
        positive(&format!("{b} B ratio in-process"), row.ratio_in_process);
        // small payloads are judged against in-process delivery, large ones against the wire
        let judged = if b <= bench::cluster::SMALL_PAYLOAD {
            format!("one-way {b} B vs in-process")
        } else {
            format!("one-way {b} B")
        };
        assert!(
            report.checks.iter().any(|c| c.metric == judged),
            "no check '{judged}'"
        );
    }

    let fd = &report.failure_detection;
    assert_eq!(fd.nodes, config.failure_nodes);
    assert_eq!(fd.detected_by.len(), config.failure_nodes - 1);
    assert!(fd.detected_by.iter().all(|d| d.node != fd.killed));
    positive("failure detection", fd.secs);
    for d in &fd.detected_by {
        positive(&format!("detection by {}", d.node), d.secs);
        assert!(d.secs <= fd.secs);
    }

    let cv = &report.convergence;
    assert_eq!(cv.nodes, config.convergence_nodes);
    positive("convergence from last spawn", cv.from_last_spawn_secs);
    assert!(cv.from_first_spawn_secs >= cv.from_last_spawn_secs);

    let text = report.to_string();
    println!("{text}");
    for needle in [
        "call p50, 64 B",
        "one-way, 4096 B",
        "one-way, 64 B vs in-proc.",
        "failure detection",
        "convergence",
    ] {
        assert!(text.contains(needle), "'{needle}' not in:\n{text}");
    }
    // 2 latency checks per payload, 1 throughput check per payload, failure detection,
    // convergence: each a table row ending in its verdict
    let mut names: Vec<String> = Vec::new();
    for b in &config.payloads {
        names.push(format!("call p50 {b} B"));
        names.push(format!("call p99 {b} B"));
    }
    for &b in &config.payloads {
        names.push(if b <= bench::cluster::SMALL_PAYLOAD {
            format!("one-way {b} B vs in-process")
        } else {
            format!("one-way {b} B")
        });
    }
    names.extend(["failure detection".into(), "convergence".into()]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    common::assert_checks(&report.checks, &text, &names);
    let json = serde_json::to_value(&report).expect("the report serialises");
    assert!(json["failure_detection"]["secs"].is_number());
    assert!(json["latency"][0]["ratio_p50"].is_number());
}
