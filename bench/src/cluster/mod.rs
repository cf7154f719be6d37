//! The `cluster` benchmark: cross-node messaging against raw TCP, failure detection and
//! membership convergence, with real node processes on loopback.
//!
//! ractor keeps process-global registries, so one OS process is one node: the benchmark process
//! is node **A** (a [`runtime::Node`]); every other node is a `dctl node start` child process
//! (see [`crate::procs`]). Four measurements, in one run:
//!
//! 1. **Cross-node call round trip** — A calls an `echo` actor spawned on child node B
//!    ([`Node::spawn_on`]) through the typed path (`ActorRef<JsonMsg>::call`), sequentially,
//!    with a JSON payload of each configured size (64 B and 4 KiB by default); p50, p99, mean.
//!    Baseline: a raw tokio TCP echo server with length-prefixed frames ([`crate::rawtcp`]), in a
//!    child process by default, same payloads, sequential request/response on one connection.
//!    Target: runtime/raw ≤ 2× at p50 and p99.
//! 2. **One-way throughput** — `messages` `JsonMsg::Tell`s to the remote echo, then one
//!    `JsonMsg::Call` to flush (order is kept per sender); messages/s and MB/s of payload. Baseline:
//!    the same frames streamed over raw TCP with buffered writes (as ractor_cluster batches its
//!    writes), then one acknowledged frame. Target: runtime/raw ≥ 0.5×. For information, also raw
//!    TCP with one write per frame (no batching).
//! 3. **Failure detection** — a cluster of `failure_nodes` child processes converges; the last is
//!    killed with SIGKILL; the survivors' admin `GET /cluster` is polled every `failure_poll`
//!    until each reports it `dead`. Target: < 5 s (the slowest survivor).
//! 4. **Convergence** — `convergence_nodes` child processes are spawned (the first without seed,
//!    the others seeded with its gossip address); time from the spawn of the last one until every
//!    node's `/cluster` shows all of them alive and connected. Target: < 5 s.
//!
//! Messaging runs alternate raw and runtime for `rounds` rounds after a warm-up; the report gives
//! medians over the rounds and the ratios of the medians. Targets are reported (PASS/MISS), never
//! asserted. Every child process is killed at the end, also on errors.
//!
//! Files: [`config`], [`messaging`] (A <-> B against raw TCP), [`membership`] (failure
//! detection, convergence), [`report`] (the result and its tables); this file runs them in turn
//! and checks the targets.

pub mod config;
pub mod membership;
pub mod messaging;
pub mod report;

pub use crate::stats::Limit;
pub use config::{ClusterConfig, RawServerMode};
pub(crate) use membership::{poll_nodes, spawn_cluster, wait_converged_within};
pub use messaging::json_payload;
pub(crate) use messaging::{runtime_latency, runtime_stream, wait_lane};
pub use report::{
    ClusterReport, Convergence, Detection, FailureDetection, LatencyRow, LatencySide, ThroughputRow,
};

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};

use crate::{checks::Checks, procs::locate_dctl};

use membership::{convergence, failure_detection};
use messaging::messaging;

/// Target for the call-latency ratios runtime/raw at p50 and p99 (at most).
pub const CALL_RATIO_TARGET: f64 = 1.5;
/// Target for the one-way throughput ratio runtime/raw (at least), for payloads above
/// [`SMALL_PAYLOAD`]: there the wire is the limit.
pub const THROUGHPUT_RATIO_TARGET: f64 = 0.5;
/// Target for small payloads' one-way rate, cross-node / bare ractor in-process (at least):
/// for small messages the limit is delivery into an actor's mailbox, not the wire (raw TCP
/// moving 64 B frames that its receiver only parses is an information row).
pub const IN_PROCESS_RATIO_TARGET: f64 = 0.8;
/// Payloads up to this many bytes are judged against in-process delivery, larger ones against
/// raw TCP.
pub const SMALL_PAYLOAD: usize = 1024;
/// Target for failure detection, seconds (below).
pub const FAILURE_DETECTION_TARGET_SECS: f64 = 5.0;
/// Target for convergence from the last spawn, seconds (below).
pub const CONVERGENCE_TARGET_SECS: f64 = 5.0;

/// Run the `cluster` benchmark. Needs the `dctl` binary (see [`locate_dctl`]) and a tokio
/// runtime (multi-threaded, for representative numbers). Starts node A in this process, so no
/// other node may run in the process. Every child process is killed before it returns.
pub async fn run_cluster(config: &ClusterConfig) -> anyhow::Result<ClusterReport> {
    config.validate()?;
    let dctl = match &config.dctl {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => bail!("the dctl binary {} does not exist", p.display()),
        None => locate_dctl().ok_or_else(|| {
            anyhow!(
                "cannot find the dctl binary: build it with `cargo build --release -p dctl` or \
                 set {}",
                crate::procs::DCTL_BIN_ENV
            )
        })?,
    };
    let config = config.clone();
    tokio::spawn(async move { run_task(config, dctl).await })
        .await
        .context("the benchmark task panicked")?
}

async fn run_task(config: ClusterConfig, dctl: PathBuf) -> anyhow::Result<ClusterReport> {
    let (raw_kind, latency, throughput) = messaging(&config, &dctl)
        .await
        .context("cross-node messaging")?;
    let failure_detection = failure_detection(&config, &dctl)
        .await
        .context("failure detection")?;
    let convergence = convergence(&config, &dctl).await.context("convergence")?;

    let mut checks = Checks::new();
    let mut check = |metric: String, value: f64, target: Limit| {
        checks.add(metric, value, target);
    };
    for row in &latency {
        let b = row.payload_bytes;
        check(
            format!("call p50 {b} B"),
            row.ratio_p50,
            Limit::AtMost(CALL_RATIO_TARGET),
        );
        check(
            format!("call p99 {b} B"),
            row.ratio_p99,
            Limit::AtMost(CALL_RATIO_TARGET),
        );
    }
    for row in &throughput {
        if row.payload_bytes <= SMALL_PAYLOAD {
            check(
                format!("one-way {} B vs in-process", row.payload_bytes),
                row.ratio_in_process,
                Limit::AtLeast(IN_PROCESS_RATIO_TARGET),
            );
        } else {
            check(
                format!("one-way {} B", row.payload_bytes),
                row.ratio,
                Limit::AtLeast(THROUGHPUT_RATIO_TARGET),
            );
        }
    }
    check(
        "failure detection".into(),
        failure_detection.secs,
        Limit::Below(FAILURE_DETECTION_TARGET_SECS),
    );
    check(
        "convergence".into(),
        convergence.from_last_spawn_secs,
        Limit::Below(CONVERGENCE_TARGET_SECS),
    );

    Ok(ClusterReport {
        config,
        dctl,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        raw_server: raw_kind.to_string(),
        latency,
        throughput,
        failure_detection,
        convergence,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_of_the_exact_size() {
        for n in [2, 3, 64, 4096] {
            let p = json_payload(n);
            assert_eq!(p.len(), n);
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert!(v.is_string());
        }
    }

    #[test]
    fn limits() {
        assert!(Limit::Below(5.0).met_by(4.99));
        assert!(!Limit::Below(5.0).met_by(5.0));
        assert!(Limit::AtMost(2.0).met_by(2.0));
        assert!(Limit::AtLeast(0.5).met_by(0.5));
        assert_eq!(Limit::Below(5.0).to_string(), "< 5.00");
    }

    #[test]
    fn config_validation() {
        assert!(ClusterConfig::default().validate().is_ok());
        assert!(ClusterConfig::quick().validate().is_ok());
        let bad = ClusterConfig {
            payloads: vec![1],
            ..ClusterConfig::quick()
        };
        assert!(bad.validate().is_err());
        let bad = ClusterConfig {
            convergence_nodes: 1,
            ..ClusterConfig::quick()
        };
        assert!(bad.validate().is_err());
    }
}
