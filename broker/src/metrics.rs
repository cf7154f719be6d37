//! The broker's counters, rendered at `/broker/metrics` and in the node's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one node's broker.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub produced: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub forwarded_events: AtomicU64,
    pub forwarded_messages: AtomicU64,
    pub received_events: AtomicU64,
    pub undeliverable: AtomicU64,
    pub rejected: AtomicU64,
    pub cut_off: AtomicU64,
    pub produce_timeouts: AtomicU64,
}

/// Add `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Prometheus text, with the live subscription count.
    pub fn text(&self, subscriptions: usize) -> String {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows = [
            ("broker_events_produced_total", "counter", "Events produced through this node.", v(&self.produced)),
            ("broker_events_delivered_total", "counter", "Events handed to local subscriptions.", v(&self.delivered)),
            ("broker_events_dropped_total", "counter", "Events dropped from full drop-policy subscriptions.", v(&self.dropped)),
            ("broker_events_forwarded_total", "counter", "Events sent to other nodes.", v(&self.forwarded_events)),
            ("broker_forward_messages_total", "counter", "Network messages (batches) sent to other nodes.", v(&self.forwarded_messages)),
            ("broker_events_received_total", "counter", "Events received from other nodes.", v(&self.received_events)),
            ("broker_events_undeliverable_total", "counter", "Events that had no live receiver when they arrived (queue group member gone, node unreachable).", v(&self.undeliverable)),
            ("broker_events_rejected_total", "counter", "Invalid events refused at the HTTP binding.", v(&self.rejected)),
            ("broker_consumers_cut_off_total", "counter", "Block-policy subscriptions cut off for taking no event within their block deadline.", v(&self.cut_off)),
            ("broker_produce_timeouts_total", "counter", "Produce requests answered 503 because they did not complete within their timeout.", v(&self.produce_timeouts)),
            ("broker_subscriptions", "gauge", "Live local subscriptions.", subscriptions as u64),
        ];
        runtime::metrics_text(&rows)
    }
}
