//! The local subscription table: each channel's broadcast subscriptions and queue groups.
//!
//! The table answers "which of this node's subscriptions get this event" ([`Subscribers::pick`]):
//! every broadcast subscription, and one member of each queue group routed here (round robin
//! within the group). Its counts are the node's [`Interest`], which is gossiped, each with the
//! [`Stamp`] of the channel's last change (this broker's incarnation and a change counter), so
//! that a durable channel's home can tell whether gossip has caught up with interest pushed to
//! it directly ([`crate::hints`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use crate::{
    interest::{Interest, Stamp},
    subscription::SubQueue,
};

#[derive(Default)]
struct Channel {
    broadcast: Vec<Arc<SubQueue>>,
    groups: BTreeMap<String, Group>,
    /// The table's change counter at this channel's last change.
    changed: u64,
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

#[derive(Default)]
struct Table {
    channels: HashMap<String, Channel>,
    /// Changes (adds and removals) so far.
    changes: u64,
}

/// This node's subscriptions per channel.
pub(crate) struct Subscribers {
    table: Mutex<Table>,
    /// (channel, group) pairs that have had a member here since this broker started.
    seen: Mutex<BTreeSet<(String, String)>>,
    /// This broker's incarnation: differs from one start to the next.
    incarnation: u64,
}

impl Default for Subscribers {
    fn default() -> Self {
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Subscribers {
            table: Mutex::default(),
            seen: Mutex::default(),
            incarnation: (nanos ^ (u64::from(std::process::id()) << 40))
                .wrapping_add(STARTS.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl Subscribers {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(&self, seq: u64) -> Stamp {
        Stamp {
            inc: self.incarnation,
            seq,
        }
    }

    fn seen(&self) -> MutexGuard<'_, BTreeSet<(String, String)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a subscription (a group member when the queue has a group).
    pub fn add(&self, channel: &str, queue: Arc<SubQueue>) {
        if let Some(g) = &queue.group {
            self.seen().insert((channel.to_string(), g.clone()));
        }
        let mut table = self.lock();
        table.changes += 1;
        let changes = table.changes;
        let ch = table.channels.entry(channel.to_string()).or_default();
        ch.changed = changes;
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
        let mut table = self.lock();
        let Some(ch) = table.channels.get_mut(channel) else {
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
        let empty = ch.broadcast.is_empty() && ch.groups.is_empty();
        if before != after {
            table.changes += 1;
            let changes = table.changes;
            if let Some(ch) = table.channels.get_mut(channel) {
                ch.changed = changes;
            }
        }
        if empty {
            table.channels.remove(channel);
        }
        before != after
    }

    /// The broadcast subscriptions of a channel.
    pub fn broadcast(&self, channel: &str) -> Vec<Arc<SubQueue>> {
        self.lock()
            .channels
            .get(channel)
            .map(|ch| ch.broadcast.clone())
            .unwrap_or_default()
    }

    /// This node's interest in a channel.
    pub fn interest(&self, channel: &str) -> Interest {
        self.lock()
            .channels
            .get(channel)
            .map(Channel::interest)
            .unwrap_or_default()
    }

    /// This node's interest in a channel and the stamp of that state (for a channel without
    /// subscribers: the table's latest change, at or after the one that emptied it).
    pub fn stamped(&self, channel: &str) -> (Interest, Stamp) {
        let table = self.lock();
        match table.channels.get(channel) {
            Some(ch) => (ch.interest(), self.stamp(ch.changed)),
            None => (Interest::default(), self.stamp(table.changes)),
        }
    }

    /// [`Subscribers::stamped`] of every channel with subscribers, all read at once.
    pub fn all_stamped(&self) -> HashMap<String, (Interest, Stamp)> {
        self.lock()
            .channels
            .iter()
            .map(|(c, ch)| (c.clone(), (ch.interest(), self.stamp(ch.changed))))
            .collect()
    }

    /// This node's interest in every channel it has subscribers for.
    pub fn all_interest(&self) -> BTreeMap<String, Interest> {
        self.lock()
            .channels
            .iter()
            .map(|(c, ch)| (c.clone(), ch.interest()))
            .collect()
    }

    /// Live subscriptions.
    pub fn count(&self) -> usize {
        self.lock()
            .channels
            .values()
            .map(|c| c.broadcast.len() + c.groups.values().map(|g| g.members.len()).sum::<usize>())
            .sum()
    }

    /// The subscriptions that get one event: every broadcast one (if `broadcast`) and one
    /// member of each of `groups`.
    pub fn pick(&self, channel: &str, broadcast: bool, groups: &[String]) -> Picked {
        let mut targets = Vec::new();
        let mut unserved = Vec::new();
        let mut table = self.lock();
        let Some(ch) = table.channels.get_mut(channel) else {
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
    fn every_change_of_a_channel_gets_a_later_stamp() {
        let s = Subscribers::default();
        s.add("c", queue(1, None));
        let (i1, s1) = s.stamped("c");
        assert_eq!(i1.broadcast, 1);
        s.add("d", queue(2, None));
        assert_eq!(
            s.stamped("c").1,
            s1,
            "another channel's change leaves c's stamp"
        );
        s.add("c", queue(3, Some("w")));
        let (i2, s2) = s.stamped("c");
        assert!(s2.covers(&s1) && !s1.covers(&s2), "{s1:?} {s2:?}");
        assert!(i2.has_group("w"));
        assert!(!s.remove("c", 99), "no change, no new stamp");
        assert_eq!(s.stamped("c").1, s2);
        assert!(s.remove("c", 1) && s.remove("c", 3));
        let (i3, s3) = s.stamped("c");
        assert!(i3.is_empty());
        assert!(
            s3.covers(&s2) && s3 != s2,
            "emptied later than {s2:?}: {s3:?}"
        );
        let all = s.all_stamped();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["d"]);
        assert!(
            !Subscribers::default().stamped("c").1.covers(&s3),
            "another incarnation"
        );
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
