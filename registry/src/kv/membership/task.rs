//! The membership task of every node: publish its advert, adopt or bootstrap a store, join it,
//! and on the leader run the autopilot (promote caught-up learners, replace dead voters).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use openraft::{ChangeMembers, ServerState};

use super::{
    decide::{decide, wanted_voters, Decision},
    store_id::{new_store_id, write_store_id},
    view::{adverts, caught_up, live_nodes},
    Advert, GOSSIP_KEY,
};
use crate::kv::{request::Request, Kv, KvError, KvNode, NodeId};

/// At start, for a node whose data dir holds a store and that was given seeds: wait (up to
/// `wait`) to hear of a store from the cluster, and refuse when it is another one.
pub(crate) async fn check_foreign(kv: &Kv, ours: &str, wait: Duration) -> Result<(), KvError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = kv.inner.rt.gossip_changes().await;
    loop {
        let ads = adverts(kv).await;
        let stores: Vec<(String, String)> = ads
            .iter()
            .filter_map(|(n, a)| a.store.clone().map(|s| (n.clone(), s)))
            .collect();
        if stores.iter().any(|(_, s)| s == ours) {
            return Ok(());
        }
        if let Some((peer, theirs)) = stores.first() {
            return Err(KvError::ForeignStore {
                dir: kv.inner.dir.display().to_string(),
                ours: ours.to_string(),
                theirs: theirs.clone(),
                peer: peer.clone(),
            });
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        match changes.as_mut() {
            Some(c) => {
                tokio::select! {
                    _ = c.changed() => {}
                    _ = tick => {}
                    _ = tokio::time::sleep_until(deadline) => return Ok(()),
                }
            }
            None => return Ok(()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// The membership task of a node: gossip its state, bootstrap or adopt a store, join it, and
/// (on the leader, dynamic mode) run the autopilot.
pub(crate) async fn run(kv: Kv) {
    let mut stop = kv.inner.stop.subscribe();
    let mut changes = kv.inner.rt.gossip_changes().await;
    let mut published: Option<String> = None;
    let mut view: (Vec<(String, Advert)>, Instant) = (Vec::new(), Instant::now());
    let mut last_join = None::<Instant>;
    let mut dead_since: HashMap<NodeId, Instant> = HashMap::new();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    loop {
        let advert = Advert {
            store: kv.store_id(),
            member: kv.is_member(),
            learner_only: kv.inner.policy.learner_only,
            expect: kv.inner.policy.expect,
        };
        if let Ok(text) = serde_json::to_string(&advert) {
            if published.as_deref() != Some(text.as_str()) {
                match kv.inner.rt.gossip_set(GOSSIP_KEY, &text).await {
                    Ok(()) => published = Some(text),
                    Err(e) => tracing::error!("kv: cannot publish {GOSSIP_KEY}: {e}"),
                }
            }
        }
        let ads = adverts(&kv).await;
        if ads != view.0 {
            view = (ads.clone(), Instant::now());
        }
        match kv.store_id() {
            None => match decide(
                &kv.inner.node,
                kv.inner.policy.expect,
                &ads,
                view.1.elapsed(),
                kv.inner.policy.settle,
            ) {
                Decision::Adopt(s) => adopt(&kv, &s),
                Decision::Bootstrap => bootstrap(&kv).await,
                Decision::Conflict(stores) => {
                    let key = stores.join(",");
                    if warned.insert(key) {
                        tracing::error!(
                            ?stores,
                            "kv: the cluster gossips several KV stores; this node joins none of them"
                        );
                    }
                }
                Decision::Wait => {}
            },
            Some(mine) => {
                let peers: Vec<String> = ads
                    .iter()
                    .filter(|(_, a)| a.member && a.store.as_deref() == Some(mine.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect();
                *kv.inner.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
                for (n, a) in &ads {
                    if let Some(s) = &a.store {
                        if *s != mine && warned.insert(format!("{n}:{s}")) {
                            tracing::error!(
                                node = %n, store = %s, ours = %mine,
                                "kv: a node of this cluster belongs to another KV store; their Raft RPCs are refused"
                            );
                        }
                    }
                }
                let never_joined = kv.with_membership(|m| m.nodes().next().is_none());
                if never_joined
                    && last_join.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                {
                    last_join = Some(Instant::now());
                    let kv2 = kv.clone();
                    tokio::spawn(async move {
                        let r = kv2
                            .exec(Request::Join {
                                name: kv2.inner.node.clone(),
                                store: mine,
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::debug!("kv: join: {e}");
                        }
                    });
                }
                if !kv.inner.policy.is_static() {
                    autopilot(&kv, &ads, &mut dead_since).await;
                }
            }
        }
        let tick = tokio::time::sleep(Duration::from_millis(300));
        match changes.as_mut() {
            Some(c) => tokio::select! {
                _ = stop.changed() => return,
                _ = c.changed() => {}
                _ = tick => {}
            },
            None => tokio::select! {
                _ = stop.changed() => return,
                _ = tick => {}
            },
        }
    }
}

fn adopt(kv: &Kv, store: &str) {
    if let Err(e) = write_store_id(&kv.inner.dir, store) {
        tracing::error!("kv: cannot record store id: {e}");
        return;
    }
    tracing::info!(node = %kv.inner.node, %store, "kv: joining the cluster's KV store");
    kv.inner.store.send_replace(Some(store.to_string()));
}

async fn bootstrap(kv: &Kv) {
    let id = new_store_id();
    if let Err(e) = write_store_id(&kv.inner.dir, &id) {
        tracing::error!("kv: cannot record store id: {e}");
        return;
    }
    kv.inner.store.send_replace(Some(id.clone()));
    let members: BTreeMap<NodeId, KvNode> = [(
        kv.inner.id,
        KvNode {
            name: kv.inner.node.clone(),
        },
    )]
    .into();
    match kv.inner.raft.initialize(members).await {
        Ok(()) => tracing::info!(node = %kv.inner.node, store = %id, "kv: store bootstrapped"),
        Err(e) => tracing::warn!("kv: bootstrap: {e}"),
    }
}

/// On the leader: promote learners while below the target, replace voters dead too long.
async fn autopilot(kv: &Kv, ads: &[(String, Advert)], dead_since: &mut HashMap<NodeId, Instant>) {
    let m = kv.inner.raft.metrics().borrow().clone();
    if m.state != ServerState::Leader {
        dead_since.clear();
        return;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let live = live_nodes(kv).await;
    let name = |id: &NodeId| membership.get_node(id).map(|n| n.name.clone());
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    for v in &voters {
        match name(v) {
            Some(n) if live.contains(&n) => {
                dead_since.remove(v);
            }
            _ => {
                dead_since.entry(*v).or_insert_with(Instant::now);
            }
        }
    }
    dead_since.retain(|v, _| voters.contains(v));
    let store = kv.store_id();
    let mut eligible: Vec<(String, NodeId)> = membership
        .learner_ids()
        .filter(|id| {
            let Some(n) = name(id) else { return false };
            let ad = ads.iter().find(|(a, _)| *a == n).map(|(_, a)| a);
            live.contains(&n)
                && caught_up(&m, *id)
                && ad.is_some_and(|a| !a.learner_only && a.store == store)
        })
        .filter_map(|id| name(&id).map(|n| (n, id)))
        .collect();
    // In name order, so that which learner is promoted is predictable.
    eligible.sort();
    let eligible: Vec<NodeId> = eligible.into_iter().map(|(_, id)| id).collect();
    let grace = kv.inner.policy.dead_grace;
    let gone = dead_since
        .iter()
        .find(|(_, t)| t.elapsed() >= grace)
        .map(|(v, _)| *v);
    let change = match (gone, eligible.first()) {
        (Some(dead), Some(new)) => {
            let mut set = voters.clone();
            set.remove(&dead);
            set.insert(*new);
            tracing::warn!(
                dead = ?name(&dead), replacement = ?name(new),
                "kv: replacing a voter dead for longer than {grace:?}"
            );
            Some(ChangeMembers::ReplaceAllVoters(set))
        }
        _ => {
            let want = wanted_voters(voters.len(), eligible.len(), kv.inner.policy.target_voters);
            if want > voters.len() {
                let add: BTreeSet<NodeId> =
                    eligible.iter().take(want - voters.len()).copied().collect();
                tracing::info!(promote = ?add.iter().map(name).collect::<Vec<_>>(), "kv: promoting learners to voters");
                Some(ChangeMembers::AddVoterIds(add))
            } else {
                None
            }
        }
    };
    if let Some(c) = change {
        match tokio::time::timeout(
            Duration::from_secs(10),
            kv.inner.raft.change_membership(c, false),
        )
        .await
        {
            Ok(Ok(_)) => {
                if let Some(g) = gone {
                    dead_since.remove(&g);
                }
            }
            Ok(Err(e)) => tracing::warn!("kv: autopilot change: {e}"),
            Err(_) => tracing::warn!("kv: autopilot change not committed within 10 s"),
        }
    }
}
