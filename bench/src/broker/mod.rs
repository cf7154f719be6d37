//! Broker fan-out: 1 producer to 10 consumers spread over 3 nodes, our broker (3 `dctl node
//! start` processes, consumers on Server-Sent Events, the producer POSTing CloudEvents batches)
//! against a 3-server `nats-server` cluster on loopback (consumers and producer speaking the NATS
//! text protocol), in the same run.
//!
//! * Throughput: `events` events of a 256-byte JSON payload sent as fast as the producer can;
//!   events/s = events / (first send -> the last consumer has them all). Our producer sends
//!   batches of `batch` events per HTTP request (`application/cloudevents-batch+json`); the NATS
//!   producer flushes its socket every `batch` PUBs.
//! * Latency: `latency_events` single events, one every `latency_interval`; each consumer
//!   records arrival time minus the send timestamp carried in the payload (same machine clock).
//!   Ours is one HTTP POST per event (what a client of the HTTP binding sees); NATS one PUB.
//!
//! `nats-server` comes from the Debian package of that name; it is installed with apt-get
//! when missing (root needed), else the run fails with a message saying so.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    net::TcpStream,
};

use crate::{
    procs::{cluster_view, free_port, http_client, locate_dctl, sees_exactly, NodeSet},
    stats::LatencySummary,
};

/// Settings of the broker benchmark.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Events in the throughput run.
    pub events: u64,
    /// Events per producer request (ours) or per socket flush (NATS).
    pub batch: usize,
    /// Events in the latency run.
    pub latency_events: usize,
    /// Gap between latency events.
    pub latency_interval: Duration,
    /// Payload bytes (the event's `data`).
    pub payload: usize,
    /// Consumers, spread round-robin over the 3 nodes/servers.
    pub consumers: usize,
    /// The dctl binary (default: [`locate_dctl`]).
    pub dctl: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            events: 100_000,
            batch: 200,
            latency_events: 2_000,
            latency_interval: Duration::from_millis(1),
            payload: 256,
            consumers: 10,
            dctl: None,
            progress: true,
        }
    }
}

impl BrokerConfig {
    /// A small smoke run.
    pub fn quick() -> Self {
        BrokerConfig {
            events: 5_000,
            latency_events: 200,
            ..Self::default()
        }
    }
}

/// One side's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Events per second from the producer to all consumers.
    pub events_per_sec: f64,
    /// End-to-end latency.
    pub latency: Option<LatencySummary>,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    /// Our broker.
    pub ours: SideReport,
    /// nats-server.
    pub nats: SideReport,
    /// ours / NATS throughput (target >= 0.5).
    pub throughput_ratio: f64,
    /// ours / NATS p99 latency (target <= 2).
    pub p99_ratio: Option<f64>,
    /// Events, consumers and payload of the run.
    pub events: u64,
    /// Consumers.
    pub consumers: usize,
    /// Payload bytes.
    pub payload: usize,
}

impl std::fmt::Display for BrokerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |l: &Option<LatencySummary>, p99: bool| {
            l.map(|l| format!("{:.0} us", if p99 { l.p99_ns } else { l.p50_ns } / 1e3))
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            f,
            "broker fan-out: 1 producer -> {} consumers over 3 nodes, {} events, {} B payload",
            self.consumers, self.events, self.payload
        )?;
        writeln!(
            f,
            "{:<22}{:>16}{:>16}{:>10}",
            "", "ours", "nats-server", "ratio"
        )?;
        writeln!(
            f,
            "{:<22}{:>16.0}{:>16.0}{:>10.2}   (target >= 0.5)",
            "throughput (events/s)",
            self.ours.events_per_sec,
            self.nats.events_per_sec,
            self.throughput_ratio
        )?;
        writeln!(
            f,
            "{:<22}{:>16}{:>16}{:>10}",
            "latency p50",
            us(&self.ours.latency, false),
            us(&self.nats.latency, false),
            match (self.ours.latency, self.nats.latency) {
                (Some(a), Some(b)) => format!("{:.2}", a.p50_ns / b.p50_ns),
                _ => "-".into(),
            }
        )?;
        writeln!(
            f,
            "{:<22}{:>16}{:>16}{:>10}   (target <= 2)",
            "latency p99",
            us(&self.ours.latency, true),
            us(&self.nats.latency, true),
            self.p99_ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into())
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A JSON payload of exactly `size` bytes (when `size` allows) carrying the send time.
fn payload(size: usize) -> String {
    let head = format!("{{\"ts\":{},\"pad\":\"", now_ns());
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The send time in a payload (`"ts":` followed by digits).
fn ts_of(text: &str) -> Option<u64> {
    let i = text.find("\"ts\":")? + 5;
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What the consumers have seen.
#[derive(Default)]
struct Seen {
    counts: Vec<AtomicU64>,
    /// Record latencies (set during the latency run only).
    measuring: std::sync::atomic::AtomicBool,
    latencies: Mutex<Vec<Duration>>,
}

impl Seen {
    fn new(n: usize) -> Arc<Seen> {
        Arc::new(Seen {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            measuring: std::sync::atomic::AtomicBool::new(false),
            latencies: Mutex::new(Vec::new()),
        })
    }
    fn min(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
    fn record(&self, i: usize, text: &str) {
        if self.measuring.load(Ordering::Relaxed) {
            if let Some(ts) = ts_of(text) {
                let d = Duration::from_nanos(now_ns().saturating_sub(ts));
                self.latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(d);
            }
        }
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }
}

async fn wait_all(seen: &Seen, n: u64, limit: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while seen.min() < n {
        if Instant::now() > deadline {
            bail!(
                "timed out: {what} (slowest consumer has {} of {n})",
                seen.min()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Run the benchmark: ours, then NATS.
pub async fn run_broker(cfg: &BrokerConfig) -> anyhow::Result<BrokerReport> {
    let dctl = match &cfg.dctl {
        Some(p) => p.clone(),
        None => locate_dctl().ok_or_else(|| {
            anyhow!("dctl not found: build it (cargo build --release -p dctl) or set DCTL_BIN")
        })?,
    };
    let nats_bin = ensure_nats()?;
    let ours = run_ours(cfg, &dctl).await.context("our broker")?;
    if cfg.progress {
        eprintln!("ours: {:.0} events/s", ours.events_per_sec);
    }
    let nats = run_nats(cfg, &nats_bin).await.context("nats-server")?;
    if cfg.progress {
        eprintln!("nats: {:.0} events/s", nats.events_per_sec);
    }
    let p99_ratio = match (ours.latency, nats.latency) {
        (Some(a), Some(b)) if b.p99_ns > 0.0 => Some(a.p99_ns / b.p99_ns),
        _ => None,
    };
    Ok(BrokerReport {
        throughput_ratio: ours.events_per_sec / nats.events_per_sec.max(1.0),
        p99_ratio,
        ours,
        nats,
        events: cfg.events,
        consumers: cfg.consumers,
        payload: cfg.payload,
    })
}

fn ensure_nats() -> anyhow::Result<PathBuf> {
    let find = || {
        [
            "/usr/bin/nats-server",
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("nats-server missing: installing the Debian package (apt-get install nats-server)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "nats-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "nats-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    find().ok_or_else(|| anyhow!("nats-server is not installed and apt-get could not install it (run as root: apt-get install nats-server)"))
}

fn event_json(i: u64, size: usize) -> String {
    format!(
        "{{\"specversion\":\"1.0\",\"id\":\"{i}\",\"source\":\"/bench\",\"type\":\"bench\",\"datacontenttype\":\"application/json\",\"data\":{}}}",
        payload(size)
    )
}

async fn run_ours(cfg: &BrokerConfig, dctl: &std::path::Path) -> anyhow::Result<SideReport> {
    let mut set = NodeSet::new(dctl, "bench-broker")?;
    let a = set.spawn("b1", None)?;
    let seed = set.nodes[a].gossip.clone();
    set.spawn("b2", Some(&seed))?;
    set.spawn("b3", Some(&seed))?;
    let admins: Vec<String> = set.nodes.iter().map(|n| n.admin.clone()).collect();
    let client = http_client()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for admin in &admins {
        loop {
            set.check_running()?;
            let ok = matches!(cluster_view(&client, admin).await, Ok(m) if sees_exactly(&m, &["b1", "b2", "b3"]))
                && client
                    .get(format!("http://{admin}/broker/channels"))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!("the 3 nodes did not converge");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Consumers over SSE, spread over the nodes.
    let seen = Seen::new(cfg.consumers);
    let lat_n = cfg.latency_events as u64;
    let sse = reqwest::Client::builder().no_proxy().build()?;
    for i in 0..cfg.consumers {
        let url = format!(
            "http://{}/broker/channels/bench/events?capacity=100000",
            admins[i % admins.len()]
        );
        let resp = sse.get(url).send().await?.error_for_status()?;
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut resp = resp;
            let mut buf: Vec<u8> = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                let mut start = 0;
                // Lines found with memchr, as the NATS client's BufReader::read_line does.
                while let Some(p) = memchr::memchr(b'\n', &buf[start..]) {
                    let line = &buf[start..start + p];
                    if let Some(data) = line.strip_prefix(b"data: ") {
                        if data != b"{}" {
                            seen.record(i, std::str::from_utf8(data).unwrap_or(""));
                        }
                    }
                    start += p + 1;
                }
                buf.drain(..start);
            }
        });
    }
    // Interest visible on the producer's node.
    let want = cfg.consumers as u64;
    loop {
        let v: serde_json::Value = client
            .get(format!("http://{}/broker/channels", admins[0]))
            .send()
            .await?
            .json()
            .await?;
        let total: u64 = v["channels"]["bench"]["nodes"]
            .as_object()
            .map(|m| m.values().map(|i| i["b"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        if total == want {
            break;
        }
        if Instant::now() > deadline {
            bail!("consumers' interest not seen by the producer's node ({total} of {want})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("http://{}/broker/channels/bench/events", admins[0]);
    let post = |body: String, batch: bool| {
        let req = client
            .post(&url)
            .header(
                "content-type",
                if batch {
                    "application/cloudevents-batch+json"
                } else {
                    "application/cloudevents+json"
                },
            )
            .body(body);
        async move {
            let r = req.send().await?;
            if !r.status().is_success() {
                bail!("produce: HTTP {}", r.status());
            }
            anyhow::Ok(())
        }
    };
    // Warm-up: 10 events.
    let warm: Vec<String> = (0..10).map(|i| event_json(i, cfg.payload)).collect();
    post(format!("[{}]", warm.join(",")), true).await?;
    wait_all(&seen, 10, Duration::from_secs(30), "warm-up").await?;
    // Latency.
    seen.measuring.store(true, Ordering::Relaxed);
    for i in 0..lat_n {
        post(event_json(i, cfg.payload), false).await?;
        tokio::time::sleep(cfg.latency_interval).await;
    }
    wait_all(&seen, 10 + lat_n, Duration::from_secs(60), "latency run").await?;
    seen.measuring.store(false, Ordering::Relaxed);
    let mut samples =
        std::mem::take(&mut *seen.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let latency = LatencySummary::from_samples(&mut samples);
    // Throughput.
    let base = 10 + lat_n;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < cfg.events {
        let n = (cfg.events - sent).min(cfg.batch as u64);
        let evs: Vec<String> = (sent..sent + n)
            .map(|i| event_json(i, cfg.payload))
            .collect();
        post(format!("[{}]", evs.join(",")), true).await?;
        sent += n;
    }
    wait_all(
        &seen,
        base + cfg.events,
        Duration::from_secs(300),
        "throughput run",
    )
    .await?;
    let elapsed = started.elapsed();
    set.kill_all();
    Ok(SideReport {
        events_per_sec: cfg.events as f64 / elapsed.as_secs_f64(),
        latency,
    })
}

/// A NATS subscriber reading `MSG` frames.
async fn nats_subscriber(
    port: u16,
    i: usize,
    seen: Arc<Seen>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut line = String::new();
    r.read_line(&mut line).await?; // INFO
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB bench 1\r\nPING\r\n")
        .await?;
    let mut payload = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line.starts_with("PING") {
            w.write_all(b"PONG\r\n").await?;
        } else if line.starts_with("PONG") {
            let _ = ready.send(()).await;
        } else if line.starts_with("MSG") {
            let len: usize = line
                .split_whitespace()
                .last()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("bad MSG line: {line}"))?;
            payload.resize(len + 2, 0);
            r.read_exact(&mut payload).await?;
            seen.record(i, std::str::from_utf8(&payload[..len]).unwrap_or(""));
        } else if line.starts_with("-ERR") {
            bail!("nats: {line}");
        }
    }
}

async fn publish<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut BufWriter<W>,
    body: String,
) -> std::io::Result<()> {
    let frame = format!("PUB bench {}\r\n{body}\r\n", body.len());
    w.write_all(frame.as_bytes()).await
}

struct Kill(Vec<std::process::Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn run_nats(cfg: &BrokerConfig, bin: &std::path::Path) -> anyhow::Result<SideReport> {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let mut procs = Kill(Vec::new());
    for (i, (p, c)) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, c))| format!("nats://127.0.0.1:{c}"))
            .collect();
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &p.to_string()])
            .args(["--cluster_name", "bench"])
            .args(["--cluster", &format!("nats://127.0.0.1:{c}")])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        procs.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (p, _) in &ports {
        while TcpStream::connect(("127.0.0.1", *p)).await.is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seen = Seen::new(cfg.consumers);
    let lat_n = cfg.latency_events as u64;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(cfg.consumers);
    for i in 0..cfg.consumers {
        let port = ports[i % ports.len()].0;
        let (seen, ready) = (seen.clone(), ready_tx.clone());
        tokio::spawn(async move {
            if let Err(e) = nats_subscriber(port, i, seen, ready).await {
                eprintln!("nats subscriber {i}: {e:#}");
            }
        });
    }
    for _ in 0..cfg.consumers {
        ready_rx
            .recv()
            .await
            .ok_or_else(|| anyhow!("a NATS subscriber failed"))?;
    }
    let stream = TcpStream::connect(("127.0.0.1", ports[0].0)).await?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut w = BufWriter::with_capacity(1 << 16, w);
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .await?;
    // Drain server PINGs on the producer connection.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line.starts_with("PING") => {
                    let _ = pong_tx.send(());
                }
                Ok(_) => {}
            }
        }
    });
    // Warm-up: until every subscriber (on every server) gets messages, i.e. routes carry interest.
    let mut warm = 0u64;
    while seen.min() == 0 {
        publish(&mut w, payload(cfg.payload)).await?;
        w.flush().await?;
        warm += 1;
        if Instant::now() > deadline {
            bail!("NATS routes did not form");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the probes drain, then count from zero; 10 more warm-up events as on our side.
    let _ = warm;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in &seen.counts {
        c.store(0, Ordering::Relaxed);
    }
    for _ in 0..10 {
        publish(&mut w, payload(cfg.payload)).await?;
    }
    w.flush().await?;
    wait_all(&seen, 10, Duration::from_secs(30), "nats warm-up").await?;
    seen.measuring.store(true, Ordering::Relaxed);
    for _ in 0..lat_n {
        while pong_rx.try_recv().is_ok() {
            w.write_all(b"PONG\r\n").await?;
        }
        publish(&mut w, payload(cfg.payload)).await?;
        w.flush().await?;
        tokio::time::sleep(cfg.latency_interval).await;
    }
    wait_all(
        &seen,
        10 + lat_n,
        Duration::from_secs(60),
        "nats latency run",
    )
    .await?;
    seen.measuring.store(false, Ordering::Relaxed);
    let mut samples =
        std::mem::take(&mut *seen.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let latency = LatencySummary::from_samples(&mut samples);
    let base = 10 + lat_n;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < cfg.events {
        let n = (cfg.events - sent).min(cfg.batch as u64);
        for _ in 0..n {
            publish(&mut w, payload(cfg.payload)).await?;
        }
        w.flush().await?;
        while pong_rx.try_recv().is_ok() {
            w.write_all(b"PONG\r\n").await?;
        }
        sent += n;
    }
    w.flush().await?;
    wait_all(
        &seen,
        base + cfg.events,
        Duration::from_secs(300),
        "nats throughput run",
    )
    .await?;
    let elapsed = started.elapsed();
    Ok(SideReport {
        events_per_sec: cfg.events as f64 / elapsed.as_secs_f64(),
        latency,
    })
}
