//! The registry benchmark runs end to end in quick mode and reports sane numbers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_registry_bench_reports_propagation_times() {
    if bench::procs::locate_dctl().is_none() {
        eprintln!("SKIPPED: no dctl binary (build the workspace first)");
        return;
    }
    let report = bench::registry::run_registry(&bench::registry::RegistryConfig::quick())
        .await
        .unwrap();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(row.nodes, 3);
    assert!(row.p50_ms > 0.0 && row.p50_ms <= row.max_ms && row.max_ms.is_finite());
    assert!(report.to_string().contains("registry propagation"));
}
