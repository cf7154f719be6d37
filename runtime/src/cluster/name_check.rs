//! The check a joining node makes that no running node already has its name.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chitchat::{ChitchatHandle, ChitchatId};

/// How long a joining node looks for a live node that already has its name.
const NAME_CHECK: Duration = Duration::from_secs(3);

/// Whether another *running* node has our name: a live incarnation at another gossip address
/// whose heartbeat advances. (An incarnation at our own address is this node's previous life,
/// and one whose heartbeat stands still is a node that just died and is not yet declared dead,
/// so a node restarted at once on other ports is not refused.) Returns its gossip address.
///
/// Waits until the cluster has been heard from (at most [`NAME_CHECK`]); a node whose seeds
/// do not answer starts without the check.
pub(super) async fn name_taken(chitchat: &ChitchatHandle) -> Option<String> {
    let deadline = Instant::now() + NAME_CHECK;
    let mut heard_rounds = 0;
    let mut first_beat: HashMap<ChitchatId, u64> = HashMap::new();
    while Instant::now() < deadline {
        let (others, clashes) = chitchat
            .with_chitchat(|c| {
                let me = c.self_chitchat_id().clone();
                let live: Vec<ChitchatId> =
                    c.live_nodes().filter(|id| **id != me).cloned().collect();
                let clashes: Vec<(ChitchatId, u64)> = live
                    .iter()
                    .filter(|id| {
                        id.node_id == me.node_id
                            && id.gossip_advertise_addr != me.gossip_advertise_addr
                    })
                    .filter_map(|id| {
                        c.node_state(id)
                            .map(|s| (id.clone(), u64::from(s.heartbeat())))
                    })
                    .collect();
                (live.len(), clashes)
            })
            .await;
        for (id, beat) in clashes {
            let first = *first_beat.entry(id.clone()).or_insert(beat);
            if beat > first {
                return Some(id.gossip_advertise_addr.to_string());
            }
        }
        if others > 0 {
            heard_rounds += 1;
        }
        // Two rounds after first contact with nothing clashing: the name is free.
        if heard_rounds >= 3 && first_beat.is_empty() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
