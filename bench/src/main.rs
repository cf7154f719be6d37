//! `bench`: performance measurements of the actor runtime, one subcommand per benchmark.
//!
//! ```text
//! cargo run --release -p bench -- local            # full run
//! cargo run --release -p bench -- local --quick    # smoke run
//! cargo run --release -p bench -- local --json     # machine-readable report
//! cargo build --release -p dctl                     # the cluster benchmark runs dctl nodes
//! cargo run --release -p bench -- cluster          # full run (10-node convergence)
//! cargo run --release -p bench -- cluster --quick  # smoke run
//! ```

use std::{path::PathBuf, time::Duration};

use bench::{run_cluster, run_local, ClusterConfig, LocalConfig, RawServerMode};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Cross-node call latency and one-way throughput vs raw TCP, failure detection and
    /// convergence, with `dctl node start` child processes as the other nodes.
    Cluster(ClusterArgs),
    /// Service-registry propagation time (register on one node -> listed on all), 3 and 10 nodes.
    Registry {
        /// Small smoke run (3 nodes, 3 registrations).
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// KV store (3 voters) vs etcd 3.4 (3 members), both over etcd-client (gRPC): put and
    /// linearizable range throughput and p99 at concurrency 16 and 256, alternating rounds.
    Kv {
        /// Small smoke run.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Concurrent client requests (both sides); default: 16, then 256.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Only our side (no etcd).
        #[arg(long)]
        no_etcd: bool,
    },
    /// Broker fan-out (1 producer -> 10 consumers over 3 nodes) vs a 3-server nats-server cluster.
    Broker {
        /// Small smoke run (5k events, 200 latency samples).
        #[arg(long)]
        quick: bool,
        /// Events in each throughput run [default: 100000].
        #[arg(long)]
        events: Option<u64>,
        /// Measured rounds per side, alternating ours and nats-server [default: 3].
        #[arg(long)]
        rounds: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The proxy controller with a real Envoy: register -> routed via another node (p50/p99),
    /// kill -9 -> last request to the dead node's instance, 1 000-service snapshot build + ACK.
    Proxy {
        /// Small smoke run (5 runs, 100 services).
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Live configuration: `dctl kv put` -> a chassis service (the `hello` sample) answers with
    /// the new value, p50/p99 over 50 changes, vs the put command alone.
    Config {
        /// Small smoke run (5 changes).
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Supervisor restart latency (crash -> running again) vs Erlang/OTP's supervisor.
    Restart {
        /// Small smoke run.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every benchmark in turn (each in its own process), and one markdown report of every
    /// target's verdict and each benchmark's table.
    All {
        /// Smoke runs of each.
        #[arg(long)]
        quick: bool,
        /// Where to write the report.
        #[arg(long, default_value = "bench-report.md")]
        out: std::path::PathBuf,
    },
    /// Idle actors: RSS per actor on the spawning node and on the others, spawn rate as the
    /// count grows, tree snapshot time, idle CPU per node.
    Memory {
        /// Small smoke run.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Idle actors to spawn (default 100 000; 1 000 000 checks the 2 GiB target).
        #[arg(long)]
        actors: Option<usize>,
    },
    /// Clusters of 10, 25 and 50 `dctl node start` processes: convergence, kill -9 -> dead on
    /// all, gossip bytes/s and CPU per node, and how each grows with N.
    Scale {
        /// Small smoke run (3 and 5 nodes).
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ours vs Erlang/OTP in the same run: local and cross-node one-way rate and call latency,
    /// memory per idle actor and spawn rate.
    Erlang {
        /// Small smoke run.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Idle actors (and processes) for the memory row (default 100 000).
        #[arg(long)]
        idle_actors: Option<usize>,
    },
    /// The raw-TCP echo server of the cluster benchmark's baseline (prints its address, serves
    /// until killed or stdin closes). Internal.
    #[command(hide = true)]
    RawServer,
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

/// Where `bench cluster` runs its raw-TCP baseline server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RawServerWhere {
    /// A child process (`bench raw-server`), like the runtime's peer node.
    Process,
    /// A thread of the benchmark process.
    Thread,
}

/// Options of `bench cluster`. Unset values take the full (or, with --quick, the smoke) defaults.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Small smoke run (200 calls, 2k messages, 1 round, 4-node convergence).
    #[arg(long)]
    quick: bool,
    /// Payload sizes in bytes, comma-separated [default: 64,4096].
    #[arg(long, value_delimiter = ',', env = "BENCH_CLUSTER_PAYLOADS")]
    payloads: Option<Vec<usize>>,
    /// Sequential calls per latency run [full default: 10000].
    #[arg(long, env = "BENCH_CLUSTER_CALLS")]
    calls: Option<usize>,
    /// One-way messages per throughput run [full default: 50000].
    #[arg(long, env = "BENCH_CLUSTER_MESSAGES")]
    messages: Option<u64>,
    /// Measured rounds, alternating raw and runtime [full default: 5].
    #[arg(long, env = "BENCH_CLUSTER_ROUNDS")]
    rounds: Option<usize>,
    /// Calls per side and payload before measuring [full default: 1000].
    #[arg(long)]
    warmup_calls: Option<usize>,
    /// One-way messages per side and payload before measuring [full default: 5000].
    #[arg(long)]
    warmup_messages: Option<u64>,
    /// Nodes of the failure-detection cluster [default: 3].
    #[arg(long)]
    failure_nodes: Option<usize>,
    /// Nodes of the convergence cluster [full default: 10].
    #[arg(long)]
    convergence_nodes: Option<usize>,
    /// Poll interval of /cluster after the kill, in ms [default: 20].
    #[arg(long)]
    failure_poll_ms: Option<u64>,
    /// Poll interval of /cluster while converging, in ms [default: 50].
    #[arg(long)]
    convergence_poll_ms: Option<u64>,
    /// The dctl binary [default: next to this binary, else target/{release,debug}/dctl].
    #[arg(long, env = "DCTL_BIN")]
    dctl: Option<PathBuf>,
    /// Where the raw-TCP baseline server runs.
    #[arg(long, value_enum, default_value_t = RawServerWhere::Process)]
    raw_server: RawServerWhere,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Do not print progress to stderr.
    #[arg(long)]
    no_progress: bool,
}

impl ClusterArgs {
    fn config(&self) -> anyhow::Result<ClusterConfig> {
        let base = if self.quick {
            ClusterConfig::quick()
        } else {
            ClusterConfig::default()
        };
        let raw_server = match self.raw_server {
            RawServerWhere::Thread => RawServerMode::Thread,
            RawServerWhere::Process => RawServerMode::Process(std::env::current_exe()?),
        };
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        Ok(ClusterConfig {
            payloads: self.payloads.clone().unwrap_or(base.payloads.clone()),
            calls: self.calls.unwrap_or(base.calls),
            messages: self.messages.unwrap_or(base.messages),
            rounds: self.rounds.unwrap_or(base.rounds),
            warmup_calls: self.warmup_calls.unwrap_or(base.warmup_calls),
            warmup_messages: self.warmup_messages.unwrap_or(base.warmup_messages),
            failure_nodes: self.failure_nodes.unwrap_or(base.failure_nodes),
            convergence_nodes: self.convergence_nodes.unwrap_or(base.convergence_nodes),
            failure_poll: ms(self.failure_poll_ms, base.failure_poll),
            convergence_poll: ms(self.convergence_poll_ms, base.convergence_poll),
            dctl: self.dctl.clone(),
            raw_server,
            progress: !self.no_progress,
            ..base
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs of the in-process node, on stderr, only when asked for (`RUST_LOG=info`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match cli.command {
        Command::Local(args) => {
            let report = run_local(&args.config()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Cluster(args) => {
            let report = run_cluster(&args.config()?).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Config { quick, json } => {
            let config = if quick {
                bench::config::ConfigBenchConfig::quick()
            } else {
                bench::config::ConfigBenchConfig::default()
            };
            let report = bench::config::run_config(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Registry { quick, json } => {
            let config = if quick {
                bench::registry::RegistryConfig::quick()
            } else {
                bench::registry::RegistryConfig::default()
            };
            let report = bench::registry::run_registry(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Kv {
            quick,
            json,
            concurrency,
            no_etcd,
        } => {
            let mut config = if quick {
                bench::kv::KvConfig::quick()
            } else {
                bench::kv::KvConfig::default()
            };
            if let Some(c) = concurrency {
                config.concurrency = vec![c.max(1)];
            }
            config.etcd = !no_etcd;
            let report = bench::kv::run_kv(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Broker {
            quick,
            events,
            rounds,
            json,
        } => {
            let base = if quick {
                bench::broker::BrokerConfig::quick()
            } else {
                bench::broker::BrokerConfig::default()
            };
            let config = bench::broker::BrokerConfig {
                events: events.unwrap_or(base.events),
                rounds: rounds.unwrap_or(base.rounds),
                ..base
            };
            let report = bench::broker::run_broker(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Proxy { quick, json } => {
            let config = if quick {
                bench::proxy::ProxyConfig::quick()
            } else {
                bench::proxy::ProxyConfig::default()
            };
            let report = bench::proxy::run_proxy(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Restart { quick, json } => {
            let config = if quick {
                bench::restart::RestartConfig::quick()
            } else {
                bench::restart::RestartConfig::default()
            };
            let report = bench::restart::run_restart(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::All { quick, out } => {
            let exe = std::env::current_exe()?;
            let outcomes = bench::all::run_all(&exe, quick, &out)?;
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|o| !o.ok)
                .map(|o| o.name.as_str())
                .collect();
            println!("report written to {}", out.display());
            if !failed.is_empty() {
                anyhow::bail!("these benchmarks did not finish: {}", failed.join(", "));
            }
        }
        Command::Memory {
            quick,
            json,
            actors,
        } => {
            let mut config = if quick {
                bench::memory::MemoryConfig::quick()
            } else {
                bench::memory::MemoryConfig::default()
            };
            if let Some(n) = actors {
                config.actors = n;
            }
            config.progress = !json;
            let report = bench::memory::run_memory(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Scale { quick, json } => {
            let mut config = if quick {
                bench::scale::ScaleConfig::quick()
            } else {
                bench::scale::ScaleConfig::default()
            };
            config.progress = !json;
            let report = bench::scale::run_scale(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Erlang {
            quick,
            json,
            idle_actors,
        } => {
            let mut config = if quick {
                bench::erlang::ErlangConfig::quick()
            } else {
                bench::erlang::ErlangConfig::default()
            };
            if let Some(n) = idle_actors {
                config.idle_actors = n;
            }
            config.progress = !json;
            let report = bench::erlang::run_erlang(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::RawServer => bench::rawtcp::serve_stdio().await?,
    }
    Ok(())
}
