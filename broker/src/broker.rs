//! The broker: local subscriptions, interest sharing, fan-out across nodes, durable channels.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use actors::codec;
use futures::Stream;
use ractor::ActorRef;
use runtime::{MemberState, Node};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::{
    actor::{BrokerActor, BrokerMsg},
    error::BrokerError,
    event::CloudEvent,
    log::Log,
};

/// Gossip key prefix of a node's subscription interest: `broker/i/<channel>` = [`Interest`] JSON.
const INTEREST_PREFIX: &str = "broker/i/";
/// Gossip key prefix of durable channels: `broker/d/<channel>` = home node. Every node publishes
/// the durable channels it knows of (and keeps them on disk), so one that restarts, or joins,
/// learns them from any live node.
const DURABLE_PREFIX: &str = "broker/d/";
/// Gossip key a node's broker sets once it has published what it knows of durable channels.
const READY_KEY: &str = "broker/ready";
/// The durable channels a node knows of and their homes: `<data_dir>/broker/<this file>`.
const KNOWN_FILE: &str = "durable.json";
/// After a start, how long an operation on a channel not known to be durable waits at most for
/// the live nodes' brokers to be heard from (then the channel is taken as not durable).
const SETTLE_GRACE: Duration = Duration::from_secs(5);
/// How long a produce (or replay) waits for a durable channel's home node to be connected
/// before it fails with [`BrokerError::HomeUnavailable`].
const HOME_WAIT: Duration = Duration::from_secs(3);
/// Events per network message between two brokers (a message holds at least one produced batch,
/// and more while they add up to fewer than this).
const BATCH: usize = 512;
/// Messages of at most [`BATCH`] events queued towards one remote node before producers wait.
const LINK_CAPACITY: usize = 32;
/// Batches sent to one node and not yet acknowledged (processed) by it before the link waits:
/// this carries a blocked subscriber's back-pressure to producers on other nodes.
const WINDOW: u64 = 8;
/// An acknowledgement that does not come within this time is presumed lost (node restarted).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The process group of a node's broker actor.
pub(crate) fn broker_group(node: &str) -> String {
    format!("broker@{node}")
}

/// What a subscription does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The producer waits for room: nothing is lost, a slow consumer slows producers.
    #[default]
    Block,
    /// The oldest buffered event is dropped; the loss is counted, reported to the consumer
    /// ([`Delivery::Lost`]) and in the metrics. Producers and other consumers never wait.
    Drop,
}

impl std::str::FromStr for Policy {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Policy, BrokerError> {
        match s {
            "block" => Ok(Policy::Block),
            "drop" => Ok(Policy::Drop),
            other => Err(BrokerError::BadRequest(format!(
                "unknown policy '{other}': use block or drop"
            ))),
        }
    }
}

/// Where a consumer of a durable channel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Offset 0: replay everything kept.
    Beginning,
    /// This offset (replay from it, then live).
    Offset(u64),
}

impl std::str::FromStr for StartAt {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<StartAt, BrokerError> {
        if s == "beginning" {
            return Ok(StartAt::Beginning);
        }
        s.parse::<u64>().map(StartAt::Offset).map_err(|_| {
            BrokerError::BadRequest(format!("invalid start '{s}': use 'beginning' or an offset"))
        })
    }
}

/// Options of [`Broker::consume`].
///
/// ```
/// use broker::{ConsumeOptions, Policy, StartAt};
/// let opts = ConsumeOptions::default().group("billing").policy(Policy::Drop).capacity(64);
/// let replay = ConsumeOptions::default().from(StartAt::Beginning);
/// # let _ = (opts, replay);
/// ```
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Queue group: members of a group share the channel's events (one member gets each).
    pub group: Option<String>,
    /// Full-buffer policy.
    pub policy: Policy,
    /// Buffer size in events.
    pub capacity: usize,
    /// Durable channels: replay from here before going live. For a group without it, the
    /// group's committed offset (if any) is used.
    pub from: Option<StartAt>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            group: None,
            policy: Policy::Block,
            capacity: 1024,
            from: None,
        }
    }
}

impl ConsumeOptions {
    /// Join a queue group.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.group = Some(g.into());
        self
    }
    /// Set the full-buffer policy.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }
    /// Set the buffer size (at least 1).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }
    /// Start a durable channel's consumer at this position.
    pub fn from(mut self, s: StartAt) -> Self {
        self.from = Some(s);
        self
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An event; `offset` is its position in a durable channel's log.
    Event {
        /// The event.
        event: CloudEvent,
        /// Log offset (durable channels only).
        offset: Option<u64>,
    },
    /// This many events were dropped (policy [`Policy::Drop`]) before the next one.
    Lost(u64),
}

/// A node's subscription interest in one channel (shared through gossip).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// Broadcast subscribers.
    #[serde(rename = "b", default)]
    pub broadcast: u32,
    /// Queue groups and their member counts.
    #[serde(rename = "g", default)]
    pub groups: BTreeMap<String, u32>,
}

impl Interest {
    fn is_empty(&self) -> bool {
        self.broadcast == 0 && self.groups.values().all(|n| *n == 0)
    }
}

/// Shared text that goes on the wire as a plain string (no copy when encoding, one allocation
/// when decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedStr(pub Arc<str>);

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = SharedStr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<SharedStr, E> {
                Ok(SharedStr(v.into()))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// A batch of events as it crosses the network between brokers: the sending node, then runs of
/// events of one channel, in production order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireBatch {
    pub from: String,
    pub runs: Vec<WireRun>,
}

/// Consecutive events of one channel in a [`WireBatch`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireRun {
    pub channel: SharedStr,
    pub events: Vec<WireEvent>,
}

/// One event in a [`WireRun`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub event: SharedStr,
    pub offset: Option<u64>,
    /// Deliver to the destination's broadcast subscribers.
    pub broadcast: bool,
    /// Queue groups for which the destination picks one member.
    pub groups: Vec<String>,
    pub hops: u8,
}

/// An event queued on the link to another node.
struct Outgoing {
    channel: Arc<str>,
    item: Item,
    broadcast: bool,
    groups: Vec<String>,
    hops: u8,
}

/// Events for other nodes, collected while routing a batch and then queued on their links
/// (one queue operation per node and batch; order kept per node).
type Outbox = BTreeMap<String, Vec<Outgoing>>;

/// An event on its way to subscribers: its JSON text, shared by every subscription that gets it.
#[derive(Clone)]
struct Item {
    event: Arc<str>,
    offset: Option<u64>,
}

/// A subscription's bounded buffer.
struct SubQueue {
    id: u64,
    group: Option<String>,
    cap: usize,
    policy: Policy,
    q: Mutex<VecDeque<Item>>,
    dropped: AtomicU64,
    reported: AtomicU64,
    items: Notify,
    space: Notify,
    closed: AtomicBool,
}

struct Closed;

impl SubQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append `items` in order; returns how many events were dropped to make room. A full
    /// `Block` queue waits for room (every item is delivered), a full `Drop` queue drops its
    /// oldest events.
    async fn push_all(&self, items: &[Item]) -> Result<u64, Closed> {
        let mut next = 0;
        let mut dropped = 0;
        loop {
            let pushed = self.try_push(&items[next..], &mut dropped)?;
            next += pushed;
            if pushed > 0 {
                self.items.notify_one();
            }
            if next == items.len() {
                return Ok(dropped);
            }
            // Full (block policy): wait for the consumer to take some.
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let q = self.lock();
                if q.len() < self.cap || self.closed.load(Ordering::Acquire) {
                    continue;
                }
            }
            space.await;
        }
    }

    /// Push what fits now (all of it with the drop policy); returns how many were taken.
    fn try_push(&self, items: &[Item], dropped: &mut u64) -> Result<usize, Closed> {
        let mut q = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        let mut n = 0;
        for item in items {
            if q.len() >= self.cap {
                if self.policy == Policy::Block {
                    break;
                }
                q.pop_front();
                *dropped += 1;
                // Counted under the lock: the consumer hears of the loss before the next event.
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(item.clone());
            n += 1;
        }
        Ok(n)
    }

    /// The next item, this many events lost first, or `None` (closed and drained): without
    /// waiting.
    fn try_pop(&self) -> Option<Option<Result<Item, u64>>> {
        let mut q = self.lock();
        let dropped = self.dropped.load(Ordering::Relaxed);
        let reported = self.reported.load(Ordering::Relaxed);
        if dropped > reported {
            self.reported.store(dropped, Ordering::Relaxed);
            return Some(Some(Err(dropped - reported)));
        }
        if let Some(item) = q.pop_front() {
            drop(q);
            self.space.notify_one();
            return Some(Some(Ok(item)));
        }
        if self.closed.load(Ordering::Acquire) {
            return Some(None);
        }
        None
    }

    async fn pop(&self) -> Option<Result<Item, u64>> {
        loop {
            if let Some(r) = self.try_pop() {
                return r;
            }
            let items = self.items.notified();
            tokio::pin!(items);
            items.as_mut().enable();
            if let Some(r) = self.try_pop() {
                return r;
            }
            items.await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.items.notify_waiters();
        self.space.notify_waiters();
    }
}

#[derive(Default)]
struct Channel {
    broadcast: Vec<Arc<SubQueue>>,
    groups: BTreeMap<String, Group>,
}

#[derive(Default)]
struct Group {
    members: Vec<Arc<SubQueue>>,
    next: usize,
}

impl Channel {
    fn interest(&self) -> Interest {
        Interest {
            broadcast: self.broadcast.len() as u32,
            groups: self
                .groups
                .iter()
                .filter(|(_, g)| !g.members.is_empty())
                .map(|(n, g)| (n.clone(), g.members.len() as u32))
                .collect(),
        }
    }
}

/// Counters exposed at `/broker/metrics`.
#[derive(Default)]
struct Metrics {
    produced: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    forwarded_events: AtomicU64,
    forwarded_messages: AtomicU64,
    received_events: AtomicU64,
    undeliverable: AtomicU64,
    rejected: AtomicU64,
}

pub(crate) struct Inner {
    node: Node,
    name: String,
    dir: PathBuf,
    channels: Mutex<HashMap<String, Channel>>,
    /// Other nodes' interest: channel -> node -> interest.
    remote: RwLock<HashMap<String, BTreeMap<String, Interest>>>,
    /// Durable channels and their home node.
    durable: RwLock<HashMap<String, String>>,
    /// The durable map as last written to [`KNOWN_FILE`].
    known_saved: Mutex<HashMap<String, String>>,
    /// Durable channels this node has published in gossip.
    published_durable: tokio::sync::Mutex<std::collections::HashSet<String>>,
    /// When the broker started (see [`SETTLE_GRACE`]).
    started: tokio::time::Instant,
    /// Every live node's broker has been heard from since the start (or the grace is over).
    settled: AtomicBool,
    /// Logs of the durable channels homed here.
    logs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Log>>>>,
    links: Mutex<HashMap<String, mpsc::Sender<Vec<Outgoing>>>>,
    /// Unacknowledged batches per destination node.
    credits: Mutex<HashMap<String, Arc<Credit>>>,
    group_rr: Mutex<HashMap<(String, String), usize>>,
    interest_changed: Notify,
    next_sub: AtomicU64,
    metrics: Metrics,
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

/// A stream of [`Delivery`]s for one subscription; dropping it unsubscribes.
pub struct Subscription {
    stream: Pin<Box<dyn Stream<Item = Delivery> + Send>>,
}

impl Stream for Subscription {
    type Item = Delivery;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.stream.as_mut().poll_next(cx)
    }
}

struct SubGuard {
    broker: Broker,
    channel: String,
    queue: Arc<SubQueue>,
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        self.queue.close();
        self.broker.unsubscribe(&self.channel, self.queue.id);
    }
}

/// Check a channel name.
pub fn valid_channel(name: &str) -> Result<(), BrokerError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::BadChannel(name.to_string()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    /// Start the node's broker: its actor under the `system` supervisor, interest gossip, the
    /// durable channels homed here (from `<data_dir>/broker`), and the HTTP routes under
    /// `/broker/` on the admin server.
    pub async fn start(node: &Node) -> Result<Broker, BrokerError> {
        let dir = node.config().data_dir.join("broker");
        let inner = Arc::new(Inner {
            node: node.clone(),
            name: node.name().to_string(),
            dir: dir.clone(),
            channels: Mutex::new(HashMap::new()),
            remote: RwLock::new(HashMap::new()),
            durable: RwLock::new(HashMap::new()),
            known_saved: Mutex::new(HashMap::new()),
            published_durable: tokio::sync::Mutex::new(Default::default()),
            started: tokio::time::Instant::now(),
            settled: AtomicBool::new(false),
            logs: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            credits: Mutex::new(HashMap::new()),
            group_rr: Mutex::new(HashMap::new()),
            interest_changed: Notify::new(),
            next_sub: AtomicU64::new(1),
            metrics: Metrics::default(),
        });
        let broker = Broker { inner };
        // Durable channels known before a restart (homed here or elsewhere): known at once,
        // before the first produce, whatever gossip has brought yet.
        let known = broker.known_before();
        *lock(&broker.inner.known_saved) = known.clone();
        broker
            .inner
            .durable
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(known);
        // Durable channels declared here before a restart.
        for channel in broker.declared_here() {
            broker.open_durable(&channel).await?;
        }
        publish_durable(&broker.inner).await;
        node.gossip_set(READY_KEY, "1").await;
        let sup = node
            .system_supervisor()
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let spec = actors::ChildSpec::worker(
            "broker",
            None,
            BrokerActor {
                broker: broker.clone(),
            },
            (),
        );
        actors::start_child(&sup, spec)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot start the broker actor: {e}")))?;
        tokio::spawn(publish_interest(Arc::downgrade(&broker.inner)));
        tokio::spawn(watch_gossip(Arc::downgrade(&broker.inner)));
        node.add_admin_routes(crate::http::routes(broker.clone()));
        let scraped = broker.clone();
        node.metrics().add_source(move || scraped.metrics_text());
        Ok(broker)
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.name
    }

    /// The runtime node this broker runs on.
    pub(crate) fn runtime(&self) -> &Node {
        &self.inner.node
    }

    fn declared_here(&self) -> Vec<String> {
        match std::fs::read(self.inner.dir.join("channels.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn open_durable(&self, channel: &str) -> Result<(), BrokerError> {
        let log_err = |e: std::io::Error| BrokerError::Log {
            channel: channel.to_string(),
            reason: e.to_string(),
        };
        if !lock(&self.inner.logs).contains_key(channel) {
            let log = Log::open(&self.inner.dir, channel).map_err(log_err)?;
            lock(&self.inner.logs)
                .insert(channel.to_string(), Arc::new(tokio::sync::Mutex::new(log)));
        }
        self.inner
            .durable
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_string(), self.inner.name.clone());
        save_known(&self.inner);
        publish_durable(&self.inner).await;
        Ok(())
    }

    /// The durable channels this node knew of when it stopped ([`KNOWN_FILE`]).
    fn known_before(&self) -> HashMap<String, String> {
        match std::fs::read(self.inner.dir.join(KNOWN_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("broker: ignoring unreadable {KNOWN_FILE}: {e}");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        }
    }

    /// Right after a start, wait (at most [`SETTLE_GRACE`]) until the broker of every live node
    /// has been heard from, so that "not durable" means that no live node knows the channel
    /// as durable, not that gossip has not arrived yet.
    async fn settle(&self) {
        if self.inner.settled.load(Ordering::Acquire) {
            return;
        }
        let deadline = self.inner.started + SETTLE_GRACE;
        loop {
            let heard = self.heard_everyone().await;
            if heard || tokio::time::Instant::now() >= deadline {
                refresh_durable(&self.inner).await;
                self.inner.settled.store(true, Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether every other live node's broker has published its durable channels (its
    /// [`READY_KEY`], set after them, has arrived).
    async fn heard_everyone(&self) -> bool {
        let node = &self.inner.node;
        let others: Vec<String> = node
            .members()
            .await
            .into_iter()
            .filter(|m| !m.is_self && m.state == MemberState::Alive)
            .map(|m| m.name)
            .collect();
        if others.is_empty() {
            // Alone: settled unless seeds say that other nodes should show up.
            return node.config().seeds.is_empty();
        }
        let ready: std::collections::HashSet<String> = node
            .gossip_scan(READY_KEY)
            .await
            .into_iter()
            .filter(|(_, k, _)| k == READY_KEY)
            .map(|(n, _, _)| n)
            .collect();
        others.iter().all(|n| ready.contains(n))
    }

    /// The home of `channel` if it is durable, once this node can tell (see [`Broker::settle`]).
    async fn durable_home_settled(&self, channel: &str) -> Option<String> {
        if let Some(home) = self.durable_home(channel) {
            return Some(home);
        }
        self.settle().await;
        self.durable_home(channel)
    }

    /// The broker actor of a durable channel's home node, waiting up to [`HOME_WAIT`] for it to
    /// be connected (right after a restart the actor transport may still be coming up).
    async fn home_actor(
        &self,
        channel: &str,
        home: &str,
    ) -> Result<ActorRef<BrokerMsg>, BrokerError> {
        let deadline = tokio::time::Instant::now() + HOME_WAIT;
        loop {
            if let Some(t) = remote_broker(home) {
                return Ok(t);
            }
            let dead = self
                .inner
                .node
                .members()
                .await
                .iter()
                .any(|m| m.name == home && m.state == MemberState::Dead);
            if dead || tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::HomeUnavailable {
                    channel: channel.to_string(),
                    node: home.to_string(),
                    reason: if dead {
                        "the node is down".into()
                    } else {
                        "not connected".into()
                    },
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Declare `channel` durable, homed on this node unless another node already is its home.
    /// Returns the home node. Events produced to it from then on are appended to its log.
    pub async fn declare_durable(&self, channel: &str) -> Result<String, BrokerError> {
        valid_channel(channel)?;
        if let Some(home) = self.durable_home_settled(channel).await {
            return Ok(home);
        }
        let mut declared = self.declared_here();
        if !declared.iter().any(|c| c == channel) {
            declared.push(channel.to_string());
            let err = |e: String| BrokerError::Log {
                channel: channel.to_string(),
                reason: e,
            };
            std::fs::create_dir_all(&self.inner.dir).map_err(|e| err(e.to_string()))?;
            let body = serde_json::to_vec(&declared).map_err(|e| err(e.to_string()))?;
            let tmp = self.inner.dir.join("channels.json.tmp");
            std::fs::write(&tmp, body).map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, self.inner.dir.join("channels.json"))
                .map_err(|e| err(e.to_string()))?;
        }
        self.open_durable(channel).await?;
        Ok(self.inner.name.clone())
    }

    /// The home node of a durable channel (`None`: not durable, as far as this node knows).
    pub fn durable_home(&self, channel: &str) -> Option<String> {
        self.inner
            .durable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
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
    pub async fn produce_batch(
        &self,
        channel: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Vec<Option<u64>>, BrokerError> {
        valid_channel(channel)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self.durable_home_settled(channel).await {
            Some(home) if home == self.inner.name => {
                let texts: Vec<Arc<str>> = events.iter().map(|e| e.shared()).collect();
                let first = self.append_local(channel, texts).await?;
                Ok((0..events.len() as u64).map(|i| Some(first + i)).collect())
            }
            Some(home) => {
                let texts: Vec<String> = events.iter().map(|e| e.as_json().to_string()).collect();
                let first = self.append_remote(&home, channel, texts).await?;
                Ok((0..events.len() as u64).map(|i| Some(first + i)).collect())
            }
            None => {
                let items: Vec<Item> = events
                    .iter()
                    .map(|e| Item {
                        event: e.shared(),
                        offset: None,
                    })
                    .collect();
                self.inner
                    .metrics
                    .produced
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                self.fan_out(channel, items).await;
                Ok(vec![None; events.len()])
            }
        }
    }

    /// Append to a log homed here, then fan out in offset order.
    pub(crate) async fn append_local(
        &self,
        channel: &str,
        events: Vec<Arc<str>>,
    ) -> Result<u64, BrokerError> {
        let log = lock(&self.inner.logs).get(channel).cloned();
        let Some(log) = log else {
            return Err(BrokerError::Log {
                channel: channel.to_string(),
                reason: "not a durable channel of this node".into(),
            });
        };
        let mut log = log.lock().await;
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let first = log.append(&payloads).map_err(|e| BrokerError::Log {
            channel: channel.to_string(),
            reason: e.to_string(),
        })?;
        // Fan out while holding the log so live order equals offset order.
        let items: Vec<Item> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Item {
                event: e,
                offset: Some(first + i as u64),
            })
            .collect();
        self.inner
            .metrics
            .produced
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.fan_out(channel, items).await;
        Ok(first)
    }

    async fn append_remote(
        &self,
        home: &str,
        channel: &str,
        events: Vec<String>,
    ) -> Result<u64, BrokerError> {
        self.ask_home(channel, home, &(channel, events), BrokerMsg::Append)
            .await
    }

    /// Call the broker actor of a durable channel's home node with an encoded request and
    /// decode its `Result<T, String>` answer.
    async fn ask_home<T: serde::de::DeserializeOwned>(
        &self,
        channel: &str,
        home: &str,
        req: &impl Serialize,
        build: fn(Vec<u8>, ractor::RpcReplyPort<Vec<u8>>) -> BrokerMsg,
    ) -> Result<T, BrokerError> {
        let unavailable = |reason: String| BrokerError::HomeUnavailable {
            channel: channel.to_string(),
            node: home.to_string(),
            reason,
        };
        let target = self.home_actor(channel, home).await?;
        let req = codec::encode(req).map_err(|e| unavailable(e.to_string()))?;
        let bytes = self
            .inner
            .node
            .call(&target, |r| build(req, r), Duration::from_secs(10))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let answer: Result<T, String> =
            codec::decode(&bytes).map_err(|e| unavailable(e.to_string()))?;
        answer.map_err(|reason| BrokerError::Log {
            channel: channel.to_string(),
            reason,
        })
    }

    /// Read a durable log (local or at its home).
    pub(crate) async fn read_log(
        &self,
        channel: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, String)>, BrokerError> {
        let home = self.durable_home(channel).ok_or_else(|| {
            BrokerError::BadRequest(format!("channel '{channel}' is not durable"))
        })?;
        if home == self.inner.name {
            let log = lock(&self.inner.logs).get(channel).cloned();
            let Some(log) = log else {
                return Ok(Vec::new());
            };
            let log = log.lock().await;
            return log.read(from, max).map_err(|e| BrokerError::Log {
                channel: channel.to_string(),
                reason: e.to_string(),
            });
        }
        self.ask_home(
            channel,
            &home,
            &(channel, from, max as u64),
            BrokerMsg::Read,
        )
        .await
    }

    /// A group's committed next offset on a durable channel.
    pub(crate) async fn committed(&self, channel: &str, group: &str) -> Option<u64> {
        let home = self.durable_home(channel)?;
        if home == self.inner.name {
            let log = lock(&self.inner.logs).get(channel).cloned()?;
            let log = log.lock().await;
            return log.groups.get(group).copied();
        }
        let target = remote_broker(&home)?;
        let req = codec::encode(&(channel.to_string(), group.to_string())).ok()?;
        let bytes = self
            .inner
            .node
            .call(
                &target,
                |r| BrokerMsg::Committed(req, r),
                Duration::from_secs(10),
            )
            .await
            .ok()?;
        codec::decode::<Option<u64>>(&bytes).ok().flatten()
    }

    /// Record a group's next offset (best effort, asynchronous).
    pub(crate) fn commit(&self, channel: &str, group: &str, next: u64) {
        let Some(home) = self.durable_home(channel) else {
            return;
        };
        if home == self.inner.name {
            let log = lock(&self.inner.logs).get(channel).cloned();
            if let Some(log) = log {
                let (channel, group) = (channel.to_string(), group.to_string());
                tokio::spawn(async move {
                    let mut log = log.lock().await;
                    if let Err(e) = log.commit(&group, next) {
                        tracing::warn!("broker: cannot commit {channel}/{group}: {e}");
                    }
                });
            }
        } else if let Some(target) = remote_broker(&home) {
            if let Ok(req) = codec::encode(&(channel.to_string(), group.to_string(), next)) {
                let _ = self.inner.node.tell(&target, BrokerMsg::Commit(req));
            }
        }
    }

    /// Subscribe to a channel. Broadcast by default (every subscriber gets every event); with a
    /// group, the group's members share the events. For a durable channel, `from` (or a group's
    /// committed offset) replays the log first, then continues live without gaps or duplicates.
    pub async fn consume(
        &self,
        channel: &str,
        opts: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        valid_channel(channel)?;
        if let Some(g) = &opts.group {
            valid_channel(g)
                .map_err(|_| BrokerError::BadRequest(format!("invalid group name '{g}'")))?;
        }
        let durable = self.durable_home_settled(channel).await.is_some();
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
        if start.is_none() && durable {
            if let Some(g) = &opts.group {
                start = self.committed(channel, g).await;
            }
        }
        let queue = Arc::new(SubQueue {
            id: self.inner.next_sub.fetch_add(1, Ordering::Relaxed),
            group: opts.group.clone(),
            cap: opts.capacity.max(1),
            policy: opts.policy,
            q: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            items: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
        });
        {
            let mut chans = lock(&self.inner.channels);
            let ch = chans.entry(channel.to_string()).or_default();
            match &opts.group {
                Some(g) => ch
                    .groups
                    .entry(g.clone())
                    .or_default()
                    .members
                    .push(queue.clone()),
                None => ch.broadcast.push(queue.clone()),
            }
        }
        self.inner.interest_changed.notify_one();
        let state = ConsumeState {
            guard: SubGuard {
                broker: self.clone(),
                channel: channel.to_string(),
                queue,
            },
            replay: start.is_some(),
            next: start.unwrap_or(0),
            pending: VecDeque::new(),
            since_commit: 0,
            durable,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            let d = st.next().await?;
            Some((d, st))
        });
        Ok(Subscription {
            stream: Box::pin(stream),
        })
    }

    fn unsubscribe(&self, channel: &str, id: u64) {
        let mut chans = lock(&self.inner.channels);
        if let Some(ch) = chans.get_mut(channel) {
            ch.broadcast.retain(|q| q.id != id);
            for g in ch.groups.values_mut() {
                g.members.retain(|q| q.id != id);
            }
            ch.groups.retain(|_, g| !g.members.is_empty());
            if ch.broadcast.is_empty() && ch.groups.is_empty() {
                chans.remove(channel);
            }
        }
        drop(chans);
        self.inner.interest_changed.notify_one();
    }

    /// Route produced events (in order): local subscribers directly, each interested remote
    /// node once. The routing view (subscribers, other nodes' interest) is taken once per
    /// batch; queue groups still pick a node and a member per event.
    async fn fan_out(&self, channel: &str, items: Vec<Item>) {
        let (broadcast, local_groups) = match lock(&self.inner.channels).get(channel) {
            Some(ch) => (ch.broadcast.clone(), !ch.groups.is_empty()),
            None => (Vec::new(), false),
        };
        let remote: Vec<(String, Interest)> = self
            .inner
            .remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .map(|m| m.iter().map(|(n, i)| (n.clone(), i.clone())).collect())
            .unwrap_or_default();
        let shared: Arc<str> = channel.into();
        let any_groups = local_groups
            || remote
                .iter()
                .any(|(_, i)| i.groups.values().any(|n| *n > 0));
        if !any_groups {
            // Broadcast only: the whole batch to each interested node, then to each local
            // subscriber.
            for (node, i) in &remote {
                if i.broadcast > 0 {
                    let out = items
                        .iter()
                        .map(|item| Outgoing {
                            channel: shared.clone(),
                            item: item.clone(),
                            broadcast: true,
                            groups: Vec::new(),
                            hops: 0,
                        })
                        .collect();
                    self.send_to(node, out).await;
                }
            }
            self.push_broadcast(&broadcast, &items).await;
            return;
        }
        let mut outbox = Outbox::new();
        let local = lock(&self.inner.channels)
            .get(channel)
            .map(Channel::interest)
            .unwrap_or_default();
        for item in items {
            self.route_one(channel, &shared, item, &local, &remote, &mut outbox)
                .await;
        }
        self.flush(outbox).await;
    }

    /// Route one event of a channel with queue groups (see [`Broker::fan_out`]).
    async fn route_one(
        &self,
        channel: &str,
        shared: &Arc<str>,
        item: Item,
        local: &Interest,
        remote: &[(String, Interest)],
        outbox: &mut Outbox,
    ) {
        // Each queue group: pick one node (round robin over nodes with members).
        let mut group_names: Vec<&String> = local.groups.keys().collect();
        for (_, i) in remote {
            group_names.extend(i.groups.keys());
        }
        group_names.sort();
        group_names.dedup();
        let mut assigned: HashMap<String, Vec<String>> = HashMap::new();
        for g in group_names {
            let mut nodes: Vec<&str> = Vec::new();
            if local.groups.get(g).copied().unwrap_or(0) > 0 {
                nodes.push(&self.inner.name);
            }
            for (n, i) in remote {
                if i.groups.get(g).copied().unwrap_or(0) > 0 {
                    nodes.push(n);
                }
            }
            nodes.sort();
            if nodes.is_empty() {
                continue;
            }
            let k = {
                let mut rr = lock(&self.inner.group_rr);
                let c = rr.entry((channel.to_string(), g.clone())).or_insert(0);
                *c = c.wrapping_add(1);
                *c
            };
            let pick = nodes[k % nodes.len()].to_string();
            assigned.entry(pick).or_default().push(g.clone());
        }
        let my_groups = assigned.remove(&self.inner.name).unwrap_or_default();
        for (node, i) in remote {
            let groups = assigned.remove(node).unwrap_or_default();
            let broadcast = i.broadcast > 0;
            if broadcast || !groups.is_empty() {
                outbox.entry(node.clone()).or_default().push(Outgoing {
                    channel: shared.clone(),
                    item: item.clone(),
                    broadcast,
                    groups,
                    hops: 0,
                });
            }
        }
        if local.broadcast > 0 || !my_groups.is_empty() {
            let unserved = self
                .deliver_local(channel, item.clone(), local.broadcast > 0, &my_groups)
                .await;
            if !unserved.is_empty() {
                self.reroute(shared, &item, unserved, 0, outbox);
            }
        }
    }

    /// Queue the collected events on their nodes' links.
    async fn flush(&self, outbox: Outbox) {
        for (node, out) in outbox {
            self.send_to(&node, out).await;
        }
    }

    /// Hand `items` (in order) to each broadcast subscription.
    async fn push_broadcast(&self, queues: &[Arc<SubQueue>], items: &[Item]) {
        for q in queues {
            if let Ok(dropped) = q.push_all(items).await {
                self.inner
                    .metrics
                    .delivered
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                if dropped > 0 {
                    self.inner
                        .metrics
                        .dropped
                        .fetch_add(dropped, Ordering::Relaxed);
                }
            }
        }
    }

    /// Deliver to local subscribers; returns the groups that had no live member here.
    async fn deliver_local(
        &self,
        channel: &str,
        item: Item,
        broadcast: bool,
        groups: &[String],
    ) -> Vec<String> {
        let mut targets: Vec<(Arc<SubQueue>, Option<String>)> = Vec::new();
        let mut unserved = Vec::new();
        {
            let mut chans = lock(&self.inner.channels);
            let ch = chans.get_mut(channel);
            match ch {
                None => unserved.extend(groups.iter().cloned()),
                Some(ch) => {
                    if broadcast {
                        targets.extend(ch.broadcast.iter().map(|q| (q.clone(), None)));
                    }
                    for g in groups {
                        match ch.groups.get_mut(g) {
                            Some(grp) if !grp.members.is_empty() => {
                                let i = grp.next % grp.members.len();
                                grp.next = grp.next.wrapping_add(1);
                                targets.push((grp.members[i].clone(), Some(g.clone())));
                            }
                            _ => unserved.push(g.clone()),
                        }
                    }
                }
            }
        }
        let one = [item];
        for (q, group) in targets {
            match q.push_all(&one).await {
                Ok(dropped) => {
                    self.inner.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                    if dropped > 0 {
                        self.inner
                            .metrics
                            .dropped
                            .fetch_add(dropped, Ordering::Relaxed);
                    }
                }
                Err(Closed) => {
                    if let Some(g) = group {
                        unserved.push(g);
                    }
                }
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
        let remote = self.inner.remote.read().unwrap_or_else(|p| p.into_inner());
        let remote = remote.get(&**channel);
        for g in groups {
            let target = remote.and_then(|r| {
                r.iter()
                    .find(|(_, i)| i.groups.get(&g).copied().unwrap_or(0) > 0)
                    .map(|(n, _)| n.clone())
            });
            match target {
                Some(node) if hops < 3 => outbox.entry(node).or_default().push(Outgoing {
                    channel: channel.clone(),
                    item: item.clone(),
                    broadcast: false,
                    groups: vec![g],
                    hops: hops + 1,
                }),
                _ => {
                    self.inner
                        .metrics
                        .undeliverable
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A batch from another node's broker, delivered in order.
    pub(crate) async fn receive(&self, batch: WireBatch) {
        let mut outbox = Outbox::new();
        for run in batch.runs {
            let channel = run.channel.0;
            self.inner
                .metrics
                .received_events
                .fetch_add(run.events.len() as u64, Ordering::Relaxed);
            let plain = run
                .events
                .iter()
                .all(|e| e.broadcast && e.groups.is_empty());
            if plain {
                let queues = lock(&self.inner.channels)
                    .get(&*channel)
                    .map(|ch| ch.broadcast.clone())
                    .unwrap_or_default();
                let items: Vec<Item> = run
                    .events
                    .into_iter()
                    .map(|e| Item {
                        event: e.event.0,
                        offset: e.offset,
                    })
                    .collect();
                self.push_broadcast(&queues, &items).await;
                continue;
            }
            for e in run.events {
                let item = Item {
                    event: e.event.0,
                    offset: e.offset,
                };
                let unserved = self
                    .deliver_local(&channel, item.clone(), e.broadcast, &e.groups)
                    .await;
                if !unserved.is_empty() {
                    self.reroute(&channel, &item, unserved, e.hops, &mut outbox);
                }
            }
        }
        self.flush(outbox).await;
    }

    fn credit(&self, node: &str) -> Arc<Credit> {
        lock(&self.inner.credits)
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// `node` has processed `n` of our batches.
    pub(crate) fn acked(&self, node: &str, n: u64) {
        let c = self.credit(node);
        let _ = c
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        c.notify.notify_waiters();
    }

    /// Queue events on the link to `node` (one sender task per destination keeps order).
    async fn send_to(&self, node: &str, mut events: Vec<Outgoing>) {
        while events.len() > BATCH {
            let rest = events.split_off(BATCH);
            self.send_chunk(node, events).await;
            events = rest;
        }
        self.send_chunk(node, events).await;
    }

    /// Queue at most [`BATCH`] events on the link to `node` (waits while the link is full).
    async fn send_chunk(&self, node: &str, events: Vec<Outgoing>) {
        let tx = {
            let mut links = lock(&self.inner.links);
            links
                .entry(node.to_string())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(LINK_CAPACITY);
                    tokio::spawn(link_task(Arc::downgrade(&self.inner), node.to_string(), rx));
                    tx
                })
                .clone()
        };
        if tx.send(events).await.is_err() {
            lock(&self.inner.links).remove(node);
        }
    }

    /// What this node knows: local subscriptions, other nodes' interest, durable homes.
    pub async fn channels(&self) -> serde_json::Value {
        let logs: Vec<(String, Arc<tokio::sync::Mutex<Log>>)> = lock(&self.inner.logs)
            .iter()
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect();
        let mut committed = HashMap::new();
        for (c, l) in logs {
            let l = l.lock().await;
            committed.insert(c, (l.groups.clone(), l.len()));
        }
        let local: BTreeMap<String, Interest> = lock(&self.inner.channels)
            .iter()
            .map(|(c, ch)| (c.clone(), ch.interest()))
            .collect();
        let remote = self
            .inner
            .remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let durable = self
            .inner
            .durable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
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
            if let Some((groups, len)) = committed.get(c) {
                entry["log_length"] = serde_json::json!(len);
                entry["committed"] = serde_json::json!(groups);
            }
            out.insert(c.clone(), entry);
        }
        serde_json::json!({ "node": self.inner.name, "channels": out })
    }

    /// Count an event refused at the HTTP binding.
    pub(crate) fn count_rejected(&self) {
        self.inner.metrics.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The broker's metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        let subs: usize = lock(&self.inner.channels)
            .values()
            .map(|c| c.broadcast.len() + c.groups.values().map(|g| g.members.len()).sum::<usize>())
            .sum();
        let rows = [
            ("broker_events_produced_total", "counter", "Events produced through this node.", m.produced.load(Ordering::Relaxed)),
            ("broker_events_delivered_total", "counter", "Events handed to local subscriptions.", m.delivered.load(Ordering::Relaxed)),
            ("broker_events_dropped_total", "counter", "Events dropped from full drop-policy subscriptions.", m.dropped.load(Ordering::Relaxed)),
            ("broker_events_forwarded_total", "counter", "Events sent to other nodes.", m.forwarded_events.load(Ordering::Relaxed)),
            ("broker_forward_messages_total", "counter", "Network messages (batches) sent to other nodes.", m.forwarded_messages.load(Ordering::Relaxed)),
            ("broker_events_received_total", "counter", "Events received from other nodes.", m.received_events.load(Ordering::Relaxed)),
            ("broker_events_undeliverable_total", "counter", "Events that had no live receiver when they arrived (queue group member gone, node unreachable).", m.undeliverable.load(Ordering::Relaxed)),
            ("broker_events_rejected_total", "counter", "Invalid events refused at the HTTP binding.", m.rejected.load(Ordering::Relaxed)),
            ("broker_subscriptions", "gauge", "Live local subscriptions.", subs as u64),
        ];
        runtime::metrics_text(&rows)
    }
}

#[derive(Default)]
struct Credit {
    inflight: AtomicU64,
    notify: Notify,
}

struct ConsumeState {
    guard: SubGuard,
    replay: bool,
    next: u64,
    pending: VecDeque<(u64, String)>,
    since_commit: u32,
    durable: bool,
}

impl ConsumeState {
    async fn next(&mut self) -> Option<Delivery> {
        let d = self.next_inner().await?;
        if let (
            Delivery::Event {
                offset: Some(o), ..
            },
            Some(g),
            true,
        ) = (&d, &self.guard.queue.group, self.durable)
        {
            self.since_commit += 1;
            let idle = self.guard.queue.lock().is_empty();
            if idle || self.since_commit >= 64 {
                self.since_commit = 0;
                self.guard.broker.commit(&self.guard.channel, g, o + 1);
            }
        }
        Some(d)
    }

    async fn next_inner(&mut self) -> Option<Delivery> {
        loop {
            if let Some((off, text)) = self.pending.pop_front() {
                self.next = off + 1;
                return Some(Delivery::Event {
                    event: CloudEvent::trusted(text.into()),
                    offset: Some(off),
                });
            }
            if self.replay {
                match self
                    .guard
                    .broker
                    .read_log(&self.guard.channel, self.next, 256)
                    .await
                {
                    Ok(batch) if !batch.is_empty() => {
                        self.pending.extend(batch);
                        continue;
                    }
                    Ok(_) => self.replay = false,
                    Err(e) => {
                        tracing::warn!("broker: replay of {}: {e}", self.guard.channel);
                        self.replay = false;
                    }
                }
            }
            match self.guard.queue.pop().await? {
                Err(lost) => {
                    if self.durable {
                        // The log has what was dropped: read it back.
                        self.replay = true;
                        continue;
                    }
                    return Some(Delivery::Lost(lost));
                }
                Ok(item) => {
                    if let Some(off) = item.offset {
                        if off < self.next {
                            continue; // already replayed
                        }
                        if off > self.next && self.durable && self.guard.queue.group.is_none() {
                            self.replay = true; // a gap: fill it from the log
                            continue;
                        }
                        self.next = off + 1;
                    }
                    return Some(Delivery::Event {
                        event: CloudEvent::trusted(item.event),
                        offset: item.offset,
                    });
                }
            }
        }
    }
}

pub(crate) fn remote_broker(node: &str) -> Option<ActorRef<BrokerMsg>> {
    ractor::pg::get_members(&broker_group(node))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// Encode queued events as one [`WireBatch`] (runs of one channel).
fn encode_batch(from: &str, events: Vec<Outgoing>) -> Result<Vec<u8>, codec::CodecError> {
    let mut runs: Vec<WireRun> = Vec::new();
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
            _ => runs.push(WireRun {
                channel: SharedStr(o.channel),
                events: vec![event],
            }),
        }
    }
    codec::encode(&WireBatch {
        from: from.to_string(),
        runs,
    })
}

/// Send one encoded [`WireBatch`] to the broker actor of `node` (`target` caches its address).
///
/// This is the only place where events leave for another node; the receiver answers with
/// [`BrokerMsg::Ack`] once the batch is delivered to its subscribers. Returns the batch when it
/// could not be handed to the transport.
/// Send one batch to `node`'s broker actor over the direct lane. Batches go on the lane only
/// (never through ractor_cluster), so a link's batches cannot overtake each other when the lane
/// comes up; until it is up the batch is handed back to be retried.
fn send_batch(
    rt: &Node,
    node: &str,
    target: &mut Option<ActorRef<BrokerMsg>>,
    bytes: Vec<u8>,
) -> Result<(), Vec<u8>> {
    if target.is_none() {
        *target = remote_broker(node);
    }
    let Some(t) = target else {
        return Err(bytes);
    };
    if !rt.has_lane(t) {
        if t.get_status() != ractor::ActorStatus::Running {
            *target = None;
        }
        return Err(bytes);
    }
    rt.tell(t, BrokerMsg::Deliver(bytes)).map_err(|e| {
        tracing::warn!("broker: cannot send a batch to {node}: {e}");
        *target = None;
        Vec::new()
    })
}

async fn link_task(
    inner: std::sync::Weak<Inner>,
    node: String,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
) {
    let mut target: Option<ActorRef<BrokerMsg>> = None;
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let n = batch.len() as u64;
        let credit = Broker {
            inner: inner.clone(),
        }
        .credit(&node);
        // Wait while the destination has WINDOW batches unprocessed.
        loop {
            let notified = credit.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if credit.inflight.load(Ordering::Acquire) < WINDOW {
                break;
            }
            if tokio::time::timeout(ACK_TIMEOUT, notified).await.is_err() {
                tracing::warn!("broker: no acknowledgement from {node}; resetting its window");
                credit.inflight.store(0, Ordering::Release);
            }
        }
        let mut bytes = match encode_batch(&inner.name, batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("broker: cannot encode a batch for {node}: {e}");
                continue;
            }
        };
        let mut sent = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            credit.inflight.fetch_add(1, Ordering::AcqRel);
            match send_batch(&inner.node, &node, &mut target, bytes) {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(back) => {
                    credit.inflight.fetch_sub(1, Ordering::AcqRel);
                    bytes = back;
                }
            }
            // Interest may be known before the actor transport is connected: wait a little.
            if bytes.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if sent {
            inner
                .metrics
                .forwarded_events
                .fetch_add(n, Ordering::Relaxed);
            inner
                .metrics
                .forwarded_messages
                .fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::warn!("broker: node {node} unreachable; {n} events not delivered there");
            inner.metrics.undeliverable.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Keep this node's gossip keys equal to its local interest.
async fn publish_interest(inner: std::sync::Weak<Inner>) {
    let mut published: HashMap<String, Interest> = HashMap::new();
    loop {
        let notified = match inner.upgrade() {
            Some(i) => {
                let n = Arc::clone(&i);
                // Wait for a change (or re-check every few seconds).
                let _ = tokio::time::timeout(Duration::from_secs(5), n.interest_changed.notified())
                    .await;
                i
            }
            None => return,
        };
        let now: HashMap<String, Interest> = lock(&notified.channels)
            .iter()
            .map(|(c, ch)| (c.clone(), ch.interest()))
            .filter(|(_, i)| !i.is_empty())
            .collect();
        for (c, i) in &now {
            if published.get(c) != Some(i) {
                if let Ok(v) = serde_json::to_string(i) {
                    notified
                        .node
                        .gossip_set(&format!("{INTEREST_PREFIX}{c}"), &v)
                        .await;
                }
            }
        }
        for c in published.keys() {
            if !now.contains_key(c) {
                notified
                    .node
                    .gossip_delete(&format!("{INTEREST_PREFIX}{c}"))
                    .await;
            }
        }
        published = now;
    }
}

/// Keep the view of other nodes' interest and of durable homes current.
async fn watch_gossip(inner: std::sync::Weak<Inner>) {
    let changes = match inner.upgrade() {
        Some(i) => i.node.gossip_changes().await,
        None => return,
    };
    let Some(mut changes) = changes else {
        return; // no cluster: a node of one
    };
    loop {
        let Some(i) = inner.upgrade() else {
            return;
        };
        let mut remote: HashMap<String, BTreeMap<String, Interest>> = HashMap::new();
        for (node, key, value) in i.node.gossip_scan(INTEREST_PREFIX).await {
            if node == i.name {
                continue;
            }
            let Some(channel) = key.strip_prefix(INTEREST_PREFIX) else {
                continue;
            };
            if let Ok(interest) = serde_json::from_str::<Interest>(&value) {
                remote
                    .entry(channel.to_string())
                    .or_default()
                    .insert(node, interest);
            }
        }
        *i.remote.write().unwrap_or_else(|p| p.into_inner()) = remote;
        refresh_durable(&i).await;
        drop(i);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Merge the durable channels that live nodes publish into this node's map, keep it on disk,
/// and publish what this node knows in turn.
///
/// Durable homes are remembered even while their node is down (producing then fails with
/// "home unavailable" instead of silently becoming non-durable).
async fn refresh_durable(i: &Inner) {
    let mut durable = i.durable.read().unwrap_or_else(|p| p.into_inner()).clone();
    for c in lock(&i.logs).keys() {
        durable.insert(c.clone(), i.name.clone());
    }
    let mut claims: Vec<(bool, String, String)> = Vec::new();
    for (node, key, value) in i.node.gossip_scan(DURABLE_PREFIX).await {
        if let Some(channel) = key.strip_prefix(DURABLE_PREFIX) {
            // Older brokers published "1": the home is the publishing node.
            let home = if value.is_empty() || value == "1" {
                node.clone()
            } else {
                value
            };
            claims.push((home != node, channel.to_string(), home));
        }
    }
    // A home's own word first (should two nodes disagree).
    claims.sort_by_key(|(hearsay, _, _)| *hearsay);
    for (_, channel, home) in claims {
        durable.entry(channel).or_insert(home);
    }
    *i.durable.write().unwrap_or_else(|p| p.into_inner()) = durable;
    save_known(i);
    publish_durable(i).await;
}

/// Write the durable map to [`KNOWN_FILE`] when it changed (atomically: temp file, fsync,
/// rename).
fn save_known(i: &Inner) {
    let durable = i.durable.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut saved = lock(&i.known_saved);
    if *saved == durable {
        return;
    }
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&i.dir)?;
        let body = serde_json::to_vec(&durable)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let tmp = i.dir.join(format!("{KNOWN_FILE}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, i.dir.join(KNOWN_FILE))
    };
    match write() {
        Ok(()) => *saved = durable,
        Err(e) => tracing::warn!("broker: cannot save known durable channels: {e}"),
    }
}

/// Publish (`broker/d/<channel>` = home) the durable channels this node knows and has not
/// published yet.
async fn publish_durable(i: &Inner) {
    let durable = i.durable.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut published = i.published_durable.lock().await;
    for (channel, home) in durable {
        if !published.contains(&channel) {
            i.node
                .gossip_set(&format!("{DURABLE_PREFIX}{channel}"), &home)
                .await;
            published.insert(channel);
        }
    }
}
