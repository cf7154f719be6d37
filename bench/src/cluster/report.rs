//! The result of `bench cluster` and its tables.

use std::{fmt, path::PathBuf};

use serde::Serialize;

use crate::{checks::Checks, stats::Rounds};

use super::config::ClusterConfig;

/// Latency of one side at one payload size: medians over the rounds, nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySide {
    /// p50 per round.
    pub p50_ns: Rounds,
    /// p99 per round.
    pub p99_ns: Rounds,
    /// Mean per round.
    pub mean_ns: Rounds,
}

/// Cross-node call latency at one payload size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyRow {
    /// Payload bytes (request and reply each).
    pub payload_bytes: usize,
    /// Raw TCP echo.
    pub raw: LatencySide,
    /// Runtime: A → echo on B.
    pub runtime: LatencySide,
    /// Runtime/raw of the p50 medians.
    pub ratio_p50: f64,
    /// Runtime/raw of the p99 medians.
    pub ratio_p99: f64,
    /// Runtime/raw of the mean medians.
    pub ratio_mean: f64,
}

/// One-way throughput at one payload size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThroughputRow {
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Messages per run.
    pub messages: u64,
    /// Raw TCP, messages per second per round.
    pub raw_msgs_per_s: Rounds,
    /// Runtime, messages per second per round.
    pub runtime_msgs_per_s: Rounds,
    /// Raw TCP flushing after every frame (no write batching), messages per second per round;
    /// informational.
    pub raw_unbatched_msgs_per_s: Rounds,
    /// Bare ractor in this process: the same payloads sent with `send_message` to an actor
    /// spawned with `Actor::spawn`, then one call; messages per second per round.
    pub in_process_msgs_per_s: Rounds,
    /// Runtime cross-node / bare ractor in-process, of the medians.
    pub ratio_in_process: f64,
    /// Raw TCP, median MB/s of payload (10^6 bytes).
    pub raw_mb_per_s: f64,
    /// Runtime, median MB/s of payload.
    pub runtime_mb_per_s: f64,
    /// Runtime/raw of the medians.
    pub ratio: f64,
}

/// When one survivor reported the killed node dead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The survivor.
    pub node: String,
    /// Seconds from the kill.
    pub secs: f64,
}

/// Failure detection after `kill -9`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureDetection {
    /// Cluster size before the kill.
    pub nodes: usize,
    /// The killed node.
    pub killed: String,
    /// Per survivor.
    pub detected_by: Vec<Detection>,
    /// Seconds until every survivor reported it dead (the slowest).
    pub secs: f64,
}

/// Convergence of a freshly started cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// Cluster size.
    pub nodes: usize,
    /// Seconds from spawning the last process until all nodes saw all alive and connected.
    pub from_last_spawn_secs: f64,
    /// Seconds from spawning the first process until then.
    pub from_first_spawn_secs: f64,
    /// Poll interval, seconds (the resolution of the measurement).
    pub poll_secs: f64,
}

/// The result of [`run_cluster`]. `Display` prints it as tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterReport {
    /// The configuration it ran with.
    pub config: ClusterConfig,
    /// The `dctl` binary the nodes ran.
    pub dctl: PathBuf,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// Where the raw server ran: `"child process"` or `"thread"`.
    pub raw_server: String,
    /// Call latency per payload size.
    pub latency: Vec<LatencyRow>,
    /// One-way throughput per payload size.
    pub throughput: Vec<ThroughputRow>,
    /// Failure detection.
    pub failure_detection: FailureDetection,
    /// Convergence.
    pub convergence: Convergence,
    /// Every targeted metric with its verdict.
    pub checks: Checks,
}

impl ClusterReport {
    /// Whether every check met its target.
    pub fn all_pass(&self) -> bool {
        self.checks.all_pass()
    }
}

// ------------------------------------------------------------------ display -----------------

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "cluster: node A = this process (runtime::Node), node B = `dctl node start` child; raw TCP baseline server: {}",
            self.raw_server
        )?;
        writeln!(
            f,
            "         per payload and round: {} sequential calls, {} one-way messages; {} rounds alternating raw/runtime (medians), {} CPUs",
            c.calls, c.messages, c.rounds, self.cpus
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<28} {:>12} {:>12} {:>12} {:>9} {:>8}",
            "metric", "raw TCP", "runtime", "runtime/raw", "target", "verdict"
        )?;
        writeln!(f, "{}", "-".repeat(86))?;
        let verdict = |metric: &str| self.checks.cells(metric, "info");
        let mut row = |label: String, check: String, raw: f64, rt: f64, ratio: f64, d: usize| {
            let (target, v) = verdict(&check);
            writeln!(
                f,
                "{label:<28} {raw:>12.d$} {rt:>12.d$} {ratio:>12.3} {target:>9} {v:>8}"
            )
        };
        for r in &self.latency {
            let b = r.payload_bytes;
            row(
                format!("call p50, {b} B (us)"),
                format!("call p50 {b} B"),
                r.raw.p50_ns.median / 1e3,
                r.runtime.p50_ns.median / 1e3,
                r.ratio_p50,
                1,
            )?;
            row(
                format!("call p99, {b} B (us)"),
                format!("call p99 {b} B"),
                r.raw.p99_ns.median / 1e3,
                r.runtime.p99_ns.median / 1e3,
                r.ratio_p99,
                1,
            )?;
            row(
                format!("call mean, {b} B (us)"),
                String::new(),
                r.raw.mean_ns.median / 1e3,
                r.runtime.mean_ns.median / 1e3,
                r.ratio_mean,
                1,
            )?;
        }
        for r in &self.throughput {
            let b = r.payload_bytes;
            row(
                format!("one-way, {b} B (k msg/s)"),
                format!("one-way {b} B"),
                r.raw_msgs_per_s.median / 1e3,
                r.runtime_msgs_per_s.median / 1e3,
                r.ratio,
                1,
            )?;
            row(
                format!("one-way, {b} B (MB/s)"),
                String::new(),
                r.raw_mb_per_s,
                r.runtime_mb_per_s,
                r.runtime_mb_per_s / r.raw_mb_per_s,
                1,
            )?;
            row(
                format!("one-way, {b} B vs in-proc."),
                format!("one-way {b} B vs in-process"),
                r.in_process_msgs_per_s.median / 1e3,
                r.runtime_msgs_per_s.median / 1e3,
                r.ratio_in_process,
                1,
            )?;
            let u = &r.raw_unbatched_msgs_per_s;
            row(
                "  raw write/frame (k msg/s)".to_string(),
                String::new(),
                u.median / 1e3,
                r.runtime_msgs_per_s.median / 1e3,
                r.runtime_msgs_per_s.median / u.median,
                1,
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<54} {:>9} {:>9} {:>8}",
            "membership", "seconds", "target", "verdict"
        )?;
        writeln!(f, "{}", "-".repeat(83))?;
        let fd = &self.failure_detection;
        let (target, v) = verdict("failure detection");
        writeln!(
            f,
            "{:<54} {:>9.3} {:>9} {:>8}",
            format!(
                "failure detection: {} nodes, kill -9 {}",
                fd.nodes, fd.killed
            ),
            fd.secs,
            target,
            v
        )?;
        for d in &fd.detected_by {
            writeln!(
                f,
                "{:<54} {:>9.3} {:>9} {:>8}",
                format!("  reported dead by {}", d.node),
                d.secs,
                "-",
                "info"
            )?;
        }
        let cv = &self.convergence;
        let (target, v) = verdict("convergence");
        writeln!(
            f,
            "{:<54} {:>9.3} {:>9} {:>8}",
            format!("convergence: {} nodes, from last spawn", cv.nodes),
            cv.from_last_spawn_secs,
            target,
            v
        )?;
        writeln!(
            f,
            "{:<54} {:>9.3} {:>9} {:>8}",
            format!("convergence: {} nodes, from first spawn", cv.nodes),
            cv.from_first_spawn_secs,
            "-",
            "info"
        )?;
        writeln!(
            f,
            "(polled every {:.0} ms after the kill, every {:.0} ms while converging)",
            c.failure_poll.as_secs_f64() * 1e3,
            cv.poll_secs * 1e3
        )?;
        writeln!(f)?;
        write!(f, "{}", self.checks.overall())
    }
}
