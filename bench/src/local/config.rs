//! The parameters of `bench local`.

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

/// Parameters of the `local` benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalConfig {
    /// One-way messages per throughput run.
    pub messages: u64,
    /// Sequential calls per latency run.
    pub calls: usize,
    /// Measured rounds; each round runs bare then runtime, throughput then latency.
    pub rounds: usize,
    /// One-way messages sent to each side before measuring.
    pub warmup_messages: u64,
    /// Calls made to each side before measuring.
    pub warmup_calls: usize,
    /// Timeout of every call, including the flush after a throughput run (a safety net only).
    pub call_timeout: Duration,
    /// Name of the [`runtime::Node`] started for the runtime side (unique within the process).
    pub node_name: String,
    /// Print progress lines to stderr while running.
    pub progress: bool,
}

impl Default for LocalConfig {
    /// The full benchmark: 1,000,000 messages and 100,000 calls per run, 5 rounds.
    fn default() -> Self {
        LocalConfig {
            messages: 1_000_000,
            calls: 100_000,
            rounds: 5,
            warmup_messages: 200_000,
            warmup_calls: 20_000,
            call_timeout: Duration::from_secs(60),
            node_name: "bench".into(),
            progress: false,
        }
    }
}

impl LocalConfig {
    /// A smoke-test configuration that finishes in well under a second.
    pub fn quick() -> Self {
        LocalConfig {
            messages: 20_000,
            calls: 2_000,
            rounds: 2,
            warmup_messages: 2_000,
            warmup_calls: 200,
            ..LocalConfig::default()
        }
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.messages == 0 || self.calls == 0 || self.rounds == 0 {
            bail!("messages, calls and rounds must all be at least 1");
        }
        Ok(())
    }
}
