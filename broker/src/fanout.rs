//! Fan-out: hand events to this node's subscriptions and queue them for interested nodes.
//!
//! The thin shell around [`crate::routing`]: it takes the routing view (local subscribers,
//! other nodes' interest) once per batch, asks routing where each event goes, pushes to local
//! [`SubQueue`]s, and queues the rest on the [`Links`]. A block-policy subscription that
//! passed its block deadline is removed here (its consumer is told by its queue), and the
//! interest change is gossiped.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use crate::{
    hints::RemoteInterest,
    link::{Links, Outgoing},
    metrics::{add, Metrics},
    protocol::Batch,
    routing::{reroute_target, route, Cursors},
    subscribers::Subscribers,
    subscription::{Closed, Item, SubQueue},
};

/// Events for other nodes, collected while routing a batch and then queued on their links
/// (one queue operation per node and batch; order kept per node).
type Outbox = BTreeMap<String, Vec<Outgoing>>;

/// Routes events to local subscriptions and other nodes.
pub(crate) struct Fanout {
    pub me: String,
    pub subs: Arc<Subscribers>,
    pub remote: Arc<RemoteInterest>,
    pub links: Arc<Links>,
    pub metrics: Arc<Metrics>,
    /// Notified when local interest changes (to gossip it).
    pub changed: Arc<Notify>,
    cursors: Mutex<Cursors>,
}

impl Fanout {
    pub fn new(
        me: String,
        subs: Arc<Subscribers>,
        remote: Arc<RemoteInterest>,
        links: Arc<Links>,
        metrics: Arc<Metrics>,
        changed: Arc<Notify>,
    ) -> Fanout {
        Fanout {
            me,
            subs,
            remote,
            links,
            metrics,
            changed,
            cursors: Mutex::new(Cursors::default()),
        }
    }

    /// Route produced events (in order): local subscribers directly, each interested remote
    /// node once. The routing view is taken once per batch; queue groups still pick a node and
    /// a member per event.
    pub async fn fan_out(&self, channel: &str, items: Vec<Item>) {
        let local = self.subs.interest(channel);
        let remote = self.remote.of(channel);
        let shared: Arc<str> = channel.into();
        if !local.any_group() && !remote.iter().any(|(_, i)| i.any_group()) {
            // Broadcast only: the whole batch to each interested node, then to each local
            // subscriber.
            for (node, i) in &remote {
                if i.broadcast > 0 {
                    let out = items
                        .iter()
                        .map(|item| outgoing(&shared, item, true, Vec::new(), 0))
                        .collect();
                    self.links.send(node, out).await;
                }
            }
            self.push_broadcast(channel, &items).await;
            return;
        }
        let mut outbox = Outbox::new();
        for item in items {
            let r = {
                let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
                route(&self.me, channel, &local, &remote, &mut cursors)
            };
            for (node, broadcast, groups) in r.remote {
                let o = outgoing(&shared, &item, broadcast, groups, 0);
                outbox.entry(node).or_default().push(o);
            }
            if r.local_broadcast || !r.local_groups.is_empty() {
                let unserved = self
                    .deliver_local(channel, &item, r.local_broadcast, &r.local_groups)
                    .await;
                self.reroute(&shared, &item, unserved, 0, &mut outbox);
            }
        }
        self.flush(outbox).await;
    }

    /// A batch from another node's broker, delivered in order.
    pub async fn receive(&self, batch: Batch) {
        let mut outbox = Outbox::new();
        for run in batch.runs {
            let channel = run.channel.0;
            add(&self.metrics.received_events, run.events.len() as u64);
            if run
                .events
                .iter()
                .all(|e| e.broadcast && e.groups.is_empty())
            {
                let items: Vec<Item> = run
                    .events
                    .into_iter()
                    .map(|e| Item {
                        event: e.event.0,
                        offset: e.offset,
                    })
                    .collect();
                self.push_broadcast(&channel, &items).await;
                continue;
            }
            for e in run.events {
                let item = Item {
                    event: e.event.0,
                    offset: e.offset,
                };
                let mut unserved = self
                    .deliver_local(&channel, &item, e.broadcast, &e.groups)
                    .await;
                // A group that never had a member here since this broker started was routed
                // here by a view of this node's previous incarnation, and the sender has been
                // giving the group's later events to other members meanwhile: re-routing this
                // one now would hand it to them out of order. It is lost with the node that
                // died (counted), as a plain channel's events in flight to a dead node are.
                let before = unserved.len();
                unserved.retain(|g| self.subs.had_group(&channel, g));
                add(
                    &self.metrics.undeliverable,
                    (before - unserved.len()) as u64,
                );
                self.reroute(&channel, &item, unserved, e.hops, &mut outbox);
            }
        }
        self.flush(outbox).await;
    }

    async fn flush(&self, outbox: Outbox) {
        for (node, out) in outbox {
            self.links.send(&node, out).await;
        }
    }

    /// Push to one subscription; a closed one is taken out of the table.
    async fn push(&self, channel: &str, q: &SubQueue, items: &[Item]) -> bool {
        match q.push_all(items).await {
            Ok(dropped) => {
                add(&self.metrics.delivered, items.len() as u64);
                add(&self.metrics.dropped, dropped);
                true
            }
            Err(Closed { cut_off }) => {
                if cut_off {
                    add(&self.metrics.cut_off, 1);
                    tracing::warn!(
                        "broker: cut off a consumer of {channel} that took no event within its \
                         block deadline"
                    );
                }
                if self.subs.remove(channel, q.id) {
                    self.changed.notify_one();
                }
                false
            }
        }
    }

    /// Hand `items` (in order) to each broadcast subscription.
    async fn push_broadcast(&self, channel: &str, items: &[Item]) {
        for q in self.subs.broadcast(channel) {
            self.push(channel, &q, items).await;
        }
    }

    /// Deliver to local subscribers; returns the groups that had no live member here.
    async fn deliver_local(
        &self,
        channel: &str,
        item: &Item,
        broadcast: bool,
        groups: &[String],
    ) -> Vec<String> {
        let (targets, mut unserved) = self.subs.pick(channel, broadcast, groups);
        let one = std::slice::from_ref(item);
        for (q, group) in targets {
            if !self.push(channel, &q, one).await {
                unserved.extend(group);
            }
        }
        unserved
    }

    /// Send queue-group events whose chosen member went away to another node with members.
    fn reroute(
        &self,
        channel: &Arc<str>,
        item: &Item,
        groups: Vec<String>,
        hops: u8,
        outbox: &mut Outbox,
    ) {
        if groups.is_empty() {
            return;
        }
        let remote = self.remote.of(channel);
        for g in groups {
            match reroute_target(&remote, &g, hops) {
                Some(node) => outbox.entry(node).or_default().push(outgoing(
                    channel,
                    item,
                    false,
                    vec![g],
                    hops + 1,
                )),
                None => add(&self.metrics.undeliverable, 1),
            }
        }
    }
}

fn outgoing(
    channel: &Arc<str>,
    item: &Item,
    broadcast: bool,
    groups: Vec<String>,
    hops: u8,
) -> Outgoing {
    Outgoing {
        channel: channel.clone(),
        item: item.clone(),
        broadcast,
        groups,
        hops,
    }
}
