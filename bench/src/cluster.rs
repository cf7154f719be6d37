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

pub use crate::stats::Limit;
use std::{
    fmt,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use ractor::ActorRef;
use runtime::{JsonMsg, MemberState, Node};
use serde::Serialize;

use crate::{
    procs::{cluster_view, http_client, locate_dctl, sees_dead, sees_exactly, NodeSet},
    rawtcp::{RawClient, RawServer},
    stats::{LatencySummary, Rounds},
};

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

    fn validate(&self) -> anyhow::Result<()> {
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

/// A JSON document of exactly `len` bytes (`len >= 2`): a string of `x`s.
pub fn json_payload(len: usize) -> Vec<u8> {
    assert!(len >= 2, "a JSON payload has at least 2 bytes");
    let mut v = Vec::with_capacity(len);
    v.push(b'"');
    v.resize(len - 1, b'x');
    v.push(b'"');
    v
}

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

/// A metric checked against its target (reported, never asserted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterCheck {
    /// What, e.g. `"call p50 64 B runtime/raw"`.
    pub metric: String,
    /// The measured ratio or time.
    pub value: f64,
    /// Its target.
    pub target: Limit,
    /// Whether the target was met.
    pub pass: bool,
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
    pub checks: Vec<ClusterCheck>,
}

impl ClusterReport {
    /// Whether every check met its target.
    pub fn all_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

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

fn progress(config: &ClusterConfig, line: impl FnOnce() -> String) {
    if config.progress {
        eprintln!("{}", line());
    }
}

async fn run_task(config: ClusterConfig, dctl: PathBuf) -> anyhow::Result<ClusterReport> {
    let (raw_kind, latency, throughput) = messaging(&config, &dctl)
        .await
        .context("cross-node messaging")?;
    let failure_detection = failure_detection(&config, &dctl)
        .await
        .context("failure detection")?;
    let convergence = convergence(&config, &dctl).await.context("convergence")?;

    let mut checks = Vec::new();
    let mut check = |metric: String, value: f64, target: Limit| {
        checks.push(ClusterCheck {
            metric,
            value,
            target,
            pass: target.met_by(value),
        })
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

/// Poll `f` every `every` until it yields `Some`, for at most `limit`.
pub(crate) async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

// ------------------------------------------------------------------ messaging (A <-> B) ----

type Messaging = (&'static str, Vec<LatencyRow>, Vec<ThroughputRow>);

async fn messaging(config: &ClusterConfig, dctl: &std::path::Path) -> anyhow::Result<Messaging> {
    let mut set = NodeSet::new(dctl, &config.cookie)?;
    let b_name = format!("{}-peer", config.node_name);
    let b = set.spawn(&b_name, None)?;
    let http = http_client()?;
    let b_admin = set.nodes[b].admin.clone();
    progress(config, || {
        format!("messaging: starting node {b_name} (dctl child)")
    });
    {
        let set = &mut set;
        wait_for(
            &format!("node {b_name} up"),
            config.wait_limit,
            Duration::from_millis(50),
            || {
                let ok = set.check_running();
                let http = &http;
                let admin = &b_admin;
                async move {
                    ok?;
                    Ok(cluster_view(http, admin).await.ok().map(|_| ()))
                }
            },
        )
        .await?;
    }

    let node = Node::builder()
        .name(&config.node_name)
        .without_admin()
        .cookie(&config.cookie)
        .seed(set.nodes[b].gossip.clone())
        .data_dir(set.dir().join(&config.node_name))
        .start()
        .await
        .context("starting node A in this process")?;
    let result = with_node_a(config, &node, &b_name).await;
    node.shutdown().await;
    drop(set);
    result
}

async fn with_node_a(
    config: &ClusterConfig,
    node: &Node,
    b_name: &str,
) -> anyhow::Result<Messaging> {
    let every = Duration::from_millis(50);
    wait_for(
        &format!("an actor-transport session to {b_name}"),
        config.wait_limit,
        every,
        || async {
            Ok(node
                .members()
                .await
                .iter()
                .any(|m| m.name == b_name && m.state == MemberState::Alive && m.connected && m.lane)
                .then_some(()))
        },
    )
    .await?;
    let echo_name = format!("{}-echo", config.node_name);
    let deadline = Instant::now() + config.wait_limit;
    let spawned = loop {
        match node
            .spawn_on(b_name, "echo", &echo_name, serde_json::Value::Null)
            .await
        {
            Ok(id) => break id,
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("spawning echo on {b_name}"));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    };
    progress(config, || {
        format!("messaging: echo '{echo_name}' spawned on {b_name} (actor id {spawned})")
    });
    let cell = wait_for(
        &format!("'{echo_name}' resolvable from A"),
        config.wait_limit,
        every,
        || async {
            Ok(node
                .resolve(&echo_name)
                .await
                .ok()
                .filter(|c| !c.get_id().is_local()))
        },
    )
    .await?;
    let echo: ActorRef<JsonMsg> = cell.into();

    let raw = match &config.raw_server {
        RawServerMode::Thread => RawServer::thread().await?,
        RawServerMode::Process(exe) => RawServer::process(exe).await?,
    };
    let mut client = RawClient::connect(raw.addr).await?;
    let mut sink = Sink::spawn().await?;
    let timeout = config.call_timeout;
    let flush = json_payload(2);

    let payloads: Vec<Vec<u8>> = config.payloads.iter().map(|&n| json_payload(n)).collect();
    progress(config, || {
        format!(
            "messaging: warm-up, {} calls + {} messages per side and payload",
            config.warmup_calls, config.warmup_messages
        )
    });
    for p in &payloads {
        if config.warmup_calls > 0 {
            client.latency(p, config.warmup_calls).await?;
            runtime_latency(node, &echo, p, config.warmup_calls, timeout).await?;
        }
        if config.warmup_messages > 0 {
            sink.stream(p, config.warmup_messages).await?;
            client.stream(p, config.warmup_messages, &flush).await?;
            runtime_stream(node, &echo, p, config.warmup_messages, &flush, timeout).await?;
        }
    }

    #[derive(Default)]
    struct Per {
        raw: [Vec<f64>; 3],
        rt: [Vec<f64>; 3],
        raw_tput: Vec<f64>,
        rt_tput: Vec<f64>,
        unbatched_tput: Vec<f64>,
        in_process_tput: Vec<f64>,
    }
    let mut per: Vec<Per> = payloads.iter().map(|_| Per::default()).collect();
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    let summary = |mut s: Vec<Duration>| {
        LatencySummary::from_samples(&mut s).ok_or_else(|| anyhow!("no latency samples"))
    };
    for round in 1..=config.rounds {
        for (p, acc) in payloads.iter().zip(per.iter_mut()) {
            let rl = summary(client.latency(p, config.calls).await?)?;
            let tl = summary(runtime_latency(node, &echo, p, config.calls, timeout).await?)?;
            let rt = rate(
                config.messages,
                client.stream(p, config.messages, &flush).await?,
            );
            let ut = rate(
                config.messages,
                client.stream_unbatched(p, config.messages, &flush).await?,
            );
            let tt = rate(
                config.messages,
                runtime_stream(node, &echo, p, config.messages, &flush, timeout).await?,
            );
            let it = rate(config.messages, sink.stream(p, config.messages).await?);
            progress(config, || {
                format!(
                    "round {round}/{} {} B: call p50 {:.1} | {:.1} us, p99 {:.1} | {:.1} us, one-way {:.1} | {:.1} k msg/s (raw | runtime)",
                    config.rounds,
                    p.len(),
                    rl.p50_ns / 1e3,
                    tl.p50_ns / 1e3,
                    rl.p99_ns / 1e3,
                    tl.p99_ns / 1e3,
                    rt / 1e3,
                    tt / 1e3
                )
            });
            for (acc, s) in [(&mut acc.raw, rl), (&mut acc.rt, tl)] {
                acc[0].push(s.p50_ns);
                acc[1].push(s.p99_ns);
                acc[2].push(s.mean_ns);
            }
            acc.raw_tput.push(rt);
            acc.rt_tput.push(tt);
            acc.unbatched_tput.push(ut);
            acc.in_process_tput.push(it);
        }
    }

    let rounds = |v: Vec<f64>| Rounds::new(v).ok_or_else(|| anyhow!("no rounds measured"));
    let side = |[p50, p99, mean]: [Vec<f64>; 3]| -> anyhow::Result<LatencySide> {
        Ok(LatencySide {
            p50_ns: rounds(p50)?,
            p99_ns: rounds(p99)?,
            mean_ns: rounds(mean)?,
        })
    };
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for (&bytes, acc) in config.payloads.iter().zip(per) {
        let raw = side(acc.raw)?;
        let rt = side(acc.rt)?;
        latency.push(LatencyRow {
            payload_bytes: bytes,
            ratio_p50: rt.p50_ns.median / raw.p50_ns.median,
            ratio_p99: rt.p99_ns.median / raw.p99_ns.median,
            ratio_mean: rt.mean_ns.median / raw.mean_ns.median,
            raw,
            runtime: rt,
        });
        let raw_t = rounds(acc.raw_tput)?;
        let rt_t = rounds(acc.rt_tput)?;
        let in_t = rounds(acc.in_process_tput)?;
        throughput.push(ThroughputRow {
            ratio_in_process: rt_t.median / in_t.median,
            in_process_msgs_per_s: in_t,
            payload_bytes: bytes,
            messages: config.messages,
            raw_mb_per_s: raw_t.median * bytes as f64 / 1e6,
            runtime_mb_per_s: rt_t.median * bytes as f64 / 1e6,
            ratio: rt_t.median / raw_t.median,
            raw_msgs_per_s: raw_t,
            runtime_msgs_per_s: rt_t,
            raw_unbatched_msgs_per_s: rounds(acc.unbatched_tput)?,
        });
    }
    Ok((raw.kind, latency, throughput))
}

async fn runtime_call(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<usize> {
    let reply = node
        .call(echo, |p| JsonMsg::Call(payload.to_vec(), p), timeout)
        .await
        .map_err(|e| anyhow!("remote echo call failed: {e}"))?;
    Ok(reply.len())
}

pub(crate) async fn runtime_latency(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    calls: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let n = runtime_call(node, echo, payload, timeout).await?;
        samples.push(start.elapsed());
        if n != payload.len() {
            bail!("remote echo returned {n} bytes for {}", payload.len());
        }
    }
    Ok(samples)
}

pub(crate) async fn runtime_stream(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    n: u64,
    flush: &[u8],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        node.send(echo, JsonMsg::Tell(payload.to_vec()))
            .await
            .map_err(|e| anyhow!("tell to the remote echo failed: {e}"))?;
    }
    let got = runtime_call(node, echo, flush, timeout).await?;
    let elapsed = start.elapsed();
    if got != flush.len() {
        bail!("remote flush returned {got} bytes for {}", flush.len());
    }
    Ok(elapsed)
}

/// The in-process baseline: a bare ractor actor (spawned with `Actor::spawn`, no node, no
/// network) that counts the payloads it is sent.
struct Sink {
    actor: ActorRef<SinkMsg>,
    received: u64,
}

enum SinkMsg {
    Data(Vec<u8>),
    Count(ractor::RpcReplyPort<u64>),
}

impl ractor::Message for SinkMsg {}

struct SinkActor;

impl ractor::Actor for SinkActor {
    type Msg = SinkMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ActorRef<SinkMsg>,
        _: (),
    ) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: ActorRef<SinkMsg>,
        msg: SinkMsg,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            SinkMsg::Data(d) => *n += u64::from(!d.is_empty()),
            SinkMsg::Count(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

impl Sink {
    async fn spawn() -> anyhow::Result<Sink> {
        let (actor, _) = ractor::Actor::spawn(None, SinkActor, ())
            .await
            .context("spawning the in-process sink")?;
        Ok(Sink { actor, received: 0 })
    }

    /// `n` payloads then a call that must count all of them; the time taken.
    async fn stream(&mut self, payload: &[u8], n: u64) -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            self.actor
                .send_message(SinkMsg::Data(payload.to_vec()))
                .map_err(|e| anyhow!("in-process send failed: {e}"))?;
        }
        let got = ractor::call_t!(self.actor, SinkMsg::Count, 60_000)
            .map_err(|e| anyhow!("in-process count failed: {e}"))?;
        let elapsed = start.elapsed();
        self.received += n;
        if got != self.received {
            bail!(
                "the in-process sink counted {got} messages, {} were sent",
                self.received
            );
        }
        Ok(elapsed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.actor.stop(None);
    }
}

// ------------------------------------------------------------------ cluster processes -------

/// Start `n` nodes named `{prefix}-{i}` (the first without seed, the rest seeded with it).
/// Spawn `n` nodes named `PREFIX-i`, the first without seed, the others seeded with it.
pub(crate) fn spawn_cluster(
    set: &mut NodeSet,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let width = n.to_string().len();
    let mut names = Vec::with_capacity(n);
    let mut seed: Option<String> = None;
    for i in 1..=n {
        let name = format!("{prefix}-{i:0width$}");
        let idx = set.spawn(&name, seed.as_deref())?;
        seed.get_or_insert_with(|| set.nodes[idx].gossip.clone());
        names.push(name);
    }
    Ok(names)
}

/// Poll every node (indices `which`) once, concurrently: for each, whether its view satisfies
/// `ok`, and when that answer arrived.
pub(crate) async fn poll_nodes(
    http: &reqwest::Client,
    set: &NodeSet,
    which: &[usize],
    ok: impl Fn(&[crate::procs::MemberView]) -> bool,
) -> Vec<(usize, bool, Instant)> {
    let ok = &ok;
    futures::future::join_all(which.iter().map(|&i| {
        let admin = set.nodes[i].admin.clone();
        async move {
            let seen = cluster_view(http, &admin).await.is_ok_and(|v| ok(&v));
            (i, seen, Instant::now())
        }
    }))
    .await
}

fn cookie_for(config: &ClusterConfig, what: &str) -> String {
    format!("{}-{what}-{}", config.cookie, std::process::id())
}

async fn wait_converged(
    config: &ClusterConfig,
    http: &reqwest::Client,
    set: &mut NodeSet,
    names: &[String],
    every: Duration,
) -> anyhow::Result<Instant> {
    wait_converged_within(http, set, names, every, config.wait_limit).await
}

/// Poll every `every` until every node sees exactly `names` alive and connected; when the
/// last of them said so. An error after `limit`, naming the nodes behind.
pub(crate) async fn wait_converged_within(
    http: &reqwest::Client,
    set: &mut NodeSet,
    names: &[String],
    every: Duration,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let all: Vec<usize> = (0..set.nodes.len()).collect();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    let deadline = Instant::now() + limit;
    loop {
        set.check_running()?;
        let polled = poll_nodes(http, set, &all, |v| sees_exactly(v, &want)).await;
        if polled.iter().all(|(_, ok, _)| *ok) {
            return Ok(polled
                .iter()
                .map(|(_, _, t)| *t)
                .max()
                .unwrap_or_else(Instant::now));
        }
        if Instant::now() > deadline {
            let behind: Vec<&str> = polled
                .iter()
                .filter(|(_, ok, _)| !ok)
                .map(|(i, _, _)| set.nodes[*i].name.as_str())
                .collect();
            bail!(
                "{} nodes did not converge within {:?} (behind: {behind:?}; logs in {})",
                names.len(),
                limit,
                set.dir().display()
            );
        }
        tokio::time::sleep(every).await;
    }
}

async fn failure_detection(
    config: &ClusterConfig,
    dctl: &std::path::Path,
) -> anyhow::Result<FailureDetection> {
    let n = config.failure_nodes;
    let mut set = NodeSet::new(dctl, &cookie_for(config, "fd"))?;
    let http = http_client()?;
    progress(config, || format!("failure detection: starting {n} nodes"));
    let names = spawn_cluster(&mut set, "fd", n)?;
    wait_converged(config, &http, &mut set, &names, Duration::from_millis(100)).await?;
    tokio::time::sleep(config.failure_settle).await;
    set.check_running()?;

    let victim = n - 1;
    let killed = names[victim].clone();
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    progress(config, || {
        format!(
            "failure detection: kill -9 {killed} (pid {})",
            set.nodes[victim].pid()
        )
    });
    let t0 = Instant::now();
    set.nodes[victim].kill()?;
    let mut seen: Vec<Option<Duration>> = vec![None; n];
    let deadline = t0 + config.wait_limit;
    loop {
        let pending: Vec<usize> = survivors
            .iter()
            .copied()
            .filter(|&i| seen[i].is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{killed} was not reported dead within {:?} (logs in {})",
                config.wait_limit,
                set.dir().display()
            );
        }
        for (i, dead, at) in poll_nodes(&http, &set, &pending, |v| sees_dead(v, &killed)).await {
            if dead {
                seen[i] = Some(at.duration_since(t0));
            }
        }
        tokio::time::sleep(config.failure_poll).await;
    }
    let detected_by: Vec<Detection> = survivors
        .iter()
        .map(|&i| Detection {
            node: names[i].clone(),
            secs: seen[i].unwrap_or_default().as_secs_f64(),
        })
        .collect();
    let secs = detected_by.iter().map(|d| d.secs).fold(0.0, f64::max);
    progress(config, || {
        format!("failure detection: {killed} reported dead by all after {secs:.3} s")
    });
    Ok(FailureDetection {
        nodes: n,
        killed,
        detected_by,
        secs,
    })
}

async fn convergence(
    config: &ClusterConfig,
    dctl: &std::path::Path,
) -> anyhow::Result<Convergence> {
    let n = config.convergence_nodes;
    let mut set = NodeSet::new(dctl, &cookie_for(config, "conv"))?;
    let http = http_client()?;
    progress(config, || format!("convergence: starting {n} nodes"));
    let names = spawn_cluster(&mut set, "conv", n)?;
    let first = set.nodes[0].spawned_at;
    let last = set.nodes[n - 1].spawned_at;
    let done = wait_converged(config, &http, &mut set, &names, config.convergence_poll).await?;
    let report = Convergence {
        nodes: n,
        from_last_spawn_secs: done.duration_since(last).as_secs_f64(),
        from_first_spawn_secs: done.duration_since(first).as_secs_f64(),
        poll_secs: config.convergence_poll.as_secs_f64(),
    };
    progress(config, || {
        format!(
            "convergence: {n} nodes alive and connected everywhere {:.3} s after the last spawn",
            report.from_last_spawn_secs
        )
    });
    set.kill_all();
    Ok(report)
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
        let verdict = |metric: &str| match self.checks.iter().find(|ch| ch.metric == metric) {
            Some(ch) => (ch.target.to_string(), if ch.pass { "PASS" } else { "MISS" }),
            None => ("-".to_string(), "info"),
        };
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
