//! The registry benchmark runs end to end in quick mode and reports sane numbers.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_registry_bench_reports_propagation_times() {
    assert!(
        bench::procs::locate_dctl().is_some(),
        "no dctl binary: build it with `cargo build -p dctl`, or set DCTL_BIN"
    );
    let report = bench::registry::run_registry(&bench::registry::RegistryConfig::quick())
        .await
        .unwrap();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(row.nodes, 3);
    assert!(row.p50_ms > 0.0 && row.p50_ms <= row.max_ms && row.max_ms.is_finite());
    let text = report.to_string();
    assert!(text.contains("registry propagation"), "{text}");
    common::assert_checks(&report.checks, &text, &["3 nodes: max (ms)"]);
}
