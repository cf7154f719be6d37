//! Live-configuration latency: from `dctl kv put config/hello VALUE` until the running `hello`
//! service (the README's quick start, a service on the chassis) answers with the new value.
//! The peer measured in the same run is the `dctl kv put` command itself (process start, one
//! linearizable write, exit): the ratio says how much the watch and the re-apply add to it.
//! Target: p99 under 1 s.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::{
    checks::Checks,
    procs::{free_port, http_client, locate_dctl},
    stats::percentile,
    stats::Limit,
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ConfigBenchConfig {
    /// Changes measured.
    pub changes: usize,
    /// The target for the p99.
    pub target: Duration,
}

impl Default for ConfigBenchConfig {
    fn default() -> Self {
        ConfigBenchConfig {
            changes: 50,
            target: Duration::from_secs(1),
        }
    }
}

impl ConfigBenchConfig {
    /// A small smoke run.
    pub fn quick() -> Self {
        ConfigBenchConfig {
            changes: 5,
            ..Default::default()
        }
    }
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Changes measured.
    pub changes: usize,
    /// Put -> the service answers with the new value: median, ms.
    pub applied_p50_ms: f64,
    /// Same, 99th percentile, ms.
    pub applied_p99_ms: f64,
    /// The `dctl kv put` command alone: median, ms.
    pub put_p50_ms: f64,
    /// Same, 99th percentile, ms.
    pub put_p99_ms: f64,
    /// applied p50 / put p50.
    pub ratio_p50: f64,
    /// The target: applied p99 below `target` (named [`APPLIED_P99`]).
    pub checks: Checks,
}

/// The name of [`ConfigReport::checks`]' one target.
pub const APPLIED_P99: &str = "put -> applied p99 (ms)";

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "live config: dctl kv put -> the chassis service answers with the new value ({} changes)", self.changes)?;
        writeln!(f, "{:<34} {:>10} {:>10}", "", "p50 ms", "p99 ms")?;
        writeln!(
            f,
            "{:<34} {:>10.1} {:>10.1}",
            "put -> applied (service answers)", self.applied_p50_ms, self.applied_p99_ms
        )?;
        writeln!(
            f,
            "{:<34} {:>10.1} {:>10.1}",
            "dctl kv put alone (peer)", self.put_p50_ms, self.put_p99_ms
        )?;
        writeln!(f, "ratio applied/put (p50): {:.2}x", self.ratio_p50)?;
        writeln!(
            f,
            "target p99 < 1000 ms: {}",
            self.checks.cells(APPLIED_P99, "-").1
        )
    }
}

/// The `hello` sample binary: `$HELLO_BIN`, else next to `dctl`.
pub fn locate_hello() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HELLO_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let dctl = locate_dctl()?;
    let p = dctl
        .parent()?
        .join(format!("hello{}", std::env::consts::EXE_SUFFIX));
    p.is_file().then_some(p)
}

struct Killed(tokio::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn answer(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Run the benchmark (needs `dctl` and the `hello` sample built: `cargo build --release -p dctl
/// -p samples`).
pub async fn run_config(cfg: &ConfigBenchConfig) -> anyhow::Result<ConfigReport> {
    let dctl = locate_dctl().ok_or_else(|| anyhow!("no dctl binary: cargo build -p dctl"))?;
    let hello = locate_hello().ok_or_else(|| {
        anyhow!(
            "no hello binary next to {}: cargo build -p samples",
            dctl.display()
        )
    })?;
    let dir = tempfile::tempdir()?;
    let admin = format!("127.0.0.1:{}", free_port()?);
    let http = format!("127.0.0.1:{}", free_port()?);
    let cookie = "bench-config-cookie";
    let log = std::fs::File::create(dir.path().join("hello.log"))?;
    let _svc = Killed(
        tokio::process::Command::new(&hello)
            .args(["--name", "bench-hello", "--admin", &admin, "--http", &http])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("DCTL_COOKIE", cookie)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", hello.display()))?,
    );
    let client = http_client()?;
    let url = format!("http://{http}/hello/bench");
    let deadline = Instant::now() + Duration::from_secs(60);
    while answer(&client, &url).await.is_none() {
        if Instant::now() > deadline {
            bail!(
                "the hello service did not answer within 60 s (log: {})",
                dir.path().join("hello.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut applied = Vec::with_capacity(cfg.changes);
    let mut puts = Vec::with_capacity(cfg.changes);
    for i in 0..cfg.changes {
        let greeting = format!("G{i}");
        let expect = format!("{greeting}, bench!");
        let started = Instant::now();
        let mut put = put_command(&dctl, &admin, cookie, &format!("\"{greeting}\""))?;
        let mut put_done: Option<Duration> = None;
        let mut seen: Option<Duration> = None;
        while put_done.is_none() || seen.is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("change {i} not applied within 30 s");
            }
            if put_done.is_none() {
                if let Some(status) = put.try_wait()? {
                    if !status.success() {
                        bail!("dctl kv put failed ({status})");
                    }
                    put_done = Some(started.elapsed());
                }
            }
            if seen.is_none() && answer(&client, &url).await.as_deref() == Some(expect.as_str()) {
                seen = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        applied.extend(seen);
        puts.extend(put_done);
    }
    applied.sort_unstable();
    puts.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (a50, a99) = (
        ms(percentile(&applied, 0.5)),
        ms(percentile(&applied, 0.99)),
    );
    let (p50, p99) = (ms(percentile(&puts, 0.5)), ms(percentile(&puts, 0.99)));
    let mut checks = Checks::new();
    checks.add(APPLIED_P99, a99, Limit::Below(ms(cfg.target)));
    Ok(ConfigReport {
        changes: cfg.changes,
        applied_p50_ms: a50,
        applied_p99_ms: a99,
        put_p50_ms: p50,
        put_p99_ms: p99,
        ratio_p50: a50 / p50.max(f64::MIN_POSITIVE),
        checks,
    })
}

fn put_command(
    dctl: &Path,
    admin: &str,
    cookie: &str,
    value: &str,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(dctl)
        .args(["--admin", admin, "kv", "put", "config/hello", value])
        .env("DCTL_COOKIE", cookie)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run dctl kv put")
}
