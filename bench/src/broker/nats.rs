//! The peer: a 3-server `nats-server` cluster on loopback, consumers and the producer speaking
//! the NATS text protocol (the producer flushes its socket after each event in latency runs and
//! every `batch` PUBs in throughput runs).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    net::{tcp::OwnedWriteHalf, TcpStream},
    sync::mpsc,
};

use super::{
    seen::{payload, Seen},
    BrokerConfig, Side,
};
use crate::procs::{apt_install, free_port};

/// `nats-server`, installed from Debian's package of that name when missing.
pub(super) fn ensure_nats() -> anyhow::Result<PathBuf> {
    apt_install(
        "nats-server",
        &[
            "/usr/bin/nats-server",
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
        ],
    )
}

/// A running 3-server NATS cluster with its consumers subscribed and its routes carrying
/// their interest.
pub(super) struct Nats {
    /// Killed on drop.
    _procs: Kill,
    w: BufWriter<OwnedWriteHalf>,
    /// PINGs the server sent the producer, answered before its next publish.
    pings: mpsc::UnboundedReceiver<()>,
    seen: Arc<Seen>,
}

impl Nats {
    pub(super) async fn start(cfg: &BrokerConfig, bin: &Path) -> anyhow::Result<Nats> {
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
        let (ready_tx, mut ready_rx) = mpsc::channel(cfg.consumers);
        for i in 0..cfg.consumers {
            let port = ports[i % ports.len()].0;
            let (seen, ready) = (seen.clone(), ready_tx.clone());
            tokio::spawn(async move {
                if let Err(e) = subscriber(port, i, seen, ready).await {
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
        r.read_line(&mut line).await?; // INFO
        w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .await?;
        let (ping_tx, pings) = mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.starts_with("PING") => {
                        let _ = ping_tx.send(());
                    }
                    Ok(_) => {}
                }
            }
        });
        let mut nats = Nats {
            _procs: procs,
            w,
            pings,
            seen,
        };
        // Probes (no send time, not counted) until every subscriber, on every server, gets
        // them: the routes then carry every subscriber's interest.
        while !nats.seen.all_probed() {
            nats.publish(b"{}").await?;
            nats.w.flush().await?;
            if Instant::now() > deadline {
                bail!("NATS routes did not form");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nats)
    }

    async fn publish(&mut self, body: &[u8]) -> std::io::Result<()> {
        let head = format!("PUB bench {}\r\n", body.len());
        self.w.write_all(head.as_bytes()).await?;
        self.w.write_all(body).await?;
        self.w.write_all(b"\r\n").await
    }

    async fn answer_pings(&mut self) -> std::io::Result<()> {
        while self.pings.try_recv().is_ok() {
            self.w.write_all(b"PONG\r\n").await?;
        }
        Ok(())
    }
}

impl Side for Nats {
    fn seen(&self) -> &Seen {
        &self.seen
    }

    async fn publish_one(&mut self, _i: u64, size: usize) -> anyhow::Result<()> {
        self.answer_pings().await?;
        self.publish(payload(size).as_bytes()).await?;
        self.w.flush().await?;
        Ok(())
    }

    async fn publish_batch(&mut self, _first: u64, n: u64, size: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            self.publish(payload(size).as_bytes()).await?;
        }
        self.w.flush().await?;
        self.answer_pings().await?;
        Ok(())
    }
}

/// A NATS subscriber reading `MSG` frames.
async fn subscriber(
    port: u16,
    i: usize,
    seen: Arc<Seen>,
    ready: mpsc::Sender<()>,
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

/// Child processes killed (and reaped) on drop.
struct Kill(Vec<std::process::Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
