//! `bench`: performance measurements of the actor runtime, one subcommand per benchmark.
//!
//! ```text
//! cargo run --release -p bench -- local            # full run
//! cargo run --release -p bench -- local --quick    # smoke run
//! cargo run --release -p bench -- local --json     # machine-readable report
//! ```

use std::time::Duration;

use bench::{run_local, LocalConfig};
use clap::{Args, Parser, Subcommand};

/// Performance benchmarks of the actor runtime.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The benchmarks. Add new ones (cluster, kv, broker, ...) as further variants.
#[derive(Debug, Subcommand)]
enum Command {
    /// Local one-way throughput and call latency: runtime::Node vs bare ractor.
    Local(LocalArgs),
}

/// Options of `bench local`. Unset sizes take the full (or, with --quick, the smoke) defaults.
#[derive(Debug, Args)]
struct LocalArgs {
    /// Small smoke run (20k messages, 2k calls, 2 rounds) instead of the full benchmark.
    #[arg(long)]
    quick: bool,
    /// One-way messages per throughput run [full default: 1000000].
    #[arg(long, env = "BENCH_MESSAGES")]
    messages: Option<u64>,
    /// Sequential calls per latency run [full default: 100000].
    #[arg(long, env = "BENCH_CALLS")]
    calls: Option<usize>,
    /// Measured rounds, alternating bare and runtime [full default: 5].
    #[arg(long, env = "BENCH_ROUNDS")]
    rounds: Option<usize>,
    /// One-way messages per side before measuring [full default: 200000].
    #[arg(long, env = "BENCH_WARMUP_MESSAGES")]
    warmup_messages: Option<u64>,
    /// Calls per side before measuring [full default: 20000].
    #[arg(long, env = "BENCH_WARMUP_CALLS")]
    warmup_calls: Option<usize>,
    /// Timeout of each call, in seconds (a safety net; it does not affect the measurement).
    #[arg(long, default_value_t = 60)]
    call_timeout_secs: u64,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Do not print per-round progress to stderr.
    #[arg(long)]
    no_progress: bool,
}

impl LocalArgs {
    fn config(&self) -> LocalConfig {
        let base = if self.quick {
            LocalConfig::quick()
        } else {
            LocalConfig::default()
        };
        LocalConfig {
            messages: self.messages.unwrap_or(base.messages),
            calls: self.calls.unwrap_or(base.calls),
            rounds: self.rounds.unwrap_or(base.rounds),
            warmup_messages: self.warmup_messages.unwrap_or(base.warmup_messages),
            warmup_calls: self.warmup_calls.unwrap_or(base.warmup_calls),
            call_timeout: Duration::from_secs(self.call_timeout_secs.max(1)),
            progress: !self.no_progress,
            ..base
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Local(args) => {
            let report = run_local(&args.config()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
    }
    Ok(())
}
