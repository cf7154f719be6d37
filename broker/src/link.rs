//! The link to one other node: its events in order, in batches, within a credit window.
//!
//! Events for a node are queued on its link ([`Links::send`]); one task per destination takes
//! what is queued (up to [`BATCH`] events), packs it into runs of one channel ([`pack`]) and
//! sends it as one [`Request::Deliver`] on the direct lane. The receiver acknowledges each
//! batch once delivered; at most [`WINDOW`] batches are unacknowledged ([`Window`]), which
//! carries a blocked subscriber's back-pressure to producers on other nodes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actors::codec::Wire;
use ractor::ActorRef;
use runtime::Node;
use tokio::sync::{mpsc, Notify};

use crate::{
    metrics::{add, Metrics},
    protocol::{remote_broker, Batch, BrokerMsg, Request, Run, SharedStr, WireEvent},
    subscription::Item,
};

/// Events per network message between two brokers (a message holds at least one produced batch,
/// and more while they add up to fewer than this).
pub(crate) const BATCH: usize = 512;
/// Messages of at most [`BATCH`] events queued towards one remote node before producers wait.
const LINK_CAPACITY: usize = 32;
/// Batches sent to one node and not yet acknowledged by it before the link waits.
pub(crate) const WINDOW: u64 = 8;
/// An acknowledgement that does not come within this time is presumed lost (node restarted).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch waits for the lane to its node before it is counted undeliverable.
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// An event queued on the link to another node.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub channel: Arc<str>,
    pub item: Item,
    pub broadcast: bool,
    pub groups: Vec<String>,
    pub hops: u8,
}

/// Pack queued events into one [`Batch`]: consecutive events of one channel form a run.
pub(crate) fn pack(from: &str, events: Vec<Outgoing>) -> Batch {
    let mut runs: Vec<Run> = Vec::new();
    for o in events {
        let event = WireEvent {
            event: SharedStr(o.item.event),
            offset: o.item.offset,
            broadcast: o.broadcast,
            groups: o.groups,
            hops: o.hops,
        };
        match runs.last_mut() {
            Some(run) if *run.channel.0 == *o.channel => run.events.push(event),
            _ => runs.push(Run {
                channel: SharedStr(o.channel),
                events: vec![event],
            }),
        }
    }
    Batch {
        from: from.to_string(),
        runs,
    }
}

/// Unacknowledged batches towards one node.
#[derive(Debug, Default)]
pub(crate) struct Window {
    inflight: AtomicU64,
    notify: Notify,
}

impl Window {
    /// Whether another batch may be sent now.
    pub fn has_room(&self) -> bool {
        self.inflight.load(Ordering::Acquire) < WINDOW
    }

    /// A batch was sent.
    pub fn sent(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` batches were acknowledged.
    pub fn acked(&self, n: u64) {
        let _ = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        self.notify.notify_waiters();
    }

    /// Wait for room; an acknowledgement missing for [`ACK_TIMEOUT`] resets the window (the
    /// other node restarted or lost them).
    pub async fn room(&self, node: &str) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            if tokio::time::timeout(ACK_TIMEOUT, notified).await.is_err() {
                tracing::warn!("broker: no acknowledgement from {node}; resetting its window");
                self.inflight.store(0, Ordering::Release);
            }
        }
    }
}

/// The links of this node to the others.
pub(crate) struct Links {
    node: Node,
    me: String,
    metrics: Arc<Metrics>,
    queues: Mutex<HashMap<String, mpsc::Sender<Vec<Outgoing>>>>,
    windows: Mutex<HashMap<String, Arc<Window>>>,
}

impl Links {
    pub fn new(node: Node, metrics: Arc<Metrics>) -> Arc<Links> {
        Arc::new(Links {
            me: node.name().to_string(),
            node,
            metrics,
            queues: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
        })
    }

    fn window(&self, node: &str) -> Arc<Window> {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// `node` has delivered `n` of our batches.
    pub fn acked(&self, node: &str, n: u64) {
        self.window(node).acked(n);
    }

    /// Queue events on the link to `node`, in order (waits while the link is full).
    pub async fn send(self: &Arc<Self>, node: &str, mut events: Vec<Outgoing>) {
        while events.len() > BATCH {
            let rest = events.split_off(BATCH);
            self.send_chunk(node, events).await;
            events = rest;
        }
        self.send_chunk(node, events).await;
    }

    async fn send_chunk(self: &Arc<Self>, node: &str, events: Vec<Outgoing>) {
        let tx = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues
                .entry(node.to_string())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(LINK_CAPACITY);
                    tokio::spawn(run(Arc::downgrade(self), node.to_string(), rx));
                    tx
                })
                .clone()
        };
        if tx.send(events).await.is_err() {
            self.queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(node);
        }
    }

    /// Send one batch to `node`'s broker actor over the direct lane. Batches go on the lane only
    /// (never through ractor_cluster), so a link's batches cannot overtake each other when the
    /// lane comes up; until it is up the batch is handed back to be retried.
    fn try_send(
        &self,
        node: &str,
        target: &mut Option<ActorRef<BrokerMsg>>,
        msg: Wire<Request>,
    ) -> Result<(), Option<Wire<Request>>> {
        if target.is_none() {
            *target = remote_broker(node);
        }
        let Some(t) = target else {
            return Err(Some(msg));
        };
        if !self.node.has_lane(t) {
            if t.get_status() != ractor::ActorStatus::Running {
                *target = None;
            }
            return Err(Some(msg));
        }
        self.node.tell(t, BrokerMsg::Tell(msg)).map_err(|e| {
            tracing::warn!("broker: cannot send a batch to {node}: {e}");
            *target = None;
            None
        })
    }
}

/// The task of one link: batches in order, within the window.
async fn run(links: std::sync::Weak<Links>, node: String, mut rx: mpsc::Receiver<Vec<Outgoing>>) {
    let mut target: Option<ActorRef<BrokerMsg>> = None;
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let Some(links) = links.upgrade() else {
            return;
        };
        let n = batch.len() as u64;
        let window = links.window(&node);
        window.room(&node).await;
        let mut msg = match Wire::new(&Request::Deliver(pack(&links.me, batch))) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("broker: cannot encode a batch for {node}: {e}");
                continue;
            }
        };
        let mut sent = false;
        let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
        loop {
            window.sent();
            match links.try_send(&node, &mut target, msg) {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(back) => {
                    window.acked(1);
                    match back {
                        Some(m) => msg = m,
                        None => break,
                    }
                }
            }
            // Interest may be known before the actor transport is connected: wait a little.
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if sent {
            add(&links.metrics.forwarded_events, n);
            add(&links.metrics.forwarded_messages, 1);
        } else {
            tracing::warn!("broker: node {node} unreachable; {n} events not delivered there");
            add(&links.metrics.undeliverable, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(channel: &str, i: u64) -> Outgoing {
        Outgoing {
            channel: channel.into(),
            item: Item {
                event: format!("{i}").into(),
                offset: None,
            },
            broadcast: true,
            groups: Vec::new(),
            hops: 0,
        }
    }

    #[test]
    fn pack_keeps_order_in_runs_of_one_channel() {
        let b = pack(
            "n1",
            vec![out("a", 0), out("a", 1), out("b", 2), out("a", 3)],
        );
        assert_eq!(b.from, "n1");
        let runs: Vec<(String, Vec<String>)> = b
            .runs
            .iter()
            .map(|r| {
                (
                    r.channel.0.to_string(),
                    r.events.iter().map(|e| e.event.0.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            runs,
            vec![
                ("a".into(), vec!["0".into(), "1".into()]),
                ("b".into(), vec!["2".into()]),
                ("a".into(), vec!["3".into()]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_waits_for_acknowledgements() {
        let w = Arc::new(Window::default());
        for _ in 0..WINDOW {
            assert!(w.has_room());
            w.sent();
        }
        assert!(!w.has_room());
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { w.room("n2").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "no room before an acknowledgement");
        w.acked(1);
        waiter.await.unwrap();
        w.acked(100);
        assert!(
            w.has_room(),
            "acknowledging more than sent saturates at zero"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_acknowledgement_resets_the_window_after_the_timeout() {
        let w = Window::default();
        for _ in 0..WINDOW {
            w.sent();
        }
        let started = tokio::time::Instant::now();
        w.room("n2").await;
        assert_eq!(started.elapsed(), ACK_TIMEOUT);
        assert!(w.has_room());
    }
}
