//! The local subscription table: each channel's broadcast subscriptions and queue groups.
//!
//! The table answers "which of this node's subscriptions get this event" ([`Subscribers::pick`]):
//! every broadcast subscription, and one member of each queue group routed here (round robin
//! within the group). Its counts are the node's [`Interest`], which is gossiped.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use crate::{interest::Interest, subscription::SubQueue};

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

/// The subscriptions that get one event: `(queue, group it was picked for)`, and the groups
/// that have no member here.
pub(crate) type Picked = (Vec<(Arc<SubQueue>, Option<String>)>, Vec<String>);

/// This node's subscriptions per channel.
#[derive(Default)]
pub(crate) struct Subscribers {
    channels: Mutex<HashMap<String, Channel>>,
    /// (channel, group) pairs that have had a member here since this broker started.
    seen: Mutex<BTreeSet<(String, String)>>,
}

impl Subscribers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self) -> MutexGuard<'_, BTreeSet<(String, String)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a subscription (a group member when the queue has a group).
    pub fn add(&self, channel: &str, queue: Arc<SubQueue>) {
        if let Some(g) = &queue.group {
            self.seen().insert((channel.to_string(), g.clone()));
        }
        let mut chans = self.lock();
        let ch = chans.entry(channel.to_string()).or_default();
        match &queue.group {
            Some(g) => ch
                .groups
                .entry(g.clone())
                .or_default()
                .members
                .push(queue.clone()),
            None => ch.broadcast.push(queue.clone()),
        }
    }

    /// Whether `group` has had a member on this node since the broker started. An event for a
    /// group that never had one here was routed by another node's view of this node's previous
    /// incarnation (it restarted): see `Fanout::receive`.
    pub fn had_group(&self, channel: &str, group: &str) -> bool {
        self.seen()
            .contains(&(channel.to_string(), group.to_string()))
    }

    /// Remove a subscription; returns whether it was there.
    pub fn remove(&self, channel: &str, id: u64) -> bool {
        let mut chans = self.lock();
        let Some(ch) = chans.get_mut(channel) else {
            return false;
        };
        let before =
            ch.broadcast.len() + ch.groups.values().map(|g| g.members.len()).sum::<usize>();
        ch.broadcast.retain(|q| q.id != id);
        for g in ch.groups.values_mut() {
            g.members.retain(|q| q.id != id);
        }
        ch.groups.retain(|_, g| !g.members.is_empty());
        let after = ch.broadcast.len() + ch.groups.values().map(|g| g.members.len()).sum::<usize>();
        if ch.broadcast.is_empty() && ch.groups.is_empty() {
            chans.remove(channel);
        }
        before != after
    }

    /// The broadcast subscriptions of a channel.
    pub fn broadcast(&self, channel: &str) -> Vec<Arc<SubQueue>> {
        self.lock()
            .get(channel)
            .map(|ch| ch.broadcast.clone())
            .unwrap_or_default()
    }

    /// This node's interest in a channel.
    pub fn interest(&self, channel: &str) -> Interest {
        self.lock()
            .get(channel)
            .map(Channel::interest)
            .unwrap_or_default()
    }

    /// This node's interest in every channel it has subscribers for.
    pub fn all_interest(&self) -> BTreeMap<String, Interest> {
        self.lock()
            .iter()
            .map(|(c, ch)| (c.clone(), ch.interest()))
            .collect()
    }

    /// Live subscriptions.
    pub fn count(&self) -> usize {
        self.lock()
            .values()
            .map(|c| c.broadcast.len() + c.groups.values().map(|g| g.members.len()).sum::<usize>())
            .sum()
    }

    /// The subscriptions that get one event: every broadcast one (if `broadcast`) and one
    /// member of each of `groups`.
    pub fn pick(&self, channel: &str, broadcast: bool, groups: &[String]) -> Picked {
        let mut targets = Vec::new();
        let mut unserved = Vec::new();
        let mut chans = self.lock();
        let Some(ch) = chans.get_mut(channel) else {
            return (targets, groups.to_vec());
        };
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
        (targets, unserved)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::subscription::Policy;

    fn queue(id: u64, group: Option<&str>) -> Arc<SubQueue> {
        Arc::new(SubQueue::new(
            id,
            group.map(str::to_string),
            4,
            Policy::Block,
            Duration::from_secs(1),
        ))
    }

    #[test]
    fn interest_counts_broadcast_and_group_members() {
        let s = Subscribers::default();
        s.add("c", queue(1, None));
        s.add("c", queue(2, Some("w")));
        s.add("c", queue(3, Some("w")));
        assert_eq!(s.interest("c").broadcast, 1);
        assert_eq!(s.interest("c").groups["w"], 2);
        assert_eq!(s.count(), 3);
        assert!(s.remove("c", 2));
        assert!(!s.remove("c", 2));
        assert_eq!(s.interest("c").groups["w"], 1);
        assert!(s.remove("c", 1) && s.remove("c", 3));
        assert!(s.all_interest().is_empty(), "an empty channel is forgotten");
        assert!(
            s.had_group("c", "w"),
            "but not that its group had members here"
        );
        assert!(!s.had_group("c", "v") && !s.had_group("d", "w"));
    }

    #[test]
    fn pick_takes_every_broadcast_and_one_member_per_group_in_turn() {
        let s = Subscribers::default();
        s.add("c", queue(1, None));
        s.add("c", queue(2, Some("w")));
        s.add("c", queue(3, Some("w")));
        let groups = ["w".to_string(), "gone".to_string()];
        let mut members = Vec::new();
        for _ in 0..4 {
            let (targets, unserved) = s.pick("c", true, &groups);
            assert_eq!(unserved, vec!["gone".to_string()]);
            assert_eq!(targets.len(), 2);
            assert_eq!(targets[0].0.id, 1);
            assert_eq!(targets[1].1.as_deref(), Some("w"));
            members.push(targets[1].0.id);
        }
        assert_eq!(members, vec![2, 3, 2, 3]);
        let (targets, unserved) = s.pick("other", true, &groups);
        assert!(targets.is_empty());
        assert_eq!(unserved, groups.to_vec());
    }
}
