//! Smoke test of the `kv` benchmark in quick mode: our 3-node KV store (`dctl` processes) and a
//! 3-member etcd cluster (Debian's `etcd-server`, installed by the README's test command) both
//! run end to end through the `etcd-client` crate, and the report is complete. Fails, not skips,
//! when `dctl` or etcd is missing.

mod common;

use bench::kv::{run_kv, KvConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_quick_measures_both_systems_and_prints_every_target() {
    let report = run_kv(&KvConfig::quick())
        .await
        .expect("the quick kv bench runs (needs dctl and etcd-server)");
    let text = report.to_string();
    eprintln!("{text}");
    assert_eq!(report.levels.len(), 1, "{text}");
    let level = &report.levels[0];
    let etcd = level.etcd.as_ref().expect("the etcd side ran");
    for side in [&level.draft, etcd] {
        assert_eq!(side.put_ops.values.len(), report.rounds, "{text}");
        for r in [
            &side.put_ops,
            &side.put_p99_ns,
            &side.get_ops,
            &side.get_p99_ns,
        ] {
            assert!(r.min > 0.0 && r.max.is_finite(), "{}: {r:?}", side.system);
        }
    }
    assert!(
        report.rounds >= 3,
        "alternating rounds, at least 3 per side"
    );
    common::assert_checks(
        &level.targets,
        &text,
        &["put throughput", "put p99", "range throughput", "range p99"],
    );
}
