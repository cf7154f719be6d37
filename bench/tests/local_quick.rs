//! Smoke test of the `local` benchmark in quick mode: it runs end to end and produces a
//! well-formed report. No timing assertions (targets are reported, not enforced).

mod common;

use bench::{run_local, LocalConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_quick_produces_a_sane_report() {
    let config = LocalConfig {
        node_name: "bench-quick-test".into(),
        ..LocalConfig::quick()
    };
    let report = run_local(&config)
        .await
        .expect("the quick local bench runs");

    for side in [&report.bare, &report.runtime] {
        assert_eq!(
            side.throughput.values.len(),
            config.rounds,
            "{}",
            side.label
        );
        assert!(side.throughput.median > 0.0, "{}: throughput", side.label);
        assert!(side.throughput.min > 0.0, "{}: throughput", side.label);
        for (what, r) in [
            ("p50", &side.p50_ns),
            ("p99", &side.p99_ns),
            ("mean", &side.mean_ns),
        ] {
            assert!(
                r.median > 0.0 && r.median.is_finite(),
                "{}: {what}",
                side.label
            );
        }
        assert!(
            side.p50_ns.median <= side.p99_ns.median,
            "{}: p50 <= p99",
            side.label
        );
    }
    assert_eq!(report.stats.on.values.len(), config.rounds);
    assert_eq!(report.stats.off.values.len(), config.rounds);
    assert!(report.stats.ratio.is_finite() && report.stats.ratio > 0.0);
    let q = report.ratios;
    for (what, ratio) in [
        ("throughput", q.throughput),
        ("p50", q.p50),
        ("p99", q.p99),
        ("mean", q.mean),
    ] {
        assert!(ratio.is_finite() && ratio > 0.0, "{what} ratio {ratio}");
    }
    let p = report.paired;
    for (what, ratio) in [
        ("paired throughput", p.throughput),
        ("paired p50", p.p50),
        ("paired p99", p.p99),
    ] {
        assert!(ratio.is_finite() && ratio > 0.0, "{what} ratio {ratio}");
    }

    let metrics: Vec<&str> = report.api.rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "Node::send (M msg/s)",
            "call by name p50 (us)",
            "call by name p99 (us)",
            "spawn (actors/s)"
        ]
    );
    for row in &report.api.rows {
        assert_eq!(row.bare.values.len(), config.rounds, "{}", row.metric);
        assert!(
            row.ratio.is_finite() && row.ratio > 0.0 && row.bare.min > 0.0 && row.runtime.min > 0.0,
            "{}: {row:?}",
            row.metric
        );
    }

    let text = report.to_string();
    assert!(
        text.contains("throughput")
            && text.contains("runtime/bare")
            && text.contains("live figures"),
        "{text}"
    );
    common::assert_checks(
        &report.checks,
        &text,
        &["throughput", "call p50", "call p99", "stats on/off"],
    );
    let json = serde_json::to_value(&report).expect("the report serialises");
    assert!(json["ratios"]["throughput"].is_number());
}
