//! Smoke test of the `restart` benchmark in quick mode: both sides run end to end (Erlang's
//! `escript` is required: the test fails without it) and the report is sane.

mod common;

use bench::restart::{run_restart, RestartConfig};

#[tokio::test]
async fn restart_quick_produces_a_sane_report() {
    let report = run_restart(&RestartConfig::quick())
        .await
        .expect("the quick restart bench runs (needs erlang-base)");
    assert_eq!(report.ours_p50.values.len(), 2);
    assert_eq!(report.erlang_p50.values.len(), 2);
    for v in [
        &report.ours_p50,
        &report.ours_p99,
        &report.erlang_p50,
        &report.erlang_p99,
    ] {
        assert!(v.min > 0.0, "{report:?}");
    }
    assert!(report.ours_p99.median >= report.ours_p50.median);
    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    common::assert_checks(&report.checks, &text, &["p50", "p99"]);
}
