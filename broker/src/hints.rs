//! Interest pushed straight to a durable channel's home, ahead of gossip.
//!
//! Gossip carries each node's interest (`broker/i/<channel>`), but a gossip round or two puts a
//! new consumer's interest a few hundred milliseconds away from the channel's home, and for
//! that long the home routes the channel's events past the consumer's node. A durable consumer
//! replays the log and then goes live, so whatever was appended between the end of its replay
//! and the moment the home heard of it reached it late (at the next event, which shows the gap)
//! or, for a queue group member, never. So a consumer of a durable channel on another node than
//! its home tells the home, before its subscription is answered, what its node's interest in
//! the channel now is (`Request::Attach`); the home records it here, under the log's lock, and
//! answers with the log's head. Every event appended after that answer is routed to the node,
//! and every event before it is in the log the replay reads afterwards.
//!
//! The home lays its hints over its gossip view, and only adds interest (a hint never hides
//! what gossip says). Each value carries a [`Stamp`]: the publishing broker's incarnation and
//! the sequence number of its subscription table's last change for that channel, in gossip as
//! in hints. A hint is dropped:
//!
//! * as soon as gossip has caught up with it (the same incarnation, a sequence number at least
//!   the hint's);
//! * when a newer hint from the same node replaces it (a consumer that leaves sends what
//!   remains, `Request::Interest`); an empty one removes it, an older one is ignored;
//! * when its node is declared dead;
//! * after [`HINT_TTL`]: gossip wins, whatever it says.
//!
//! [`Hints`] is pure logic, no I/O: [`RemoteInterest`], the view of other nodes' interest that
//! routing reads, feeds it hints, gossip views and the time.

use std::{
    collections::{BTreeMap, HashMap},
    sync::RwLock,
    time::{Duration, Instant},
};

use crate::interest::{GossipMap, Interest, InterestMap, Seen, Stamp};

/// How long a hint may stand beside gossip before only gossip counts.
pub(crate) const HINT_TTL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Hint {
    interest: Interest,
    stamp: Stamp,
    at: Instant,
}

/// Interest pushed by other nodes and not yet confirmed by gossip: channel -> node -> hint.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    by_channel: HashMap<String, BTreeMap<String, Hint>>,
}

#[derive(Default)]
struct View {
    gossip: GossipMap,
    hints: Hints,
}

/// The view of other nodes' interest: gossip (replaced whenever it changes), with the interest
/// pushed by durable consumers laid over it.
#[derive(Default)]
pub(crate) struct RemoteInterest(RwLock<View>);

impl RemoteInterest {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The interested nodes of a channel, in node order.
    pub fn of(&self, channel: &str) -> Vec<(String, Interest)> {
        let v = self.read();
        let gossip = v.gossip.get(channel);
        if v.hints.is_empty() {
            return gossip
                .map(|m| {
                    m.iter()
                        .map(|(n, s)| (n.clone(), s.interest.clone()))
                        .collect()
                })
                .unwrap_or_default();
        }
        v.hints.overlay(channel, gossip, Instant::now())
    }

    /// Everything.
    pub fn all(&self) -> InterestMap {
        let v = self.read();
        let now = Instant::now();
        let mut channels: Vec<&String> = v.gossip.keys().chain(v.hints.channels()).collect();
        channels.sort();
        channels.dedup();
        let mut out = InterestMap::new();
        for c in channels {
            let nodes = v.hints.overlay(c, v.gossip.get(c), now);
            if !nodes.is_empty() {
                out.insert(c.clone(), nodes.into_iter().collect());
            }
        }
        out
    }

    /// Replace the gossip view; drop the hints it has caught up with (and expired ones).
    pub fn set(&self, map: GossipMap) {
        let mut v = self.write();
        v.hints.prune(&map, Instant::now());
        v.gossip = map;
    }

    /// Lay `node`'s interest in `channel`, pushed by its broker, over gossip.
    pub fn hint(&self, channel: &str, node: &str, interest: Interest, stamp: Stamp) {
        let mut v = self.write();
        let View { gossip, hints } = &mut *v;
        let now = Instant::now();
        hints.record(channel, node, interest, stamp, now);
        // Gossip may have caught up already.
        hints.prune(gossip, now);
    }

    /// Whether any pushed interest is held.
    pub fn has_hints(&self) -> bool {
        !self.read().hints.is_empty()
    }

    /// Drop the pushed interest of nodes declared dead.
    pub fn forget(&self, dead: &[String]) {
        self.write().hints.forget(dead);
    }
}

/// Both: every broadcast subscriber and every group member either counts.
fn union(a: &Interest, b: &Interest) -> Interest {
    let mut out = a.clone();
    out.broadcast = out.broadcast.max(b.broadcast);
    for (g, n) in &b.groups {
        let m = out.groups.entry(g.clone()).or_insert(0);
        *m = (*m).max(*n);
    }
    out
}

impl Hints {
    /// Record `node`'s interest in `channel` as of `stamp`, received at `now`. A hint that
    /// the one held already covers is ignored (returns false); an empty one removes the hint.
    pub fn record(
        &mut self,
        channel: &str,
        node: &str,
        interest: Interest,
        stamp: Stamp,
        now: Instant,
    ) -> bool {
        let nodes = self.by_channel.entry(channel.to_string()).or_default();
        if nodes.get(node).is_some_and(|h| h.stamp.covers(&stamp)) {
            return false;
        }
        if interest.is_empty() {
            nodes.remove(node);
        } else {
            nodes.insert(
                node.to_string(),
                Hint {
                    interest,
                    stamp,
                    at: now,
                },
            );
        }
        if nodes.is_empty() {
            self.by_channel.remove(channel);
        }
        true
    }

    /// Drop the hints gossip has caught up with and those older than [`HINT_TTL`].
    pub fn prune(&mut self, gossip: &GossipMap, now: Instant) {
        for (channel, nodes) in self.by_channel.iter_mut() {
            let seen = gossip.get(channel);
            nodes.retain(|node, h| {
                let caught_up = seen
                    .and_then(|s| s.get(node))
                    .and_then(|s| s.stamp)
                    .is_some_and(|s| s.covers(&h.stamp));
                !caught_up && now.duration_since(h.at) < HINT_TTL
            });
        }
        self.by_channel.retain(|_, nodes| !nodes.is_empty());
    }

    /// Drop every hint of these nodes (declared dead).
    pub fn forget(&mut self, dead: &[String]) {
        for nodes in self.by_channel.values_mut() {
            nodes.retain(|node, _| !dead.contains(node));
        }
        self.by_channel.retain(|_, nodes| !nodes.is_empty());
    }

    /// No hint at all.
    pub fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    /// The interested nodes of `channel` at `now`: gossip's, with the hints laid over it.
    pub fn overlay(
        &self,
        channel: &str,
        gossip: Option<&BTreeMap<String, Seen>>,
        now: Instant,
    ) -> Vec<(String, Interest)> {
        let mut out: BTreeMap<String, Interest> = gossip
            .into_iter()
            .flatten()
            .map(|(n, s)| (n.clone(), s.interest.clone()))
            .collect();
        for (node, h) in self.by_channel.get(channel).into_iter().flatten() {
            if now.duration_since(h.at) >= HINT_TTL {
                continue;
            }
            let merged = match out.get(node) {
                Some(i) => union(i, &h.interest),
                None => h.interest.clone(),
            };
            out.insert(node.clone(), merged);
        }
        out.into_iter().collect()
    }

    /// The channels that have hints.
    pub fn channels(&self) -> impl Iterator<Item = &String> {
        self.by_channel.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(b: u32, groups: &[(&str, u32)]) -> Interest {
        Interest {
            broadcast: b,
            groups: groups.iter().map(|(g, n)| (g.to_string(), *n)).collect(),
        }
    }

    fn st(seq: u64) -> Stamp {
        Stamp { inc: 9, seq }
    }

    fn stamp(inc: u64, seq: u64) -> Stamp {
        Stamp { inc, seq }
    }

    fn gossip(node: &str, i: Interest, s: Option<Stamp>) -> GossipMap {
        HashMap::from([(
            "c".to_string(),
            BTreeMap::from([(
                node.to_string(),
                Seen {
                    interest: i,
                    stamp: s,
                },
            )]),
        )])
    }

    #[test]
    fn a_hint_routes_to_its_node_before_gossip_knows_of_it() {
        let now = Instant::now();
        let mut h = Hints::default();
        assert!(h.record("c", "n2", interest(1, &[]), stamp(7, 3), now));
        assert_eq!(
            h.overlay("c", None, now),
            vec![("n2".to_string(), interest(1, &[]))]
        );
        assert!(h.overlay("other", None, now).is_empty());
        // Gossip knows of another node: both.
        let g = gossip("n3", interest(0, &[("w", 1)]), Some(stamp(1, 1)));
        assert_eq!(
            h.overlay("c", g.get("c"), now),
            vec![
                ("n2".to_string(), interest(1, &[])),
                ("n3".to_string(), interest(0, &[("w", 1)])),
            ]
        );
    }

    #[test]
    fn a_hint_only_adds_to_what_gossip_says() {
        let now = Instant::now();
        let mut h = Hints::default();
        // The hint is older than what gossip holds for the same node (another incarnation):
        // neither hides the other's subscribers.
        h.record("c", "n2", interest(0, &[("w", 1)]), stamp(7, 3), now);
        let g = gossip("n2", interest(2, &[("v", 1)]), Some(stamp(8, 1)));
        assert_eq!(
            h.overlay("c", g.get("c"), now),
            vec![("n2".to_string(), interest(2, &[("v", 1), ("w", 1)]))]
        );
    }

    #[test]
    fn gossip_that_caught_up_replaces_the_hint() {
        let now = Instant::now();
        let mut h = Hints::default();
        h.record("c", "n2", interest(1, &[]), stamp(7, 3), now);
        // Gossip of an older state, another incarnation, or no stamp: the hint stays.
        for s in [Some(stamp(7, 2)), Some(stamp(6, 9)), None] {
            h.prune(&gossip("n2", interest(1, &[]), s), now);
            assert!(!h.is_empty(), "{s:?}");
        }
        // Gossip of that state or a later one: gossip alone counts, even if it now says less.
        h.prune(
            &gossip("n2", interest(0, &[("w", 1)]), Some(stamp(7, 4))),
            now,
        );
        assert!(h.is_empty());
        let g = gossip("n2", interest(0, &[("w", 1)]), Some(stamp(7, 4)));
        assert_eq!(
            h.overlay("c", g.get("c"), now),
            vec![("n2".to_string(), interest(0, &[("w", 1)]))]
        );
    }

    #[test]
    fn newer_hints_replace_older_ones_and_an_empty_one_removes_it() {
        let now = Instant::now();
        let mut h = Hints::default();
        h.record("c", "n2", interest(2, &[]), stamp(7, 5), now);
        // An older hint of the same incarnation (sent before, arrived after): ignored.
        assert!(!h.record("c", "n2", interest(1, &[]), stamp(7, 4), now));
        assert_eq!(h.overlay("c", None, now)[0].1, interest(2, &[]));
        assert!(h.record("c", "n2", interest(1, &[]), stamp(7, 6), now));
        assert_eq!(h.overlay("c", None, now)[0].1, interest(1, &[]));
        // The node restarted: its new broker's hint replaces the old one's.
        assert!(h.record("c", "n2", interest(0, &[("w", 1)]), stamp(9, 1), now));
        assert_eq!(h.overlay("c", None, now)[0].1, interest(0, &[("w", 1)]));
        // Its last consumer left.
        assert!(h.record("c", "n2", interest(0, &[]), stamp(9, 2), now));
        assert!(h.is_empty());
        assert!(h.overlay("c", None, now).is_empty());
    }

    #[test]
    fn hints_expire_and_go_with_a_dead_node() {
        let now = Instant::now();
        let mut h = Hints::default();
        h.record("c", "n2", interest(1, &[]), stamp(7, 1), now);
        h.record("c", "n3", interest(1, &[]), stamp(8, 1), now);
        h.record("d", "n3", interest(1, &[]), stamp(8, 2), now);
        let later = now + HINT_TTL;
        assert!(h.overlay("c", None, later).is_empty(), "expired");
        h.forget(&["n3".to_string()]);
        assert_eq!(h.channels().collect::<Vec<_>>(), vec!["c"]);
        h.prune(&GossipMap::new(), later - Duration::from_millis(1));
        assert!(!h.is_empty(), "not expired yet");
        h.prune(&GossipMap::new(), later);
        assert!(h.is_empty());
    }

    #[test]
    fn the_view_lays_pushed_interest_over_gossip_until_gossip_catches_up() {
        let view = RemoteInterest::default();
        view.hint("a", "n2", interest(1, &[]), st(5));
        assert_eq!(view.of("a"), vec![("n2".to_string(), interest(1, &[]))]);
        assert_eq!(view.all()["a"]["n2"], interest(1, &[]));
        // Gossip without n2's interest yet: the hint still counts.
        view.set(crate::interest::parse(
            "n1",
            vec![("n3".into(), "broker/i/a".into(), r#"{"b":1}"#.into())],
        ));
        assert_eq!(view.of("a").len(), 2);
        // Gossip caught up with n2, whose broadcast subscriber has since been replaced by a
        // group member: gossip alone counts.
        view.set(crate::interest::parse(
            "n1",
            vec![(
                "n2".into(),
                "broker/i/a".into(),
                r#"{"g":{"w":1},"v":{"i":9,"s":6}}"#.into(),
            )],
        ));
        assert_eq!(
            view.of("a"),
            vec![("n2".to_string(), interest(0, &[("w", 1)]))]
        );
        assert!(!view.has_hints());
        view.set(GossipMap::new());
        view.hint("a", "n2", interest(1, &[]), st(7));
        view.forget(&["n2".to_string()]);
        assert!(view.of("a").is_empty());
    }
}
