//! The result of `bench proxy` and its table.

use std::fmt;

use serde::Serialize;

use crate::checks::Checks;

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyReport {
    /// Runs of register -> routed.
    pub runs: usize,
    /// register -> routed through Envoy on another node: p50, p99 (ms).
    pub routed_p50_ms: f64,
    /// p99 (ms).
    pub routed_p99_ms: f64,
    /// register -> listed on that other node (the peer): p50 (ms).
    pub listed_p50_ms: f64,
    /// p99 (ms).
    pub listed_p99_ms: f64,
    /// kill -9 -> the failure detector says dead (ms).
    pub kill_detected_ms: f64,
    /// kill -9 -> the last request the killed node's instance got (ms).
    pub kill_last_request_ms: f64,
    /// Services in the big snapshot.
    pub services: usize,
    /// Big snapshot build time, median over the rounds (ms).
    pub build_ms: f64,
    /// Big snapshot build + push until Envoy ACKed every type, median (ms).
    pub build_ack_ms: f64,
    /// Worst round of build + ACK (ms).
    pub build_ack_max_ms: f64,
    /// The targets: routed p99 <= 100 ms, last request <= 100 ms after detection, build +
    /// ACK < 1 s.
    pub checks: Checks,
}

/// The name of [`ProxyReport::checks`]' register -> routed target.
pub const ROUTED_P99: &str = "register -> routed p99 (ms)";
/// The name of the target on the last request a killed node got after it was seen dead.
pub const LAST_REQUEST: &str = "last request after detection (ms)";
/// The name of the snapshot build + ACK target.
pub const BUILD_ACK_MAX: &str = "build + ACK max (ms)";

impl ProxyReport {
    fn verdict(&self, check: &str) -> &'static str {
        self.checks.cells(check, "-").1
    }
}

impl fmt::Display for ProxyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "proxy: registry + routes -> Envoy over ADS")?;
        writeln!(
            f,
            "{:<44} {:>10} {:>10} {:>8} {:>8}",
            "measure", "p50 (ms)", "p99 (ms)", "target", "verdict"
        )?;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10.1} {:>8} {:>8}",
            format!("register -> routed via another node ({} runs)", self.runs),
            self.routed_p50_ms,
            self.routed_p99_ms,
            "p99<=100",
            self.verdict(ROUTED_P99)
        )?;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10.1} {:>8} {:>8}",
            "  peer: register -> listed on that node",
            self.listed_p50_ms,
            self.listed_p99_ms,
            "-",
            "-"
        )?;
        writeln!(
            f,
            "{:<44} {:>10.2}x {:>9.2}x",
            "  ratio routed / listed",
            self.routed_p50_ms / self.listed_p50_ms.max(0.001),
            self.routed_p99_ms / self.listed_p99_ms.max(0.001)
        )?;
        let margin = self.kill_last_request_ms - self.kill_detected_ms;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10} {:>8} {:>8}",
            "kill -9 -> detected dead", self.kill_detected_ms, "", "-", "-"
        )?;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10} {:>8} {:>8}",
            format!("kill -9 -> last request to it ({margin:+.0} ms)"),
            self.kill_last_request_ms,
            "",
            "det+100",
            self.verdict(LAST_REQUEST)
        )?;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10} {:>8} {:>8}",
            format!("{} services x 3 instances: build", self.services),
            self.build_ms,
            "",
            "-",
            "-"
        )?;
        writeln!(
            f,
            "{:<44} {:>10.1} {:>10.1} {:>8} {:>8}",
            "  build + push until Envoy ACKed all (max)",
            self.build_ack_ms,
            self.build_ack_max_ms,
            "<1000",
            self.verdict(BUILD_ACK_MAX)
        )
    }
}
