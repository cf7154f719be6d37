//! Smoke test of the `scale` benchmark in quick mode (3 and 5 `dctl` nodes; needs `dctl`: fails
//! without it): a row per size with real figures (gossip moved bytes, the nodes used CPU, a
//! kill was seen), the growth figures, and every target row with a verdict.

mod common;

use bench::scale::{run_scale, ScaleConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_quick_report_is_complete() {
    let cfg = ScaleConfig::quick();
    let report = run_scale(&cfg).await.expect("the quick scale bench runs");
    let sizes: Vec<usize> = report.rows.iter().map(|r| r.nodes).collect();
    assert_eq!(sizes, cfg.sizes);
    for r in &report.rows {
        assert!(
            r.convergence_secs.is_finite() && r.convergence_secs >= 0.0,
            "{r:?}"
        );
        assert!(
            r.detection_secs > 0.0 && r.detection_secs.is_finite(),
            "{r:?}"
        );
        assert!(
            r.gossip_bytes_per_s_mean > 0.0,
            "gossip moved no bytes: {r:?}"
        );
        assert!(
            r.gossip_bytes_per_s_max >= r.gossip_bytes_per_s_mean,
            "{r:?}"
        );
        assert!(r.cpu_percent_mean > 0.0, "{r:?}");
        assert!(r.cpu_percent_max >= r.cpu_percent_mean, "{r:?}");
    }
    assert!((report.n_ratio - 5.0 / 3.0).abs() < 1e-9);
    assert!(report.gossip_growth.is_finite() && report.gossip_growth > 0.0);
    assert!(report.cpu_growth.is_finite() && report.cpu_growth > 0.0);
    let text = report.to_string();
    eprintln!("{text}");
    common::assert_checks(
        &report.checks,
        &text,
        &[
            "convergence, 5 nodes (s)",
            "kill -9 -> dead on all, 5 nodes (s)",
            "gossip bytes/s per node, growth 3->5 nodes (vs N x1.7)",
        ],
    );
}
