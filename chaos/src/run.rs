//! One test run: start the cluster, run a workload while the nemesis injects faults, heal, check
//! the history, print a result table and write `history.jsonl` and `results.json` to `--out`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;

use crate::{
    checker::{self, Report},
    client::Client,
    cluster::Cluster,
    history::{pair, History, OpType},
    nemesis::{parse_faults, Nemesis},
    net::Firewall,
    workload::{self, Ctx},
};

/// The runner's command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chaos", about = "Jepsen-style fault tests of a dctl cluster")]
pub struct Options {
    /// `kv-register`, `kv-set`, `kv-lock`, `broker` or `registry`.
    #[arg(long)]
    pub workload: String,
    /// Faults, comma-separated (`partition-halves`, `partition-random-node`,
    /// `partition-majorities-ring`, `bridge`, `kill`, `pause`, `clock`, `file-corruption`), or
    /// `none`.
    #[arg(long, default_value = "none")]
    pub nemesis: String,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Number of nodes (each a KV voter), at most 250.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Seed of the fault schedule and the clients' choices (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for the history, results and node logs (default: a new temporary directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds a fault is held (about; the quiet time between faults is about half of it).
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Client processes (default: twice the nodes).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// The dctl binary (default: next to this one, e.g. target/debug/dctl).
    #[arg(long)]
    pub dctl: Option<PathBuf>,
    /// Check a kept `history.jsonl` with the workload's checker instead of running a test
    /// (e.g. again after a checker fix).
    #[arg(long, value_name = "HISTORY")]
    pub check: Option<PathBuf>,
}

impl Options {
    /// Parse from arguments (as the binary does).
    pub fn parse_from<I, T>(args: I) -> Options
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Options as clap::Parser>::parse_from(args)
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The checker's report (with the nemesis's problems added as anomalies).
    pub report: Report,
    /// Client operations by completion type: ok, fail, info.
    pub ok: usize,
    /// Failed operations.
    pub fail: usize,
    /// Operations of unknown outcome.
    pub info: usize,
    /// Faults applied.
    pub faults: usize,
    /// Checker time.
    pub checker_time: Duration,
    /// The seed used.
    pub seed: u64,
    /// Where the history is.
    pub out: PathBuf,
}

impl Outcome {
    /// Number of anomalies.
    pub fn anomalies(&self) -> usize {
        self.report.anomalies.len()
    }

    /// The result table.
    pub fn table(&self, opts: &Options) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "workload {} | nemesis {} | nodes {} | time {} s | seed {}\n",
            opts.workload, opts.nemesis, opts.nodes, opts.time, self.seed
        ));
        s.push_str(&format!("{:<40} {:>10}\n", "", "count"));
        s.push_str(&format!("{:<40} {:>10}\n", "operations ok", self.ok));
        s.push_str(&format!("{:<40} {:>10}\n", "operations fail", self.fail));
        s.push_str(&format!("{:<40} {:>10}\n", "operations info", self.info));
        s.push_str(&format!("{:<40} {:>10}\n", "faults applied", self.faults));
        for (k, v) in &self.report.notes {
            s.push_str(&format!("{:<40} {:>10}\n", k, v));
        }
        s.push_str(&format!("{:<40} {:>10}\n", "anomalies", self.anomalies()));
        for (k, n) in self.report.counts() {
            s.push_str(&format!("{:<40} {:>10}\n", format!("  {k}"), n));
        }
        s.push_str(&format!(
            "{:<40} {:>8} ms\n",
            "checker time",
            self.checker_time.as_millis()
        ));
        for a in self.report.anomalies.iter().take(10) {
            s.push_str(&format!(
                "  {}: {} (history {:?})\n",
                a.kind, a.detail, a.indexes
            ));
        }
        s.push_str(&format!(
            "{}\nhistory: {}\n",
            if self.anomalies() == 0 {
                "VALID"
            } else {
                "INVALID"
            },
            self.out.join("history.jsonl").display()
        ));
        s
    }
}

fn default_dctl() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dctl")))
        .unwrap_or_else(|| PathBuf::from("target/debug/dctl"))
}

/// Check a history with the workload's checker.
pub fn check(workload: &str, ops: &[crate::history::Op]) -> anyhow::Result<Report> {
    Ok(match workload {
        "kv-register" => checker::register::check(ops),
        "kv-set" => checker::set::check(ops),
        "kv-lock" => checker::lock::check(ops),
        "broker" => checker::broker::check(ops),
        "registry" => checker::registry::check(ops),
        w => {
            anyhow::bail!("unknown workload '{w}' (kv-register, kv-set, kv-lock, broker, registry)")
        }
    })
}

/// Run one test.
pub async fn run(opts: Options) -> anyhow::Result<Outcome> {
    let faults = parse_faults(&opts.nemesis).map_err(anyhow::Error::msg)?;
    check(&opts.workload, &[])?; // the workload name is valid
    anyhow::ensure!((1..=250).contains(&opts.nodes), "--nodes must be 1 to 250");
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let out = match &opts.out {
        Some(d) => d.clone(),
        None => tempfile::Builder::new().prefix("chaos-").tempdir()?.keep(),
    };
    std::fs::create_dir_all(&out)?;
    let nodes_dir = out.join("nodes");
    if nodes_dir.exists() {
        std::fs::remove_dir_all(&nodes_dir)?;
    }
    let clock = faults.contains(&crate::nemesis::Fault::Clock);
    let mut cluster = Cluster::new(
        opts.dctl.clone().unwrap_or_else(default_dctl),
        &nodes_dir,
        opts.nodes,
        clock,
    )?;
    // Rules first (connections are marked when they open), then the nodes.
    let mut fw = if faults.iter().any(|f| f.is_partition()) {
        Some(Firewall::new(&cluster.members()).context("cannot set up the partition rules")?)
    } else {
        None
    };
    cluster.start_all()?;
    cluster.wait_ready(Duration::from_secs(60)).await?;

    let history = History::new();
    let mut nemesis = Nemesis::new(
        faults,
        StdRng::seed_from_u64(seed),
        Duration::from_secs(opts.interval.max(1)),
    );
    let ctx = Ctx {
        client: Client::new()?,
        history: history.clone(),
        nodes: cluster
            .specs
            .iter()
            .map(|s| (s.name.clone(), s.admin.clone()))
            .collect(),
        down: nemesis.down.clone(),
        concurrency: opts.concurrency.unwrap_or(opts.nodes * 2).max(1),
        seed,
    };
    let until = Instant::now() + Duration::from_secs(opts.time);
    let nem = async {
        nemesis.run(&mut cluster, &mut fw, &history, until).await?;
        if nemesis.down.lock().map(|d| d.is_empty()).unwrap_or(false) {
            cluster
                .wait_ready(Duration::from_secs(60))
                .await
                .context("after the final heal")?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let work = async {
        match opts.workload.as_str() {
            "kv-register" => workload::kv_register::run(&ctx, until, nem).await,
            "kv-set" => workload::kv_set::run(&ctx, until, nem).await,
            "kv-lock" => workload::kv_lock::run(&ctx, until, nem).await,
            "broker" => workload::broker::run(&ctx, until, nem).await,
            _ => workload::registry::run(&ctx, until, nem).await,
        }
    };
    tokio::select! {
        r = work => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
    drop(fw);
    history.write_jsonl(&out.join("history.jsonl"))?;

    let ops = history.snapshot();
    let t = Instant::now();
    let mut report = check(&opts.workload, &ops)?;
    let checker_time = t.elapsed();
    for p in &nemesis.problems {
        report.anomalies.push(checker::Anomaly {
            kind: "node-did-not-restart".into(),
            detail: p.clone(),
            indexes: vec![],
        });
    }
    let done = pair(&ops);
    let count = |k: OpType| done.iter().filter(|c| c.kind == k).count();
    let outcome = Outcome {
        ok: count(OpType::Ok),
        fail: count(OpType::Fail),
        info: count(OpType::Info),
        faults: nemesis.applied,
        checker_time,
        seed,
        out: out.clone(),
        report,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "workload": opts.workload, "nemesis": opts.nemesis, "nodes": opts.nodes,
            "time_secs": opts.time, "seed": seed, "ok": outcome.ok, "fail": outcome.fail,
            "info": outcome.info, "faults": outcome.faults, "notes": outcome.report.notes,
            "anomalies": outcome.report.anomalies, "checker_ms": checker_time.as_millis() as u64,
        }))?,
    )?;
    Ok(outcome)
}
