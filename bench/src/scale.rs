//! The `scale` benchmark: how membership costs grow with the number of nodes.
//!
//! For each cluster size N (10, 25 and 50 by default), N `dctl node start` processes on
//! loopback (full nodes, with every service, as a user starts them) are spawned, the first
//! without seed and the others seeded with it, and measured:
//!
//! 1. **convergence**: time from the spawn of the last node until every node's `GET /cluster`
//!    lists all N alive and connected;
//! 2. **steady state** over a window after the cluster settled: gossip bytes per second per
//!    node (sent + received UDP payload, from each node's `draft_gossip_bytes_*_total`), and
//!    CPU per node (% of a core, from `/proc/PID/stat`), mean and worst;
//! 3. **failure detection**: the last node is killed with SIGKILL; time until every survivor
//!    reports it dead.
//!
//! Then how each figure grows with N: the ratio of the largest cluster's figure to the
//! smallest's, against N's own ratio. Targets (printed PASS/MISS, never asserted): at the
//! largest size convergence and detection < 5 s; per-node gossip traffic grows sub-linearly in N
//! (its ratio below N's ratio). Every child process is killed at the end, also on errors.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context};
use serde::Serialize;

use crate::{
    checks::{Checks, TableStyle},
    cluster::{poll_nodes, spawn_cluster, wait_converged_within},
    memory::cpu_secs_of,
    procs::{http_client, locate_dctl, sees_dead, NodeSet},
    stats::Limit,
};

/// Convergence and detection target at the largest size, seconds (below).
pub const SCALE_SECS_TARGET: f64 = 5.0;

/// Parameters of the `scale` benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleConfig {
    /// Cluster sizes, smallest first.
    pub sizes: Vec<usize>,
    /// How long the steady-state window lasts.
    pub window: Duration,
    /// How long a cluster may take to converge, or to see a kill, before the run fails.
    pub wait_limit: Duration,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            sizes: vec![10, 25, 50],
            window: Duration::from_secs(10),
            wait_limit: Duration::from_secs(120),
            progress: true,
        }
    }
}

impl ScaleConfig {
    /// The smoke version: 3 and 5 nodes, a 2 s window.
    pub fn quick() -> Self {
        ScaleConfig {
            sizes: vec![3, 5],
            window: Duration::from_secs(2),
            wait_limit: Duration::from_secs(60),
            progress: false,
        }
    }
}

/// The figures of one cluster size.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Seconds from the last spawn to everyone seeing everyone.
    pub convergence_secs: f64,
    /// Gossip bytes per second per node (sent + received), mean over the nodes.
    pub gossip_bytes_per_s_mean: f64,
    /// The same, the busiest node.
    pub gossip_bytes_per_s_max: f64,
    /// CPU per node, % of one core, mean over the nodes.
    pub cpu_percent_mean: f64,
    /// The same, the busiest node.
    pub cpu_percent_max: f64,
    /// Seconds from `kill -9` of one node until every survivor reported it dead.
    pub detection_secs: f64,
}

/// The result of [`run_scale`].
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// The configuration it ran with.
    pub config: ScaleConfig,
    /// One row per size, smallest first.
    pub rows: Vec<ScaleRow>,
    /// Largest size / smallest size.
    pub n_ratio: f64,
    /// How per-node gossip traffic grew: largest size's mean / smallest's.
    pub gossip_growth: f64,
    /// How per-node CPU grew: largest size's mean / smallest's.
    pub cpu_growth: f64,
    /// The targets.
    pub checks: Checks,
}

impl ScaleReport {
    /// Whether every target was met.
    pub fn all_pass(&self) -> bool {
        self.checks.all_pass()
    }
}

fn progress(config: &ScaleConfig, line: impl FnOnce() -> String) {
    if config.progress {
        eprintln!("{}", line());
    }
}

/// Run the benchmark (needs a built `dctl`, see [`locate_dctl`]).
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let report = bench::scale::run_scale(&bench::scale::ScaleConfig::quick()).await.unwrap();
/// println!("{report}");
/// # });
/// ```
pub async fn run_scale(config: &ScaleConfig) -> anyhow::Result<ScaleReport> {
    if config.sizes.is_empty() {
        return Err(anyhow!("no cluster sizes to run"));
    }
    let dctl = locate_dctl()
        .ok_or_else(|| anyhow!("dctl is not built: run `cargo build --release -p dctl` first"))?;
    let mut rows = Vec::new();
    for &n in &config.sizes {
        rows.push(
            one_size(config, &dctl, n)
                .await
                .with_context(|| format!("{n} nodes"))?,
        );
    }
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let n_ratio = last.nodes as f64 / first.nodes as f64;
    let gossip_growth = last.gossip_bytes_per_s_mean / first.gossip_bytes_per_s_mean.max(1.0);
    let cpu_growth = last.cpu_percent_mean / first.cpu_percent_mean.max(0.01);
    let mut checks = Checks::new();
    let mut check = |metric: String, value: f64, target: Limit| {
        checks.add(metric, value, target);
    };
    check(
        format!("convergence, {} nodes (s)", last.nodes),
        last.convergence_secs,
        Limit::Below(SCALE_SECS_TARGET),
    );
    check(
        format!("kill -9 -> dead on all, {} nodes (s)", last.nodes),
        last.detection_secs,
        Limit::Below(SCALE_SECS_TARGET),
    );
    check(
        format!(
            "gossip bytes/s per node, growth {}->{} nodes (vs N x{n_ratio:.1})",
            first.nodes, last.nodes
        ),
        gossip_growth,
        Limit::Below(n_ratio),
    );
    Ok(ScaleReport {
        config: config.clone(),
        rows,
        n_ratio,
        gossip_growth,
        cpu_growth,
        checks,
    })
}

/// The sum of the gossip byte counters in a node's `/metrics`.
async fn gossip_bytes(http: &reqwest::Client, admin: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .with_context(|| format!("GET {admin}/metrics"))?
        .text()
        .await
        .with_context(|| format!("GET {admin}/metrics"))?;
    let sample = |name: &str| -> anyhow::Result<f64> {
        testkit::metric::sample(&text, name).with_context(|| format!("{admin}: /metrics"))
    };
    Ok(sample("draft_gossip_bytes_sent_total")? + sample("draft_gossip_bytes_received_total")?)
}

/// Every node's gossip byte total and CPU seconds, now.
async fn sample_all(http: &reqwest::Client, set: &NodeSet) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut out = Vec::with_capacity(set.nodes.len());
    for node in &set.nodes {
        let bytes = gossip_bytes(http, &node.admin).await?;
        let pid = node
            .pid()
            .with_context(|| format!("node {} is not running", node.name))?;
        let cpu = cpu_secs_of(Some(pid))?;
        out.push((bytes, cpu));
    }
    Ok(out)
}

async fn one_size(
    config: &ScaleConfig,
    dctl: &std::path::Path,
    n: usize,
) -> anyhow::Result<ScaleRow> {
    let cookie = format!("bench-scale-{n}-{}", std::process::id());
    let mut set = NodeSet::new(dctl, &cookie)?;
    let http = http_client()?;
    progress(config, || format!("scale: starting {n} nodes"));
    let names = spawn_cluster(&mut set, &format!("sc{n}"), n)?;
    let last_spawn = set.nodes[n - 1]
        .spawned_at
        .context("the last node never spawned")?;
    let done = wait_converged_within(
        &http,
        &mut set,
        &names,
        Duration::from_millis(100),
        config.wait_limit,
    )
    .await?;
    let convergence_secs = done.duration_since(last_spawn).as_secs_f64();
    progress(config, || {
        format!("scale: {n} nodes converged {convergence_secs:.3} s after the last spawn")
    });

    // Let start-up work (KV learners catching up, first registrations) pass, then measure.
    tokio::time::sleep(config.window / 2).await;
    set.check_running()?;
    let t0 = Instant::now();
    let before = sample_all(&http, &set).await?;
    tokio::time::sleep(config.window).await;
    let after = sample_all(&http, &set).await?;
    let secs = t0.elapsed().as_secs_f64();
    let rates: Vec<(f64, f64)> = before
        .iter()
        .zip(&after)
        .map(|((b0, c0), (b1, c1))| ((b1 - b0) / secs, (c1 - c0) / secs * 100.0))
        .collect();
    let mean = |f: fn(&(f64, f64)) -> f64| rates.iter().map(f).sum::<f64>() / rates.len() as f64;
    let max = |f: fn(&(f64, f64)) -> f64| rates.iter().map(f).fold(0.0, f64::max);
    let gossip_mean = mean(|r| r.0);
    let gossip_max = max(|r| r.0);
    let cpu_mean = mean(|r| r.1);
    let cpu_max = max(|r| r.1);
    progress(config, || {
        format!(
            "scale: {n} nodes: gossip {:.0} B/s per node (max {:.0}), CPU {cpu_mean:.2} % (max {cpu_max:.2})",
            gossip_mean, gossip_max
        )
    });

    let victim = n - 1;
    let killed = names[victim].clone();
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let t0 = Instant::now();
    set.nodes[victim].kill()?;
    let deadline = t0 + config.wait_limit;
    let mut seen = vec![false; n];
    let mut last_seen = t0;
    loop {
        let pending: Vec<usize> = survivors.iter().copied().filter(|&i| !seen[i]).collect();
        if pending.is_empty() {
            break;
        }
        for (i, ok, at) in poll_nodes(&http, &set, &pending, |v| sees_dead(v, &killed)).await {
            if ok {
                seen[i] = true;
                last_seen = last_seen.max(at);
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{killed} not reported dead by every survivor within {:?} (logs in {})",
                config.wait_limit,
                set.dir().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detection_secs = last_seen.duration_since(t0).as_secs_f64();
    progress(config, || {
        format!("scale: {n} nodes: {killed} dead on all survivors after {detection_secs:.3} s")
    });
    set.kill_all();
    Ok(ScaleRow {
        nodes: n,
        convergence_secs,
        gossip_bytes_per_s_mean: gossip_mean,
        gossip_bytes_per_s_max: gossip_max,
        cpu_percent_mean: cpu_mean,
        cpu_percent_max: cpu_max,
        detection_secs,
    })
}

impl fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scale: `dctl node start` processes on loopback (full nodes), steady state over {:?}",
            self.config.window
        )?;
        writeln!(
            f,
            "{:>6} {:>14} {:>16} {:>16} {:>10} {:>10} {:>14}",
            "nodes",
            "converge (s)",
            "gossip B/s/node",
            "gossip max B/s",
            "CPU %",
            "CPU max %",
            "kill->dead (s)"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>14.3} {:>16.0} {:>16.0} {:>10.2} {:>10.2} {:>14.3}",
                r.nodes,
                r.convergence_secs,
                r.gossip_bytes_per_s_mean,
                r.gossip_bytes_per_s_max,
                r.cpu_percent_mean,
                r.cpu_percent_max,
                r.detection_secs
            )?;
        }
        writeln!(
            f,
            "growth {}->{} nodes (x{:.1}): gossip per node x{:.2}, CPU per node x{:.2}",
            self.rows[0].nodes,
            self.rows[self.rows.len() - 1].nodes,
            self.n_ratio,
            self.gossip_growth,
            self.cpu_growth
        )?;
        writeln!(f)?;
        let style = TableStyle {
            name: 62,
            value: 10,
            decimals: 3,
            limit: 10,
            verdict: 5,
        };
        write!(f, "{}", self.checks.table("target", style))?;
        Ok(())
    }
}
