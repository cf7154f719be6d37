//! The `memory` benchmark: what idle actors cost, on their own node and on the others.
//!
//! Node A (this process) joins `peers` `dctl node start` child processes (a 3-node cluster by
//! default), then spawns `actors` idle named actors through [`Node::spawn`], in batches. It
//! reports:
//!
//! * A's resident-set growth per actor, and the whole run's RSS (target: 1 M actors in < 2 GiB,
//!   checked when `actors` >= 1 000 000, else informational);
//! * spawn rate of the first and of the last 1 000 spawns (target: last >= 0.8x first);
//! * the time of one tree snapshot of A with every actor in it (informational);
//! * each other node's RSS growth per remote actor and in total, measured after their
//!   growth settles (targets < 100 B per actor, < 10 MB per 100 000 actors);
//! * each node's CPU while idle after the spawns, over `idle_window` (target < 2 % of one
//!   core; A's CPU is the process's, the others' from `/proc/PID/stat`).
//!
//! Linux only (`/proc`). Targets are printed, PASS/MISS, never asserted.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use runtime::{MemberState, Node};
use serde::Serialize;

use crate::{
    checks::{Checks, TableStyle},
    procs::{free_port, locate_dctl, wait_for, NodeSet},
    stats::Limit,
};

/// Other nodes' growth per remote actor, bytes (below).
pub const REMOTE_BYTES_PER_ACTOR_TARGET: f64 = 100.0;
/// Other nodes' growth for 100 000 remote actors, bytes (below).
pub const REMOTE_PER_100K_TARGET: f64 = 10e6;
/// Spawn rate of the last 1 000 / the first 1 000 (at least).
pub const SPAWN_FLAT_TARGET: f64 = 0.8;
/// Idle CPU per node, percent of one core (below).
pub const IDLE_CPU_TARGET: f64 = 2.0;
/// RSS of the spawning node with 1 M actors, bytes (below).
pub const MILLION_RSS_TARGET: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryConfig {
    /// Idle actors spawned on node A.
    pub actors: usize,
    /// Other nodes (child processes).
    pub peers: usize,
    /// Window over which idle CPU is measured.
    #[serde(skip)]
    pub idle_window: Duration,
    /// Cookie of the cluster.
    pub cookie: String,
    /// Limit for waiting on nodes and on the others' memory to settle.
    #[serde(skip)]
    pub wait_limit: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            actors: 100_000,
            peers: 2,
            idle_window: Duration::from_secs(5),
            cookie: "bench-memory-cookie".into(),
            wait_limit: Duration::from_secs(120),
            progress: false,
        }
    }
}

impl MemoryConfig {
    /// A smoke run (seconds).
    pub fn quick() -> Self {
        MemoryConfig {
            actors: 3_000,
            peers: 1,
            idle_window: Duration::from_secs(1),
            wait_limit: Duration::from_secs(60),
            ..MemoryConfig::default()
        }
    }
}

/// One node's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeMemory {
    /// Node name.
    pub name: String,
    /// Whether the actors were spawned on it.
    pub spawning: bool,
    /// RSS before the spawns, bytes.
    pub rss_before: f64,
    /// RSS after, bytes.
    pub rss_after: f64,
    /// Growth per actor of A, bytes.
    pub bytes_per_actor: f64,
    /// CPU while idle after the spawns, percent of one core.
    pub idle_cpu_percent: f64,
}

/// The result of [`run_memory`].
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// The configuration it ran with.
    pub config: MemoryConfig,
    /// Per node, A first.
    pub nodes: Vec<NodeMemory>,
    /// Spawns per second, first 1 000.
    pub spawn_rate_first: f64,
    /// Spawns per second, last 1 000.
    pub spawn_rate_last: f64,
    /// Seconds for all the spawns.
    pub spawn_secs: f64,
    /// Seconds for one tree snapshot of A.
    pub tree_snapshot_secs: f64,
    /// The targets.
    pub checks: Checks,
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: f64| b / 1e6;
        writeln!(
            f,
            "memory: {} idle actors spawned through Node on node A, {} other nodes",
            self.config.actors, self.config.peers
        )?;
        writeln!(
            f,
            "{:<22} {:>12} {:>12} {:>14} {:>12}",
            "node", "RSS before", "RSS after", "B per actor", "idle CPU %"
        )?;
        for n in &self.nodes {
            writeln!(
                f,
                "{:<22} {:>10.1}MB {:>10.1}MB {:>14.1} {:>12.2}",
                format!("{}{}", n.name, if n.spawning { " (spawning)" } else { "" }),
                mb(n.rss_before),
                mb(n.rss_after),
                n.bytes_per_actor,
                n.idle_cpu_percent
            )?;
        }
        writeln!(
            f,
            "spawn: {:.2} s in all, {:.0}/s first 1 000, {:.0}/s last 1 000; tree snapshot {:.3} s",
            self.spawn_secs, self.spawn_rate_first, self.spawn_rate_last, self.tree_snapshot_secs
        )?;
        writeln!(f)?;
        let style = TableStyle {
            name: 52,
            value: 14,
            decimals: 2,
            limit: 12,
            verdict: 8,
        };
        write!(f, "{}", self.checks.table("target", style))?;
        Ok(())
    }
}

/// An actor that waits for messages and does nothing with them (also `bench erlang`'s).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Node A of a benchmark, in this process: clustered on free loopback ports, no admin API, its
/// data under `dir` (the node set's directory), so child nodes can join it.
pub(crate) async fn start_node_a(
    name: &str,
    cookie: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Node> {
    Node::builder()
        .name(name)
        .without_admin()
        .cookie(cookie)
        .listen_addr(&format!("127.0.0.1:{}", free_port()?))
        .gossip_addr(&format!("127.0.0.1:{}", free_port()?))
        .data_dir(dir.join(name))
        .start()
        .await
        .context("starting node A in this process")
}

/// RSS of a process (`self` or a pid), bytes.
pub fn rss_of(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".into(),
    };
    let statm = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("unreadable {path}: {statm}"))?
        .parse()
        .with_context(|| format!("unreadable {path}"))?;
    Ok(pages * page_size())
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    page.max(1) as f64
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_secs_of(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")" and state.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("unreadable {path}"))?
            .parse::<f64>()
            .with_context(|| format!("unreadable {path}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// Run the benchmark (see the module doc). Needs `dctl` and a multi-threaded tokio runtime.
pub async fn run_memory(cfg: &MemoryConfig) -> anyhow::Result<MemoryReport> {
    let cfg = cfg.clone();
    tokio::spawn(async move { run_task(cfg).await })
        .await
        .context("the benchmark task panicked")?
}

async fn run_task(cfg: MemoryConfig) -> anyhow::Result<MemoryReport> {
    if cfg.actors < 2_000 {
        bail!("at least 2 000 actors (the first and last 1 000 are timed)");
    }
    let dctl = locate_dctl().ok_or_else(|| {
        anyhow!("dctl binary not found: build it (cargo build -p dctl) or set DCTL_BIN")
    })?;
    let mut set = NodeSet::new(&dctl, &cfg.cookie)?;
    let node = start_node_a("bench-mem-a", &cfg.cookie, set.dir()).await?;
    let result = with_node(&cfg, &node, &mut set).await;
    node.shutdown().await;
    drop(set);
    result
}

async fn with_node(
    cfg: &MemoryConfig,
    node: &Node,
    set: &mut NodeSet,
) -> anyhow::Result<MemoryReport> {
    let progress = |line: String| {
        if cfg.progress {
            eprintln!("{line}");
        }
    };
    let (_, gossip) = node
        .cluster_addrs()
        .ok_or_else(|| anyhow!("node A is not clustered"))?;
    let names: Vec<String> = (1..=cfg.peers).map(|i| format!("bench-mem-{i}")).collect();
    for name in &names {
        set.spawn(name, Some(&gossip.to_string()))?;
    }
    let every = Duration::from_millis(100);
    wait_for("every node connected", cfg.wait_limit, every, || async {
        let members = node.members().await;
        Ok(names
            .iter()
            .all(|n| {
                members
                    .iter()
                    .any(|m| &m.name == n && m.state == MemberState::Alive && m.connected)
            })
            .then_some(()))
    })
    .await?;
    let pids: Vec<u32> = set
        .nodes
        .iter()
        .map(|n| {
            n.pid()
                .with_context(|| format!("node {} is not running", n.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let before_a = rss_of(None)?;
    let before: Vec<f64> = pids
        .iter()
        .map(|p| rss_of(Some(*p)))
        .collect::<anyhow::Result<_>>()?;

    progress(format!("spawning {} idle actors on A", cfg.actors));
    let start = Instant::now();
    let mut first = Duration::ZERO;
    let mut last_start = start;
    for i in 0..cfg.actors {
        if i == cfg.actors - 1_000 {
            last_start = Instant::now();
        }
        let name = format!("m-{i}");
        node.spawn(&name, Idle, ())
            .await
            .with_context(|| format!("spawning {name}"))?;
        if i == 999 {
            first = start.elapsed();
        }
        if cfg.progress && i > 0 && i % 50_000 == 0 {
            progress(format!(
                "  {i} spawned, {:.1} s",
                start.elapsed().as_secs_f64()
            ));
        }
    }
    let spawn_secs = start.elapsed().as_secs_f64();
    let last = last_start.elapsed();
    let after_a = rss_of(None)?;
    let t = Instant::now();
    let tree = node.tree().await.context("tree snapshot")?;
    let tree_snapshot_secs = t.elapsed().as_secs_f64();
    if tree.find("m-0").is_none() {
        bail!("the tree snapshot does not show the spawned actors");
    }

    // The others grow as the names reach them: wait until their RSS stops growing.
    progress("waiting for the other nodes' memory to settle".into());
    let mut after = before.clone();
    let deadline = Instant::now() + cfg.wait_limit;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: Vec<f64> = pids
            .iter()
            .map(|p| rss_of(Some(*p)))
            .collect::<anyhow::Result<_>>()?;
        let settled = now
            .iter()
            .zip(&after)
            .all(|(n, a)| (n - a).abs() < 512.0 * 1024.0);
        after = now;
        if settled || Instant::now() > deadline {
            break;
        }
    }
    set.check_running()?;

    progress(format!("idle CPU over {:?}", cfg.idle_window));
    let cpu0_a = cpu_secs_of(None)?;
    let cpu0: Vec<f64> = pids
        .iter()
        .map(|p| cpu_secs_of(Some(*p)))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(cfg.idle_window).await;
    let window = t0.elapsed().as_secs_f64();
    let cpu_a = (cpu_secs_of(None)? - cpu0_a) / window * 100.0;
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| Ok((cpu_secs_of(Some(*p))? - c0) / window * 100.0))
        .collect::<anyhow::Result<_>>()?;

    let n = cfg.actors as f64;
    let mut nodes = vec![NodeMemory {
        name: node.name().to_string(),
        spawning: true,
        rss_before: before_a,
        rss_after: after_a,
        bytes_per_actor: (after_a - before_a) / n,
        idle_cpu_percent: cpu_a,
    }];
    for (i, name) in names.iter().enumerate() {
        nodes.push(NodeMemory {
            name: name.clone(),
            spawning: false,
            rss_before: before[i],
            rss_after: after[i],
            bytes_per_actor: (after[i] - before[i]) / n,
            idle_cpu_percent: cpu[i],
        });
    }
    let rate = |d: Duration| 1_000.0 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    let (spawn_rate_first, spawn_rate_last) = (rate(first), rate(last));

    let mut checks = Checks::new();
    let mut check = |metric: &str, value: f64, target: Limit| {
        checks.add(metric, value, target);
    };
    let worst_remote = nodes[1..]
        .iter()
        .map(|n| n.bytes_per_actor)
        .fold(f64::MIN, f64::max);
    check(
        "other nodes: bytes per remote actor (worst)",
        worst_remote,
        Limit::Below(REMOTE_BYTES_PER_ACTOR_TARGET),
    );
    check(
        "other nodes: MB per 100 000 remote actors (worst)",
        worst_remote * 100_000.0 / 1e6,
        Limit::Below(REMOTE_PER_100K_TARGET / 1e6),
    );
    check(
        "spawn rate, last 1 000 / first 1 000",
        spawn_rate_last / spawn_rate_first,
        Limit::AtLeast(SPAWN_FLAT_TARGET),
    );
    let worst_cpu = nodes
        .iter()
        .map(|n| n.idle_cpu_percent)
        .fold(f64::MIN, f64::max);
    check(
        "idle CPU per node, % of a core (worst)",
        worst_cpu,
        Limit::Below(IDLE_CPU_TARGET),
    );
    if cfg.actors >= 1_000_000 {
        check(
            "spawning node RSS with 1 M actors (GiB)",
            after_a / (1024.0 * 1024.0 * 1024.0),
            Limit::Below(MILLION_RSS_TARGET / (1024.0 * 1024.0 * 1024.0)),
        );
    }
    Ok(MemoryReport {
        config: cfg.clone(),
        nodes,
        spawn_rate_first,
        spawn_rate_last,
        spawn_secs,
        tree_snapshot_secs,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_and_cpu_are_readable_and_positive() {
        assert!(rss_of(None).unwrap() > 0.0);
        assert!(cpu_secs_of(None).unwrap() >= 0.0);
        assert!(rss_of(Some(u32::MAX)).is_err());
    }
}
