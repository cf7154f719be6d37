//! The parameters of `bench cluster`.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use serde::Serialize;

/// Where the raw-TCP baseline server runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RawServerMode {
    /// On a thread of the benchmark process, with its own single-threaded tokio runtime.
    Thread,
    /// As `EXE raw-server`, a child process (`EXE` is the `bench` binary).
    Process(PathBuf),
}

/// Parameters of the `cluster` benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// Payload sizes in bytes (each at least 2: the payload is a JSON string of that length).
    pub payloads: Vec<usize>,
    /// Sequential calls per latency run.
    pub calls: usize,
    /// One-way messages per throughput run.
    pub messages: u64,
    /// Measured rounds; each runs raw then runtime for every payload size.
    pub rounds: usize,
    /// Calls per side and payload size before measuring.
    pub warmup_calls: usize,
    /// One-way messages per side and payload size before measuring.
    pub warmup_messages: u64,
    /// Nodes (child processes) of the failure-detection cluster (at least 2).
    pub failure_nodes: usize,
    /// How long the failure-detection cluster runs after converging, before the kill (so the
    /// phi-accrual detector has heartbeat samples).
    pub failure_settle: Duration,
    /// Poll interval of the survivors' `/cluster` after the kill.
    pub failure_poll: Duration,
    /// Nodes (child processes) of the convergence cluster (at least 2).
    pub convergence_nodes: usize,
    /// Poll interval of every node's `/cluster` while converging.
    pub convergence_poll: Duration,
    /// How long any wait (a node up, a session, detection, convergence) may take before the
    /// benchmark gives up with an error.
    pub wait_limit: Duration,
    /// Timeout of every call (a safety net only).
    pub call_timeout: Duration,
    /// The `dctl` binary; `None` finds it with [`locate_dctl`].
    pub dctl: Option<PathBuf>,
    /// Where the raw-TCP server runs.
    pub raw_server: RawServerMode,
    /// Name of the benchmark's own node (A).
    pub node_name: String,
    /// Cookie of A and B. The other clusters use cookies derived from it, so they cannot merge.
    pub cookie: String,
    /// Print progress lines to stderr while running.
    pub progress: bool,
}

impl Default for ClusterConfig {
    /// The full benchmark: 64 B and 4 KiB, 10,000 calls and 50,000 messages per run, 5 rounds,
    /// 3 nodes for failure detection, 10 for convergence.
    fn default() -> Self {
        ClusterConfig {
            payloads: vec![64, 4096],
            calls: 10_000,
            messages: 50_000,
            rounds: 5,
            warmup_calls: 1_000,
            warmup_messages: 5_000,
            failure_nodes: 3,
            failure_settle: Duration::from_secs(2),
            failure_poll: Duration::from_millis(20),
            convergence_nodes: 10,
            convergence_poll: Duration::from_millis(50),
            wait_limit: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
            dctl: None,
            raw_server: RawServerMode::Thread,
            node_name: "bench-a".into(),
            cookie: "draft-cookie".into(),
            progress: false,
        }
    }
}

impl ClusterConfig {
    /// A smoke-test configuration: few calls and messages, one round, 4 nodes for convergence.
    pub fn quick() -> Self {
        ClusterConfig {
            calls: 200,
            messages: 2_000,
            rounds: 1,
            warmup_calls: 50,
            warmup_messages: 200,
            failure_settle: Duration::from_millis(500),
            convergence_nodes: 4,
            wait_limit: Duration::from_secs(30),
            ..ClusterConfig::default()
        }
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.payloads.is_empty() || self.calls == 0 || self.messages == 0 || self.rounds == 0 {
            bail!("payloads, calls, messages and rounds must all be non-empty / at least 1");
        }
        if let Some(p) = self
            .payloads
            .iter()
            .find(|&&p| !(2..=16 << 20).contains(&p))
        {
            bail!("payload size {p} must be between 2 bytes and 16 MiB");
        }
        if self.failure_nodes < 2 || self.convergence_nodes < 2 {
            bail!("the failure-detection and convergence clusters need at least 2 nodes");
        }
        Ok(())
    }
}

/// Print a progress line to stderr if `config.progress`.
pub(super) fn progress(config: &ClusterConfig, line: impl FnOnce() -> String) {
    if config.progress {
        eprintln!("{}", line());
    }
}

/// A cookie of its own for one measurement's cluster (`what`) of this process.
pub(super) fn cookie_for(config: &ClusterConfig, what: &str) -> String {
    format!("{}-{what}-{}", config.cookie, std::process::id())
}
