//! Clustering: membership and failure detection with chitchat (UDP gossip, phi-accrual), and the
//! actor transport with ractor_cluster (TCP, cookie authentication), driven by membership.
//!
//! * Each node publishes `name`, `actor_addr`, `admin_addr`, `version`, `roles` and
//!   `actor_count` (how many actors it runs for users) as chitchat key-values. Where a named
//!   actor runs is not gossiped: the name directory (`directory.rs`) holds it, sharded by name.
//! * When chitchat reports a node live, the node whose name sorts first dials the other, so each
//!   pair of nodes has exactly one session; when chitchat declares a node dead, its session is
//!   dropped, which kills the proxies of its actors, removes them from process groups and fails
//!   calls in flight.
//! * Failure detection settings (see [`failure_detector`]): gossip every 200 ms, phi threshold 8,
//!   so a silent node is declared dead after about 1–2 s.
//!
//! Gossip is sealed (AES-256-GCM, see `seal.rs` and `keyring.rs`): a datagram that none of the
//! node's keys opens is dropped, so only nodes with a key can join or change member state. The
//! `cluster_id` (derived from the cookie) is the associated data of every datagram; the actor
//! transport and the lane check the cookie themselves.
//!
//! This file starts the [`Cluster`] and reconciles sessions and lanes with membership;
//! `member.rs` is the [`Member`] type and the gossip keys, `gossip_state.rs` what the gossip
//! state says (members, key-values, changes), `sessions.rs` the transport's session events and
//! `name_check.rs` the check that a joining node's name is free.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Weak},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use ractor::{Actor, ActorCell, ActorId, ActorRef};
use ractor_cluster::{node::NodeConnectionMode, NodeServer, NodeServerMessage};
use sha2::{Digest, Sha256};

mod gossip_state;
mod member;
mod name_check;
mod sessions;

pub use member::{Member, MemberState};
use member::{
    KEY_ACTOR_ADDR, KEY_ACTOR_COUNT, KEY_ADMIN_ADDR, KEY_LANE_ADDR, KEY_NAME, KEY_ROLES,
    KEY_VERSION,
};
use name_check::name_taken;
use sessions::{peer_node_name, Events, Sessions};

use crate::{
    config::NodeConfig,
    error::RuntimeError,
    keyring::Keyring,
    lane::{Lane, Lanes},
    sealed_transport::{GossipSeal, SealedUdp},
    tls::{server_name, Tls},
};

/// How often membership is reconciled with the transport's sessions.
const RECONCILE_EVERY: Duration = Duration::from_millis(200);

/// The child id of [`Cluster::reconcile_loop`] under the node's `system` supervisor.
pub(crate) const RECONCILE_CHILD: &str = "cluster-reconcile";
/// Minimum time between two dial attempts to the same node.
const REDIAL_AFTER: Duration = Duration::from_secs(1);

/// The chitchat failure-detector settings used by every node.
pub fn failure_detector() -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: 8.0,
        sampling_window_size: 1000,
        max_interval: Duration::from_secs(2),
        initial_interval: Duration::from_millis(200),
        dead_node_grace_period: Duration::from_secs(120),
    }
}

/// The chitchat cluster id for a cookie.
fn cluster_id(cookie: &str) -> String {
    let digest = Sha256::digest(cookie.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("draft-{hex}")
}

/// A node's membership and transport.
pub(crate) struct Cluster {
    name: String,
    chitchat: ChitchatHandle,
    server: ActorRef<NodeServerMessage>,
    sessions: Arc<Sessions>,
    tls: Option<Arc<Tls>>,
    lanes: Arc<Lanes>,
    seal: Arc<GossipSeal>,
    /// The counter of gossip changes ([`Cluster::changes`]); bumped by
    /// [`Cluster::forward_changes`].
    changes: tokio::sync::watch::Sender<u64>,
    /// The node's count of running user actors (gossiped as `actor_count`).
    actor_count: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) actor_addr: SocketAddr,
    pub(crate) gossip_addr: SocketAddr,
}

/// Resolve port 0 to a concrete free port (chitchat must advertise a real address).
fn concrete_udp(addr: SocketAddr) -> Result<SocketAddr, RuntimeError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::UdpSocket::bind(addr)
        .and_then(|s| s.local_addr())
        .map_err(|source| RuntimeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

fn concrete_tcp(addr: SocketAddr) -> Result<SocketAddr, RuntimeError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr)
        .and_then(|s| s.local_addr())
        .map_err(|source| RuntimeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl Cluster {
    pub(crate) async fn start(
        config: &NodeConfig,
        admin_addr: Option<SocketAddr>,
        actor_count: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Arc<Cluster>, RuntimeError> {
        // Peers may message this process's directory-published actors (and group members).
        ractor_cluster::set_published_check(crate::directory::is_published);
        let cookie = config.cookie.clone().ok_or_else(|| {
            RuntimeError::Config("no cookie (NodeBuilder::start fills it in)".into())
        })?;
        let keyring_err = |e: crate::keyring::KeyringError| RuntimeError::Config(e.to_string());
        let keyring = match Keyring::load(&config.data_dir).map_err(keyring_err)? {
            Some(k) => {
                if config.gossip_key.is_some() {
                    tracing::warn!(
                        "--gossip-key ignored: the keyring in {} (written by `dctl keys`) is used",
                        config.data_dir.join(crate::keyring::KEYRING_FILE).display()
                    );
                }
                k
            }
            None => match &config.gossip_key {
                Some(key) => Keyring::new(key).map_err(keyring_err)?,
                None => Keyring::from_cookie(&cookie),
            },
        };
        let seal = GossipSeal::new(cluster_id(&cookie), keyring, config.data_dir.clone())
            .map_err(keyring_err)?;
        seal.set_max_datagram(config.gossip_datagram_size);
        let actor_addr = concrete_tcp(config.listen_addr)?;
        let gossip_addr = concrete_udp(config.gossip_addr)?;

        let tls = config
            .tls
            .as_ref()
            .map(Tls::load)
            .transpose()?
            .map(Arc::new);
        // Actor transport first: a bind failure is reported before we announce ourselves.
        // Our own listener on the transport port (ractor_cluster's is on a free loopback port,
        // unpublished): it bounds unauthenticated connections, see `transport_door.rs`.
        let front =
            crate::transport_door::bind(actor_addr).map_err(|source| RuntimeError::Bind {
                addr: actor_addr.to_string(),
                source,
            })?;
        let server = NodeServer::new(
            0,
            cookie.clone(),
            config.name.clone(),
            actor_addr.ip().to_string(),
            tls.as_ref()
                .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor.clone())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]));
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| RuntimeError::Bind {
                addr: actor_addr.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let lane_bind = config
            .lane_addr
            .unwrap_or_else(|| SocketAddr::new(actor_addr.ip(), 0));
        let lanes = match Lanes::start(&config.name, &cookie, tls.clone(), lane_bind).await {
            Ok(l) => l,
            Err(source) => {
                server.stop(None);
                return Err(RuntimeError::Bind {
                    addr: lane_bind.to_string(),
                    source,
                });
            }
        };
        let sessions = Arc::new(Sessions::default());
        let _ = server.cast(NodeServerMessage::SubscribeToEvents {
            id: "draft-cluster".into(),
            subscription: Box::new(Events(sessions.clone())),
        });
        sessions.door.start(front, server.clone(), tls.clone());

        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.name.clone(), generation, gossip_addr),
            cluster_id: cluster_id(&cookie),
            gossip_interval: Duration::from_millis(200),
            listen_addr: gossip_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: failure_detector(),
            marked_for_deletion_grace_period: Duration::from_secs(300),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let mut kv = vec![
            (KEY_NAME.to_string(), config.name.clone()),
            (KEY_ACTOR_ADDR.to_string(), actor_addr.to_string()),
            (
                KEY_VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                KEY_ROLES.to_string(),
                std::iter::once("runtime")
                    .chain(config.roles.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (KEY_ACTOR_COUNT.to_string(), "0".to_string()),
            (KEY_LANE_ADDR.to_string(), lanes.addr.to_string()),
        ];
        if let Some(a) = admin_addr {
            kv.push((KEY_ADMIN_ADDR.to_string(), a.to_string()));
        }
        let chitchat = match spawn_chitchat(chitchat_config, kv, &SealedUdp(seal.clone())).await {
            Ok(c) => c,
            Err(e) => {
                server.stop(None);
                lanes.shutdown();
                sessions.door.shutdown();
                return Err(RuntimeError::Bind {
                    addr: gossip_addr.to_string(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        };
        if !config.seeds.is_empty() {
            if let Some(other) = name_taken(&chitchat).await {
                let _ = chitchat.initiate_shutdown();
                server.stop(None);
                lanes.shutdown();
                sessions.door.shutdown();
                return Err(RuntimeError::NodeNameTaken {
                    name: config.name.clone(),
                    gossip_addr: other,
                });
            }
        }
        tracing::info!(
            node = %config.name,
            actor_transport = %actor_addr,
            gossip = %gossip_addr,
            gossip_cluster_id = %cluster_id(&cookie),
            "cluster membership started (gossip sealed with AES-256-GCM: datagrams of nodes \
             without one of our keys are dropped and counted as rejected)"
        );
        let cluster = Arc::new(Cluster {
            name: config.name.clone(),
            chitchat,
            server,
            sessions,
            tls,
            lanes,
            seal,
            changes: tokio::sync::watch::channel(0).0,
            actor_count,
            actor_addr,
            gossip_addr,
        });
        Ok(cluster)
    }

    /// Live peers with the address they publish under `addr_key`, and the names of dead ones.
    async fn peers(
        &self,
        addr_key: &'static str,
    ) -> (BTreeMap<String, Option<String>>, HashSet<String>) {
        self.chitchat
            .with_chitchat(move |c| {
                let me = c.self_chitchat_id().clone();
                let live: BTreeMap<String, Option<String>> = c
                    .live_nodes()
                    .filter(|id| **id != me)
                    .map(|id| {
                        let addr = c
                            .node_state(id)
                            .and_then(|s| s.get(addr_key))
                            .map(str::to_string);
                        (id.node_id.to_string(), addr)
                    })
                    .collect();
                let dead: HashSet<String> =
                    c.dead_nodes().map(|id| id.node_id.to_string()).collect();
                (live, dead)
            })
            .await
    }

    /// Connect to live nodes we should dial, drop sessions of dead nodes, publish our actor count.
    async fn reconcile(&self, last_dial: &mut HashMap<String, Instant>, published: &mut String) {
        let (live, dead) = self.peers(KEY_ACTOR_ADDR).await;
        let sessions = self.session_list().await;
        let connected: HashSet<&str> = sessions.iter().map(|(n, _)| n.as_str()).collect();

        for (name, addr) in &live {
            if connected.contains(name.as_str()) || self.name.as_str() >= name.as_str() {
                continue;
            }
            let Some(addr) = addr.clone() else { continue };
            if last_dial
                .get(name)
                .is_some_and(|t| t.elapsed() < REDIAL_AFTER)
            {
                continue;
            }
            last_dial.insert(name.clone(), Instant::now());
            let server = self.server.clone();
            let peer = name.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let dial = async {
                    match tls {
                        None => ractor_cluster::client_connect(&server, addr.as_str()).await,
                        Some(tls) => {
                            let ip = addr
                                .parse::<SocketAddr>()
                                .map(|a| a.ip())
                                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
                            ractor_cluster::client_connect_enc(
                                &server,
                                addr.as_str(),
                                tls.connector.clone(),
                                server_name(ip),
                            )
                            .await
                        }
                    }
                };
                match tokio::time::timeout(Duration::from_secs(3), dial).await {
                    Ok(Ok(())) => tracing::debug!(%peer, %addr, "dialed"),
                    Ok(Err(e)) => tracing::warn!(%peer, %addr, "cannot connect: {e}"),
                    Err(_) => tracing::warn!(%peer, %addr, "connect timed out"),
                }
            });
        }
        for (name, session) in &sessions {
            if dead.contains(name) && !live.contains_key(name) {
                tracing::warn!(peer = %name, "node declared dead; dropping its session");
                session.stop(Some("node declared dead by the failure detector".into()));
            }
        }

        let count = self
            .actor_count
            .load(std::sync::atomic::Ordering::Acquire)
            .to_string();
        if count != *published {
            let value = count.clone();
            self.chitchat
                .with_chitchat(move |c| c.self_node_state().set(KEY_ACTOR_COUNT, value.clone()))
                .await;
            *published = count;
        }
    }

    /// Dial lanes to live nodes we should dial; close lanes of dead nodes.
    async fn reconcile_lanes(&self, last_dial: &mut HashMap<String, Instant>) {
        let (live, dead) = self.peers(KEY_LANE_ADDR).await;
        let up: HashSet<String> = self.lanes.connected().into_iter().collect();
        for name in &up {
            if dead.contains(name) && !live.contains_key(name) {
                tracing::warn!(peer = %name, "node declared dead; closing its lane");
                self.lanes.drop_peer(name);
            }
        }
        for (name, addr) in live {
            if up.contains(&name) || self.name.as_str() >= name.as_str() {
                continue;
            }
            let Some(addr) = addr.and_then(|a| a.parse::<SocketAddr>().ok()) else {
                continue;
            };
            if last_dial
                .get(&name)
                .is_some_and(|t| t.elapsed() < REDIAL_AFTER)
            {
                continue;
            }
            last_dial.insert(name.clone(), Instant::now());
            let lanes = self.lanes.clone();
            tokio::spawn(async move {
                if let Err(e) = lanes.dial(&name, addr).await {
                    tracing::warn!(peer = %name, %addr, "cannot open a lane: {e}");
                }
            });
        }
    }

    /// The lanes' metric families.
    pub(crate) fn lane_metrics(&self) -> String {
        let mut text = self.lanes.metrics_text();
        text.push_str(&self.seal.metrics_text());
        text.push_str(&self.sessions.door.metrics_text());
        text
    }

    /// The gossip keyring and its counters.
    pub(crate) fn gossip_seal(&self) -> &Arc<GossipSeal> {
        &self.seal
    }

    /// The lane to the node hosting `cell` (a remote proxy), with the actor's pid on that node.
    pub(crate) fn lane_to(&self, cell: &ActorCell) -> Option<(Arc<Lane>, u64)> {
        let ActorId::Remote { pid, .. } = cell.get_id() else {
            return None;
        };
        let node = self.node_of(cell)?;
        self.lanes.get(&node).map(|lane| (lane, pid))
    }

    /// The names of the live members (this node included) and of the dead ones, each sorted:
    /// what the name directory's owners are chosen from.
    pub(crate) async fn alive_and_dead(&self) -> (Vec<String>, Vec<String>) {
        let me = self.name.clone();
        self.chitchat
            .with_chitchat(move |c| {
                let mut alive: Vec<String> =
                    c.live_nodes().map(|id| id.node_id.to_string()).collect();
                if !alive.contains(&me) {
                    alive.push(me.clone());
                }
                alive.sort();
                alive.dedup();
                let mut dead: Vec<String> = c
                    .dead_nodes()
                    .map(|id| id.node_id.to_string())
                    .filter(|n| !alive.contains(n))
                    .collect();
                dead.sort();
                dead.dedup();
                (alive, dead)
            })
            .await
    }

    /// The local proxy of actor `pid` on `node`, made by the session to that node when there is
    /// none yet (`None` without a ready session).
    pub(crate) async fn proxy(&self, node: &str, pid: u64, name: &str) -> Option<ActorCell> {
        let session = self
            .session_list()
            .await
            .into_iter()
            .find(|(n, _)| n == node)
            .map(|(_, s)| s)?;
        let name = Some(name.to_string());
        ractor::call_t!(
            session,
            |reply| ractor_cluster::NodeSessionMessage::GetRemoteActor { pid, name, reply },
            2000
        )
        .ok()
        .flatten()
    }

    /// Authenticated sessions by peer node name.
    async fn session_list(&self) -> Vec<(String, ActorRef<ractor_cluster::NodeSessionMessage>)> {
        match ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2000) {
            Ok(map) => map
                .into_values()
                .filter_map(|s| peer_node_name(&s).map(|n| (n, s.actor)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The name of the node a (proxy) actor lives on.
    pub(crate) fn node_of(&self, cell: &ActorCell) -> Option<String> {
        match cell.get_id() {
            ActorId::Local(_) => Some(self.name.clone()),
            ActorId::Remote { node_id, .. } => self
                .sessions
                .by_node_id
                .read()
                .ok()
                .and_then(|m| m.get(&node_id).cloned()),
        }
    }

    /// Stop gossiping and close every session.
    /// Every [`RECONCILE_EVERY`]: dial the sessions and lanes to live members that have none,
    /// and publish this node's gossip keys when they changed. Runs as the node's supervised
    /// child [`RECONCILE_CHILD`] (a restart starts with no dial history: it may dial at once);
    /// returns when the cluster is dropped.
    pub(crate) async fn reconcile_loop(cluster: Weak<Cluster>) {
        let mut last_dial: HashMap<String, Instant> = HashMap::new();
        let mut last_lane_dial: HashMap<String, Instant> = HashMap::new();
        let mut published = String::new();
        loop {
            tokio::time::sleep(RECONCILE_EVERY).await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            cluster.reconcile(&mut last_dial, &mut published).await;
            cluster.reconcile_lanes(&mut last_lane_dial).await;
        }
    }

    /// Leave the cluster: gossip, the transport's door, the lanes, the transport. The node
    /// stops its [`RECONCILE_CHILD`] first, so nothing dials while this runs.
    pub(crate) async fn shutdown(&self) {
        let _ = self.chitchat.initiate_shutdown();
        self.sessions.door.shutdown();
        self.lanes.shutdown();
        let _ = self
            .server
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}
