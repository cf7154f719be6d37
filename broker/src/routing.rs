//! Which consumers and which nodes get an event: pure decisions over interest views.
//!
//! Broadcast subscribers get every event: each node with broadcast interest gets it once.
//! Each queue group gets each event once: one node with members is picked round robin per
//! channel and group ([`Cursors`]), and that node picks one of its members. When the member a
//! node picked has gone, the event is re-routed ([`reroute_target`]) to another node with
//! members, at most [`MAX_HOPS`] times.

use std::collections::{BTreeMap, HashMap};

use crate::interest::Interest;

/// How many times a queue-group event is re-routed before it is counted undeliverable.
pub(crate) const MAX_HOPS: u8 = 3;

/// Where one event goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// Deliver to this node's broadcast subscribers.
    pub local_broadcast: bool,
    /// Queue groups for which this node picks a member.
    pub local_groups: Vec<String>,
    /// Other nodes: (node, deliver to its broadcast subscribers, groups it picks a member for).
    pub remote: Vec<(String, bool, Vec<String>)>,
}

/// Round-robin positions per (channel, group).
#[derive(Debug, Default)]
pub(crate) struct Cursors(HashMap<(String, String), usize>);

impl Cursors {
    fn next(&mut self, channel: &str, group: &str) -> usize {
        let c = self
            .0
            .entry((channel.to_string(), group.to_string()))
            .or_insert(0);
        *c = c.wrapping_add(1);
        *c
    }
}

/// Route one event of `channel` produced (or received) on node `me`.
pub(crate) fn route(
    me: &str,
    channel: &str,
    local: &Interest,
    remote: &[(String, Interest)],
    cursors: &mut Cursors,
) -> Route {
    let mut group_names: Vec<&String> = local.groups.keys().collect();
    for (_, i) in remote {
        group_names.extend(i.groups.keys());
    }
    group_names.sort();
    group_names.dedup();
    let mut assigned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in group_names {
        let mut nodes: Vec<&str> = Vec::new();
        if local.has_group(g) {
            nodes.push(me);
        }
        nodes.extend(
            remote
                .iter()
                .filter(|(_, i)| i.has_group(g))
                .map(|(n, _)| n.as_str()),
        );
        if nodes.is_empty() {
            continue;
        }
        nodes.sort_unstable();
        let pick = nodes[cursors.next(channel, g) % nodes.len()].to_string();
        assigned.entry(pick).or_default().push(g.clone());
    }
    let local_groups = assigned.remove(me).unwrap_or_default();
    let remote = remote
        .iter()
        .filter_map(|(node, i)| {
            let groups = assigned.remove(node).unwrap_or_default();
            let broadcast = i.broadcast > 0;
            (broadcast || !groups.is_empty()).then(|| (node.clone(), broadcast, groups))
        })
        .collect();
    Route {
        local_broadcast: local.broadcast > 0,
        local_groups,
        remote,
    }
}

/// Another node with members of `group` for an event whose chosen member went away, unless
/// it has been re-routed [`MAX_HOPS`] times already.
pub(crate) fn reroute_target(
    remote: &[(String, Interest)],
    group: &str,
    hops: u8,
) -> Option<String> {
    if hops >= MAX_HOPS {
        return None;
    }
    remote
        .iter()
        .find(|(_, i)| i.has_group(group))
        .map(|(n, _)| n.clone())
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

    #[test]
    fn broadcast_goes_to_every_interested_node_once() {
        let remote = vec![
            ("n2".to_string(), interest(2, &[])),
            ("n3".to_string(), interest(0, &[])),
        ];
        let r = route(
            "n1",
            "c",
            &interest(1, &[]),
            &remote,
            &mut Cursors::default(),
        );
        assert!(r.local_broadcast);
        assert!(r.local_groups.is_empty());
        assert_eq!(r.remote, vec![("n2".to_string(), true, vec![])]);
    }

    #[test]
    fn each_group_gets_each_event_once_round_robin_over_nodes() {
        let remote = vec![
            ("n2".to_string(), interest(0, &[("w", 1)])),
            ("n3".to_string(), interest(0, &[("other", 1)])),
        ];
        let local = interest(0, &[("w", 3)]);
        let mut cursors = Cursors::default();
        let mut here = 0;
        let mut n2 = 0;
        for _ in 0..10 {
            let r = route("n1", "c", &local, &remote, &mut cursors);
            // "other" always goes to n3, its only node; "w" to exactly one of n1 and n2.
            assert!(r
                .remote
                .contains(&("n3".into(), false, vec!["other".into()])));
            let w_remote = r.remote.iter().any(|(n, _, g)| n == "n2" && g == &["w"]);
            let w_local = r.local_groups == ["w"];
            assert!(w_remote != w_local, "{r:?}");
            here += w_local as u32;
            n2 += w_remote as u32;
        }
        assert_eq!((here, n2), (5, 5));
    }

    #[test]
    fn cursors_are_per_channel_and_group() {
        let remote = vec![("n2".to_string(), interest(0, &[("w", 1)]))];
        let local = interest(0, &[("w", 1)]);
        let mut cursors = Cursors::default();
        let a = route("n1", "a", &local, &remote, &mut cursors);
        let b = route("n1", "b", &local, &remote, &mut cursors);
        assert_eq!(a, b, "another channel starts its own rotation");
    }

    #[test]
    fn no_interest_no_route() {
        let r = route(
            "n1",
            "c",
            &Interest::default(),
            &[],
            &mut Cursors::default(),
        );
        assert_eq!(r, Route::default());
    }

    #[test]
    fn reroute_finds_another_node_and_gives_up_after_max_hops() {
        let remote = vec![
            ("n2".to_string(), interest(1, &[])),
            ("n3".to_string(), interest(0, &[("w", 1)])),
        ];
        assert_eq!(reroute_target(&remote, "w", 0), Some("n3".to_string()));
        assert_eq!(reroute_target(&remote, "w", MAX_HOPS), None);
        assert_eq!(reroute_target(&remote, "x", 0), None);
    }
}
