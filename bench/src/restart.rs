//! Restart latency of a supervisor: a crash sent to a one_for_one supervisor's permanent worker
//! -> the new incarnation running (its `pre_start`), p50/p99, versus Erlang/OTP's `supervisor`
//! doing the same (an escript, `erlang-base` from Debian, installed with apt-get when missing).
//!
//! Both sides crash without logging (our worker returns an error from its handler, the Erlang
//! worker exits with reason `crash` under `logger` level `none`), restart with no backoff and
//! report the start from the new incarnation's init. Rounds alternate ours / Erlang; the report
//! gives the median over rounds of each side's p50 and p99 and their ratio (target <= 1x).

use std::{
    fmt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use actors::{ChildSpec, Intensity, Strategy, Supervisor, SupervisorSpec};
use anyhow::{anyhow, Context};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    checks::Checks,
    stats::{LatencySummary, Limit, Rounds},
};

const ESCRIPT: &str = include_str!("../assets/restart_bench.erl");

/// What to run.
#[derive(Debug, Clone)]
pub struct RestartConfig {
    /// Crashes per side and round.
    pub crashes: usize,
    /// Rounds (each: ours, then Erlang).
    pub rounds: usize,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            crashes: 10_000,
            rounds: 5,
        }
    }
}

impl RestartConfig {
    /// A smoke run.
    pub fn quick() -> Self {
        RestartConfig {
            crashes: 300,
            rounds: 2,
        }
    }
}

/// The result: per side, the median over rounds of p50 and p99 (ns).
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// Our p50 per round (ns).
    pub ours_p50: Rounds,
    /// Our p99 per round (ns).
    pub ours_p99: Rounds,
    /// Erlang's p50 per round (ns).
    pub erlang_p50: Rounds,
    /// Erlang's p99 per round (ns).
    pub erlang_p99: Rounds,
    /// Crashes per side and round.
    pub crashes: usize,
    /// The ratios against their target (`"p50"`, `"p99"`: ours / Erlang at most 1).
    pub checks: Checks,
}

impl RestartReport {
    /// ours / Erlang, p50.
    pub fn ratio_p50(&self) -> f64 {
        self.ours_p50.median / self.erlang_p50.median
    }
    /// ours / Erlang, p99.
    pub fn ratio_p99(&self) -> f64 {
        self.ours_p99.median / self.erlang_p99.median
    }
}

impl fmt::Display for RestartReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |ns: f64| ns / 1000.0;
        writeln!(
            f,
            "restart latency (crash -> running again), {} crashes x {} rounds, median of rounds",
            self.crashes,
            self.ours_p50.values.len()
        )?;
        writeln!(
            f,
            "{:<6} {:>12} {:>12} {:>8} {:>6}",
            "", "ours (us)", "erlang (us)", "ratio", "<=1x"
        )?;
        for (name, ours, erl, ratio) in [
            ("p50", &self.ours_p50, &self.erlang_p50, self.ratio_p50()),
            ("p99", &self.ours_p99, &self.erlang_p99, self.ratio_p99()),
        ] {
            writeln!(
                f,
                "{name:<6} {:>12.1} {:>12.1} {:>8.2} {:>6}",
                us(ours.median),
                us(erl.median),
                ratio,
                self.checks.cells(name, "-").1
            )?;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Crashy {
    started: mpsc::UnboundedSender<Instant>,
}

impl Actor for Crashy {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        let _ = self.started.send(Instant::now());
        Ok(())
    }
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err("crash".into())
    }
}

async fn ours(crashes: usize) -> anyhow::Result<LatencySummary> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: u32::MAX,
            period: Duration::from_secs(1),
        })
        .child(
            ChildSpec::worker(
                "c",
                Some("bench-restart-child".into()),
                Crashy { started: tx },
                (),
            )
            .shutdown(actors::Shutdown::BrutalKill),
        );
    let (sup, handle) = Supervisor::start(None, spec).await?;
    rx.recv()
        .await
        .ok_or_else(|| anyhow!("first start not seen"))?;
    let mut samples = Vec::with_capacity(crashes);
    for _ in 0..crashes {
        let child = ractor::registry::where_is::<&str>("bench-restart-child")
            .ok_or_else(|| anyhow!("child not registered"))?;
        let t0 = Instant::now();
        child.send_message(())?;
        let t1 = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("restart not seen within 10 s")?
            .ok_or_else(|| anyhow!("supervisor gone"))?;
        samples.push(t1 - t0);
        // The name is registered before pre_start runs; wait until the new one is linked.
        while ractor::registry::where_is::<&str>("bench-restart-child")
            .is_none_or(|c| c.get_status() != ractor::ActorStatus::Running)
        {
            tokio::task::yield_now().await;
        }
    }
    sup.stop(None);
    let _ = handle.await;
    LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no samples"))
}

fn erlang(
    escript: &std::path::Path,
    script: &std::path::Path,
    crashes: usize,
) -> anyhow::Result<(f64, f64)> {
    let out = Command::new(escript)
        .arg(script)
        .arg(crashes.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running escript")?;
    if !out.status.success() {
        return Err(anyhow!("the Erlang side failed: {out:?}"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next()) {
        (Some(Ok(p50)), Some(Ok(p99))) => Ok((p50, p99)),
        _ => Err(anyhow!("unreadable Erlang output: {text}")),
    }
}

pub(crate) fn ensure_escript() -> anyhow::Result<PathBuf> {
    let find = || {
        ["/usr/bin/escript", "/usr/local/bin/escript"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("escript missing: installing the Debian package (apt-get install erlang-base)");
    for update in [false, true] {
        if update {
            let _ = Command::new("apt-get").arg("update").status();
        }
        let _ = Command::new("apt-get")
            .args(["install", "-y", "erlang-base"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
        if let Some(p) = find() {
            return Ok(p);
        }
    }
    Err(anyhow!("escript is not installed and apt-get could not install it (run as root: apt-get install erlang-base)"))
}

/// Run the benchmark (see the module doc).
pub async fn run_restart(cfg: &RestartConfig) -> anyhow::Result<RestartReport> {
    let escript = ensure_escript()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("restart_bench.erl");
    std::fs::write(&script, ESCRIPT)?;
    let script = Arc::new(script);
    let (mut op50, mut op99, mut ep50, mut ep99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..cfg.rounds.max(1) {
        let o = ours(cfg.crashes).await?;
        op50.push(o.p50_ns);
        op99.push(o.p99_ns);
        let (esc, sc, n) = (escript.clone(), script.clone(), cfg.crashes);
        let (p50, p99) = tokio::task::spawn_blocking(move || erlang(&esc, &sc, n)).await??;
        ep50.push(p50);
        ep99.push(p99);
    }
    let r = |v| Rounds::new(v).ok_or_else(|| anyhow!("no rounds"));
    let mut report = RestartReport {
        ours_p50: r(op50)?,
        ours_p99: r(op99)?,
        erlang_p50: r(ep50)?,
        erlang_p99: r(ep99)?,
        crashes: cfg.crashes,
        checks: Checks::new(),
    };
    let (r50, r99) = (report.ratio_p50(), report.ratio_p99());
    report.checks.add("p50", r50, Limit::AtMost(1.0));
    report.checks.add("p99", r99, Limit::AtMost(1.0));
    Ok(report)
}
