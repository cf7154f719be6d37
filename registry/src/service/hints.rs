//! The registry's fast path: a change pushed straight to the other nodes, ahead of gossip.
//!
//! Gossip carries every instance (the node's own gossip state is the truth, and anti-entropy
//! repairs anything a push missed), but a gossip round every 200 ms plus its fan-out puts a
//! registration 200-400 ms away from the other nodes. So the node where an instance is
//! registered, deregistered or changed also sends the change as a [`Hint`] over the message lane
//! to every other node's registry. A receiving node lays its pending hints over its gossip view:
//!
//! * a hint is dropped as soon as gossip agrees with it (the same instance, or its absence);
//! * a hint whose origin node is no longer live is dropped (its instances go with the node);
//! * a hint older than [`HINT_TTL`] is dropped: gossip wins, whatever it says;
//! * a newer hint for the same instance replaces an older one (a node's hints travel in order
//!   on its lane).
//!
//! Pure logic, no I/O: the registry actor feeds it hints and gossip views.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::model::Instance;

/// How long a hint may stand against gossip before gossip wins.
pub(crate) const HINT_TTL: Duration = Duration::from_secs(5);

/// A change of one instance, sent by the node it is registered on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hint {
    /// The node that made the change (the instance's node).
    pub origin: String,
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// The instance's JSON as stored in gossip, or `None` when it was deregistered.
    pub instance: Option<String>,
}

type Key = (String, String);

struct Pending {
    origin: String,
    instance: Option<Instance>,
    at: Instant,
}

/// Hints received and not yet confirmed by gossip.
#[derive(Default)]
pub(crate) struct Hints {
    pending: BTreeMap<Key, Pending>,
}

impl Hints {
    /// Record a hint received at `now`; a malformed one is refused with the reason.
    pub(crate) fn record(&mut self, hint: Hint, now: Instant) -> Result<(), String> {
        let instance = match &hint.instance {
            None => None,
            Some(json) => {
                let i: Instance = serde_json::from_str(json)
                    .map_err(|e| format!("malformed instance in a registry hint: {e}"))?;
                if i.node != hint.origin || i.service != hint.service || i.id != hint.id {
                    return Err(format!(
                        "a registry hint from '{}' names instance '{}/{}' of node '{}'",
                        hint.origin, i.service, i.id, i.node
                    ));
                }
                Some(i)
            }
        };
        self.pending.insert(
            (hint.service, hint.id),
            Pending {
                origin: hint.origin,
                instance,
                at: now,
            },
        );
        Ok(())
    }

    /// Whether any hint is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Lay the pending hints over `view` (gossip's instances of live nodes), dropping the ones
    /// gossip confirmed, the ones of nodes that are not live, and the expired ones.
    pub(crate) fn overlay(
        &mut self,
        view: &mut BTreeMap<Key, Instance>,
        live: impl Fn(&str) -> bool,
        now: Instant,
    ) {
        self.pending.retain(|k, p| {
            let confirmed = view.get(k) == p.instance.as_ref();
            let keep = !confirmed && live(&p.origin) && now.duration_since(p.at) < HINT_TTL;
            if keep {
                match &p.instance {
                    Some(i) => {
                        view.insert(k.clone(), i.clone());
                    }
                    None => {
                        // Only the instance's own node can take it away.
                        if view.get(k).is_some_and(|i| i.node == p.origin) {
                            view.remove(k);
                        }
                    }
                }
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Health, Registration};

    fn instance(node: &str, id: &str, addr: &str) -> Instance {
        Registration::new("web", addr)
            .id(id)
            .into_instance(node)
            .expect("valid registration")
    }

    fn hint(i: &Instance) -> Hint {
        Hint {
            origin: i.node.clone(),
            service: i.service.clone(),
            id: i.id.clone(),
            instance: Some(serde_json::to_string(i).expect("json")),
        }
    }

    fn gone(i: &Instance) -> Hint {
        Hint {
            instance: None,
            ..hint(i)
        }
    }

    fn key(i: &Instance) -> Key {
        (i.service.clone(), i.id.clone())
    }

    #[test]
    fn a_hint_shows_before_gossip_and_goes_once_gossip_agrees() {
        let t0 = Instant::now();
        let a = instance("n1", "a", "127.0.0.1:1");
        let mut hints = Hints::default();
        hints.record(hint(&a), t0).expect("valid hint");

        let mut view = BTreeMap::new();
        hints.overlay(&mut view, |_| true, t0);
        assert_eq!(view.get(&key(&a)), Some(&a), "shown ahead of gossip");
        assert!(!hints.is_empty());

        let mut gossip = BTreeMap::from([(key(&a), a.clone())]);
        hints.overlay(&mut gossip, |_| true, t0);
        assert!(hints.is_empty(), "confirmed by gossip, so dropped");
        assert_eq!(gossip.get(&key(&a)), Some(&a));
    }

    #[test]
    fn a_deregistration_hides_the_instance_until_gossip_drops_it() {
        let t0 = Instant::now();
        let a = instance("n1", "a", "127.0.0.1:1");
        let mut hints = Hints::default();
        hints.record(gone(&a), t0).expect("valid hint");

        let mut view = BTreeMap::from([(key(&a), a.clone())]);
        hints.overlay(&mut view, |_| true, t0);
        assert!(view.is_empty(), "hidden ahead of gossip");

        let mut view = BTreeMap::new();
        hints.overlay(&mut view, |_| true, t0);
        assert!(hints.is_empty(), "gossip agrees: gone");
    }

    #[test]
    fn the_latest_hint_wins_and_a_changed_instance_replaces_the_gossip_one() {
        let t0 = Instant::now();
        let a = instance("n1", "a", "127.0.0.1:1");
        let mut a2 = a.clone();
        a2.health = Health::Critical;
        let mut hints = Hints::default();
        hints.record(gone(&a), t0).expect("valid");
        hints.record(hint(&a2), t0).expect("valid");

        let mut view = BTreeMap::from([(key(&a), a.clone())]);
        hints.overlay(&mut view, |_| true, t0);
        assert_eq!(view.get(&key(&a)), Some(&a2));
    }

    #[test]
    fn hints_of_a_dead_node_and_expired_hints_are_dropped() {
        let t0 = Instant::now();
        let a = instance("n1", "a", "127.0.0.1:1");
        let b = instance("n2", "b", "127.0.0.1:2");
        let mut hints = Hints::default();
        hints.record(hint(&a), t0).expect("valid");
        hints.record(hint(&b), t0).expect("valid");

        let mut view = BTreeMap::new();
        hints.overlay(&mut view, |n| n != "n1", t0);
        assert_eq!(view.len(), 1, "n1 is dead: its hint is gone");
        assert!(view.contains_key(&key(&b)));

        let mut view = BTreeMap::new();
        hints.overlay(&mut view, |_| true, t0 + HINT_TTL);
        assert!(view.is_empty(), "expired: gossip wins");
        assert!(hints.is_empty());
    }

    #[test]
    fn a_hint_cannot_remove_or_forge_another_nodes_instance() {
        let t0 = Instant::now();
        let b = instance("n2", "b", "127.0.0.1:2");
        let mut forged = gone(&b);
        forged.origin = "n1".into();
        let mut hints = Hints::default();
        hints.record(forged, t0).expect("well formed");
        let mut view = BTreeMap::from([(key(&b), b.clone())]);
        hints.overlay(&mut view, |_| true, t0);
        assert_eq!(view.get(&key(&b)), Some(&b), "only n2 can deregister b");

        let mut claim = hint(&b);
        claim.origin = "n1".into();
        let err = hints.record(claim, t0).expect_err("n1 cannot speak for n2");
        assert!(err.contains("names instance 'web/b' of node 'n2'"), "{err}");
        let bad = Hint {
            instance: Some("{".into()),
            ..hint(&b)
        };
        let err = hints.record(bad, t0).expect_err("malformed");
        assert!(err.starts_with("malformed instance"), "{err}");
    }
}
