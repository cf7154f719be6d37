//! The membership measurements: failure detection after `kill -9` and convergence of a
//! cluster of child processes, and the cluster helpers other benchmarks share.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procs::{cluster_view, http_client, sees_dead, sees_exactly, NodeSet};

use super::config::{cookie_for, progress, ClusterConfig};
use super::report::{Convergence, Detection, FailureDetection};

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

pub(super) async fn failure_detection(
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
            set.nodes[victim].pid().unwrap_or(0)
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

pub(super) async fn convergence(
    config: &ClusterConfig,
    dctl: &std::path::Path,
) -> anyhow::Result<Convergence> {
    let n = config.convergence_nodes;
    let mut set = NodeSet::new(dctl, &cookie_for(config, "conv"))?;
    let http = http_client()?;
    progress(config, || format!("convergence: starting {n} nodes"));
    let names = spawn_cluster(&mut set, "conv", n)?;
    let first = set.nodes[0].spawned_at.context("node 0 never spawned")?;
    let last = set.nodes[n - 1]
        .spawned_at
        .context("the last node never spawned")?;
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
