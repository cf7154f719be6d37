//! The broker benchmark's printed report: medians per side, the two targets with their
//! verdicts, and each round's figures.

use std::fmt;

use super::{BrokerReport, TARGETS};

impl fmt::Display for BrokerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "broker fan-out: 1 producer -> {} consumers over 3 nodes, {} events per round, {} B payload,",
            self.consumers, self.events, self.payload
        )?;
        writeln!(
            f,
            "                {} alternating rounds per side (medians shown), warm-up {} events per side",
            self.rounds, self.warm_up_events
        )?;
        writeln!(
            f,
            "{:<24}{:>12}{:>14}{:>9}{:>10}{:>9}",
            "metric", "ours", "nats-server", "ratio", "target", "verdict"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, o: f64, n: f64, target: Option<&str>| {
            let (limit, verdict) = match target {
                Some(t) => self.checks.cells(t, "info"),
                None => ("-".to_string(), "info"),
            };
            let ratio = o / n.max(f64::MIN_POSITIVE);
            writeln!(
                f,
                "{name:<24}{o:>12.0}{n:>14.0}{ratio:>9.2}{limit:>10}{verdict:>9}"
            )
        };
        row(
            f,
            "throughput (events/s)",
            self.ours.events_per_sec.median,
            self.nats.events_per_sec.median,
            Some(TARGETS[0]),
        )?;
        row(
            f,
            "latency p50 (us)",
            self.ours.p50_ns.median / 1e3,
            self.nats.p50_ns.median / 1e3,
            None,
        )?;
        row(
            f,
            "latency p99 (us)",
            self.ours.p99_ns.median / 1e3,
            self.nats.p99_ns.median / 1e3,
            Some(TARGETS[1]),
        )?;
        writeln!(f, "per round (ours / nats):")?;
        let o = &self.ours;
        let n = &self.nats;
        for (i, ((ot, nt), (op, np))) in o
            .events_per_sec
            .values
            .iter()
            .zip(&n.events_per_sec.values)
            .zip(o.p99_ns.values.iter().zip(&n.p99_ns.values))
            .enumerate()
        {
            writeln!(
                f,
                "  round {}: {ot:.0} / {nt:.0} events/s, p99 {:.0} / {:.0} us",
                i + 1,
                op / 1e3,
                np / 1e3
            )?;
        }
        write!(f, "{}", self.checks.overall())
    }
}
