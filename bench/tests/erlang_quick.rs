//! Smoke test of the `erlang` benchmark in quick mode: both sides run end to end (Erlang's
//! `escript` and `dctl` are required: the test fails without them) and the report has every
//! row, each with positive finite figures on both sides and a verdict where a target is set.

mod common;

use bench::erlang::{run_erlang, ErlangConfig, METRICS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_quick_report_is_complete() {
    let report = run_erlang(&ErlangConfig::quick())
        .await
        .expect("the quick erlang bench runs (needs erlang-base and dctl)");
    let names: Vec<&str> = report.rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(names, METRICS);
    for r in &report.rows {
        for v in [&r.ours, &r.erlang] {
            assert!(
                v.values.iter().all(|x| x.is_finite() && *x > 0.0),
                "{}: {v:?}",
                r.metric
            );
        }
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{}", r.metric);
    }
    assert!(report.erlang_process_bytes > 0.0);
    let text = report.to_string();
    eprintln!("{text}");
    let targeted = [METRICS[0], METRICS[3], METRICS[4], METRICS[6]];
    common::assert_checks(&report.checks, &text, &targeted);
    for m in METRICS {
        assert!(text.contains(m), "{m} missing from:\n{text}");
    }
}
