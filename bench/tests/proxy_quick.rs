//! The proxy benchmark runs end to end in quick mode (a real Envoy: it fails without one) and
//! reports sane numbers.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_proxy_bench_reports_every_measure() {
    assert!(
        bench::procs::locate_dctl().is_some(),
        "no dctl binary (build the workspace first)"
    );
    let report = bench::proxy::run_proxy(&bench::proxy::ProxyConfig::quick())
        .await
        .unwrap();
    assert_eq!(report.runs, 5);
    assert!(report.routed_p50_ms > 0.0 && report.routed_p50_ms <= report.routed_p99_ms);
    assert!(report.listed_p50_ms > 0.0 && report.listed_p50_ms <= report.listed_p99_ms);
    assert!(report.kill_detected_ms > 0.0 && report.kill_last_request_ms.is_finite());
    assert!(report.build_ms > 0.0 && report.build_ms <= report.build_ack_ms);
    let text = report.to_string();
    use bench::proxy::{BUILD_ACK_MAX, LAST_REQUEST, ROUTED_P99};
    common::assert_checks(
        &report.checks,
        &text,
        &[ROUTED_P99, LAST_REQUEST, BUILD_ACK_MAX],
    );
}
