//! What the gossip state says: the members (with this node's sessions and lanes to them), the
//! key-values nodes publish, and a counter of its changes.

use std::collections::{BTreeMap, HashSet};

use chitchat::ChitchatId;

use super::{
    member::{
        Member, MemberState, KEY_ACTOR_ADDR, KEY_ACTOR_COUNT, KEY_ADMIN_ADDR, KEY_LANE_ADDR,
        KEY_ROLES, KEY_VERSION, KEY_XDS_ADDR,
    },
    Cluster,
};

impl Cluster {
    /// Every node this node knows of, itself included, sorted by name.
    pub(crate) async fn members(&self) -> Vec<Member> {
        let connected: HashSet<String> = self
            .session_list()
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let lanes: HashSet<String> = self.lanes.connected().into_iter().collect();
        self.chitchat
            .with_chitchat(move |c| {
                let self_id = c.self_chitchat_id().clone();
                let live: HashSet<ChitchatId> = c.live_nodes().cloned().collect();
                let mut by_name: BTreeMap<String, Member> = BTreeMap::new();
                for (id, state) in c.node_states() {
                    let alive = live.contains(id) || *id == self_id;
                    let name = id.node_id.to_string();
                    // A restarted node has a newer generation: prefer the live entry.
                    if let Some(existing) = by_name.get(&name) {
                        if existing.state == MemberState::Alive || !alive {
                            continue;
                        }
                    }
                    let get = |k: &str| state.get(k).map(str::to_string);
                    let split = |v: Option<String>| {
                        v.map(|s| {
                            s.split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default()
                    };
                    by_name.insert(
                        name.clone(),
                        Member {
                            is_self: *id == self_id,
                            connected: *id == self_id || (alive && connected.contains(&name)),
                            lane: *id == self_id || (alive && lanes.contains(&name)),
                            state: if alive {
                                MemberState::Alive
                            } else {
                                MemberState::Dead
                            },
                            gossip_addr: id.gossip_advertise_addr.to_string(),
                            actor_addr: get(KEY_ACTOR_ADDR),
                            lane_addr: get(KEY_LANE_ADDR),
                            admin_addr: get(KEY_ADMIN_ADDR),
                            xds_addr: get(KEY_XDS_ADDR),
                            version: get(KEY_VERSION),
                            roles: split(get(KEY_ROLES)),
                            actor_count: get(KEY_ACTOR_COUNT)
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                            phi: if *id == self_id { None } else { c.phi(id) },
                            name,
                        },
                    );
                }
                by_name.into_values().collect()
            })
            .await
    }

    /// (The caller checked the size: `gossip_entry::check`.)
    pub(crate) async fn set_key(&self, key: &str, value: &str) {
        let (k, v) = (key.to_string(), value.to_string());
        self.chitchat
            .with_chitchat(move |c| c.self_node_state().set(k.clone(), v.clone()))
            .await;
    }

    pub(crate) async fn delete_key(&self, key: &str) {
        let k = key.to_string();
        self.chitchat
            .with_chitchat(move |c| c.self_node_state().delete(&k))
            .await;
    }

    /// `(node, key, value)` for keys under `prefix` of live nodes, self included.
    pub(crate) async fn scan_live(&self, prefix: &str) -> Vec<(String, String, String)> {
        let prefix = prefix.to_string();
        self.chitchat
            .with_chitchat(move |c| {
                let me = c.self_chitchat_id().clone();
                let live: HashSet<ChitchatId> = c.live_nodes().cloned().collect();
                let mut out = Vec::new();
                for (id, state) in c.node_states() {
                    if *id != me && !live.contains(id) {
                        continue;
                    }
                    for (k, v) in state.key_values() {
                        if k.starts_with(&prefix) {
                            out.push((id.node_id.to_string(), k.to_string(), v.to_string()));
                        }
                    }
                }
                out
            })
            .await
    }

    /// A counter bumped on every membership or gossip-state change (one counter per node,
    /// shared by every receiver; a receiver sees the changes after it subscribed).
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Bump the change counter on every change chitchat reports for the live nodes. Runs as
    /// the node's supervised child `gossip-changes`: the counter lives in the cluster, so its
    /// receivers do not notice a restart. Returns when the cluster is dropped or chitchat stops.
    pub(crate) async fn forward_changes(cluster: std::sync::Weak<Cluster>) {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let mut live = c.chitchat.with_chitchat(|c| c.live_nodes_watcher()).await;
        let counter = c.changes.clone();
        drop(c);
        while live.changed().await.is_ok() {
            counter.send_modify(|n| *n += 1);
        }
    }
}
