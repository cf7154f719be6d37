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

use crate::stats::Limit;
use std::{fmt, time::Duration, time::Instant};

use anyhow::{anyhow, bail, Context};
use ractor::{rpc::CallResult, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runtime::Node;
use serde::Serialize;

use crate::stats::{LatencySummary, Rounds};

/// Target for the throughput ratio runtime/bare (at least).
pub const THROUGHPUT_RATIO_TARGET: f64 = 0.95;
/// Target for the throughput ratio of the runtime side with its live figures on / off (at
/// least): the figures must be cheap enough to leave on.
pub const STATS_RATIO_TARGET: f64 = 0.95;
/// Target for the call-latency ratios runtime/bare at p50 and p99 (at most).
pub const LATENCY_RATIO_TARGET: f64 = 1.10;

/// The benchmark actor's message: a small local enum (never serialised).
#[derive(Debug)]
pub enum Msg {
    /// Add one to the counter (one-way).
    Inc,
    /// Reply with the current count.
    Get(RpcReplyPort<u64>),
}

impl ractor::Message for Msg {}

/// A counter actor: counts [`Msg::Inc`], answers [`Msg::Get`] with the count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Actor for Counter {
    type Msg = Msg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        count: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Msg::Inc => *count += 1,
            Msg::Get(reply) => {
                // The caller may have timed out and gone; that is not the actor's problem.
                let _ = reply.send(*count);
            }
        }
        Ok(())
    }
}

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
    /// Name of the [`Node`] started for the runtime side (unique within the process).
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

    fn validate(&self) -> anyhow::Result<()> {
        if self.messages == 0 || self.calls == 0 || self.rounds == 0 {
            bail!("messages, calls and rounds must all be at least 1");
        }
        Ok(())
    }
}

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

/// A ratio checked against its target (reported, never asserted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The metric, e.g. `"throughput"`.
    pub metric: String,
    /// The measured ratio runtime/bare.
    pub ratio: f64,
    /// Its target.
    pub target: Limit,
    /// Whether the target was met.
    pub pass: bool,
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
    pub checks: Vec<Check>,
    /// The rest of the API (information rows): `Node::send`, calls by name, spawn rate.
    pub api: crate::local_api::ApiReport,
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
        self.checks.iter().all(|c| c.pass)
    }
}

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
        match crate::local_api::measure(config, node, &bare_ref, &named).await {
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
    let check = |metric: &str, ratio: f64, target: Limit| Check {
        metric: metric.to_string(),
        ratio,
        target,
        pass: target.met_by(ratio),
    };
    let checks = vec![
        check(
            "throughput",
            ratios.throughput,
            Limit::AtLeast(THROUGHPUT_RATIO_TARGET),
        ),
        check("call p50", ratios.p50, Limit::AtMost(LATENCY_RATIO_TARGET)),
        check("call p99", ratios.p99, Limit::AtMost(LATENCY_RATIO_TARGET)),
        check(
            "stats on/off",
            stats.ratio,
            Limit::AtLeast(STATS_RATIO_TARGET),
        ),
    ];
    Ok(LocalReport {
        config: config.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        bare,
        runtime,
        ratios,
        paired,
        stats,
        checks,
        api: crate::local_api::ApiReport {
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
        let target_of = |metric: &str| self.checks.iter().find(|ch| ch.metric == metric);
        let mut row = |metric: &str,
                       check: &str,
                       unit_scale: f64,
                       decimals: usize,
                       b: &Rounds,
                       r: &Rounds,
                       ratio: f64| {
            let (target, verdict) = match target_of(check) {
                Some(ch) => (ch.target.to_string(), if ch.pass { "PASS" } else { "MISS" }),
                None => ("-".to_string(), "info"),
            };
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
        let (target, verdict) = match target_of("stats on/off") {
            Some(ch) => (ch.target.to_string(), if ch.pass { "PASS" } else { "MISS" }),
            None => ("-".to_string(), "info"),
        };
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
        write!(
            f,
            "overall: {}",
            if self.all_pass() {
                "PASS (all targets met)"
            } else {
                "MISS (some targets not met; see above)"
            }
        )
    }
}
