//! What a node sees of the store's other members: their gossiped adverts, which nodes are live,
//! and (on the leader) how far each member's log has caught up.

use std::collections::BTreeSet;

use runtime::MemberState;

use super::{Advert, CAUGHT_UP_LAG, GOSSIP_KEY};
use crate::kv::{Kv, KvNode, NodeId};

/// The other live nodes' adverts.
pub(crate) async fn adverts(kv: &Kv) -> Vec<(String, Advert)> {
    let mut out = Vec::new();
    for (node, key, value) in kv.inner.rt.gossip_scan(GOSSIP_KEY).await {
        if key != GOSSIP_KEY || node == kv.inner.node {
            continue;
        }
        match serde_json::from_str::<Advert>(&value) {
            Ok(a) => out.push((node, a)),
            Err(e) => tracing::debug!(%node, "kv: unreadable gossip advert: {e}"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Live nodes (alive and connected, this one included), by name.
pub(super) async fn live_nodes(kv: &Kv) -> BTreeSet<String> {
    kv.inner
        .rt
        .members()
        .await
        .into_iter()
        .filter(|m| m.state == MemberState::Alive && (m.connected || m.is_self))
        .map(|m| m.name)
        .collect()
}

/// Replication progress on the leader: `(match index, lag)` of a member.
pub(super) fn progress(
    m: &openraft::RaftMetrics<NodeId, KvNode>,
    id: NodeId,
) -> (Option<u64>, Option<u64>) {
    let last = m.last_log_index.unwrap_or(0);
    if m.id == id {
        return (Some(last), Some(0));
    }
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .map(|l| l.map(|l| l.index).unwrap_or(0));
    (matched, matched.map(|x| last.saturating_sub(x)))
}

/// Whether a member is at most [`CAUGHT_UP_LAG`] entries behind the leader.
pub(super) fn caught_up(m: &openraft::RaftMetrics<NodeId, KvNode>, id: NodeId) -> bool {
    matches!(progress(m, id).1, Some(lag) if lag <= CAUGHT_UP_LAG)
}
