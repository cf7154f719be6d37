//! Which channels a node has consumers for, shared through gossip.
//!
//! Each node publishes `broker/i/<channel>` = [`Interest`] JSON for every channel it has local
//! subscribers for, with a stamp (`"v"`: its broker's incarnation and the change counter of the
//! channel's last change, see the `hints` module), and deletes the key when the last one leaves.
//! Other nodes read these keys into a `RemoteInterest` view, which routing uses to send an
//! event once per interested node; a durable channel's home lays the interest pushed to it by
//! new consumers (`hints`) over it. The diff between what was published and what is
//! wanted ([`plan`]) and the reading of gossip ([`parse`]) are pure functions; [`publish`] is
//! the thin loop that applies them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Weak},
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

/// Which state of a node's subscription table an interest value describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    /// The broker's incarnation (different at each start).
    #[serde(rename = "i")]
    pub inc: u64,
    /// The table's change counter when the channel last changed.
    #[serde(rename = "s")]
    pub seq: u64,
}

impl Stamp {
    /// Whether `self` describes the same state as `other`, or a later one, of the same broker.
    pub fn covers(&self, other: &Stamp) -> bool {
        self.inc == other.inc && self.seq >= other.seq
    }
}

/// One node's interest in one channel as gossip carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub interest: Interest,
    /// Absent in values published by older brokers.
    pub stamp: Option<Stamp>,
}

/// Other nodes' interest from gossip: channel -> node -> value.
pub(crate) type GossipMap = HashMap<String, BTreeMap<String, Seen>>;

/// A node's interest in each channel it has subscribers for, with the stamp of each.
pub(crate) type Stamped = HashMap<String, (Interest, Stamp)>;

/// The value of a `broker/i/<channel>` key.
#[derive(Serialize, Deserialize)]
struct Published {
    #[serde(flatten)]
    interest: Interest,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    stamp: Option<Stamp>,
}

/// What to change in gossip to go from `published` to `now`: keys to set, keys to delete.
pub(crate) fn plan(published: &Stamped, now: &Stamped) -> (Vec<(String, String)>, Vec<String>) {
    let mut set: Vec<(String, String)> = now
        .iter()
        .filter(|(c, (i, s))| !i.is_empty() && published.get(*c) != Some(&(i.clone(), *s)))
        .filter_map(|(c, (i, s))| {
            let value = Published {
                interest: i.clone(),
                stamp: Some(*s),
            };
            serde_json::to_string(&value)
                .ok()
                .map(|v| (format!("{INTEREST_PREFIX}{c}"), v))
        })
        .collect();
    let mut delete: Vec<String> = published
        .keys()
        .filter(|c| now.get(*c).is_none_or(|(i, _)| i.is_empty()))
        .map(|c| format!("{INTEREST_PREFIX}{c}"))
        .collect();
    set.sort();
    delete.sort();
    (set, delete)
}

/// Other nodes' interest from a gossip scan of `(node, key, value)`; this node's own keys and
/// values that are not [`Interest`] JSON are left out.
pub(crate) fn parse(me: &str, scan: Vec<(String, String, String)>) -> GossipMap {
    let mut remote = GossipMap::new();
    for (node, key, value) in scan {
        if node == me {
            continue;
        }
        let Some(channel) = key.strip_prefix(INTEREST_PREFIX) else {
            continue;
        };
        match serde_json::from_str::<Published>(&value) {
            Ok(p) => {
                remote.entry(channel.to_string()).or_default().insert(
                    node,
                    Seen {
                        interest: p.interest,
                        stamp: p.stamp,
                    },
                );
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
    local: impl Fn() -> Stamped + Send + 'static,
) {
    let mut published = Stamped::new();
    loop {
        // Wait for a change (or re-check every few seconds).
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.notified()).await;
        if alive.upgrade().is_none() {
            return;
        }
        let now: Stamped = local()
            .into_iter()
            .filter(|(_, (i, _))| !i.is_empty())
            .collect();
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

    fn st(seq: u64) -> Stamp {
        Stamp { inc: 9, seq }
    }

    #[test]
    fn plan_sets_what_changed_and_deletes_what_went_away() {
        let published = Stamped::from([
            ("a".to_string(), (interest(1, &[]), st(1))),
            ("b".to_string(), (interest(1, &[]), st(2))),
            ("c".to_string(), (interest(0, &[("g", 1)]), st(3))),
            ("e".to_string(), (interest(1, &[]), st(4))),
        ]);
        let now = Stamped::from([
            ("a".to_string(), (interest(1, &[]), st(1))),
            ("c".to_string(), (interest(0, &[("g", 2)]), st(5))),
            ("d".to_string(), (interest(2, &[]), st(6))),
            // A consumer left and another came: the same counts, a new stamp.
            ("e".to_string(), (interest(1, &[]), st(8))),
        ]);
        let (set, delete) = plan(&published, &now);
        assert_eq!(
            set,
            vec![
                (
                    "broker/i/c".to_string(),
                    r#"{"b":0,"g":{"g":2},"v":{"i":9,"s":5}}"#.to_string()
                ),
                (
                    "broker/i/d".to_string(),
                    r#"{"b":2,"g":{},"v":{"i":9,"s":6}}"#.to_string()
                ),
                (
                    "broker/i/e".to_string(),
                    r#"{"b":1,"g":{},"v":{"i":9,"s":8}}"#.to_string()
                ),
            ]
        );
        assert_eq!(delete, vec!["broker/i/b".to_string()]);
        assert_eq!(plan(&now, &now), (vec![], vec![]));
    }

    #[test]
    fn parse_reads_stamps_and_skips_own_keys_and_bad_values() {
        let scan = vec![
            ("n1".into(), "broker/i/a".into(), r#"{"b":1}"#.into()),
            ("n2".into(), "broker/i/a".into(), r#"{"g":{"w":2}}"#.into()),
            ("n3".into(), "broker/i/a".into(), "not json".into()),
            ("n2".into(), "broker/d/a".into(), "n2".into()),
            (
                "n4".into(),
                "broker/i/a".into(),
                r#"{"b":1,"g":{},"v":{"i":9,"s":5}}"#.into(),
            ),
        ];
        let map = parse("n1", scan);
        assert_eq!(map.len(), 1);
        let a = &map["a"];
        assert_eq!(a.keys().collect::<Vec<_>>(), vec!["n2", "n4"]);
        let n2 = &a["n2"].interest;
        assert!(n2.has_group("w") && !n2.has_group("x"));
        assert!(n2.any_group() && !n2.is_empty());
        assert_eq!(a["n2"].stamp, None, "an older broker's value has no stamp");
        assert_eq!(a["n4"].stamp, Some(st(5)));
    }
}
