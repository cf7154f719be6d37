//! What the consumers of either system have seen: events per consumer, the send-to-arrival
//! latencies of the measured events, and the event payloads that carry their send time.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::bail;

/// Wall-clock nanoseconds (producer and consumers share this machine's clock).
pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A JSON payload of exactly `size` bytes (when `size` allows) carrying the send time.
pub(super) fn payload(size: usize) -> String {
    let head = format!("{{\"ts\":{},\"pad\":\"", now_ns());
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// A CloudEvent (JSON format) with [`payload`] as its data.
pub(super) fn event_json(i: u64, size: usize) -> String {
    format!(
        "{{\"specversion\":\"1.0\",\"id\":\"{i}\",\"source\":\"/bench\",\"type\":\"bench\",\"datacontenttype\":\"application/json\",\"data\":{}}}",
        payload(size)
    )
}

/// The send time in a payload (`"ts":` followed by digits).
pub(super) fn ts_of(text: &str) -> Option<u64> {
    let i = text.find("\"ts\":")? + 5;
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What the consumers have seen, and how many events were sent to each.
#[derive(Default)]
pub(super) struct Seen {
    counts: Vec<AtomicU64>,
    /// Whether each consumer has seen a probe (a message without a send time): the NATS
    /// side's routes carry interest once every consumer has.
    probed: Vec<AtomicBool>,
    /// Events sent so far (every consumer gets each).
    sent: AtomicU64,
    /// Record latencies (set during latency runs only).
    measuring: AtomicBool,
    latencies: Mutex<Vec<Duration>>,
}

impl Seen {
    pub(super) fn new(n: usize) -> Arc<Seen> {
        Arc::new(Seen {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            probed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            ..Seen::default()
        })
    }

    /// Events the slowest consumer has.
    pub(super) fn min(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether every consumer has seen a probe.
    pub(super) fn all_probed(&self) -> bool {
        self.probed.iter().all(|p| p.load(Ordering::Relaxed))
    }

    /// Consumer `i` got `text`: an event with its send time, or a probe.
    pub(super) fn record(&self, i: usize, text: &str) {
        let Some(ts) = ts_of(text) else {
            if let Some(p) = self.probed.get(i) {
                p.store(true, Ordering::Relaxed);
            }
            return;
        };
        if self.measuring.load(Ordering::Relaxed) {
            let d = Duration::from_nanos(now_ns().saturating_sub(ts));
            self.latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(d);
        }
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` more events were sent.
    pub(super) fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Start or stop recording latencies; stopping answers the recorded ones.
    pub(super) fn measure(&self, on: bool) -> Vec<Duration> {
        self.measuring.store(on, Ordering::Relaxed);
        std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Wait until every consumer has every event sent, for at most `limit`.
    pub(super) async fn wait_all(&self, limit: Duration, what: &str) -> anyhow::Result<()> {
        let n = self.sent.load(Ordering::Relaxed);
        let deadline = Instant::now() + limit;
        while self.min() < n {
            if Instant::now() > deadline {
                bail!(
                    "timed out: {what} (slowest consumer has {} of {n})",
                    self.min()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_its_size_and_carries_its_send_time() {
        let before = now_ns();
        let p = payload(256);
        assert_eq!(p.len(), 256);
        let ts = ts_of(&p).expect("a send time");
        assert!(ts >= before && ts <= now_ns());
        let e = event_json(7, 256);
        assert!(e.contains("\"id\":\"7\""));
        assert_eq!(ts_of(&e).map(|t| t >= before), Some(true));
        assert_eq!(ts_of("{}"), None);
    }

    #[test]
    fn the_slowest_consumer_counts_and_probes_are_not_events() {
        let seen = Seen::new(2);
        seen.record(0, "{}");
        assert!(!seen.all_probed());
        seen.record(1, "probe");
        assert!(seen.all_probed());
        assert_eq!(seen.min(), 0, "probes are not counted");
        seen.record(0, &payload(64));
        assert_eq!(seen.min(), 0);
        seen.record(1, &payload(64));
        assert_eq!(seen.min(), 1);
        assert!(
            seen.measure(false).is_empty(),
            "not measuring: no latencies"
        );
        seen.measure(true);
        seen.record(0, &payload(64));
        assert_eq!(seen.measure(false).len(), 1);
    }

    #[tokio::test]
    async fn waiting_for_events_no_consumer_has_times_out_naming_the_slowest() {
        let seen = Seen::new(2);
        seen.sent(1);
        seen.record(0, &payload(64));
        let err = seen
            .wait_all(Duration::from_millis(20), "test run")
            .await
            .expect_err("consumer 1 has nothing");
        assert_eq!(
            err.to_string(),
            "timed out: test run (slowest consumer has 0 of 1)"
        );
        seen.record(1, &payload(64));
        seen.wait_all(Duration::from_secs(5), "test run")
            .await
            .expect("both have it");
    }
}
