//! Smoke test of the `broker` benchmark in quick mode: our broker on 3 `dctl` processes and a
//! 3-server `nats-server` cluster (Debian's package, installed by the README's test command)
//! both run their alternating rounds end to end, and the report is complete. Fails, not skips,
//! when `dctl` or nats-server is missing.

mod common;

use bench::broker::{run_broker, BrokerConfig, TARGETS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_quick_measures_both_systems_in_alternating_rounds() {
    let cfg = BrokerConfig::quick();
    let report = run_broker(&cfg)
        .await
        .expect("the quick broker bench runs (needs dctl and nats-server)");
    let text = report.to_string();
    eprintln!("{text}");
    for side in [&report.ours, &report.nats] {
        for r in [&side.events_per_sec, &side.p50_ns, &side.p99_ns] {
            assert_eq!(r.values.len(), cfg.rounds, "{text}");
            assert!(r.min > 0.0 && r.max.is_finite(), "{r:?}");
        }
        assert!(side.p99_ns.median >= side.p50_ns.median, "{text}");
    }
    assert!(report.warm_up_events * 20 >= cfg.events * cfg.rounds as u64);
    common::assert_checks(&report.checks, &text, &TARGETS);
}
