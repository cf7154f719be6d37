//! `dctl run [PATH] [--instances N]`: build a service crate with cargo and run N supervised
//! instances of it joined to the local cluster `dctl up` started (found from its state file,
//! `.dctl/up/cluster.json`). An instance that exits is restarted (at most
//! [`MAX_RESTARTS`] times in [`RESTART_PERIOD`]); Ctrl-C or SIGTERM stops them gracefully
//! (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::process::{Child, Command};

use clap::Args;

/// The arguments of `dctl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service crate's directory (default: the current directory).
    pub path: Option<std::path::PathBuf>,
    /// How many instances (named NAME-1, NAME-2, ...).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// The data directory of the `dctl up` to join (default `.dctl/up`).
    #[arg(long)]
    pub cluster: Option<std::path::PathBuf>,
    /// Build with --release.
    #[arg(long)]
    pub release: bool,
}

/// Restarts allowed per instance within [`RESTART_PERIOD`] before it is given up on.
pub const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
pub const RESTART_PERIOD: Duration = Duration::from_secs(60);
/// How long an instance may take to stop after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

struct Instance {
    name: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    restarts: VecDeque<Instant>,
}

/// The cluster `dctl up` runs: its nodes' gossip addresses and the cookie.
fn cluster(dir: &Path) -> Result<(Vec<String>, String)> {
    let file = dir.join(crate::up::STATE_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow!(
            "no local cluster at {} ({e}): start one with `dctl up` first (or give --cluster DIR)",
            file.display()
        )
    })?;
    let state: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not valid JSON (written by `dctl up`)",
            file.display()
        )
    })?;
    let seeds: Vec<String> = state["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter_map(|n| n["gossip"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if seeds.is_empty() {
        bail!("{} lists no nodes", file.display());
    }
    let cookie = match (std::env::var("DCTL_COOKIE"), state["cookie_file"].as_str()) {
        (Ok(c), _) if !c.is_empty() => c,
        (_, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the cluster's secret {f}"))?
            .trim()
            .to_string(),
        _ => bail!("the cluster was started with --cookie: give the same secret in DCTL_COOKIE"),
    };
    Ok((seeds, cookie))
}

/// `cargo build` the crate and return the package name and its binary.
async fn build(manifest: &Path, release: bool) -> Result<(String, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    eprintln!("building {} ...", manifest.display());
    let out = cmd.output().await.context("cannot run cargo")?;
    if !out.status.success() {
        bail!("cargo build failed ({})", out.status);
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if msg["reason"] == "compiler-artifact" && is_bin {
            if let (Some(exe), Some(name)) =
                (msg["executable"].as_str(), msg["target"]["name"].as_str())
            {
                found = Some((name.to_string(), PathBuf::from(exe)));
            }
        }
    }
    found.ok_or_else(|| anyhow!("cargo built no binary from {}", manifest.display()))
}

fn spawn(exe: &Path, inst: &Instance, seeds: &[String], cookie: &str) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&inst.log)
        .with_context(|| format!("cannot open {}", inst.log.display()))?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--name",
        &inst.name,
        "--admin",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(&inst.data)
    .env("DCTL_COOKIE", cookie)
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(err)
    .kill_on_drop(true);
    for s in seeds {
        cmd.args(["--seed", s]);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

fn pid(c: &Option<Child>) -> String {
    c.as_ref()
        .and_then(Child::id)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "?".into())
}

pub async fn run(args: RunArgs) -> Result<()> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "{} has no Cargo.toml (create a service with `dctl new NAME`)",
            dir.display()
        );
    }
    let cluster_dir = args
        .cluster
        .clone()
        .unwrap_or_else(|| PathBuf::from(".dctl").join("up"));
    let (seeds, cookie) = cluster(&cluster_dir)?;
    let (name, exe) = build(&manifest, args.release).await?;
    let state = dir.join(".dctl").join("run");
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let mut instances: Vec<Instance> = (1..=args.instances)
        .map(|i| {
            let n = format!("{name}-{i}");
            Instance {
                data: state.join(&n),
                log: state.join(format!("{n}.log")),
                name: n,
                child: None,
                restarts: VecDeque::new(),
            }
        })
        .collect();
    for inst in instances.iter_mut() {
        inst.child = Some(spawn(&exe, inst, &seeds, &cookie)?);
        println!(
            "instance {} running, pid {} (log {})",
            inst.name,
            pid(&inst.child),
            inst.log.display()
        );
    }
    println!("Ctrl-C stops the {} instance(s).", instances.len());
    let signal = runtime::wait_for_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {}
        }
        for inst in instances.iter_mut() {
            let Some(child) = inst.child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            let now = Instant::now();
            inst.restarts
                .retain(|t| now.duration_since(*t) < RESTART_PERIOD);
            if inst.restarts.len() >= MAX_RESTARTS {
                println!(
                    "instance {} exited ({status}) {MAX_RESTARTS} times within {}s; giving up on it (log {})",
                    inst.name,
                    RESTART_PERIOD.as_secs(),
                    inst.log.display()
                );
                inst.child = None;
                continue;
            }
            inst.restarts.push_back(now);
            match spawn(&exe, inst, &seeds, &cookie) {
                Ok(c) => {
                    inst.child = Some(c);
                    println!(
                        "instance {} exited ({status}); restarted, pid {}",
                        inst.name,
                        pid(&inst.child)
                    );
                }
                Err(e) => {
                    println!(
                        "instance {} exited ({status}) and cannot be restarted: {e:#}",
                        inst.name
                    );
                    inst.child = None;
                }
            }
        }
        if instances.iter().all(|i| i.child.is_none()) {
            bail!("every instance was given up on");
        }
    }
    println!("stopping {} instance(s)...", instances.len());
    for inst in instances.iter() {
        if let Some(p) = inst.child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on a child process we started and have not reaped.
            unsafe {
                libc::kill(p as i32, libc::SIGTERM);
            }
        }
    }
    for inst in instances.iter_mut() {
        if let Some(child) = inst.child.as_mut() {
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(Ok(status)) => println!("instance {} stopped ({status})", inst.name),
                _ => {
                    let _ = child.kill().await;
                    println!(
                        "instance {} did not stop within {}s: killed",
                        inst.name,
                        STOP_TIMEOUT.as_secs()
                    );
                }
            }
        }
    }
    Ok(())
}
