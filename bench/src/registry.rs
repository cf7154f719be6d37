//! Service-registry propagation: time from `register` on one node until every other node lists
//! the instance, for clusters of several sizes (one `dctl node start` process per node).

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context};
use serde::Serialize;

use crate::{
    checks::Checks,
    procs::{cluster_view, http_client, locate_dctl, sees_exactly, NodeSet},
    stats::{percentile, Limit},
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Cluster sizes to measure (each a fresh cluster).
    pub sizes: Vec<usize>,
    /// Registrations measured per size.
    pub rounds: usize,
    /// Limit for one propagation (the target is "visible on all nodes within a second").
    pub target: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            sizes: vec![3, 10],
            rounds: 20,
            target: Duration::from_secs(1),
        }
    }
}

impl RegistryConfig {
    /// A small smoke run.
    pub fn quick() -> Self {
        RegistryConfig {
            sizes: vec![3],
            rounds: 3,
            target: Duration::from_secs(1),
        }
    }
}

/// Propagation times for one cluster size.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryRow {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Median time until all nodes list the instance, in ms.
    pub p50_ms: f64,
    /// Worst measured, in ms.
    pub max_ms: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryReport {
    /// One row per cluster size.
    pub rows: Vec<RegistryRow>,
    /// The target, in ms.
    pub target_ms: f64,
    /// Per size, the worst propagation against the target (`"N nodes: max (ms)"`).
    pub checks: Checks,
}

/// The name of the check of a cluster of `nodes`.
fn check_name(nodes: usize) -> String {
    format!("{nodes} nodes: max (ms)")
}

impl fmt::Display for RegistryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "registry propagation: register on one node -> listed on every node (target <= {:.0} ms)",
            self.target_ms
        )?;
        writeln!(
            f,
            "{:>6} {:>10} {:>10} {:>8}",
            "nodes", "p50 (ms)", "max (ms)", "verdict"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>10.1} {:>10.1} {:>8}",
                r.nodes,
                r.p50_ms,
                r.max_ms,
                self.checks.cells(&check_name(r.nodes), "-").1
            )?;
        }
        Ok(())
    }
}

async fn listed(client: &reqwest::Client, admin: &str, service: &str) -> bool {
    let Ok(resp) = client
        .get(format!(
            "http://{admin}/registry/services?service={service}"
        ))
        .send()
        .await
    else {
        return false;
    };
    let Ok(body) = resp.json::<serde_json::Value>().await else {
        return false;
    };
    body["instances"].as_array().is_some_and(|a| !a.is_empty())
}

/// Run the benchmark.
pub async fn run_registry(config: &RegistryConfig) -> anyhow::Result<RegistryReport> {
    let dctl =
        locate_dctl().ok_or_else(|| anyhow!("dctl binary not found (build it or set DCTL_BIN)"))?;
    anyhow::ensure!(config.rounds > 0, "rounds must be at least 1");
    let client = http_client()?;
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let mut set = NodeSet::new(&dctl, "draft-cookie")?;
        let names: Vec<String> = (1..=n).map(|i| format!("reg{i}")).collect();
        set.spawn(&names[0], None)?;
        let seed = set.nodes[0].gossip.clone();
        for name in &names[1..] {
            set.spawn(name, Some(&seed))?;
        }
        let want: Vec<&str> = names.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            set.check_running()?;
            let mut all = true;
            for node in &set.nodes {
                let ok = cluster_view(&client, &node.admin)
                    .await
                    .map(|m| sees_exactly(&m, &want))
                    .unwrap_or(false);
                all &= ok;
            }
            if all {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{n} nodes did not converge in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut samples = Vec::new();
        for r in 0..config.rounds {
            let origin = &set.nodes[r % n];
            let service = format!("bench-svc-{r}");
            let body = serde_json::json!({"service": service, "address": format!("127.0.0.1:{}", 20000 + r)});
            let started = Instant::now();
            let resp = client
                .post(format!("http://{}/registry/services", origin.admin))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .context("register")?;
            anyhow::ensure!(
                resp.status().is_success(),
                "register failed: {}",
                resp.status()
            );
            let mut pending: Vec<&str> = set.nodes.iter().map(|x| x.admin.as_str()).collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !pending.is_empty() {
                let mut still = Vec::new();
                for admin in pending {
                    if !listed(&client, admin, &service).await {
                        still.push(admin);
                    }
                }
                pending = still;
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "registration never reached every node"
                );
            }
            samples.push(started.elapsed());
        }
        samples.sort_unstable();
        let p50 = percentile(&samples, 0.5);
        let max = samples.last().copied().unwrap_or_default();
        rows.push(RegistryRow {
            nodes: n,
            p50_ms: p50.as_secs_f64() * 1e3,
            max_ms: max.as_secs_f64() * 1e3,
        });
        set.kill_all();
    }
    let target_ms = config.target.as_secs_f64() * 1e3;
    let mut checks = Checks::new();
    for r in &rows {
        checks.add(check_name(r.nodes), r.max_ms, Limit::AtMost(target_ms));
    }
    Ok(RegistryReport {
        rows,
        target_ms,
        checks,
    })
}
