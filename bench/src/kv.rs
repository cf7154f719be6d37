//! KV store vs etcd 3.4: put throughput and latency, and linearizable get likewise, with three
//! members on loopback on each side, the same client concurrency, both fsyncing.
//!
//! Ours: three `dctl node start --kv-voter n1 --kv-voter n2 --kv-voter n3` processes, driven over
//! their admin HTTP API (`POST /kv/put`, `GET /kv/get`, linearizable). etcd: three `etcd`
//! members (Debian package `etcd-server`, installed with apt-get when missing and running as
//! root), driven over its HTTP/JSON gateway (`POST /v3/kv/put`, `POST /v3/kv/range`,
//! linearizable by default). Both clients are the same reqwest client spreading requests
//! round-robin over the three members, so each side forwards to its leader the same way.

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
use serde_json::{json, Value};

use crate::{
    procs::{free_tcp_port, free_udp_port, locate_dctl},
    stats::LatencySummary,
};

/// Sizes of a KV benchmark run.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// Puts per side.
    pub puts: usize,
    /// Gets per side.
    pub gets: usize,
    /// Concurrent client requests.
    pub concurrency: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Run the etcd side (skipped when false).
    pub etcd: bool,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            puts: 5000,
            gets: 10000,
            concurrency: 16,
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
            concurrency: 8,
            ..Default::default()
        }
    }
}

/// One side's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KvSide {
    /// `draft` or `etcd`.
    pub system: String,
    /// Puts per second.
    pub put_ops: f64,
    /// Put latency.
    pub put_latency: LatencySummary,
    /// Linearizable gets per second.
    pub get_ops: f64,
    /// Get latency.
    pub get_latency: LatencySummary,
}

/// The report: both sides and the ratios ours / etcd.
#[derive(Debug, Clone, Serialize)]
pub struct KvReport {
    /// Client concurrency.
    pub concurrency: usize,
    /// Value size.
    pub value_size: usize,
    /// Our KV store.
    pub draft: KvSide,
    /// etcd, when run.
    pub etcd: Option<KvSide>,
}

impl std::fmt::Display for KvReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "KV, 3 voters on loopback, fsync on, concurrency {}, {}-byte values",
            self.concurrency, self.value_size
        )?;
        writeln!(
            f,
            "{:<8} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10}",
            "system", "put ops/s", "put p50", "put p99", "get ops/s", "get p50", "get p99"
        )?;
        let ms = |ns: f64| format!("{:.2}ms", ns / 1e6);
        let sides: Vec<&KvSide> = std::iter::once(&self.draft)
            .chain(self.etcd.iter())
            .collect();
        for s in sides {
            writeln!(
                f,
                "{:<8} {:>12.0} {:>10} {:>10} {:>12.0} {:>10} {:>10}",
                s.system,
                s.put_ops,
                ms(s.put_latency.p50_ns),
                ms(s.put_latency.p99_ns),
                s.get_ops,
                ms(s.get_latency.p50_ns),
                ms(s.get_latency.p99_ns)
            )?;
        }
        if let Some(e) = &self.etcd {
            let d = &self.draft;
            writeln!(
                f,
                "ratios draft/etcd: put throughput {:.2}x, put p99 {:.2}x; get throughput {:.2}x, get p99 {:.2}x",
                d.put_ops / e.put_ops,
                d.put_latency.p99_ns / e.put_latency.p99_ns,
                d.get_ops / e.get_ops,
                d.get_latency.p99_ns / e.get_latency.p99_ns
            )?;
        }
        Ok(())
    }
}

struct Procs {
    children: Vec<Child>,
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

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
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

async fn start_draft(dctl: &Path, http: &reqwest::Client) -> anyhow::Result<(Procs, Vec<String>)> {
    let dir = tempfile::Builder::new().prefix("bench-kv-").tempdir()?;
    let mut children = Vec::new();
    let mut admins = Vec::new();
    let mut seed: Option<String> = None;
    for i in 1..=3 {
        let name = format!("n{i}");
        let admin = format!("127.0.0.1:{}", free_tcp_port()?);
        let gossip = format!("127.0.0.1:{}", free_udp_port()?);
        let listen = format!("127.0.0.1:{}", free_tcp_port()?);
        let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
        let mut cmd = Command::new(dctl);
        cmd.args(["--admin", &admin, "node", "start", "--name", &name])
            .args(["--listen", &listen, "--gossip", &gossip])
            .arg("--data-dir")
            .arg(dir.path().join(&name))
            .args(["--kv-voter", "n1", "--kv-voter", "n2", "--kv-voter", "n3"])
            .args(["--cookie", "bench-kv-cookie"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(s) = &seed {
            cmd.args(["--seed", s]);
        }
        children.push(
            cmd.spawn()
                .with_context(|| format!("cannot run {}", dctl.display()))?,
        );
        seed.get_or_insert(gossip);
        admins.push(admin);
    }
    let procs = Procs {
        children,
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
    Ok((procs, admins))
}

fn etcd_binary() -> anyhow::Result<PathBuf> {
    let find = || {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("etcd is missing: installing the Debian package etcd-server...");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "etcd-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "etcd-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find().ok_or_else(|| anyhow!("etcd is not installed and apt-get could not install etcd-server"))
}

async fn start_etcd(http: &reqwest::Client) -> anyhow::Result<(Procs, Vec<String>)> {
    let etcd = etcd_binary()?;
    let dir = tempfile::Builder::new().prefix("bench-etcd-").tempdir()?;
    let peers: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect::<Result<_, _>>()?;
    let clients: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect::<Result<_, _>>()?;
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

#[derive(Clone, Copy, PartialEq)]
enum System {
    Draft,
    Etcd,
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
}

fn request(
    http: &reqwest::Client,
    sys: System,
    op: Op,
    endpoint: &str,
    i: usize,
    value: &str,
    keys: usize,
) -> reqwest::RequestBuilder {
    match (sys, op) {
        (System::Draft, Op::Put) => http
            .post(format!("http://{endpoint}/kv/put"))
            .header("content-type", "application/json")
            .body(json!({"key": format!("bench/{i:08}"), "value": value}).to_string()),
        (System::Draft, Op::Get) => http.get(format!(
            "http://{endpoint}/kv/get?key=bench%2F{:08}",
            i % keys
        )),
        (System::Etcd, Op::Put) => http.post(format!("http://{endpoint}/v3/kv/put")).body(
            json!({"key": b64(format!("bench/{i:08}").as_bytes()), "value": b64(value.as_bytes())})
                .to_string(),
        ),
        (System::Etcd, Op::Get) => http
            .post(format!("http://{endpoint}/v3/kv/range"))
            .body(json!({"key": b64(format!("bench/{:08}", i % keys).as_bytes())}).to_string()),
    }
}

/// Run `total` operations with `concurrency` workers; returns (ops/s, latency).
async fn load(
    http: &reqwest::Client,
    (sys, op): (System, Op),
    endpoints: &[String],
    total: usize,
    concurrency: usize,
    value: &str,
    keys: usize,
) -> anyhow::Result<(f64, LatencySummary)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, endpoints, value) = (
            http.clone(),
            next.clone(),
            endpoints.to_vec(),
            value.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let ep = &endpoints[i % endpoints.len()];
                let t = Instant::now();
                let resp = request(&http, sys, op, ep, i, &value, keys)
                    .send()
                    .await
                    .with_context(|| format!("request to {ep}"))?;
                let status = resp.status();
                let body = resp.bytes().await?;
                if !status.is_success() {
                    bail!("{ep} answered {status}: {}", String::from_utf8_lossy(&body));
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

async fn measure(
    http: &reqwest::Client,
    sys: System,
    endpoints: &[String],
    config: &KvConfig,
) -> anyhow::Result<KvSide> {
    let value = "x".repeat(config.value_size);
    // Warm-up: connections, leader caches.
    load(
        http,
        (sys, Op::Put),
        endpoints,
        100,
        config.concurrency,
        &value,
        100,
    )
    .await?;
    let (put_ops, put_latency) = load(
        http,
        (sys, Op::Put),
        endpoints,
        config.puts,
        config.concurrency,
        &value,
        config.puts,
    )
    .await?;
    let (get_ops, get_latency) = load(
        http,
        (sys, Op::Get),
        endpoints,
        config.gets,
        config.concurrency,
        &value,
        config.puts,
    )
    .await?;
    Ok(KvSide {
        system: if sys == System::Draft {
            "draft"
        } else {
            "etcd"
        }
        .into(),
        put_ops,
        put_latency,
        get_ops,
        get_latency,
    })
}

/// Run the benchmark (ours first, then etcd, each cluster stopped before the next starts).
pub async fn run_kv(config: &KvConfig) -> anyhow::Result<KvReport> {
    let dctl = locate_dctl().ok_or_else(|| {
        anyhow!(
            "cannot find the dctl binary: build it (cargo build --release -p dctl) or set DCTL_BIN"
        )
    })?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .pool_max_idle_per_host(config.concurrency * 2)
        .build()?;
    let draft = {
        let (_procs, admins) = start_draft(&dctl, &http).await?;
        measure(&http, System::Draft, &admins, config).await?
    };
    let etcd = if config.etcd {
        let (_procs, endpoints) = start_etcd(&http).await?;
        Some(measure(&http, System::Etcd, &endpoints, config).await?)
    } else {
        None
    };
    Ok(KvReport {
        concurrency: config.concurrency,
        value_size: config.value_size,
        draft,
        etcd,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::b64(b"bench/1"), "YmVuY2gvMQ==");
        assert_eq!(super::b64(b"abc"), "YWJj");
        assert_eq!(super::b64(b"ab"), "YWI=");
    }
}
