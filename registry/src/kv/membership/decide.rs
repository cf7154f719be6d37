//! The pure decisions of membership: whether a voter set keeps a live quorum, how many voters
//! to have, and whether a node without a store adopts one, bootstraps one or waits.

use std::{collections::BTreeSet, time::Duration};

use super::Advert;

/// Refuse a voter set without a live majority: `healthy` are the nodes that are up (and, for
/// new voters, caught up).
pub(crate) fn check_quorum(
    new_voters: &BTreeSet<String>,
    healthy: &BTreeSet<String>,
) -> Result<(), String> {
    if new_voters.is_empty() {
        return Err("the store needs at least one voter".into());
    }
    let up: Vec<&String> = new_voters.intersection(healthy).collect();
    let need = new_voters.len() / 2 + 1;
    if up.len() < need {
        let down: Vec<&String> = new_voters.difference(healthy).collect();
        return Err(format!(
            "it would lose the quorum: of the new voters {:?}, {} are up and caught up ({:?}), {need} are needed (down or behind: {:?})",
            new_voters, up.len(), up, down
        ));
    }
    Ok(())
}

/// How many voters to have: at most `target`, never more than the candidates allow, and odd.
pub(crate) fn wanted_voters(voters: usize, eligible: usize, target: usize) -> usize {
    let can = (voters + eligible).min(target.max(1));
    let odd = if can.is_multiple_of(2) { can - 1 } else { can };
    odd.max(voters.min(target.max(1)))
}

/// The bootstrap decision of a node without a store, from what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Join this store (the only one gossiped).
    Adopt(String),
    /// Several stores are gossiped: do nothing, say so.
    Conflict(Vec<String>),
    /// Create the store now.
    Bootstrap,
    /// Wait.
    Wait,
}

/// `me` with `my_expect`, seeing the adverts of the other live nodes, with a view unchanged for
/// `stable` (compared with `settle`).
pub(crate) fn decide(
    me: &str,
    my_expect: usize,
    others: &[(String, Advert)],
    stable: Duration,
    settle: Duration,
) -> Decision {
    let stores: BTreeSet<String> = others.iter().filter_map(|(_, a)| a.store.clone()).collect();
    match stores.len() {
        0 => {}
        1 => return Decision::Adopt(stores.into_iter().next().unwrap_or_default()),
        _ => return Decision::Conflict(stores.into_iter().collect()),
    }
    if my_expect == 0 || others.len() + 1 < my_expect || stable < settle {
        return Decision::Wait;
    }
    let smallest = others
        .iter()
        .filter(|(_, a)| a.expect > 0)
        .map(|(n, _)| n.as_str())
        .chain(std::iter::once(me))
        .min();
    if smallest == Some(me) {
        Decision::Bootstrap
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ad(store: Option<&str>, expect: usize) -> Advert {
        Advert {
            store: store.map(str::to_string),
            member: store.is_some(),
            learner_only: false,
            expect,
        }
    }

    #[test]
    fn quorum_needs_a_live_majority_of_the_new_voters() {
        assert!(check_quorum(&set(&["a", "b", "c"]), &set(&["a", "b"])).is_ok());
        let e = check_quorum(&set(&["a", "b"]), &set(&["a"])).unwrap_err();
        assert!(e.contains("lose the quorum"), "{e}");
        assert!(check_quorum(&set(&[]), &set(&["a"])).is_err());
        assert!(check_quorum(&set(&["a"]), &set(&["a"])).is_ok());
        assert!(check_quorum(&set(&["a", "b", "c", "d"]), &set(&["a", "b"])).is_err());
    }

    #[test]
    fn wanted_voters_is_odd_and_bounded() {
        assert_eq!(wanted_voters(1, 0, 3), 1);
        assert_eq!(wanted_voters(1, 1, 3), 1);
        assert_eq!(wanted_voters(1, 2, 3), 3);
        assert_eq!(wanted_voters(1, 5, 3), 3);
        assert_eq!(wanted_voters(2, 0, 3), 2);
        assert_eq!(wanted_voters(2, 1, 3), 3);
        assert_eq!(wanted_voters(3, 4, 5), 5);
        assert_eq!(wanted_voters(3, 1, 5), 3);
        assert_eq!(wanted_voters(3, 2, 3), 3);
    }

    #[test]
    fn a_gossiped_store_is_joined_never_duplicated() {
        let others = vec![("b".to_string(), ad(Some("s1"), 0))];
        let d = decide("a", 1, &others, Duration::from_secs(9), Duration::ZERO);
        assert_eq!(d, Decision::Adopt("s1".into()));
    }

    #[test]
    fn two_gossiped_stores_are_a_conflict() {
        let others = vec![
            ("b".to_string(), ad(Some("s1"), 0)),
            ("c".to_string(), ad(Some("s2"), 0)),
        ];
        let d = decide("a", 1, &others, Duration::from_secs(9), Duration::ZERO);
        assert!(matches!(d, Decision::Conflict(_)));
    }

    #[test]
    fn bootstrap_waits_for_expect_nodes_and_the_smallest_name() {
        let others = vec![("b".to_string(), ad(None, 3))];
        let s = Duration::from_secs(5);
        assert_eq!(decide("a", 3, &others, s, Duration::ZERO), Decision::Wait);
        let others = vec![
            ("b".to_string(), ad(None, 3)),
            ("c".to_string(), ad(None, 3)),
        ];
        assert_eq!(
            decide("a", 3, &others, s, Duration::ZERO),
            Decision::Bootstrap
        );
        assert_eq!(
            decide(
                "b",
                3,
                &[("a".into(), ad(None, 3)), ("c".into(), ad(None, 3))],
                s,
                Duration::ZERO
            ),
            Decision::Wait
        );
        // Not before the view settled.
        assert_eq!(decide("a", 3, &others, Duration::ZERO, s), Decision::Wait);
        // A join-only node (expect 0) neither bootstraps nor counts as the bootstrapper.
        assert_eq!(decide("a", 0, &others, s, Duration::ZERO), Decision::Wait);
        let others = vec![("a".to_string(), ad(None, 0))];
        assert_eq!(
            decide("b", 1, &others, s, Duration::ZERO),
            Decision::Bootstrap
        );
    }
}
