//! KV store vs etcd 3.4 over the same native gRPC client: put throughput and latency, and
//! linearizable range likewise, three members on loopback on each side, both fsyncing, both
//! data dirs on a real disk (refused on tmpfs).
//!
//! Ours: three `dctl node start --kv-voter n1 --kv-voter n2 --kv-voter n3` processes with their
//! etcd v3 API (`--etcd-listen`). etcd: three `etcd` members (Debian package `etcd-server`,
//! installed with apt-get when missing and running as root). Both are driven by the
//! `etcd-client` crate (tonic), one client per side balancing over its three members, so each
//! side forwards to its leader the same way. Both clusters run for the whole benchmark and the
//! rounds alternate (draft, etcd, draft, ...; at least 3 per side); figures are medians over a
//! side's rounds, and every target prints PASS or MISS.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::{
    checks::Checks,
    procs::{free_port, locate_dctl, Cookie, NodeProcess},
    stats::{LatencySummary, Limit, Rounds},
};

/// Sizes of a KV benchmark run.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// Puts per round.
    pub puts: usize,
    /// Ranges per round.
    pub gets: usize,
    /// Client concurrency levels, each measured separately.
    pub concurrency: Vec<usize>,
    /// Rounds per side and concurrency (at least 3).
    pub rounds: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Run the etcd side (skipped when false: no ratios, no targets).
    pub etcd: bool,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            puts: 4000,
            gets: 8000,
            concurrency: vec![16, 256],
            rounds: 3,
            value_size: 128,
            etcd: true,
        }
    }
}

impl KvConfig {
    /// A small smoke run.
    pub fn quick() -> Self {
        KvConfig {
            puts: 300,
            gets: 600,
            concurrency: vec![8],
            ..Default::default()
        }
    }
}

/// One side's figures at one concurrency: medians over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct KvSide {
    /// `draft` or `etcd`.
    pub system: String,
    /// Puts per second.
    pub put_ops: Rounds,
    /// Put p99 (ns).
    pub put_p99_ns: Rounds,
    /// Linearizable ranges per second.
    pub get_ops: Rounds,
    /// Range p99 (ns).
    pub get_p99_ns: Rounds,
}

/// Both sides at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct KvLevel {
    /// Client concurrency.
    pub concurrency: usize,
    /// Our KV store.
    pub draft: KvSide,
    /// etcd, when run.
    pub etcd: Option<KvSide>,
    /// The targets (when etcd ran).
    pub targets: Checks,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct KvReport {
    /// Value size.
    pub value_size: usize,
    /// Rounds per side.
    pub rounds: usize,
    /// Where the data dirs were, and its file system type.
    pub data_dir: String,
    /// One entry per concurrency level.
    pub levels: Vec<KvLevel>,
}

impl std::fmt::Display for KvReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "KV over etcd-client (gRPC), 3 voters on loopback, fsync on, {}-byte values, {} alternating rounds per side (medians), data in {}",
            self.value_size, self.rounds, self.data_dir
        )?;
        let ms = |ns: f64| format!("{:.2}ms", ns / 1e6);
        for l in &self.levels {
            writeln!(f, "concurrency {}", l.concurrency)?;
            writeln!(
                f,
                "  {:<8} {:>12} {:>10} {:>12} {:>10}",
                "system", "put ops/s", "put p99", "range ops/s", "range p99"
            )?;
            for s in std::iter::once(&l.draft).chain(l.etcd.iter()) {
                writeln!(
                    f,
                    "  {:<8} {:>12.0} {:>10} {:>12.0} {:>10}",
                    s.system,
                    s.put_ops.median,
                    ms(s.put_p99_ns.median),
                    s.get_ops.median,
                    ms(s.get_p99_ns.median)
                )?;
            }
            for t in l.targets.iter() {
                // the verdict last, as in every bench, so `bench all` lists the row
                writeln!(
                    f,
                    "  c{} draft/etcd {}: {:.2}x (target {})  {}",
                    l.concurrency,
                    t.metric,
                    t.value,
                    t.target,
                    t.verdict()
                )?;
            }
        }
        Ok(())
    }
}

/// The processes of one side (etcd members, or `dctl` nodes, killed on their own drop) and
/// their directory.
struct Procs {
    children: Vec<Child>,
    _nodes: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn poll<F, Fut>(what: &str, limit: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn start_draft(
    dctl: &Path,
    http: &reqwest::Client,
    base: &Path,
) -> anyhow::Result<(Procs, Vec<String>)> {
    let dir = tempfile::Builder::new()
        .prefix("bench-kv-")
        .tempdir_in(base)?;
    let mut nodes: Vec<NodeProcess> = Vec::new();
    let mut etcds = Vec::new();
    for i in 1..=3 {
        let name = format!("n{i}");
        let etcd = format!("127.0.0.1:{}", free_port()?);
        let seed = nodes.first().map(|n| n.gossip.clone());
        let mut node = NodeProcess::new(dctl, &name, dir.path())?
            .cookie(Cookie::Arg("bench-kv-cookie".into()))
            .env("RUST_LOG", "warn")
            .args(["--etcd-listen", &etcd])
            .args(["--kv-voter", "n1", "--kv-voter", "n2", "--kv-voter", "n3"])
            .args(seed.iter().flat_map(|s| ["--seed", s.as_str()]));
        node.spawn()?;
        nodes.push(node);
        etcds.push(etcd);
    }
    let admins: Vec<String> = nodes.iter().map(|n| n.admin.clone()).collect();
    let procs = Procs {
        children: Vec::new(),
        _nodes: nodes,
        _dir: dir,
    };
    for a in &admins {
        let url = format!("http://{a}/kv/status");
        poll("a KV leader", Duration::from_secs(60), || {
            let req = http.get(&url);
            async move {
                match req.send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["leader"].is_string()),
                    Err(_) => false,
                }
            }
        })
        .await?;
    }
    Ok((procs, etcds))
}

fn etcd_binary() -> anyhow::Result<PathBuf> {
    crate::procs::apt_install("etcd-server", &["/usr/bin/etcd", "/usr/local/bin/etcd"])
}

async fn start_etcd(http: &reqwest::Client, base: &Path) -> anyhow::Result<(Procs, Vec<String>)> {
    let etcd = etcd_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("bench-etcd-")
        .tempdir_in(base)?;
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peers[i]))
        .collect();
    let mut children = Vec::new();
    for i in 0..3 {
        let name = format!("e{}", i + 1);
        let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
        let c = format!("http://127.0.0.1:{}", clients[i]);
        let p = format!("http://127.0.0.1:{}", peers[i]);
        let child = Command::new(&etcd)
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(dir.path().join(&name))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run etcd")?;
        children.push(child);
    }
    let procs = Procs {
        children,
        _nodes: Vec::new(),
        _dir: dir,
    };
    let endpoints: Vec<String> = clients.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    for e in &endpoints {
        let url = format!("http://{e}/health");
        poll("etcd health", Duration::from_secs(60), || {
            let req = http.get(&url);
            async move {
                match req.send().await {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["health"] == "true"),
                    Err(_) => false,
                }
            }
        })
        .await?;
    }
    Ok((procs, endpoints))
}

/// The data dir base: `BENCH_DATA_DIR` or the temp dir, refused when it is tmpfs or ramfs.
fn data_base() -> anyhow::Result<(PathBuf, String)> {
    let base = std::env::var_os("BENCH_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let c = std::ffi::CString::new(base.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("bad path {}", base.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a zeroed statfs for the call to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!(
            "cannot statfs {}: {}",
            base.display(),
            std::io::Error::last_os_error()
        );
    }
    let kind = match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794c_7630 => "overlayfs",
        _ => "other",
    };
    if kind == "tmpfs" || kind == "ramfs" {
        bail!(
            "{} is {kind}: fsync there measures nothing; set BENCH_DATA_DIR to a directory on a disk",
            base.display()
        );
    }
    Ok((base.clone(), format!("{} ({kind})", base.display())))
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Range,
}

/// Run `total` operations with `concurrency` workers sharing one client; (ops/s, latency).
async fn load(
    client: &etcd_client::Client,
    op: Op,
    total: usize,
    concurrency: usize,
    value: &str,
    keys: usize,
) -> anyhow::Result<(f64, LatencySummary)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (mut client, next, value) = (client.clone(), next.clone(), value.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                match op {
                    Op::Put => {
                        client
                            .put(format!("bench/{i:08}"), value.as_str(), None)
                            .await
                            .context("put")?;
                    }
                    Op::Range => {
                        let r = client
                            .get(format!("bench/{:08}", i % keys), None)
                            .await
                            .context("range")?;
                        if r.kvs().is_empty() {
                            bail!("bench/{:08} is missing", i % keys);
                        }
                    }
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.map_err(|e| anyhow!("worker: {e}"))??);
    }
    let secs = start.elapsed().as_secs_f64();
    let summary = LatencySummary::from_samples(&mut all).ok_or_else(|| anyhow!("no samples"))?;
    Ok((total as f64 / secs, summary))
}

/// One round on one side: puts, then linearizable ranges over the keys just put.
async fn round(
    client: &etcd_client::Client,
    config: &KvConfig,
    concurrency: usize,
) -> anyhow::Result<[f64; 4]> {
    let value = "x".repeat(config.value_size);
    let (put_ops, put) = load(
        client,
        Op::Put,
        config.puts,
        concurrency,
        &value,
        config.puts,
    )
    .await?;
    let (get_ops, get) = load(
        client,
        Op::Range,
        config.gets,
        concurrency,
        &value,
        config.puts,
    )
    .await?;
    Ok([put_ops, put.p99_ns, get_ops, get.p99_ns])
}

fn side(system: &str, rounds: &[[f64; 4]]) -> anyhow::Result<KvSide> {
    let col = |i: usize| {
        Rounds::new(rounds.iter().map(|r| r[i]).collect()).ok_or_else(|| anyhow!("no rounds"))
    };
    Ok(KvSide {
        system: system.into(),
        put_ops: col(0)?,
        put_p99_ns: col(1)?,
        get_ops: col(2)?,
        get_p99_ns: col(3)?,
    })
}

/// The targets: put throughput >= 1.5x etcd at p99 <= 0.75x; linearizable range
/// >= 2x at p99 <= 0.5x.
fn targets(d: &KvSide, e: &KvSide) -> Checks {
    let mut t = Checks::new();
    t.add(
        "put throughput",
        d.put_ops.median / e.put_ops.median,
        Limit::AtLeast(1.5),
    );
    t.add(
        "put p99",
        d.put_p99_ns.median / e.put_p99_ns.median,
        Limit::AtMost(0.75),
    );
    t.add(
        "range throughput",
        d.get_ops.median / e.get_ops.median,
        Limit::AtLeast(2.0),
    );
    t.add(
        "range p99",
        d.get_p99_ns.median / e.get_p99_ns.median,
        Limit::AtMost(0.5),
    );
    t
}

async fn client(endpoints: &[String]) -> anyhow::Result<etcd_client::Client> {
    etcd_client::Client::connect(
        endpoints,
        Some(etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(5))),
    )
    .await
    .context("connect with etcd-client")
}

/// Run the benchmark: both clusters up, alternating rounds per concurrency level.
pub async fn run_kv(config: &KvConfig) -> anyhow::Result<KvReport> {
    let dctl = locate_dctl().ok_or_else(|| {
        anyhow!(
            "cannot find the dctl binary: build it (cargo build --release -p dctl) or set DCTL_BIN"
        )
    })?;
    let (base, data_dir) = data_base()?;
    let rounds = config.rounds.max(3);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let (_draft_procs, draft_eps) = start_draft(&dctl, &http, &base).await?;
    let draft = client(&draft_eps).await?;
    let etcd = if config.etcd {
        let (procs, eps) = start_etcd(&http, &base).await?;
        Some((procs, client(&eps).await?))
    } else {
        None
    };
    // Warm-up: connections, leader caches, the first fsyncs.
    let warm = KvConfig {
        puts: 200,
        gets: 200,
        ..config.clone()
    };
    round(&draft, &warm, 16).await?;
    if let Some((_, e)) = &etcd {
        round(e, &warm, 16).await?;
    }
    let mut levels = Vec::new();
    for &c in &config.concurrency {
        let c = c.max(1);
        let (mut d, mut e) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            d.push(round(&draft, config, c).await?);
            if let Some((_, ec)) = &etcd {
                e.push(round(ec, config, c).await?);
            }
        }
        let dside = side("draft", &d)?;
        let eside = if etcd.is_some() {
            Some(side("etcd", &e)?)
        } else {
            None
        };
        let targets = eside
            .as_ref()
            .map(|es| targets(&dside, es))
            .unwrap_or_default();
        levels.push(KvLevel {
            concurrency: c,
            draft: dside,
            etcd: eside,
            targets,
        });
    }
    Ok(KvReport {
        value_size: config.value_size,
        rounds,
        data_dir,
        levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(v: f64) -> Rounds {
        Rounds::new(vec![v, v, v]).expect("rounds")
    }

    /// A side whose every round measured `ops` operations/s and `p99` ns.
    fn s(ops: f64, p99: f64) -> KvSide {
        KvSide {
            system: "x".into(),
            put_ops: rs(ops),
            put_p99_ns: rs(p99),
            get_ops: rs(ops),
            get_p99_ns: rs(p99),
        }
    }

    #[test]
    fn targets_compare_medians_as_ratios() {
        let t = targets(&s(300.0, 1.0), &s(100.0, 4.0));
        assert!(t.all_pass(), "{t:?}");
        let t = targets(&s(120.0, 1.0), &s(100.0, 1.0));
        assert_eq!(t.verdicts().pass, 0, "{t:?}");
    }

    #[test]
    fn every_target_row_reaches_the_bench_all_summary() {
        let level = |concurrency| KvLevel {
            concurrency,
            draft: s(300.0, 1.0),
            etcd: Some(s(100.0, 4.0)),
            targets: targets(&s(300.0, 1.0), &s(100.0, 4.0)),
        };
        let report = KvReport {
            value_size: 128,
            rounds: 3,
            data_dir: "/tmp (ext4)".into(),
            levels: vec![level(16), level(256)],
        };
        let rows = crate::all::verdict_rows(&report.to_string());
        let per_level = report.levels[0].targets.verdicts().pass;
        assert!(per_level > 0);
        assert_eq!(rows.len(), 2 * per_level, "{report}");
        assert!(
            rows.iter()
                .any(|(r, v)| r.starts_with("c256 ") && *v == "PASS"),
            "{rows:?}"
        );
    }
}
