//! Smoke test of the `memory` benchmark in quick mode (needs `dctl`: fails without it): the
//! report has both nodes with positive figures, and every target row with a verdict.

mod common;

use bench::memory::{run_memory, MemoryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_quick_report_is_complete() {
    let cfg = MemoryConfig::quick();
    let report = run_memory(&cfg).await.expect("the quick memory bench runs");
    assert_eq!(report.nodes.len(), cfg.peers + 1);
    assert!(report.nodes[0].spawning);
    assert!(report.nodes[1..].iter().all(|n| !n.spawning));
    for n in &report.nodes {
        assert!(n.rss_before > 0.0 && n.rss_after > 0.0, "{n:?}");
        assert!(
            n.idle_cpu_percent.is_finite() && n.idle_cpu_percent >= 0.0,
            "{n:?}"
        );
        assert!(n.bytes_per_actor.is_finite(), "{n:?}");
    }
    // the spawning node grew with the actors
    assert!(
        report.nodes[0].bytes_per_actor > 0.0,
        "{:?}",
        report.nodes[0]
    );
    for x in [
        report.spawn_rate_first,
        report.spawn_rate_last,
        report.spawn_secs,
        report.tree_snapshot_secs,
    ] {
        assert!(x.is_finite() && x > 0.0, "{report:?}");
    }
    let text = report.to_string();
    eprintln!("{text}");
    common::assert_checks(
        &report.checks,
        &text,
        &[
            "other nodes: bytes per remote actor (worst)",
            "other nodes: MB per 100 000 remote actors (worst)",
            "spawn rate, last 1 000 / first 1 000",
            "idle CPU per node, % of a core (worst)",
        ],
    );
}
