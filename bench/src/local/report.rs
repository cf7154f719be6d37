//! The result of `bench local` and its tables.

use std::fmt;

use serde::Serialize;

use super::{api::ApiReport, config::LocalConfig};
use crate::{checks::Checks, stats::Rounds};

/// The medians (and per-round values) of one side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideReport {
    /// What was measured: `"bare ractor"` or `"runtime::Node"`.
    pub label: String,
    /// One-way throughput, messages per second.
    pub throughput: Rounds,
    /// Call latency p50, nanoseconds.
    pub p50_ns: Rounds,
    /// Call latency p99, nanoseconds.
    pub p99_ns: Rounds,
    /// Call latency mean, nanoseconds.
    pub mean_ns: Rounds,
}

/// Ratios runtime/bare of the medians over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    /// Throughput runtime/bare (higher is better for the runtime; 1.0 is parity).
    pub throughput: f64,
    /// Call p50 runtime/bare (lower is better for the runtime; 1.0 is parity).
    pub p50: f64,
    /// Call p99 runtime/bare.
    pub p99: f64,
    /// Call mean runtime/bare.
    pub mean: f64,
}

/// The result of [`run_local`]. `Display` prints it as tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalReport {
    /// The configuration it ran with.
    pub config: LocalConfig,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// The bare-ractor side.
    pub bare: SideReport,
    /// The runtime side.
    pub runtime: SideReport,
    /// Ratios runtime/bare of the medians.
    pub ratios: Ratios,
    /// Medians of the per-round ratios runtime/bare (each round's two runs are adjacent in time,
    /// so these cancel slow drift in machine load; informational, the checks use `ratios`).
    pub paired: Ratios,
    /// The runtime side's throughput with its live figures on and off.
    pub stats: StatsReport,
    /// The targeted ratios with their verdicts (throughput, p50, p99, stats on/off).
    pub checks: Checks,
    /// The rest of the API (information rows): `Node::send`, calls by name, spawn rate.
    pub api: ApiReport,
}

/// The cost of the live figures (handler timing, [`Node::set_actor_stats`]): the runtime side's
/// throughput in alternating rounds with them off and on (the order flips every round).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// Throughput with the figures off, messages per second.
    pub off: Rounds,
    /// Throughput with the figures on, messages per second.
    pub on: Rounds,
    /// on / off of the medians (1.0 = free).
    pub ratio: f64,
}

impl LocalReport {
    /// Whether every check met its target.
    pub fn all_pass(&self) -> bool {
        self.checks.all_pass()
    }
}

impl fmt::Display for LocalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "local: runtime::Node vs bare ractor, {} one-way messages + {} sequential calls per run,",
            c.messages, c.calls
        )?;
        writeln!(
            f,
            "       {} rounds alternating bare/runtime (medians shown), warm-up {} messages + {} calls, {} CPUs",
            c.rounds, c.warmup_messages, c.warmup_calls, self.cpus
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<20} {:>14} {:>14} {:>13} {:>9} {:>8}",
            "metric", "bare ractor", "runtime::Node", "runtime/bare", "target", "verdict"
        )?;
        writeln!(f, "{}", "-".repeat(83))?;
        let mut row = |metric: &str,
                       check: &str,
                       unit_scale: f64,
                       decimals: usize,
                       b: &Rounds,
                       r: &Rounds,
                       ratio: f64| {
            let (target, verdict) = self.checks.cells(check, "info");
            writeln!(
                f,
                "{:<20} {:>14.*} {:>14.*} {:>13.3} {:>9} {:>8}",
                metric,
                decimals,
                b.median / unit_scale,
                decimals,
                r.median / unit_scale,
                ratio,
                target,
                verdict
            )
        };
        let (b, r, q) = (&self.bare, &self.runtime, &self.ratios);
        row(
            "throughput (M msg/s)",
            "throughput",
            1e6,
            3,
            &b.throughput,
            &r.throughput,
            q.throughput,
        )?;
        row(
            "call p50 (us)",
            "call p50",
            1e3,
            2,
            &b.p50_ns,
            &r.p50_ns,
            q.p50,
        )?;
        row(
            "call p99 (us)",
            "call p99",
            1e3,
            2,
            &b.p99_ns,
            &r.p99_ns,
            q.p99,
        )?;
        row(
            "call mean (us)",
            "call mean",
            1e3,
            2,
            &b.mean_ns,
            &r.mean_ns,
            q.mean,
        )?;
        let st = &self.stats;
        let (target, verdict) = self.checks.cells("stats on/off", "info");
        writeln!(f)?;
        writeln!(
            f,
            "{:<20} {:>14} {:>14} {:>13} {:>9} {:>8}",
            "live figures", "off", "on", "on/off", "target", "verdict"
        )?;
        writeln!(
            f,
            "{:<20} {:>14.3} {:>14.3} {:>13.3} {:>9} {:>8}",
            "throughput (M msg/s)",
            st.off.median / 1e6,
            st.on.median / 1e6,
            st.ratio,
            target,
            verdict
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<22} {:>12} {:>14} {:>13}   (the rest of the API, {} spawns per run; information)",
            "api", "bare ractor", "runtime::Node", "runtime/bare", self.api.spawns
        )?;
        for row in &self.api.rows {
            writeln!(
                f,
                "{:<22} {:>12.3} {:>14.3} {:>13.3}",
                row.metric, row.bare.median, row.runtime.median, row.ratio
            )?;
        }
        writeln!(f)?;
        writeln!(f, "per round (bare / runtime):")?;
        writeln!(
            f,
            "{:>5} {:>21} {:>7} {:>17} {:>7} {:>17} {:>7}",
            "round", "throughput (M msg/s)", "ratio", "p50 (us)", "ratio", "p99 (us)", "ratio"
        )?;
        for i in 0..b.throughput.values.len() {
            let pair = |x: &Rounds, y: &Rounds, scale: f64, d: usize| {
                (
                    format!(
                        "{:.*} / {:.*}",
                        d,
                        x.values[i] / scale,
                        d,
                        y.values[i] / scale
                    ),
                    y.values[i] / x.values[i],
                )
            };
            let (t, tr) = pair(&b.throughput, &r.throughput, 1e6, 3);
            let (p5, p5r) = pair(&b.p50_ns, &r.p50_ns, 1e3, 2);
            let (p9, p9r) = pair(&b.p99_ns, &r.p99_ns, 1e3, 2);
            writeln!(
                f,
                "{:>5} {:>21} {:>7.3} {:>17} {:>7.3} {:>17} {:>7.3}",
                i + 1,
                t,
                tr,
                p5,
                p5r,
                p9,
                p9r
            )?;
        }
        let p = &self.paired;
        writeln!(
            f,
            "{:>5} {:>21} {:>7.3} {:>17} {:>7.3} {:>17} {:>7.3}",
            "med.", "", p.throughput, "", p.p50, "", p.p99
        )?;
        writeln!(f)?;
        write!(f, "{}", self.checks.overall())
    }
}
