//! The rest of the runtime's local API in `bench local`, each against bare ractor in the same
//! alternating rounds (information rows: the issue sets targets only for `Node::tell` and
//! `Node::call`, checked in [`crate::local`]):
//!
//! * `Node::send` (one-way with back-pressure, `await`ed per message) vs `send_message`;
//! * a call **by name** (`Node::lookup` then `Node::call`, as a user holding only a name does)
//!   vs `ActorRef::call` on a held reference;
//! * spawn rate: named actors through `Node::spawn` (supervised, findable cluster-wide) vs
//!   anonymous `Actor::spawn`, then all of them stopped.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ractor::{rpc::CallResult, Actor, ActorRef};
use runtime::Node;
use serde::Serialize;

use super::{
    actor::{Counter, Msg},
    config::LocalConfig,
};
use crate::stats::{LatencySummary, Rounds};

/// One row: bare ractor and the runtime, medians over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiRow {
    /// What is compared, with its unit.
    pub metric: String,
    /// Bare ractor, per round.
    pub bare: Rounds,
    /// The runtime, per round.
    pub runtime: Rounds,
    /// runtime / bare of the medians.
    pub ratio: f64,
}

/// The API rows of `bench local`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiReport {
    /// Actors spawned per spawn-rate run (each side).
    pub spawns: usize,
    /// The rows.
    pub rows: Vec<ApiRow>,
}

fn call_ok(r: Result<CallResult<u64>, ractor::MessagingErr<Msg>>) -> anyhow::Result<u64> {
    match r {
        Ok(CallResult::Success(n)) => Ok(n),
        Ok(CallResult::Timeout) => bail!("bare call timed out"),
        Ok(CallResult::SenderError) => bail!("bare call got no reply"),
        Err(e) => bail!("bare call failed: {e}"),
    }
}

async fn send_bare(actor: &ActorRef<Msg>, n: u64, timeout: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        actor
            .send_message(Msg::Inc)
            .map_err(|e| anyhow!("send_message: {e}"))?;
    }
    call_ok(actor.call(Msg::Get, Some(timeout)).await)?;
    Ok(n as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

async fn send_node(
    node: &Node,
    actor: &ActorRef<Msg>,
    n: u64,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        node.send(actor, Msg::Inc).await.context("Node::send")?;
    }
    node.call(actor, Msg::Get, timeout)
        .await
        .context("Node::call")?;
    Ok(n as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

async fn calls_bare(
    actor: &ActorRef<Msg>,
    calls: usize,
    timeout: Duration,
) -> anyhow::Result<LatencySummary> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        call_ok(actor.call(Msg::Get, Some(timeout)).await)?;
        samples.push(t.elapsed());
    }
    LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no samples"))
}

async fn calls_by_name(
    node: &Node,
    name: &str,
    calls: usize,
    timeout: Duration,
) -> anyhow::Result<LatencySummary> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let actor = node.lookup::<Msg>(name).context("Node::lookup")?;
        node.call(&actor, Msg::Get, timeout)
            .await
            .context("Node::call by name")?;
        samples.push(t.elapsed());
    }
    LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no samples"))
}

async fn spawn_bare(n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut spawned = Vec::with_capacity(n);
    for _ in 0..n {
        spawned.push(
            Actor::spawn(None, Counter, ())
                .await
                .context("Actor::spawn")?,
        );
    }
    let rate = n as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    for (actor, handle) in spawned {
        actor.stop(None);
        let _ = handle.await;
    }
    Ok(rate)
}

async fn spawn_node(node: &Node, prefix: &str, n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        node.spawn(&format!("{prefix}-{i}"), Counter, ())
            .await
            .context("Node::spawn")?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    for i in 0..n {
        node.stop_actor(&format!("{prefix}-{i}"))
            .await
            .context("Node::stop_actor")?;
    }
    Ok(rate)
}

/// Measure the API rows in `config.rounds` rounds, bare and runtime alternating (the order
/// flips every round). `bare` and `named` are counters already running (`named` spawned through
/// `node` under that name).
pub async fn measure(
    config: &LocalConfig,
    node: &Node,
    bare: &ActorRef<Msg>,
    named: &str,
) -> anyhow::Result<ApiReport> {
    let runtime_ref = node.lookup::<Msg>(named).context("the named counter")?;
    let timeout = config.call_timeout;
    let spawns = (config.calls / 10).clamp(100, 10_000);
    let mut v: [Vec<f64>; 8] = Default::default();
    for round in 0..config.rounds {
        let flip = round % 2 == 1;
        let mut pair = |bare: f64, rt: f64, i: usize| {
            v[i].push(bare);
            v[i + 1].push(rt);
        };
        let (b, r) = if flip {
            let r = send_node(node, &runtime_ref, config.messages, timeout).await?;
            (send_bare(bare, config.messages, timeout).await?, r)
        } else {
            let b = send_bare(bare, config.messages, timeout).await?;
            (
                b,
                send_node(node, &runtime_ref, config.messages, timeout).await?,
            )
        };
        pair(b, r, 0);
        let bl = calls_bare(bare, config.calls, timeout).await?;
        let rl = calls_by_name(node, named, config.calls, timeout).await?;
        pair(bl.p50_ns, rl.p50_ns, 2);
        pair(bl.p99_ns, rl.p99_ns, 4);
        let prefix = format!("{}-spawn-{round}", config.node_name);
        let (b, r) = if flip {
            let r = spawn_node(node, &prefix, spawns).await?;
            (spawn_bare(spawns).await?, r)
        } else {
            let b = spawn_bare(spawns).await?;
            (b, spawn_node(node, &prefix, spawns).await?)
        };
        pair(b, r, 6);
        if config.progress {
            eprintln!(
                "api round {}/{}: send {:.3} | {:.3} M msg/s, by-name call p50 {:.2} | {:.2} us, spawn {:.0} | {:.0} /s (bare | runtime)",
                round + 1,
                config.rounds,
                v[0][round] / 1e6,
                v[1][round] / 1e6,
                v[2][round] / 1e3,
                v[3][round] / 1e3,
                v[6][round],
                v[7][round]
            );
        }
    }
    let names = [
        "Node::send (M msg/s)",
        "call by name p50 (us)",
        "call by name p99 (us)",
        "spawn (actors/s)",
    ];
    let scale = [1e6, 1e3, 1e3, 1.0];
    let mut rows = Vec::new();
    let mut it = v.into_iter();
    for (metric, s) in names.iter().zip(scale) {
        let scaled = |x: Vec<f64>| {
            Rounds::new(x.into_iter().map(|y| y / s).collect()).ok_or_else(|| anyhow!("no rounds"))
        };
        let (Some(b), Some(r)) = (it.next(), it.next()) else {
            bail!("missing rounds");
        };
        let (bare, runtime) = (scaled(b)?, scaled(r)?);
        rows.push(ApiRow {
            metric: metric.to_string(),
            ratio: runtime.median / bare.median,
            bare,
            runtime,
        });
    }
    Ok(ApiReport { spawns, rows })
}
