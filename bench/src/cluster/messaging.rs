//! Cross-node messaging, A <-> B: call latency and one-way throughput of the runtime against
//! raw TCP (and, for small payloads, against in-process delivery).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ractor::ActorRef;
use runtime::{JsonMsg, MemberState, Node};

use crate::{
    procs::{cluster_view, http_client, wait_for, NodeSet},
    rawtcp::{RawClient, RawServer},
    stats::{LatencySummary, Rounds},
};

use super::config::{progress, ClusterConfig, RawServerMode};
use super::report::{LatencyRow, LatencySide, ThroughputRow};

/// A JSON document of exactly `len` bytes (`len >= 2`): a string of `x`s.
pub fn json_payload(len: usize) -> Vec<u8> {
    assert!(len >= 2, "a JSON payload has at least 2 bytes");
    let mut v = Vec::with_capacity(len);
    v.push(b'"');
    v.resize(len - 1, b'x');
    v.push(b'"');
    v
}

type Messaging = (&'static str, Vec<LatencyRow>, Vec<ThroughputRow>);

/// Wait (polling every 50 ms, at most `limit`) until `node` has an actor-transport session
/// and a lane to `peer`.
pub(crate) async fn wait_lane(node: &Node, peer: &str, limit: Duration) -> anyhow::Result<()> {
    wait_for(
        &format!("a session and a lane to {peer}"),
        limit,
        Duration::from_millis(50),
        || async {
            Ok(node
                .members()
                .await
                .iter()
                .any(|m| m.name == peer && m.state == MemberState::Alive && m.connected && m.lane)
                .then_some(()))
        },
    )
    .await
}

pub(super) async fn messaging(
    config: &ClusterConfig,
    dctl: &std::path::Path,
) -> anyhow::Result<Messaging> {
    let mut set = NodeSet::new(dctl, &config.cookie)?;
    let b_name = format!("{}-peer", config.node_name);
    let b = set.spawn(&b_name, None)?;
    let http = http_client()?;
    let b_admin = set.nodes[b].admin.clone();
    progress(config, || {
        format!("messaging: starting node {b_name} (dctl child)")
    });
    {
        let set = &mut set;
        wait_for(
            &format!("node {b_name} up"),
            config.wait_limit,
            Duration::from_millis(50),
            || {
                let ok = set.check_running();
                let http = &http;
                let admin = &b_admin;
                async move {
                    ok?;
                    Ok(cluster_view(http, admin).await.ok().map(|_| ()))
                }
            },
        )
        .await?;
    }

    let node = Node::builder()
        .name(&config.node_name)
        .without_admin()
        .cookie(&config.cookie)
        .seed(set.nodes[b].gossip.clone())
        .data_dir(set.dir().join(&config.node_name))
        .start()
        .await
        .context("starting node A in this process")?;
    let result = with_node_a(config, &node, &b_name).await;
    node.shutdown().await;
    drop(set);
    result
}

async fn with_node_a(
    config: &ClusterConfig,
    node: &Node,
    b_name: &str,
) -> anyhow::Result<Messaging> {
    wait_lane(node, b_name, config.wait_limit).await?;
    let every = Duration::from_millis(50);
    let echo_name = format!("{}-echo", config.node_name);
    let deadline = Instant::now() + config.wait_limit;
    let spawned = loop {
        match node
            .spawn_on(b_name, "echo", &echo_name, serde_json::Value::Null)
            .await
        {
            Ok(id) => break id,
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("spawning echo on {b_name}"));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    };
    progress(config, || {
        format!("messaging: echo '{echo_name}' spawned on {b_name} (actor id {spawned})")
    });
    let cell = wait_for(
        &format!("'{echo_name}' resolvable from A"),
        config.wait_limit,
        every,
        || async {
            Ok(node
                .resolve(&echo_name)
                .await
                .ok()
                .filter(|c| !c.get_id().is_local()))
        },
    )
    .await?;
    let echo: ActorRef<JsonMsg> = cell.into();

    let raw = match &config.raw_server {
        RawServerMode::Thread => RawServer::thread().await?,
        RawServerMode::Process(exe) => RawServer::process(exe).await?,
    };
    let mut client = RawClient::connect(raw.addr).await?;
    let mut sink = Sink::spawn().await?;
    let timeout = config.call_timeout;
    let flush = json_payload(2);

    let payloads: Vec<Vec<u8>> = config.payloads.iter().map(|&n| json_payload(n)).collect();
    progress(config, || {
        format!(
            "messaging: warm-up, {} calls + {} messages per side and payload",
            config.warmup_calls, config.warmup_messages
        )
    });
    for p in &payloads {
        if config.warmup_calls > 0 {
            client.latency(p, config.warmup_calls).await?;
            runtime_latency(node, &echo, p, config.warmup_calls, timeout).await?;
        }
        if config.warmup_messages > 0 {
            sink.stream(p, config.warmup_messages).await?;
            client.stream(p, config.warmup_messages, &flush).await?;
            runtime_stream(node, &echo, p, config.warmup_messages, &flush, timeout).await?;
        }
    }

    #[derive(Default)]
    struct Per {
        raw: [Vec<f64>; 3],
        rt: [Vec<f64>; 3],
        raw_tput: Vec<f64>,
        rt_tput: Vec<f64>,
        unbatched_tput: Vec<f64>,
        in_process_tput: Vec<f64>,
    }
    let mut per: Vec<Per> = payloads.iter().map(|_| Per::default()).collect();
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    let summary = |mut s: Vec<Duration>| {
        LatencySummary::from_samples(&mut s).ok_or_else(|| anyhow!("no latency samples"))
    };
    for round in 1..=config.rounds {
        for (p, acc) in payloads.iter().zip(per.iter_mut()) {
            let rl = summary(client.latency(p, config.calls).await?)?;
            let tl = summary(runtime_latency(node, &echo, p, config.calls, timeout).await?)?;
            let rt = rate(
                config.messages,
                client.stream(p, config.messages, &flush).await?,
            );
            let ut = rate(
                config.messages,
                client.stream_unbatched(p, config.messages, &flush).await?,
            );
            let tt = rate(
                config.messages,
                runtime_stream(node, &echo, p, config.messages, &flush, timeout).await?,
            );
            let it = rate(config.messages, sink.stream(p, config.messages).await?);
            progress(config, || {
                format!(
                    "round {round}/{} {} B: call p50 {:.1} | {:.1} us, p99 {:.1} | {:.1} us, one-way {:.1} | {:.1} k msg/s (raw | runtime)",
                    config.rounds,
                    p.len(),
                    rl.p50_ns / 1e3,
                    tl.p50_ns / 1e3,
                    rl.p99_ns / 1e3,
                    tl.p99_ns / 1e3,
                    rt / 1e3,
                    tt / 1e3
                )
            });
            for (acc, s) in [(&mut acc.raw, rl), (&mut acc.rt, tl)] {
                acc[0].push(s.p50_ns);
                acc[1].push(s.p99_ns);
                acc[2].push(s.mean_ns);
            }
            acc.raw_tput.push(rt);
            acc.rt_tput.push(tt);
            acc.unbatched_tput.push(ut);
            acc.in_process_tput.push(it);
        }
    }

    let rounds = |v: Vec<f64>| Rounds::new(v).ok_or_else(|| anyhow!("no rounds measured"));
    let side = |[p50, p99, mean]: [Vec<f64>; 3]| -> anyhow::Result<LatencySide> {
        Ok(LatencySide {
            p50_ns: rounds(p50)?,
            p99_ns: rounds(p99)?,
            mean_ns: rounds(mean)?,
        })
    };
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for (&bytes, acc) in config.payloads.iter().zip(per) {
        let raw = side(acc.raw)?;
        let rt = side(acc.rt)?;
        latency.push(LatencyRow {
            payload_bytes: bytes,
            ratio_p50: rt.p50_ns.median / raw.p50_ns.median,
            ratio_p99: rt.p99_ns.median / raw.p99_ns.median,
            ratio_mean: rt.mean_ns.median / raw.mean_ns.median,
            raw,
            runtime: rt,
        });
        let raw_t = rounds(acc.raw_tput)?;
        let rt_t = rounds(acc.rt_tput)?;
        let in_t = rounds(acc.in_process_tput)?;
        throughput.push(ThroughputRow {
            ratio_in_process: rt_t.median / in_t.median,
            in_process_msgs_per_s: in_t,
            payload_bytes: bytes,
            messages: config.messages,
            raw_mb_per_s: raw_t.median * bytes as f64 / 1e6,
            runtime_mb_per_s: rt_t.median * bytes as f64 / 1e6,
            ratio: rt_t.median / raw_t.median,
            raw_msgs_per_s: raw_t,
            runtime_msgs_per_s: rt_t,
            raw_unbatched_msgs_per_s: rounds(acc.unbatched_tput)?,
        });
    }
    Ok((raw.kind, latency, throughput))
}

async fn runtime_call(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<usize> {
    let reply = node
        .call(echo, |p| JsonMsg::Call(payload.to_vec(), p), timeout)
        .await
        .map_err(|e| anyhow!("remote echo call failed: {e}"))?;
    Ok(reply.len())
}

pub(crate) async fn runtime_latency(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    calls: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let n = runtime_call(node, echo, payload, timeout).await?;
        samples.push(start.elapsed());
        if n != payload.len() {
            bail!("remote echo returned {n} bytes for {}", payload.len());
        }
    }
    Ok(samples)
}

pub(crate) async fn runtime_stream(
    node: &Node,
    echo: &ActorRef<JsonMsg>,
    payload: &[u8],
    n: u64,
    flush: &[u8],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        node.send(echo, JsonMsg::Tell(payload.to_vec()))
            .await
            .map_err(|e| anyhow!("tell to the remote echo failed: {e}"))?;
    }
    let got = runtime_call(node, echo, flush, timeout).await?;
    let elapsed = start.elapsed();
    if got != flush.len() {
        bail!("remote flush returned {got} bytes for {}", flush.len());
    }
    Ok(elapsed)
}

/// The in-process baseline: a bare ractor actor (spawned with `Actor::spawn`, no node, no
/// network) that counts the payloads it is sent.
struct Sink {
    actor: ActorRef<SinkMsg>,
    received: u64,
}

enum SinkMsg {
    Data(Vec<u8>),
    Count(ractor::RpcReplyPort<u64>),
}

impl ractor::Message for SinkMsg {}

struct SinkActor;

impl ractor::Actor for SinkActor {
    type Msg = SinkMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ActorRef<SinkMsg>,
        _: (),
    ) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: ActorRef<SinkMsg>,
        msg: SinkMsg,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            SinkMsg::Data(d) => *n += u64::from(!d.is_empty()),
            SinkMsg::Count(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

impl Sink {
    async fn spawn() -> anyhow::Result<Sink> {
        let (actor, _) = ractor::Actor::spawn(None, SinkActor, ())
            .await
            .context("spawning the in-process sink")?;
        Ok(Sink { actor, received: 0 })
    }

    /// `n` payloads then a call that must count all of them; the time taken.
    async fn stream(&mut self, payload: &[u8], n: u64) -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            self.actor
                .send_message(SinkMsg::Data(payload.to_vec()))
                .map_err(|e| anyhow!("in-process send failed: {e}"))?;
        }
        let got = ractor::call_t!(self.actor, SinkMsg::Count, 60_000)
            .map_err(|e| anyhow!("in-process count failed: {e}"))?;
        let elapsed = start.elapsed();
        self.received += n;
        if got != self.received {
            bail!(
                "the in-process sink counted {got} messages, {} were sent",
                self.received
            );
        }
        Ok(elapsed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.actor.stop(None);
    }
}
