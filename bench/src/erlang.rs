//! The `erlang` benchmark: Erlang/OTP as a same-run peer, the system users compare an actor
//! runtime with first.
//!
//! Both sides do the same things, alternating round by round (ours, then Erlang), with the same
//! payload (64 B by default):
//!
//! * **local one-way**: `messages` one-way messages from one sender to one actor on the same
//!   node, then one call that must see every message (ours: [`Node::tell`] to an `echo` actor
//!   spawned with [`Node::spawn`]; Erlang: `!` to a counter process). Target: ours >= 1x.
//! * **local call**: `calls` sequential request/replies (ours: [`Node::call`]; Erlang: a
//!   ping-pong), p50 and p99. Informational.
//! * **cross-node one-way** and **cross-node call**: the same against an actor on a second node
//!   on loopback (ours: a `dctl node start` child process and the direct lane; Erlang: a second
//!   node started with `peer`, Erlang distribution on 127.0.0.1 with a private epmd port).
//!   Targets: one-way >= 5x Erlang's rate, call p50 <= 0.3x Erlang's.
//! * **memory per idle actor**: `idle_actors` actors that wait for a message, spawned through
//!   [`Node::spawn`], resident-set growth per actor (and the spawn rate), against Erlang's
//!   processes blocked in `receive` (resident-set growth of the VM; `erlang:memory(processes)`
//!   per process is printed too). Measured once per side, first, in a fresh state. Target <= 1x.
//!
//! The Erlang side is an escript (`assets/erlang_peer.erl`, Debian's `erlang-base`, installed
//! with apt-get when missing). Every process it starts is stopped at the end, epmd included.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use ractor::ActorRef;
use runtime::{JsonMsg, Node};
use serde::Serialize;

use crate::{
    checks::Checks,
    cluster::{json_payload, runtime_latency, runtime_stream, wait_lane},
    memory::{rss_of, start_node_a, Idle},
    procs::{free_port, locate_dctl, wait_for, NodeSet},
    restart::ensure_escript,
    stats::{LatencySummary, Limit, Rounds},
};

const ESCRIPT: &str = include_str!("../assets/erlang_peer.erl");

/// Local one-way rate, ours / Erlang (at least).
pub const LOCAL_ONEWAY_TARGET: f64 = 1.0;
/// Cross-node one-way rate, ours / Erlang (at least).
pub const REMOTE_ONEWAY_TARGET: f64 = 5.0;
/// Cross-node call p50, ours / Erlang (at most).
pub const REMOTE_CALL_P50_TARGET: f64 = 0.3;
/// Resident memory per idle actor, ours / Erlang (at most).
pub const MEMORY_TARGET: f64 = 1.0;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct ErlangConfig {
    /// One-way messages per run.
    pub messages: u64,
    /// Sequential calls per run.
    pub calls: usize,
    /// Rounds, each ours then Erlang.
    pub rounds: usize,
    /// Payload bytes per message.
    pub payload: usize,
    /// Idle actors for the memory row.
    pub idle_actors: usize,
    /// Cookie of our two nodes.
    pub cookie: String,
    /// How long to wait for nodes, sessions and lanes.
    #[serde(skip)]
    pub wait_limit: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for ErlangConfig {
    fn default() -> Self {
        ErlangConfig {
            messages: 500_000,
            calls: 20_000,
            rounds: 3,
            payload: 64,
            idle_actors: 100_000,
            cookie: "bench-erlang-cookie".into(),
            wait_limit: Duration::from_secs(30),
            progress: false,
        }
    }
}

impl ErlangConfig {
    /// A smoke run (seconds).
    pub fn quick() -> Self {
        ErlangConfig {
            messages: 5_000,
            calls: 500,
            rounds: 1,
            idle_actors: 3_000,
            ..ErlangConfig::default()
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured, with its unit, e.g. `"local one-way (msg/s)"`.
    pub metric: String,
    /// Ours, per round and median.
    pub ours: Rounds,
    /// Erlang's, per round and median.
    pub erlang: Rounds,
    /// ours / Erlang of the medians.
    pub ratio: f64,
}

/// The result of [`run_erlang`]; `Display` prints it as a table with PASS/MISS per target.
#[derive(Debug, Clone, Serialize)]
pub struct ErlangReport {
    /// The configuration it ran with.
    pub config: ErlangConfig,
    /// Erlang/OTP release (e.g. `"25"`).
    pub otp_release: String,
    /// Erlang's `erlang:memory(processes)` bytes per idle process (informational).
    pub erlang_process_bytes: f64,
    /// The rows, in a fixed order: local one-way, local call p50, local call p99, cross-node
    /// one-way, cross-node call p50, cross-node call p99, memory per idle actor, spawn rate.
    pub rows: Vec<Row>,
    /// The targeted ratios (named as their rows), with their verdicts.
    pub checks: Checks,
}

/// The metric names of [`ErlangReport::rows`], in order.
pub const METRICS: [&str; 8] = [
    "local one-way (msg/s)",
    "local call p50 (us)",
    "local call p99 (us)",
    "cross-node one-way (msg/s)",
    "cross-node call p50 (us)",
    "cross-node call p99 (us)",
    "memory per idle actor (B)",
    "spawn rate (actors/s)",
];

impl fmt::Display for ErlangReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "erlang: ours vs Erlang/OTP {} in the same run, {} B payload, {} messages + {} calls per run, {} rounds (medians), {} idle actors",
            self.otp_release, c.payload, c.messages, c.calls, c.rounds, c.idle_actors
        )?;
        writeln!(
            f,
            "{:<28} {:>14} {:>14} {:>9} {:>8} {:>7}",
            "metric", "ours", "erlang", "ratio", "target", "verdict"
        )?;
        writeln!(f, "{}", "-".repeat(85))?;
        for r in &self.rows {
            let (target, verdict) = self.checks.cells(&r.metric, "info");
            writeln!(
                f,
                "{:<28} {:>14.1} {:>14.1} {:>9.3} {:>8} {:>7}",
                r.metric, r.ours.median, r.erlang.median, r.ratio, target, verdict
            )?;
        }
        write!(
            f,
            "Erlang's erlang:memory(processes) per idle process: {:.0} B",
            self.erlang_process_bytes
        )
    }
}

/// The escript and epmd of the Erlang side.
struct Erlang {
    escript: PathBuf,
    script: PathBuf,
    epmd_port: u16,
    _dir: tempfile::TempDir,
}

impl Erlang {
    fn start() -> anyhow::Result<Erlang> {
        let escript = ensure_escript()?;
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("erlang_peer.erl");
        std::fs::write(&script, ESCRIPT)?;
        let epmd_port = free_port()?;
        let status = Command::new(epmd_path(&escript))
            .args(["-daemon", "-address", "127.0.0.1", "-port"])
            .arg(epmd_port.to_string())
            .status()
            .context("starting epmd")?;
        if !status.success() {
            bail!("epmd did not start: {status}");
        }
        Ok(Erlang {
            escript,
            script,
            epmd_port,
            _dir: dir,
        })
    }

    /// Run one mode; its `key=value` output line as pairs. The wait for the escript blocks
    /// its thread, so it is marked as blocking: node A lives on the same tokio runtime, and a
    /// worker stuck in a plain wait starves the tasks queued behind it (gossip heartbeats
    /// among them: node B declared A dead during a run, and the remote echo's reference died
    /// with the session).
    fn run(&self, args: &[String]) -> anyhow::Result<Vec<(String, f64)>> {
        tokio::task::block_in_place(|| self.run_blocking(args))
    }

    fn run_blocking(&self, args: &[String]) -> anyhow::Result<Vec<(String, f64)>> {
        let out = Command::new(&self.escript)
            .arg(&self.script)
            .args(args)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .context("running escript")?;
        if !out.status.success() {
            bail!("the Erlang side failed ({}): {out:?}", out.status);
        }
        parse_pairs(&String::from_utf8_lossy(&out.stdout))
    }

    fn otp_release(&self) -> String {
        let erl = self.escript.with_file_name("erl");
        Command::new(erl)
            .args([
                "-noshell",
                "-eval",
                "io:format(\"~s\", [erlang:system_info(otp_release)]), halt().",
            ])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".into())
    }
}

impl Drop for Erlang {
    fn drop(&mut self) {
        let _ = Command::new(epmd_path(&self.escript))
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdout(Stdio::null())
            .status();
    }
}

fn epmd_path(escript: &Path) -> PathBuf {
    escript.with_file_name("epmd")
}

/// Parse `key=value key=value` (numbers) into pairs.
pub fn parse_pairs(line: &str) -> anyhow::Result<Vec<(String, f64)>> {
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("not key=value: {kv:?} in {line:?}"))?;
            let v: f64 = v
                .parse()
                .map_err(|e| anyhow!("{k}: not a number ({e}) in {line:?}"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

fn get(pairs: &[(String, f64)], key: &str) -> anyhow::Result<f64> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow!("the Erlang side printed no {key}"))
}

/// Messaging figures of one run: one-way rate, call p50 and p99 (ns).
struct Messaging {
    oneway: f64,
    call: LatencySummary,
}

async fn ours_messaging(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    cfg: &ErlangConfig,
    messages: u64,
    calls: usize,
) -> anyhow::Result<Messaging> {
    let payload = json_payload(cfg.payload);
    let flush = json_payload(2);
    let timeout = Duration::from_secs(60);
    let elapsed = runtime_stream(node, echo, &payload, messages, &flush, timeout).await?;
    let mut samples = runtime_latency(node, echo, &payload, calls, timeout).await?;
    Ok(Messaging {
        oneway: messages as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        call: LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no samples"))?,
    })
}

fn erlang_messaging(erl: &Erlang, mode: &str, cfg: &ErlangConfig) -> anyhow::Result<[f64; 3]> {
    let p = erl.run(&[
        mode.to_string(),
        cfg.messages.to_string(),
        cfg.calls.to_string(),
        cfg.payload.to_string(),
    ])?;
    Ok([
        get(&p, "oneway_per_s")?,
        get(&p, "rtt_p50_ns")?,
        get(&p, "rtt_p99_ns")?,
    ])
}

/// Run the benchmark (see the module doc). Needs `dctl` (see [`locate_dctl`]) and a
/// multi-threaded tokio runtime.
pub async fn run_erlang(cfg: &ErlangConfig) -> anyhow::Result<ErlangReport> {
    let cfg = cfg.clone();
    tokio::spawn(async move { run_task(cfg).await })
        .await
        .context("the benchmark task panicked")?
}

async fn run_task(cfg: ErlangConfig) -> anyhow::Result<ErlangReport> {
    if cfg.rounds == 0 || cfg.messages == 0 || cfg.calls == 0 || cfg.idle_actors == 0 {
        bail!("rounds, messages, calls and idle actors must all be at least 1");
    }
    let dctl = locate_dctl().ok_or_else(|| {
        anyhow!("dctl binary not found: build it (cargo build -p dctl) or set DCTL_BIN")
    })?;
    let progress = |line: String| {
        if cfg.progress {
            eprintln!("{line}");
        }
    };
    let erl = Erlang::start()?;
    let otp_release = erl.otp_release();
    let mut set = NodeSet::new(&dctl, &cfg.cookie)?;
    let node = start_node_a("bench-erl-a", &cfg.cookie, set.dir()).await?;
    let result = with_node(&cfg, &node, &mut set, &erl, otp_release, &progress).await;
    node.shutdown().await;
    drop(set);
    result
}

async fn with_node(
    cfg: &ErlangConfig,
    node: &Node,
    set: &mut NodeSet,
    erl: &Erlang,
    otp_release: String,
    progress: &impl Fn(String),
) -> anyhow::Result<ErlangReport> {
    // Memory first, alone on a fresh node (no peer yet to replicate names to).
    progress(format!("memory: {} idle actors each side", cfg.idle_actors));
    let before = rss_of(None)?;
    let start = Instant::now();
    let mut names = Vec::with_capacity(cfg.idle_actors);
    for i in 0..cfg.idle_actors {
        let name = format!("idle-{i}");
        node.spawn(&name, Idle, ())
            .await
            .with_context(|| format!("spawning {name}"))?;
        names.push(name);
    }
    let spawn_rate = cfg.idle_actors as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let ours_memory = (rss_of(None)? - before) / cfg.idle_actors as f64;
    for name in &names {
        node.stop_actor(name)
            .await
            .with_context(|| format!("stopping {name}"))?;
    }
    let em = erl.run(&["memory".to_string(), cfg.idle_actors.to_string()])?;
    let (erl_memory, erl_process_bytes, erl_spawn) = (
        get(&em, "rss_bytes")?,
        get(&em, "process_bytes")?,
        get(&em, "spawn_per_s")?,
    );

    // Our second node, and the echo actors on both.
    let (_, gossip) = node
        .cluster_addrs()
        .ok_or_else(|| anyhow!("node A is not clustered"))?;
    let b_name = "bench-erl-b";
    set.spawn(b_name, Some(&gossip.to_string()))?;
    wait_lane(node, b_name, cfg.wait_limit).await?;
    let every = Duration::from_millis(50);
    let local: ActorRef<JsonMsg> = node
        .spawn("bench-erl-local-echo", runtime::echo::Echo, ())
        .await
        .context("spawning the local echo")?;
    let deadline = Instant::now() + cfg.wait_limit;
    loop {
        match node
            .spawn_on(
                b_name,
                "echo",
                "bench-erl-remote-echo",
                serde_json::Value::Null,
            )
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("spawning echo on {b_name}"))
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
    let remote: ActorRef<JsonMsg> = wait_for(
        "the remote echo resolvable",
        cfg.wait_limit,
        every,
        || async {
            Ok(node
                .resolve("bench-erl-remote-echo")
                .await
                .ok()
                .filter(|c| !c.get_id().is_local()))
        },
    )
    .await?
    .into();

    // Warm-up of ours (Erlang's is inside each of its runs).
    let (wm, wc) = ((cfg.messages / 10).max(1), (cfg.calls / 10).max(1));
    ours_messaging(node, &local, cfg, wm, wc).await?;
    ours_messaging(node, &remote, cfg, wm, wc).await?;

    let mut v: [(Vec<f64>, Vec<f64>); 6] = Default::default();
    for round in 1..=cfg.rounds {
        let ol = ours_messaging(node, &local, cfg, cfg.messages, cfg.calls).await?;
        let or = ours_messaging(node, &remote, cfg, cfg.messages, cfg.calls).await?;
        let el = erlang_messaging(erl, "local", cfg)?;
        let er = erlang_messaging(erl, "dist", cfg)?;
        progress(format!(
            "round {round}/{}: local one-way {:.0} | {:.0} msg/s, cross-node one-way {:.0} | {:.0} msg/s, cross-node call p50 {:.1} | {:.1} us (ours | Erlang)",
            cfg.rounds,
            ol.oneway,
            el[0],
            or.oneway,
            er[0],
            or.call.p50_ns / 1e3,
            er[1] / 1e3
        ));
        let pairs = [
            (ol.oneway, el[0]),
            (ol.call.p50_ns / 1e3, el[1] / 1e3),
            (ol.call.p99_ns / 1e3, el[2] / 1e3),
            (or.oneway, er[0]),
            (or.call.p50_ns / 1e3, er[1] / 1e3),
            (or.call.p99_ns / 1e3, er[2] / 1e3),
        ];
        for (slot, (o, e)) in v.iter_mut().zip(pairs) {
            slot.0.push(o);
            slot.1.push(e);
        }
    }

    let targets = [
        Some(Limit::AtLeast(LOCAL_ONEWAY_TARGET)),
        None,
        None,
        Some(Limit::AtLeast(REMOTE_ONEWAY_TARGET)),
        Some(Limit::AtMost(REMOTE_CALL_P50_TARGET)),
        None,
        Some(Limit::AtMost(MEMORY_TARGET)),
        None,
    ];
    let mut values: Vec<(Vec<f64>, Vec<f64>)> = v.into_iter().collect();
    values.push((vec![ours_memory], vec![erl_memory]));
    values.push((vec![spawn_rate], vec![erl_spawn]));
    let mut checks = Checks::new();
    let rows = METRICS
        .iter()
        .zip(targets)
        .zip(values)
        .map(|((metric, target), (o, e))| {
            let ours = Rounds::new(o).ok_or_else(|| anyhow!("no rounds"))?;
            let erlang = Rounds::new(e).ok_or_else(|| anyhow!("no rounds"))?;
            let ratio = ours.median / erlang.median;
            if let Some(t) = target {
                checks.add(*metric, ratio, t);
            }
            Ok(Row {
                metric: metric.to_string(),
                ours,
                erlang,
                ratio,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ErlangReport {
        config: cfg.clone(),
        otp_release,
        erlang_process_bytes: erl_process_bytes,
        rows,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_bad_lines_are_errors() {
        let p = parse_pairs("oneway_per_s=2160542.2 rtt_p50_ns=531\n").unwrap();
        assert_eq!(get(&p, "rtt_p50_ns").unwrap(), 531.0);
        assert!(get(&p, "rtt_p99_ns").is_err());
        assert!(parse_pairs("oneway_per_s").is_err());
        assert!(parse_pairs("x=fast").is_err());
    }
}
