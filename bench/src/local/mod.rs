//! The `local` benchmark: what does spawning through [`runtime::Node`] cost compared with a bare
//! [`ractor::Actor::spawn`]?
//!
//! Both sides run the same [`Counter`] actor in the same process, on the same tokio runtime. The
//! runtime side is spawned with [`Node::spawn`] (so it is wrapped in the node's message-counting
//! wrapper and supervised by the node's `user` supervisor) and called through [`Node::call`]; the
//! bare side is spawned with [`Actor::spawn`] and called with [`ActorRef::call`].
//!
//! Two measurements are taken per side and round:
//!
//! * **throughput** — one task sends `messages` [`Msg::Inc`] (bare: `send_message`; runtime:
//!   [`Node::tell`], the API users call), then one [`Msg::Get`] call flushes the mailbox;
//!   messages/s is `messages / wall time` of the whole.
//! * **call latency** — `calls` sequential [`Msg::Get`] round trips, each timed; p50, p99 and mean.
//! * **live figures** — after those rounds, the runtime side's throughput again, with the node's
//!   handler timing off and on ([`Node::set_actor_stats`]) in alternating order; on/off >= 0.95.
//!
//! Runs alternate bare, runtime, bare, runtime… for `rounds` rounds after a warm-up; the report
//! gives the median of each metric over the rounds and the runtime/bare ratios of the medians.
//!
//! Files: [`actor`] (the counter both sides run), [`config`], [`api`] (the rest of the local
//! API, information rows), [`report`] (the result and its tables); this file runs the rounds.

pub mod actor;
pub mod api;
pub mod config;
pub mod report;

pub use actor::{Counter, Msg};
pub use config::LocalConfig;
pub use report::{LocalReport, Ratios, SideReport, StatsReport};

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ractor::{rpc::CallResult, Actor, ActorRef};
use runtime::Node;

use crate::{
    checks::Checks,
    stats::{LatencySummary, Limit, Rounds},
};

/// Target for the throughput ratio runtime/bare (at least).
pub const THROUGHPUT_RATIO_TARGET: f64 = 0.95;
/// Target for the throughput ratio of the runtime side with its live figures on / off (at
/// least): the figures must be cheap enough to leave on.
pub const STATS_RATIO_TARGET: f64 = 0.95;
/// Target for the call-latency ratios runtime/bare at p50 and p99 (at most).
pub const LATENCY_RATIO_TARGET: f64 = 1.10;

/// How a side is called: directly, or through the node's API.
enum Via {
    Bare,
    Runtime(Node),
}

/// One side of the comparison: an actor and the way it is called.
struct Subject {
    label: &'static str,
    actor: ActorRef<Msg>,
    via: Via,
    /// What the counter should read (every `Inc` sent so far).
    expected: u64,
}

impl Subject {
    async fn get(&self, timeout: Duration) -> anyhow::Result<u64> {
        match &self.via {
            Via::Bare => match self.actor.call(Msg::Get, Some(timeout)).await {
                Ok(CallResult::Success(n)) => Ok(n),
                Ok(CallResult::Timeout) => bail!("{}: call timed out", self.label),
                Ok(CallResult::SenderError) => bail!("{}: no reply", self.label),
                Err(e) => bail!("{}: call failed: {e}", self.label),
            },
            Via::Runtime(node) => node
                .call(&self.actor, Msg::Get, timeout)
                .await
                .with_context(|| format!("{}: call failed", self.label)),
        }
    }

    /// Send `n` one-way messages then flush with a call; messages per second.
    async fn throughput(&mut self, n: u64, timeout: Duration) -> anyhow::Result<f64> {
        let start = Instant::now();
        // Each side through its own API: the bare actor's `send_message`, the runtime's
        // `Node::tell` (which checks for a lane to a remote node before it sends).
        match &self.via {
            Via::Bare => {
                for _ in 0..n {
                    self.actor
                        .send_message(Msg::Inc)
                        .map_err(|e| anyhow!("{}: send failed: {e}", self.label))?;
                }
            }
            Via::Runtime(node) => {
                for _ in 0..n {
                    node.tell(&self.actor, Msg::Inc)
                        .map_err(|e| anyhow!("{}: tell failed: {e}", self.label))?;
                }
            }
        }
        let count = self.get(timeout).await?;
        let elapsed = start.elapsed();
        self.expected += n;
        if count != self.expected {
            bail!(
                "{}: counter reads {count}, expected {}",
                self.label,
                self.expected
            );
        }
        Ok(n as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE))
    }

    /// `calls` sequential calls, each timed.
    async fn latency(&self, calls: usize, timeout: Duration) -> anyhow::Result<LatencySummary> {
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            let count = self.get(timeout).await?;
            samples.push(start.elapsed());
            if count != self.expected {
                bail!(
                    "{}: counter reads {count}, expected {}",
                    self.label,
                    self.expected
                );
            }
        }
        LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no latency samples"))
    }
}

#[derive(Default)]
struct Collected {
    throughput: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    mean: Vec<f64>,
}

impl Collected {
    fn into_side(self, label: &str) -> anyhow::Result<SideReport> {
        let rounds = |v: Vec<f64>| Rounds::new(v).ok_or_else(|| anyhow!("no rounds measured"));
        Ok(SideReport {
            label: label.to_string(),
            throughput: rounds(self.throughput)?,
            p50_ns: rounds(self.p50)?,
            p99_ns: rounds(self.p99)?,
            mean_ns: rounds(self.mean)?,
        })
    }
}

/// Run the `local` benchmark: start a node, spawn the counter through it and bare, warm both up,
/// then measure `config.rounds` alternating rounds. Must run inside a tokio runtime (a
/// multi-threaded one, for representative numbers). The node and actors are stopped afterwards.
///
/// The measurement itself runs in a task spawned onto the runtime (not on the caller's thread),
/// so the sender and the actors are all scheduled by the same worker pool, as actors are.
pub async fn run_local(config: &LocalConfig) -> anyhow::Result<LocalReport> {
    config.validate()?;
    let config = config.clone();
    tokio::spawn(async move { run_local_task(&config).await })
        .await
        .context("the benchmark task panicked")?
}

async fn run_local_task(config: &LocalConfig) -> anyhow::Result<LocalReport> {
    let node = Node::builder()
        .name(&config.node_name)
        .without_admin()
        .start()
        .await
        .context("starting the node")?;
    let result = run_with_node(config, &node).await;
    node.shutdown().await;
    result
}

async fn run_with_node(config: &LocalConfig, node: &Node) -> anyhow::Result<LocalReport> {
    let (bare_ref, bare_handle) = Actor::spawn(None, Counter, ())
        .await
        .context("spawning the bare actor")?;
    let named = format!("{}-counter", config.node_name);
    let runtime_ref = node.spawn(&named, Counter, ()).await;
    let runtime_ref = match runtime_ref {
        Ok(r) => r,
        Err(e) => {
            bare_ref.stop(None);
            let _ = bare_handle.await;
            return Err(e).context("spawning the runtime actor");
        }
    };
    let mut bare = Subject {
        label: "bare ractor",
        actor: bare_ref.clone(),
        via: Via::Bare,
        expected: 0,
    };
    let mut rt = Subject {
        label: "runtime::Node",
        actor: runtime_ref,
        via: Via::Runtime(node.clone()),
        expected: 0,
    };
    let mut result = measure(config, &mut bare, &mut rt).await;
    if let Ok(report) = &mut result {
        match api::measure(config, node, &bare_ref, &named).await {
            Ok(api) => report.api = api,
            Err(e) => result = Err(e.context("the API rows")),
        }
    }
    bare_ref.stop(None);
    let _ = bare_handle.await;
    result
}

async fn measure(
    config: &LocalConfig,
    bare: &mut Subject,
    rt: &mut Subject,
) -> anyhow::Result<LocalReport> {
    let timeout = config.call_timeout;
    let progress = |line: String| {
        if config.progress {
            eprintln!("{line}");
        }
    };

    progress(format!(
        "warm-up: {} messages + {} calls to each side",
        config.warmup_messages, config.warmup_calls
    ));
    for subject in [&mut *bare, &mut *rt] {
        if config.warmup_messages > 0 {
            subject.throughput(config.warmup_messages, timeout).await?;
        }
        if config.warmup_calls > 0 {
            subject.latency(config.warmup_calls, timeout).await?;
        }
    }

    let (mut b, mut r) = (Collected::default(), Collected::default());
    for round in 1..=config.rounds {
        let bt = bare.throughput(config.messages, timeout).await?;
        let rtt = rt.throughput(config.messages, timeout).await?;
        let bl = bare.latency(config.calls, timeout).await?;
        let rl = rt.latency(config.calls, timeout).await?;
        progress(format!(
            "round {round}/{}: throughput {:.3} | {:.3} M msg/s, p50 {:.2} | {:.2} us, p99 {:.2} | {:.2} us (bare | runtime)",
            config.rounds,
            bt / 1e6,
            rtt / 1e6,
            bl.p50_ns / 1e3,
            rl.p50_ns / 1e3,
            bl.p99_ns / 1e3,
            rl.p99_ns / 1e3,
        ));
        for (c, t, l) in [(&mut b, bt, bl), (&mut r, rtt, rl)] {
            c.throughput.push(t);
            c.p50.push(l.p50_ns);
            c.p99.push(l.p99_ns);
            c.mean.push(l.mean_ns);
        }
    }

    let stats = stats_rounds(config, rt, &progress).await?;

    let bare = b.into_side(bare.label)?;
    let runtime = r.into_side(rt.label)?;
    let ratios = Ratios {
        throughput: runtime.throughput.median / bare.throughput.median,
        p50: runtime.p50_ns.median / bare.p50_ns.median,
        p99: runtime.p99_ns.median / bare.p99_ns.median,
        mean: runtime.mean_ns.median / bare.mean_ns.median,
    };
    let paired_ratio = |b: &Rounds, r: &Rounds| {
        let per_round = b.values.iter().zip(&r.values).map(|(b, r)| r / b).collect();
        Rounds::new(per_round).map_or(f64::NAN, |p| p.median)
    };
    let paired = Ratios {
        throughput: paired_ratio(&bare.throughput, &runtime.throughput),
        p50: paired_ratio(&bare.p50_ns, &runtime.p50_ns),
        p99: paired_ratio(&bare.p99_ns, &runtime.p99_ns),
        mean: paired_ratio(&bare.mean_ns, &runtime.mean_ns),
    };
    let mut checks = Checks::new();
    checks.add(
        "throughput",
        ratios.throughput,
        Limit::AtLeast(THROUGHPUT_RATIO_TARGET),
    );
    checks.add("call p50", ratios.p50, Limit::AtMost(LATENCY_RATIO_TARGET));
    checks.add("call p99", ratios.p99, Limit::AtMost(LATENCY_RATIO_TARGET));
    checks.add(
        "stats on/off",
        stats.ratio,
        Limit::AtLeast(STATS_RATIO_TARGET),
    );
    Ok(LocalReport {
        config: config.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        bare,
        runtime,
        ratios,
        paired,
        stats,
        checks,
        api: api::ApiReport {
            spawns: 0,
            rows: Vec::new(),
        },
    })
}

/// The runtime side's throughput with its node's live figures off and on, alternating (the
/// order flips every round so drift in machine load falls on both); the figures are left on.
async fn stats_rounds(
    config: &LocalConfig,
    rt: &mut Subject,
    progress: &impl Fn(String),
) -> anyhow::Result<StatsReport> {
    let Via::Runtime(node) = &rt.via else {
        bail!("the stats rounds need the runtime side");
    };
    let node = node.clone();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=config.rounds {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for stats in order {
            node.set_actor_stats(stats);
            let t = rt.throughput(config.messages, config.call_timeout).await?;
            if stats { &mut on } else { &mut off }.push(t);
        }
        progress(format!(
            "stats round {round}/{}: throughput off {:.3} | on {:.3} M msg/s",
            config.rounds,
            off[off.len() - 1] / 1e6,
            on[on.len() - 1] / 1e6,
        ));
    }
    node.set_actor_stats(true);
    let off = Rounds::new(off).ok_or_else(|| anyhow!("no stats rounds"))?;
    let on = Rounds::new(on).ok_or_else(|| anyhow!("no stats rounds"))?;
    let ratio = on.median / off.median;
    Ok(StatsReport { off, on, ratio })
}
