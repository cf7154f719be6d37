//! The name directory's pure core: which node owns a name, the entries a node owns, and the
//! node's own named actors.
//!
//! A named user actor is *not* replicated to every node. Its entry (`name -> node, pid`) lives
//! on one node, the name's **owner**, chosen by rendezvous hashing over the live members (as
//! Orleans' grain directory is partitioned): every node computes the same owner from the same
//! member list, and when a member joins or leaves only the names it owned (or now owns) move.
//! A node keeps
//!
//! - [`LocalNames`]: its own named actors (authoritative; what it publishes), and
//! - [`Shard`]: the entries it owns, for actors on any node (tens of bytes each).
//!
//! So another node's cost for a remote named actor is one entry on one node; anonymous actors
//! cost other nodes nothing. The I/O (publishing to owners, answering lookups) is in
//! `directory_service.rs`.

use std::{
    collections::HashMap,
    hash::Hasher,
    sync::{Arc, Mutex},
};

use fnv::FnvHasher;

/// How many nodes hold each name's entry: a lookup still answers, and says where the actor
/// lived, when one of them (the actor's own node, say) is lost.
pub(crate) const REPLICAS: usize = 2;

/// The node among `nodes` with the highest rendezvous score for `name` (the first of
/// [`owners`]).
///
/// Every node computes the same owner from the same set of names, whatever their order.
#[cfg(test)]
fn owner<'a, I>(name: &str, nodes: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    nodes
        .into_iter()
        .max_by_key(|node| (score(node, name), *node))
}

/// The [`REPLICAS`] nodes among `nodes` that hold `name`'s entry, best first (fewer when there
/// are fewer nodes); the first is the one with the highest rendezvous score.
pub(crate) fn owners<'a, I>(name: &str, nodes: I) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut scored: Vec<(u64, &str)> = nodes.into_iter().map(|n| (score(n, name), n)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(REPLICAS).map(|(_, n)| n).collect()
}

/// The rendezvous score of `name` on `node`: FNV-1a of both, mixed (FNV alone clusters).
fn score(node: &str, name: &str) -> u64 {
    let mut h = FnvHasher::default();
    h.write(node.as_bytes());
    h.write_u8(0xff);
    h.write(name.as_bytes());
    mix(h.finish())
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where a named actor runs, as its owner answers a lookup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Location {
    /// The node it runs on.
    pub node: String,
    /// Its pid there.
    pub pid: u64,
    /// Whether it takes [`crate::JsonMsg`].
    pub json: bool,
    /// The node was declared dead after the actor registered (it is not reachable).
    #[serde(default)]
    pub node_dead: bool,
}

/// One owned entry: 16 bytes beside its name.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index into [`Shard::nodes`].
    node: u32,
    json: bool,
    pid: u64,
}

#[derive(Debug)]
struct NodeSlot {
    name: Arc<str>,
    dead: bool,
}

/// The entries a node owns, for actors on any node.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    nodes: Vec<NodeSlot>,
    entries: HashMap<Box<str>, Entry>,
}

impl Shard {
    fn slot(&mut self, node: &str) -> u32 {
        if let Some(i) = self.nodes.iter().position(|s| &*s.name == node) {
            return i as u32;
        }
        self.nodes.push(NodeSlot {
            name: node.into(),
            dead: false,
        });
        (self.nodes.len() - 1) as u32
    }

    /// `node` registered `name` as its actor `pid` (a later registration of the name wins).
    /// The first registration from a node that was dead forgets what it had before (it
    /// restarted: those pids are gone).
    pub(crate) fn put(&mut self, node: &str, name: &str, pid: u64, json: bool) {
        let i = self.slot(node);
        if self.nodes[i as usize].dead {
            self.node_back(node);
        }
        self.entries
            .insert(name.into(), Entry { node: i, json, pid });
    }

    /// `node`'s actor `pid` named `name` stopped (a newer registration of the name stays).
    pub(crate) fn remove(&mut self, node: &str, name: &str, pid: u64) {
        let Some(i) = self.nodes.iter().position(|s| &*s.name == node) else {
            return;
        };
        if self
            .entries
            .get(name)
            .is_some_and(|e| e.node as usize == i && e.pid == pid)
        {
            self.entries.remove(name);
        }
    }

    /// Where `name` runs, if this shard knows.
    pub(crate) fn get(&self, name: &str) -> Option<Location> {
        let e = self.entries.get(name)?;
        let slot = &self.nodes[e.node as usize];
        Some(Location {
            node: slot.name.to_string(),
            pid: e.pid,
            json: e.json,
            node_dead: slot.dead,
        })
    }

    /// `node` was declared dead: its entries stay (a lookup says where the actor lived) until
    /// it comes back.
    pub(crate) fn node_dead(&mut self, node: &str) {
        if let Some(s) = self.nodes.iter_mut().find(|s| &*s.name == node) {
            s.dead = true;
        }
    }

    /// `node` is alive again after it was dead: it restarted, so what it had is gone.
    pub(crate) fn node_back(&mut self, node: &str) {
        let Some(i) = self.nodes.iter().position(|s| &*s.name == node) else {
            return;
        };
        if !self.nodes[i].dead {
            return;
        }
        self.nodes[i].dead = false;
        self.entries.retain(|_, e| e.node as usize != i);
    }

    /// Drop the entries this node no longer owns (after a membership change moved them).
    pub(crate) fn retain_owned(&mut self, mut owned: impl FnMut(&str) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|name, _| owned(name));
        before - self.entries.len()
    }

    /// How many entries this shard holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A change to a node's own named actors, queued for the owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Put { name: String, pid: u64, json: bool },
    Remove { name: String, pid: u64 },
}

/// A node's own named actors and the changes not yet sent to their owners.
#[derive(Debug, Default)]
pub(crate) struct LocalNames {
    inner: Mutex<Local>,
    /// Woken when a change is queued.
    pub(crate) changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Local {
    names: HashMap<String, (u64, bool)>,
    pending: Vec<Change>,
}

/// The pids of every node's named actors in this process (pids are process-wide in ractor,
/// like its registries): the lane delivers only to published actors.
static PUBLISHED: std::sync::LazyLock<Mutex<std::collections::HashSet<u64>>> =
    std::sync::LazyLock::new(Mutex::default);

/// Whether `pid` is a named actor published in the directory by a node of this process.
pub(crate) fn is_published(pid: u64) -> bool {
    PUBLISHED.lock().is_ok_and(|p| p.contains(&pid))
}

impl LocalNames {
    /// The actor `pid` runs under `name` on this node.
    pub(crate) fn put(&self, name: &str, pid: u64, json: bool) {
        if let Ok(mut p) = PUBLISHED.lock() {
            p.insert(pid);
        }
        if let Ok(mut l) = self.inner.lock() {
            l.names.insert(name.to_string(), (pid, json));
            l.pending.push(Change::Put {
                name: name.to_string(),
                pid,
                json,
            });
        }
        self.changed.notify_one();
    }

    /// The actor `pid` named `name` stopped (a newer actor under the name stays).
    pub(crate) fn remove(&self, name: &str, pid: u64) {
        if let Ok(mut p) = PUBLISHED.lock() {
            p.remove(&pid);
        }
        if let Ok(mut l) = self.inner.lock() {
            if l.names.get(name).is_some_and(|(p, _)| *p == pid) {
                l.names.remove(name);
            }
            l.pending.push(Change::Remove {
                name: name.to_string(),
                pid,
            });
        }
        self.changed.notify_one();
    }

    /// The changes queued since the last call.
    pub(crate) fn take_pending(&self) -> Vec<Change> {
        self.inner
            .lock()
            .map(|mut l| std::mem::take(&mut l.pending))
            .unwrap_or_default()
    }

    /// Every named actor of this node, as registrations (to republish after the owners moved).
    pub(crate) fn all(&self) -> Vec<Change> {
        self.inner
            .lock()
            .map(|l| {
                l.names
                    .iter()
                    .map(|(name, (pid, json))| Change::Put {
                        name: name.clone(),
                        pid: *pid,
                        json: *json,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many named actors this node has.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|l| l.names.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_computes_the_same_owner_whatever_the_order() {
        let a = ["n1", "n2", "n3"];
        let b = ["n3", "n1", "n2"];
        for i in 0..1000 {
            let name = format!("actor-{i}");
            assert_eq!(owner(&name, a), owner(&name, b));
        }
        assert_eq!(owner("x", std::iter::empty::<&str>()), None);
    }

    #[test]
    fn the_first_of_the_owners_is_the_owner_and_there_are_two_when_there_can_be() {
        let nodes = ["n1", "n2", "n3", "n4"];
        for i in 0..500 {
            let name = format!("a{i}");
            let o = owners(&name, nodes);
            assert_eq!(o.len(), REPLICAS);
            assert_ne!(o[0], o[1]);
            assert_eq!(Some(o[0]), owner(&name, nodes));
        }
        assert_eq!(owners("a", ["n1"]), vec!["n1"]);
        // losing one of a name's owners leaves the other among the new owners
        for i in 0..500 {
            let name = format!("b{i}");
            let o = owners(&name, nodes);
            let rest: Vec<&str> = nodes.iter().copied().filter(|n| *n != o[0]).collect();
            assert!(owners(&name, rest.iter().copied()).contains(&o[1]));
        }
    }

    #[test]
    fn names_spread_over_the_nodes_and_a_new_node_takes_only_its_share() {
        let three = ["n1", "n2", "n3"];
        let four = ["n1", "n2", "n3", "n4"];
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        let mut moved = 0;
        for i in 0..30_000 {
            let name = format!("echo-{i}");
            let before = owner(&name, three).unwrap();
            *per_node.entry(before).or_default() += 1;
            let after = owner(&name, four).unwrap();
            if after != before {
                assert_eq!(after, "n4", "a name moved between old nodes");
                moved += 1;
            }
        }
        for n in three {
            let share = per_node[n];
            assert!(
                (9_000..=11_000).contains(&share),
                "{n} owns {share} of 30000"
            );
        }
        assert!(
            (6_500..=8_500).contains(&moved),
            "{moved} of 30000 moved to n4"
        );
    }

    #[test]
    fn a_shard_answers_forgets_stopped_actors_and_keeps_the_newer_one() {
        let mut s = Shard::default();
        s.put("n2", "a", 7, true);
        assert_eq!(
            s.get("a"),
            Some(Location {
                node: "n2".into(),
                pid: 7,
                json: true,
                node_dead: false
            })
        );
        // restarted under the same name, then the old incarnation's removal arrives
        s.put("n2", "a", 9, true);
        s.remove("n2", "a", 7);
        assert_eq!(s.get("a").map(|l| l.pid), Some(9));
        s.remove("n2", "a", 9);
        assert_eq!(s.get("a"), None);
    }

    #[test]
    fn a_dead_nodes_entries_say_so_until_it_comes_back() {
        let mut s = Shard::default();
        s.put("n2", "a", 7, false);
        s.put("n3", "b", 8, false);
        s.node_dead("n2");
        assert!(s.get("a").is_some_and(|l| l.node_dead));
        assert!(s.get("b").is_some_and(|l| !l.node_dead));
        // n2 restarted: its first registration forgets the old pids
        s.put("n2", "c", 1, false);
        assert_eq!(s.get("a"), None);
        assert!(s.get("c").is_some_and(|l| !l.node_dead));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn local_names_queue_changes_and_know_their_pids() {
        // pids no real actor of this test process has
        let (one, two) = (u64::MAX - 1, u64::MAX - 2);
        let l = LocalNames::default();
        l.put("a", one, true);
        l.put("a", two, true);
        l.remove("a", one);
        assert!(is_published(two) && !is_published(one));
        assert_eq!(l.len(), 1);
        assert_eq!(l.take_pending().len(), 3);
        assert!(l.take_pending().is_empty());
        assert_eq!(l.all().len(), 1);
        l.remove("a", two);
        assert_eq!(l.len(), 0);
        assert!(!is_published(two));
    }
}
