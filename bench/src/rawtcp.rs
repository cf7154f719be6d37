//! The raw-TCP baseline of the `cluster` benchmark: a tokio echo server speaking length-prefixed
//! frames, and its client.
//!
//! A request frame is `[u32 big-endian payload length][u8 kind][payload]`: kind [`CALL`] is echoed
//! back as `[u32 length][payload]`, kind [`TELL`] is read and dropped. So "N tells then one call"
//! streams N frames and gets one acknowledgement, in order, on one connection, like N
//! `JsonMsg::Tell` followed by one `JsonMsg::Call` over the actor transport.
//!
//! Both ends set `TCP_NODELAY` and buffer their writes (64 KiB), flushing once per call, as
//! ractor_cluster does (it batches pending messages into one write and sets `TCP_NODELAY`).

use std::{
    io::{BufRead, Write},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
};

/// Frame kind: echo the payload back.
pub const CALL: u8 = 1;
/// Frame kind: consume the payload, no answer.
pub const TELL: u8 = 2;

const BUF: usize = 64 * 1024;

/// Accept connections on `listener` and serve each until it closes. Runs until dropped.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve_connection(stream).await;
        });
    }
}

async fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut r = BufReader::with_capacity(BUF, r);
    let mut w = BufWriter::with_capacity(BUF, w);
    let mut payload = Vec::new();
    loop {
        let len = match r.read_u32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let kind = r.read_u8().await?;
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload).await?;
        if kind == CALL {
            w.write_u32(len).await?;
            w.write_all(&payload).await?;
            w.flush().await?;
        }
    }
}

/// Run the server in this process until killed or until stdin closes (so it does not outlive a
/// parent that was killed): bind `127.0.0.1:0`, print the bound address as one stdout line.
/// This is what `bench raw-server` runs.
pub async fn serve_stdio() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")?;
        out.flush()?;
    }
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
        std::process::exit(0);
    });
    serve(listener).await?;
    Ok(())
}

/// A running raw server: a child process or a thread of this process; stopped on drop.
pub struct RawServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `"child process"` or `"thread"`.
    pub kind: &'static str,
    child: Option<Child>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RawServer {
    /// Start `exe raw-server` (the `bench` binary) and read its address.
    pub async fn process(exe: &Path) -> anyhow::Result<RawServer> {
        let mut child = Command::new(exe)
            .arg("raw-server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {} raw-server", exe.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await?;
        let addr = match line.map(|l| l.trim().parse::<SocketAddr>()) {
            Ok(Ok(a)) => a,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} raw-server did not print its address: {other:?}",
                    exe.display()
                );
            }
        };
        Ok(RawServer {
            addr,
            kind: "child process",
            child: Some(child),
            stop: None,
        })
    }

    /// Start the server on a thread of this process with its own single-threaded runtime.
    pub async fn thread() -> anyhow::Result<RawServer> {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("raw-tcp-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    tokio::select! {
                        _ = serve(listener) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        let addr = addr_rx.await.context("the raw server thread died")??;
        Ok(RawServer {
            addr,
            kind: "thread",
            child: None,
            stop: Some(stop),
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A client connection to a raw server.
pub struct RawClient {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
    reply: Vec<u8>,
}

impl RawClient {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the raw server at {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(RawClient {
            r: BufReader::with_capacity(BUF, r),
            w: BufWriter::with_capacity(BUF, w),
            reply: Vec::new(),
        })
    }

    async fn frame(&mut self, kind: u8, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| std::io::Error::other("payload longer than u32::MAX"))?;
        self.w.write_u32(len).await?;
        self.w.write_u8(kind).await?;
        self.w.write_all(payload).await
    }

    /// One request/response round trip; returns the reply's length.
    pub async fn call(&mut self, payload: &[u8]) -> anyhow::Result<usize> {
        self.frame(CALL, payload).await?;
        self.w.flush().await?;
        let len = self.r.read_u32().await? as usize;
        self.reply.resize(len, 0);
        self.r.read_exact(&mut self.reply).await?;
        Ok(len)
    }

    /// `calls` sequential round trips, each timed.
    pub async fn latency(&mut self, payload: &[u8], calls: usize) -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            let n = self.call(payload).await?;
            samples.push(start.elapsed());
            if n != payload.len() {
                bail!("raw echo returned {n} bytes for {}", payload.len());
            }
        }
        Ok(samples)
    }

    /// Stream `n` one-way frames then one call to flush; the elapsed time of the whole.
    pub async fn stream(
        &mut self,
        payload: &[u8],
        n: u64,
        flush: &[u8],
    ) -> anyhow::Result<Duration> {
        self.stream_flushing(payload, n, flush, false).await
    }

    /// Like [`RawClient::stream`] but flushing after every frame (one `write` per message, no
    /// batching): a naive baseline, reported for information.
    pub async fn stream_unbatched(
        &mut self,
        payload: &[u8],
        n: u64,
        flush: &[u8],
    ) -> anyhow::Result<Duration> {
        self.stream_flushing(payload, n, flush, true).await
    }

    /// `n` frames (each flushed if `every_frame`), then the flushing call; the elapsed time.
    async fn stream_flushing(
        &mut self,
        payload: &[u8],
        n: u64,
        flush: &[u8],
        every_frame: bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            self.frame(TELL, payload).await?;
            if every_frame {
                self.w.flush().await?;
            }
        }
        let got = self.call(flush).await?;
        let elapsed = start.elapsed();
        if got != flush.len() {
            bail!("raw flush returned {got} bytes for {}", flush.len());
        }
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_and_stream_over_a_thread_server() {
        let server = RawServer::thread().await.unwrap();
        let mut client = RawClient::connect(server.addr).await.unwrap();
        assert_eq!(client.call(b"\"hello\"").await.unwrap(), 7);
        assert_eq!(client.reply, b"\"hello\"");
        let samples = client.latency(&[b'x'; 4096], 10).await.unwrap();
        assert_eq!(samples.len(), 10);
        let took = client.stream(&[b'y'; 64], 1000, b"0").await.unwrap();
        assert!(took > Duration::ZERO);
        assert_eq!(client.reply, b"0");
        let took = client
            .stream_unbatched(&[b'z'; 64], 100, b"1")
            .await
            .unwrap();
        assert!(took > Duration::ZERO);
        assert_eq!(client.reply, b"1");
    }
}
