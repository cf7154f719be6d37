//! Which channels a node has consumers for, shared through gossip.
//!
//! Each node publishes `broker/i/<channel>` = [`Interest`] JSON for every channel it has local
//! subscribers for, and deletes the key when the last one leaves. Other nodes read these keys
//! into a [`RemoteInterest`] view, which routing uses to send an event once per interested
//! node. The diff between what was published and what is wanted ([`plan`]) and the reading of
//! gossip ([`parse`]) are pure functions; [`publish`] is the thin loop that applies them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use runtime::Node;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Gossip key prefix of a node's subscription interest: `broker/i/<channel>`.
pub(crate) const INTEREST_PREFIX: &str = "broker/i/";

/// The most queue groups of one channel that may have consumers on one node: a node's interest
/// in a channel is one gossip entry, which must stay within [`runtime::GOSSIP_ENTRY_MAX`]
/// (256 groups of the longest name, 200 bytes, take about 55 000).
///
/// ```
/// assert_eq!(broker::MAX_GROUPS_PER_CHANNEL, 256);
/// ```
pub const MAX_GROUPS_PER_CHANNEL: usize = 256;

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
    /// No subscriber at all.
    pub fn is_empty(&self) -> bool {
        self.broadcast == 0 && self.groups.values().all(|n| *n == 0)
    }

    /// Whether some member of `group` is here.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.get(group).copied().unwrap_or(0) > 0
    }

    /// Whether any queue group has members here.
    pub fn any_group(&self) -> bool {
        self.groups.values().any(|n| *n > 0)
    }
}

/// Other nodes' interest: channel -> node -> interest.
pub(crate) type InterestMap = HashMap<String, BTreeMap<String, Interest>>;

/// The view of other nodes' interest, replaced whenever gossip changes.
#[derive(Default)]
pub(crate) struct RemoteInterest(RwLock<InterestMap>);

impl RemoteInterest {
    /// The interested nodes of a channel, in node order.
    pub fn of(&self, channel: &str) -> Vec<(String, Interest)> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .map(|m| m.iter().map(|(n, i)| (n.clone(), i.clone())).collect())
            .unwrap_or_default()
    }

    /// Everything.
    pub fn all(&self) -> InterestMap {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the view.
    pub fn set(&self, map: InterestMap) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

/// What to change in gossip to go from `published` to `now`: keys to set, keys to delete.
pub(crate) fn plan(
    published: &HashMap<String, Interest>,
    now: &HashMap<String, Interest>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut set: Vec<(String, String)> = now
        .iter()
        .filter(|(c, i)| !i.is_empty() && published.get(*c) != Some(i))
        .filter_map(|(c, i)| {
            serde_json::to_string(i)
                .ok()
                .map(|v| (format!("{INTEREST_PREFIX}{c}"), v))
        })
        .collect();
    let mut delete: Vec<String> = published
        .keys()
        .filter(|c| now.get(*c).is_none_or(Interest::is_empty))
        .map(|c| format!("{INTEREST_PREFIX}{c}"))
        .collect();
    set.sort();
    delete.sort();
    (set, delete)
}

/// Other nodes' interest from a gossip scan of `(node, key, value)`; this node's own keys and
/// values that are not [`Interest`] JSON are left out.
pub(crate) fn parse(me: &str, scan: Vec<(String, String, String)>) -> InterestMap {
    let mut remote = InterestMap::new();
    for (node, key, value) in scan {
        if node == me {
            continue;
        }
        let Some(channel) = key.strip_prefix(INTEREST_PREFIX) else {
            continue;
        };
        match serde_json::from_str::<Interest>(&value) {
            Ok(i) => {
                remote
                    .entry(channel.to_string())
                    .or_default()
                    .insert(node, i);
            }
            Err(e) => tracing::warn!("broker: ignoring {node}'s unreadable {key}: {e}"),
        }
    }
    remote
}

/// Keep this node's gossip keys equal to its local interest (`local` takes a snapshot of it);
/// runs while `alive` can be upgraded.
pub(crate) async fn publish<T: Send + Sync + 'static>(
    node: Node,
    changed: Arc<Notify>,
    alive: Weak<T>,
    local: impl Fn() -> HashMap<String, Interest> + Send + 'static,
) {
    let mut published: HashMap<String, Interest> = HashMap::new();
    loop {
        // Wait for a change (or re-check every few seconds).
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.notified()).await;
        if alive.upgrade().is_none() {
            return;
        }
        let now: HashMap<String, Interest> =
            local().into_iter().filter(|(_, i)| !i.is_empty()).collect();
        let (set, delete) = plan(&published, &now);
        for (k, v) in set {
            // (bounded by `MAX_GROUPS_PER_CHANNEL`: always fits)
            if let Err(e) = node.gossip_set(&k, &v).await {
                tracing::error!("broker: cannot publish {k}: {e}");
            }
        }
        for k in delete {
            node.gossip_delete(&k).await;
        }
        published = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_interest_fits_in_a_gossip_entry_with_room_for_racing_joins() {
        let name = |i: usize| format!("{i:0>200}");
        let worst = |groups: usize| Interest {
            broadcast: u32::MAX,
            groups: (0..groups).map(|i| (name(i), u32::MAX)).collect(),
        };
        let size = |groups: usize| {
            let key = format!("{INTEREST_PREFIX}{}", name(0));
            key.len() + serde_json::to_string(&worst(groups)).unwrap().len()
        };
        assert!(
            size(MAX_GROUPS_PER_CHANNEL) <= 56_000,
            "{}",
            size(MAX_GROUPS_PER_CHANNEL)
        );
        // consumers joining at once may pass the limit by a few: 32 more still fit
        assert!(size(MAX_GROUPS_PER_CHANNEL + 32) <= runtime::GOSSIP_ENTRY_MAX);
    }

    fn interest(b: u32, groups: &[(&str, u32)]) -> Interest {
        Interest {
            broadcast: b,
            groups: groups.iter().map(|(g, n)| (g.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn plan_sets_what_changed_and_deletes_what_went_away() {
        let published = HashMap::from([
            ("a".to_string(), interest(1, &[])),
            ("b".to_string(), interest(1, &[])),
            ("c".to_string(), interest(0, &[("g", 1)])),
        ]);
        let now = HashMap::from([
            ("a".to_string(), interest(1, &[])),
            ("c".to_string(), interest(0, &[("g", 2)])),
            ("d".to_string(), interest(2, &[])),
        ]);
        let (set, delete) = plan(&published, &now);
        assert_eq!(
            set,
            vec![
                (
                    "broker/i/c".to_string(),
                    r#"{"b":0,"g":{"g":2}}"#.to_string()
                ),
                ("broker/i/d".to_string(), r#"{"b":2,"g":{}}"#.to_string()),
            ]
        );
        assert_eq!(delete, vec!["broker/i/b".to_string()]);
        assert_eq!(plan(&now, &now), (vec![], vec![]));
    }

    #[test]
    fn parse_skips_own_keys_and_bad_values() {
        let scan = vec![
            ("n1".into(), "broker/i/a".into(), r#"{"b":1}"#.into()),
            ("n2".into(), "broker/i/a".into(), r#"{"g":{"w":2}}"#.into()),
            ("n3".into(), "broker/i/a".into(), "not json".into()),
            ("n2".into(), "broker/d/a".into(), "n2".into()),
        ];
        let map = parse("n1", scan);
        assert_eq!(map.len(), 1);
        let a = &map["a"];
        assert_eq!(a.keys().collect::<Vec<_>>(), vec!["n2"]);
        assert!(a["n2"].has_group("w") && !a["n2"].has_group("x"));
        assert!(a["n2"].any_group() && !a["n2"].is_empty());
    }
}
