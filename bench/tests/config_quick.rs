//! The live-config benchmark runs end to end in quick mode and reports sane numbers.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_config_bench_reports_apply_latencies() {
    assert!(
        bench::config::locate_hello().is_some(),
        "no hello binary next to dctl: build the workspace first (cargo build --workspace)"
    );
    let report = bench::config::run_config(&bench::config::ConfigBenchConfig::quick())
        .await
        .unwrap();
    assert_eq!(report.changes, 5);
    assert!(report.applied_p50_ms > 0.0 && report.applied_p50_ms <= report.applied_p99_ms);
    assert!(report.put_p50_ms > 0.0 && report.ratio_p50.is_finite());
    let text = report.to_string();
    assert!(text.contains("live config"), "{text}");
    common::assert_checks(&report.checks, &text, &[bench::config::APPLIED_P99]);
}
