//! Broker fan-out: 1 producer to 10 consumers spread over 3 nodes, our broker (3 `dctl node
//! start` processes, consumers on Server-Sent Events, the producer POSTing CloudEvents batches)
//! against a 3-server `nats-server` cluster on loopback (consumers and producer speaking the NATS
//! text protocol), in the same run.
//!
//! Both clusters start once and stay up; after a warm-up of each (5 % of the measured events,
//! at least one batch, and a tenth of the latency events), the rounds alternate (ours, NATS,
//! ours, ...; `rounds` per side, default 3) and each figure is the median over a side's rounds.
//!
//! * Throughput: `events` events of a 256-byte JSON payload sent as fast as the producer can;
//!   events/s = events / (first send -> the last consumer has them all). Our producer sends
//!   batches of `batch` events per HTTP request (`application/cloudevents-batch+json`); the NATS
//!   producer flushes its socket every `batch` PUBs.
//! * Latency: `latency_events` single events, one every `latency_interval`; each consumer
//!   records arrival time minus the send timestamp carried in the payload (same machine clock).
//!   Ours is one HTTP POST per event (what a client of the HTTP binding sees); NATS one PUB.
//!
//! Targets (issue 18): throughput >= 1x nats-server's at p99 <= 1x.
//!
//! `nats-server` comes from the Debian package of that name; it is installed with apt-get
//! when missing (root needed), else the run fails with a message saying so.

mod nats;
mod ours;
mod report;
mod seen;

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, Context};
use serde::Serialize;

use crate::{
    checks::Checks,
    procs::locate_dctl,
    stats::{LatencySummary, Limit, Rounds},
};
use seen::Seen;

/// Throughput target: ours / nats-server events per second.
pub const THROUGHPUT_TARGET: f64 = 1.0;
/// Latency target: ours / nats-server p99.
pub const P99_TARGET: f64 = 1.0;
/// The names of the targets, in report order.
pub const TARGETS: [&str; 2] = ["throughput, ours / nats-server", "p99, ours / nats-server"];

/// Settings of the broker benchmark.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Events in each throughput run.
    pub events: u64,
    /// Events per producer request (ours) or per socket flush (NATS).
    pub batch: usize,
    /// Events in each latency run.
    pub latency_events: usize,
    /// Gap between latency events.
    pub latency_interval: Duration,
    /// Payload bytes (the event's `data`).
    pub payload: usize,
    /// Consumers, spread round-robin over the 3 nodes/servers.
    pub consumers: usize,
    /// Measured rounds per side (alternating).
    pub rounds: usize,
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
            rounds: 3,
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

    /// Events each side is sent before the measured rounds: 5 % of the measured ones, at
    /// least one batch.
    pub fn warm_up_events(&self) -> u64 {
        let measured = self.events.saturating_mul(self.rounds as u64);
        measured.div_ceil(20).max(self.batch as u64)
    }
}

/// One side's figures: medians over its rounds, and each round's.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Events per second from the producer to all consumers.
    pub events_per_sec: Rounds,
    /// End-to-end latency p50 (ns).
    pub p50_ns: Rounds,
    /// End-to-end latency p99 (ns).
    pub p99_ns: Rounds,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    /// Our broker.
    pub ours: SideReport,
    /// nats-server.
    pub nats: SideReport,
    /// The targets: ours / NATS throughput (medians) and p99.
    pub checks: Checks,
    /// Events per throughput run.
    pub events: u64,
    /// Consumers.
    pub consumers: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Measured rounds per side.
    pub rounds: usize,
    /// Warm-up events per side.
    pub warm_up_events: u64,
}

/// A system under test: its producer, and what its consumers have seen.
trait Side {
    /// The consumers' tally.
    fn seen(&self) -> &Seen;
    /// Send one event (`i` is its id) of a `size`-byte payload, as a client would one at a time.
    async fn publish_one(&mut self, i: u64, size: usize) -> anyhow::Result<()>;
    /// Send events `first..first + n` as one batch.
    async fn publish_batch(&mut self, first: u64, n: u64, size: usize) -> anyhow::Result<()>;
}

/// One latency run: `latency_events` single events; their send-to-arrival times.
async fn latency_run(side: &mut impl Side, cfg: &BrokerConfig) -> anyhow::Result<LatencySummary> {
    side.seen().measure(true);
    for i in 0..cfg.latency_events as u64 {
        side.publish_one(i, cfg.payload).await?;
        side.seen().sent(1);
        tokio::time::sleep(cfg.latency_interval).await;
    }
    let waited = side
        .seen()
        .wait_all(Duration::from_secs(60), "latency run")
        .await;
    let mut samples = side.seen().measure(false);
    waited?;
    LatencySummary::from_samples(&mut samples).ok_or_else(|| anyhow!("no latency samples"))
}

/// One throughput run of `events` events in batches; events per second.
async fn throughput_run(
    side: &mut impl Side,
    cfg: &BrokerConfig,
    events: u64,
) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    while sent < events {
        let n = (events - sent).min(cfg.batch as u64);
        side.publish_batch(sent, n, cfg.payload).await?;
        side.seen().sent(n);
        sent += n;
    }
    side.seen()
        .wait_all(Duration::from_secs(300), "throughput run")
        .await?;
    Ok(events as f64 / started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

/// The warm-up of one side (nothing recorded).
async fn warm_up(side: &mut impl Side, cfg: &BrokerConfig) -> anyhow::Result<()> {
    let short = BrokerConfig {
        latency_events: (cfg.latency_events / 10).max(1),
        ..cfg.clone()
    };
    latency_run(side, &short).await?;
    throughput_run(side, cfg, cfg.warm_up_events()).await?;
    Ok(())
}

/// One side's measured round.
#[derive(Debug, Clone, Copy)]
struct Round {
    events_per_sec: f64,
    latency: LatencySummary,
}

async fn round(side: &mut impl Side, cfg: &BrokerConfig) -> anyhow::Result<Round> {
    let latency = latency_run(side, cfg).await?;
    let events_per_sec = throughput_run(side, cfg, cfg.events).await?;
    Ok(Round {
        events_per_sec,
        latency,
    })
}

fn side_report(rounds: &[Round]) -> anyhow::Result<SideReport> {
    let of = |f: fn(&Round) -> f64| {
        Rounds::new(rounds.iter().map(f).collect()).ok_or_else(|| anyhow!("no rounds"))
    };
    Ok(SideReport {
        events_per_sec: of(|r| r.events_per_sec)?,
        p50_ns: of(|r| r.latency.p50_ns)?,
        p99_ns: of(|r| r.latency.p99_ns)?,
    })
}

/// Run the benchmark (see the module doc). Needs `dctl` (see [`locate_dctl`]) and
/// `nats-server` (installed when missing, as root).
///
/// ```no_run
/// # async fn f() -> anyhow::Result<()> {
/// let report = bench::broker::run_broker(&bench::broker::BrokerConfig::quick()).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub async fn run_broker(cfg: &BrokerConfig) -> anyhow::Result<BrokerReport> {
    if cfg.rounds == 0 || cfg.events == 0 || cfg.latency_events == 0 || cfg.batch == 0 {
        anyhow::bail!("rounds, events, latency events and batch must all be at least 1");
    }
    let dctl = match &cfg.dctl {
        Some(p) => p.clone(),
        None => locate_dctl().ok_or_else(|| {
            anyhow!("dctl not found: build it (cargo build --release -p dctl) or set DCTL_BIN")
        })?,
    };
    let nats_bin = nats::ensure_nats()?;
    let progress = |line: String| {
        if cfg.progress {
            eprintln!("{line}");
        }
    };
    let mut ours = ours::Ours::start(cfg, &dctl)
        .await
        .context("starting our broker")?;
    let mut peer = nats::Nats::start(cfg, &nats_bin)
        .await
        .context("starting nats-server")?;
    progress(format!("warm-up: {} events per side", cfg.warm_up_events()));
    warm_up(&mut ours, cfg)
        .await
        .context("our broker, warm-up")?;
    warm_up(&mut peer, cfg)
        .await
        .context("nats-server, warm-up")?;
    let (mut o, mut n) = (Vec::new(), Vec::new());
    for r in 1..=cfg.rounds {
        let a = round(&mut ours, cfg)
            .await
            .with_context(|| format!("our broker, round {r}"))?;
        let b = round(&mut peer, cfg)
            .await
            .with_context(|| format!("nats-server, round {r}"))?;
        progress(format!(
            "round {r}/{}: {:.0} | {:.0} events/s, p99 {:.0} | {:.0} us (ours | nats)",
            cfg.rounds,
            a.events_per_sec,
            b.events_per_sec,
            a.latency.p99_ns / 1e3,
            b.latency.p99_ns / 1e3
        ));
        o.push(a);
        n.push(b);
    }
    let (ours, nats) = (side_report(&o)?, side_report(&n)?);
    let mut checks = Checks::new();
    checks.add(
        TARGETS[0],
        ours.events_per_sec.median / nats.events_per_sec.median.max(f64::MIN_POSITIVE),
        Limit::AtLeast(THROUGHPUT_TARGET),
    );
    checks.add(
        TARGETS[1],
        ours.p99_ns.median / nats.p99_ns.median.max(f64::MIN_POSITIVE),
        Limit::AtMost(P99_TARGET),
    );
    Ok(BrokerReport {
        ours,
        nats,
        checks,
        events: cfg.events,
        consumers: cfg.consumers,
        payload: cfg.payload,
        rounds: cfg.rounds,
        warm_up_events: cfg.warm_up_events(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_is_a_twentieth_of_the_measured_events_and_at_least_a_batch() {
        let cfg = BrokerConfig::default();
        assert_eq!(cfg.warm_up_events(), 15_000, "5 % of 3 x 100 000");
        let small = BrokerConfig {
            events: 100,
            rounds: 3,
            ..BrokerConfig::default()
        };
        assert_eq!(small.warm_up_events(), 200, "one batch");
    }
}
