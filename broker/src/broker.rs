//! The broker handle: produce, consume, declare durable channels, inspect.

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use runtime::Node;
use tokio::sync::Notify;

use crate::{
    consume::{ConsumeOptions, Consumer, StartAt, Subscription},
    durable::Durable,
    error::BrokerError,
    event::CloudEvent,
    fanout::Fanout,
    hints::RemoteInterest,
    interest::{Interest, MAX_GROUPS_PER_CHANNEL},
    link::Links,
    metrics::{add, Metrics},
    names::valid_channel,
    subscribers::Subscribers,
    subscription::{Item, SubQueue},
};

/// The parts of a node's broker.
pub(crate) struct Inner {
    pub node: Node,
    pub name: String,
    pub subs: Arc<Subscribers>,
    pub remote: Arc<RemoteInterest>,
    pub links: Arc<Links>,
    pub fanout: Arc<Fanout>,
    pub durable: Arc<Durable>,
    pub metrics: Arc<Metrics>,
    /// Notified when local interest changes (to gossip it).
    pub changed: Arc<Notify>,
    pub next_sub: AtomicU64,
}

/// The broker of one node: produce and consume CloudEvents on named channels.
///
/// One broker actor runs per node (process group `broker@<node>`); brokers learn which nodes
/// have consumers for which channels through gossip (`broker/i/<channel>`), and an event crosses
/// the network once per node with consumers for its channel, in batches, in production order.
///
/// ```
/// use broker::{Broker, CloudEvent, ConsumeOptions, Delivery};
/// use futures::StreamExt;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let node = runtime::Node::builder().name("broker-doc").admin_addr("127.0.0.1:0")
///     .data_dir(dir.path()).start().await.unwrap();
/// let broker = Broker::start(&node).await.unwrap();
/// let mut sub = broker.consume("orders", ConsumeOptions::default()).await.unwrap();
/// let ev = CloudEvent::builder("shop", "order.created").id("1").build().unwrap();
/// broker.produce("orders", ev.clone()).await.unwrap();
/// assert_eq!(sub.next().await, Some(Delivery::Event { event: ev, offset: None }));
/// node.shutdown().await;
/// # });
/// ```
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node", &self.inner.name)
            .finish()
    }
}

impl Broker {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.name
    }

    /// Declare `channel` durable, homed on this node unless another node already is its home.
    /// Returns the home node. Events produced to it from then on are appended to its log.
    pub async fn declare_durable(&self, channel: &str) -> Result<String, BrokerError> {
        valid_channel(channel)?;
        if let Some(home) = self.inner.durable.homes.get_settled(channel).await {
            return Ok(home);
        }
        self.inner.durable.declare(channel).await
    }

    /// The home node of a durable channel (`None`: not durable, as far as this node knows).
    pub fn durable_home(&self, channel: &str) -> Option<String> {
        self.inner.durable.homes.get(channel)
    }

    /// Publish one event. Returns its log offset for a durable channel (appended and fsynced
    /// before this returns), `None` otherwise.
    pub async fn produce(
        &self,
        channel: &str,
        event: CloudEvent,
    ) -> Result<Option<u64>, BrokerError> {
        let offsets = self.produce_batch(channel, vec![event]).await?;
        Ok(offsets.into_iter().next().flatten())
    }

    /// Publish events in order (one append and fsync for a durable channel).
    ///
    /// Inside a trace (a traced admin request or message), the produce is a span `produce` of
    /// it, exported when the node exports spans (`--otlp-endpoint`).
    pub async fn produce_batch(
        &self,
        channel: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Vec<Option<u64>>, BrokerError> {
        let n = events.len();
        let attributes = || {
            vec![
                ("messaging.destination.name", channel.to_string()),
                ("messaging.batch.message_count", n.to_string()),
            ]
        };
        self.inner
            .node
            .in_span(
                "produce",
                attributes,
                self.produce_untraced(channel, events),
            )
            .await
    }

    async fn produce_untraced(
        &self,
        channel: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Vec<Option<u64>>, BrokerError> {
        valid_channel(channel)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len() as u64;
        match self.inner.durable.homes.get_settled(channel).await {
            Some(home) => {
                let texts: Vec<Arc<str>> = events.iter().map(|e| e.shared()).collect();
                let first = self.inner.durable.append(channel, &home, texts).await?;
                Ok((0..n).map(|i| Some(first + i)).collect())
            }
            None => {
                let items: Vec<Item> = events
                    .iter()
                    .map(|e| Item {
                        event: e.shared(),
                        offset: None,
                    })
                    .collect();
                add(&self.inner.metrics.produced, n);
                self.inner.fanout.fan_out(channel, items).await;
                Ok(vec![None; events.len()])
            }
        }
    }

    /// [`Broker::produce_batch`] that gives up after `timeout` with [`BrokerError::Timeout`]
    /// (HTTP 503): a consumer that holds producers back cannot make a request hang. Events
    /// of a request that timed out may have reached some consumers (and, on a durable channel,
    /// the log).
    pub async fn produce_batch_within(
        &self,
        channel: &str,
        events: Vec<CloudEvent>,
        timeout: Duration,
    ) -> Result<Vec<Option<u64>>, BrokerError> {
        match tokio::time::timeout(timeout, self.produce_batch(channel, events)).await {
            Ok(r) => r,
            Err(_) => {
                add(&self.inner.metrics.produce_timeouts, 1);
                Err(BrokerError::Timeout {
                    channel: channel.to_string(),
                    after_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Subscribe to a channel. Broadcast by default (every subscriber gets every event); with a
    /// group, the group's members share the events. For a durable channel, `from` (or a group's
    /// committed offset) replays the log first, then continues live without gaps or duplicates;
    /// without either it starts at the log's head (a group member: with the events routed to
    /// it from then on). Either way, on any node, every event of a
    /// durable channel produced after this returns reaches the subscription (its home has been
    /// told of it, [`BrokerError::HomeUnavailable`] when it cannot be).
    pub async fn consume(
        &self,
        channel: &str,
        opts: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        valid_channel(channel)?;
        if let Some(g) = &opts.group {
            valid_channel(g)
                .map_err(|_| BrokerError::BadRequest(format!("invalid group name '{g}'")))?;
            let here = self.inner.subs.interest(channel);
            if !here.has_group(g) && here.groups.len() >= MAX_GROUPS_PER_CHANNEL {
                return Err(BrokerError::TooManyGroups {
                    channel: channel.to_string(),
                    limit: MAX_GROUPS_PER_CHANNEL,
                });
            }
        }
        let durable = self
            .inner
            .durable
            .homes
            .get_settled(channel)
            .await
            .is_some();
        if opts.from.is_some() && !durable {
            return Err(BrokerError::BadRequest(format!(
                "channel '{channel}' is not durable: --from needs a durable channel"
            )));
        }
        let mut start = match opts.from {
            Some(StartAt::Beginning) => Some(0),
            Some(StartAt::Offset(n)) => Some(n),
            None => None,
        };
        if let (None, true, Some(g)) = (start, durable, &opts.group) {
            start = self.inner.durable.committed(channel, g).await?;
        }
        let queue = Arc::new(SubQueue::new(
            self.inner
                .next_sub
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            opts.group.clone(),
            opts.capacity,
            opts.policy,
            opts.block_deadline,
        ));
        let consumer = Consumer::subscribe(
            self.inner.subs.clone(),
            self.inner.changed.clone(),
            channel,
            queue,
            durable.then(|| self.inner.durable.clone()),
        );
        if !durable {
            return Ok(consumer.read_from(0, false));
        }
        // The home routes the channel's events here before this returns (gossip would take a
        // round or two); a down home is refused now (503) rather than a stream opened that can
        // only end or miss events. On an error the consumer is dropped, and unsubscribed.
        let (interest, stamp) = self.inner.subs.stamped(channel);
        let head = self.inner.durable.attach(channel, interest, stamp).await?;
        Ok(match (start, &opts.group) {
            (Some(from), _) => consumer.read_from(from, true),
            // A new group's member takes every event routed to it as its group's share, even
            // one appended just before that head.
            (None, Some(_)) => consumer.read_from(0, false),
            (None, None) => consumer.read_from(head, false),
        })
    }

    /// What this node knows: local subscriptions, other nodes' interest, durable homes.
    pub async fn channels(&self) -> serde_json::Value {
        let local_logs = self.inner.durable.local_state().await;
        let local: BTreeMap<String, Interest> = self.inner.subs.all_interest();
        let remote = self.inner.remote.all();
        let durable = self.inner.durable.homes.all();
        let mut names: Vec<&String> = local
            .keys()
            .chain(remote.keys())
            .chain(durable.keys())
            .collect();
        names.sort();
        names.dedup();
        let mut out = serde_json::Map::new();
        for c in names {
            let mut nodes = serde_json::Map::new();
            if let Some(i) = local.get(c) {
                nodes.insert(self.inner.name.clone(), serde_json::json!(i));
            }
            for (n, i) in remote.get(c).into_iter().flatten() {
                nodes.insert(n.clone(), serde_json::json!(i));
            }
            let mut entry = serde_json::json!({ "nodes": nodes, "durable_home": durable.get(c) });
            match local_logs.get(c) {
                Some(Ok((groups, len))) => {
                    entry["log_length"] = serde_json::json!(len);
                    entry["committed"] = serde_json::json!(groups);
                }
                Some(Err(reason)) => entry["refused"] = serde_json::json!(reason),
                None => {}
            }
            out.insert(c.clone(), entry);
        }
        serde_json::json!({ "node": self.inner.name, "channels": out })
    }

    /// Every durable channel this node knows of, with its consumer groups' committed offsets
    /// and lag (asked of each channel's home): `{"node", "channels": [{"channel", "home",
    /// "head", "groups": [{"group", "committed", "lag"}]}]}`, or `"error"` in place of `head`
    /// and `groups` for a channel whose home did not answer.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("groups-doc").without_admin()
    ///     .data_dir(tempfile::tempdir().unwrap().keep()).start().await.unwrap();
    /// let broker = broker::Broker::start(&node).await.unwrap();
    /// assert_eq!(broker.durable_groups().await["channels"], serde_json::json!([]));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn durable_groups(&self) -> serde_json::Value {
        let mut homes: Vec<(String, String)> = self.inner.durable.homes.all().into_iter().collect();
        homes.sort();
        let mut out = Vec::with_capacity(homes.len());
        for (channel, home) in homes {
            let entry = match self.inner.durable.groups(&channel).await {
                Ok(Some((head, committed))) => serde_json::json!({
                    "channel": channel, "home": home, "head": head,
                    "groups": crate::lag::lags(head, &committed),
                }),
                Ok(None) => continue, // forgotten meanwhile
                Err(e) => serde_json::json!({
                    "channel": channel, "home": home, "error": e.to_string(),
                }),
            };
            out.push(entry);
        }
        serde_json::json!({ "node": self.inner.name, "channels": out })
    }

    /// Count an event refused at the HTTP binding.
    pub(crate) fn count_rejected(&self) {
        add(&self.inner.metrics.rejected, 1);
    }

    /// The broker's metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.text(self.inner.subs.count())
    }
}
