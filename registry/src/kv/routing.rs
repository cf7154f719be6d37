//! Where a client request goes: which requests need the leader, which node to try next, and
//! what an error from the node tried means (follow the leader it names, try again elsewhere,
//! or give up). Pure decisions; [`super::Kv::exec`] does the I/O.

use std::time::Duration;

use super::{net::CallFail, request::Request, KvError};

/// Shortest time a forwarded request is given for its answer.
const MIN_FORWARD_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a request must be served by the leader (writes, membership and lease operations,
/// linearizable reads); the others can be served by any node holding a replica.
pub(crate) fn needs_leader(req: &Request) -> bool {
    matches!(
        req,
        Request::Write { .. }
            | Request::Join { .. }
            | Request::Members(_)
            | Request::Lease(_)
            | Request::Query {
                linearizable: true,
                ..
            }
            | Request::Get {
                linearizable: true,
                ..
            }
            | Request::Range {
                linearizable: true,
                ..
            }
    )
}

/// What a node knows when it picks where to send a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// This node's name.
    pub me: String,
    /// Whether this node holds a replica (is in the membership it replicated).
    pub member: bool,
    /// Whether this node is a voter.
    pub voter: bool,
    /// The leader's name, when this node knows it.
    pub leader: Option<String>,
    /// The last node that served a leader-only request.
    pub hint: Option<String>,
    /// The store's voters, then the live members gossip tells of (any order, repeats allowed).
    pub others: Vec<String>,
}

/// Where to send a request: this node when it can serve it, else the leader it knows of, the
/// last leader that answered (unless that is the node that just `failed`), or the member after
/// `failed` in name order (this node itself when it knows of no other).
pub(crate) fn choose_target(view: View, needs_leader: bool, failed: Option<&str>) -> String {
    if !needs_leader && view.member {
        return view.me;
    }
    if let Some(l) = view.leader {
        return l;
    }
    if needs_leader && view.voter {
        // An election is under way: serving here answers "not the leader" with a hint.
        return view.me;
    }
    if let Some(h) = view.hint {
        if Some(h.as_str()) != failed {
            return h;
        }
    }
    let me = view.me;
    let mut others: Vec<String> = view.others.into_iter().filter(|n| *n != me).collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        return me;
    }
    let pos = failed
        .and_then(|f| others.iter().position(|v| v == f))
        .map(|i| (i + 1) % others.len())
        .unwrap_or(0);
    others.swap_remove(pos)
}

/// What to do after a request failed at a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Fail with this error (not one that another node could answer differently).
    GiveUp(KvError),
    /// The op timeout passed while no node would lead: fail with "no quorum".
    NoLeader,
    /// Try the leader the node named, at once.
    Redirect(String),
    /// Wait a little and pick a node again.
    Retry,
}

/// What to do after `err` from `target` at the `attempt`th try (1 on the first), once the op
/// timeout has `expired` or not. A leader hint is followed at once, except every fourth try
/// (two nodes naming each other must not loop without a pause).
pub(crate) fn after_error(err: KvError, target: &str, attempt: usize, expired: bool) -> Step {
    let hop = match &err {
        KvError::NotLeader { leader: Some(l) } if l != target => Some(l.clone()),
        KvError::NotLeader { .. } | KvError::Unavailable(_) => None,
        _ => return Step::GiveUp(err),
    };
    if expired {
        return match err {
            KvError::NotLeader { .. } => Step::NoLeader,
            e => Step::GiveUp(e),
        };
    }
    match hop {
        Some(l) if !attempt.is_multiple_of(4) => Step::Redirect(l),
        _ => Step::Retry,
    }
}

/// How long a forwarded request may wait for its answer: the time `left` before the op
/// timeout, plus the time a watch poll may `wait` at the other end, at least
/// [`MIN_FORWARD_TIMEOUT`].
pub(crate) fn forward_timeout(left: Duration, wait: Duration) -> Duration {
    (left + wait).max(MIN_FORWARD_TIMEOUT)
}

/// The error of a forwarded request that got no (readable) answer from `target`: the request
/// may be tried elsewhere.
pub(crate) fn call_error(target: &str, fail: CallFail) -> KvError {
    match fail {
        CallFail::Unreachable(m) | CallFail::NoAnswer(m) => KvError::Unavailable(m),
        CallFail::Garbled(m) => {
            KvError::Unavailable(format!("unreadable answer from node '{target}': {m}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{request::LeaseOp, Command};

    fn view() -> View {
        View {
            me: "n1".into(),
            ..View::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writes_leases_and_linearizable_reads_need_the_leader() {
        let write = Request::Write {
            id: None,
            cmd: Command::Delete { key: "k".into() },
        };
        assert!(needs_leader(&write));
        assert!(needs_leader(&Request::Lease(LeaseOp::Renew { id: 1 })));
        for linearizable in [true, false] {
            let get = Request::Get {
                key: "k".into(),
                linearizable,
            };
            let range = Request::Range {
                prefix: "k".into(),
                linearizable,
                limit: 1,
            };
            assert_eq!(needs_leader(&get), linearizable);
            assert_eq!(needs_leader(&range), linearizable);
        }
    }

    #[test]
    fn status_and_watches_do_not_need_the_leader() {
        assert!(!needs_leader(&Request::Status));
        assert!(!needs_leader(&Request::Watch {
            prefix: "".into(),
            from: 0,
            wait_ms: 0
        }));
    }

    #[test]
    fn a_member_serves_a_follower_read_itself_even_knowing_the_leader() {
        let v = View {
            member: true,
            leader: Some("n2".into()),
            ..view()
        };
        assert_eq!(choose_target(v, false, None), "n1");
    }

    #[test]
    fn a_leader_only_request_goes_to_the_known_leader() {
        let v = View {
            member: true,
            voter: true,
            leader: Some("n2".into()),
            hint: Some("n3".into()),
            ..view()
        };
        assert_eq!(choose_target(v, true, None), "n2");
    }

    #[test]
    fn a_non_member_sends_even_a_follower_read_to_the_leader() {
        let v = View {
            leader: Some("n2".into()),
            ..view()
        };
        assert_eq!(choose_target(v, false, None), "n2");
    }

    #[test]
    fn a_voter_without_a_leader_serves_a_leader_request_itself() {
        let v = View {
            member: true,
            voter: true,
            hint: Some("n3".into()),
            others: strings(&["n2"]),
            ..view()
        };
        assert_eq!(choose_target(v, true, None), "n1");
    }

    #[test]
    fn the_last_leader_is_tried_unless_it_just_failed() {
        let v = View {
            hint: Some("n3".into()),
            others: strings(&["n2", "n3", "n4"]),
            ..view()
        };
        assert_eq!(choose_target(v.clone(), true, None), "n3");
        assert_eq!(choose_target(v, true, Some("n3")), "n4");
    }

    #[test]
    fn members_are_tried_in_name_order_after_the_one_that_failed_wrapping_around() {
        let v = View {
            others: strings(&["n4", "n2", "n1", "n3", "n2"]),
            ..view()
        };
        assert_eq!(choose_target(v.clone(), true, None), "n2");
        assert_eq!(choose_target(v.clone(), true, Some("n2")), "n3");
        assert_eq!(choose_target(v.clone(), true, Some("n4")), "n2");
        // A node that is not a member any more: start again from the first.
        assert_eq!(choose_target(v, true, Some("n9")), "n2");
    }

    #[test]
    fn with_no_other_member_the_request_stays_here() {
        let v = View {
            others: strings(&["n1"]),
            ..view()
        };
        assert_eq!(choose_target(v, true, Some("n1")), "n1");
        assert_eq!(choose_target(view(), true, None), "n1");
    }

    #[test]
    fn a_named_leader_is_followed_at_once() {
        let e = KvError::NotLeader {
            leader: Some("n2".into()),
        };
        assert_eq!(after_error(e, "n1", 1, false), Step::Redirect("n2".into()));
    }

    #[test]
    fn every_fourth_try_pauses_instead_of_following_the_hint() {
        let e = KvError::NotLeader {
            leader: Some("n2".into()),
        };
        assert_eq!(
            after_error(e.clone(), "n1", 3, false),
            Step::Redirect("n2".into())
        );
        assert_eq!(after_error(e.clone(), "n1", 4, false), Step::Retry);
        assert_eq!(after_error(e, "n1", 5, false), Step::Redirect("n2".into()));
    }

    #[test]
    fn a_node_naming_itself_leader_or_no_one_means_retry() {
        let itself = KvError::NotLeader {
            leader: Some("n1".into()),
        };
        assert_eq!(after_error(itself, "n1", 1, false), Step::Retry);
        let nobody = KvError::NotLeader { leader: None };
        assert_eq!(after_error(nobody, "n1", 1, false), Step::Retry);
        let down = KvError::Unavailable("no session".into());
        assert_eq!(after_error(down, "n1", 1, false), Step::Retry);
    }

    #[test]
    fn other_errors_are_the_answer_at_once() {
        let e = KvError::NotFound("k".into());
        assert_eq!(after_error(e.clone(), "n1", 1, false), Step::GiveUp(e));
        let e = KvError::NoQuorum("late".into());
        assert_eq!(after_error(e.clone(), "n1", 1, true), Step::GiveUp(e));
    }

    #[test]
    fn past_the_deadline_no_leader_is_no_quorum_and_unavailable_is_kept() {
        let e = KvError::NotLeader {
            leader: Some("n2".into()),
        };
        assert_eq!(after_error(e, "n1", 1, true), Step::NoLeader);
        let e = KvError::Unavailable("no session".into());
        assert_eq!(after_error(e.clone(), "n1", 1, true), Step::GiveUp(e));
    }

    #[test]
    fn a_forwarded_request_waits_its_time_left_plus_the_watch_wait_at_least_half_a_second() {
        let ms = Duration::from_millis;
        assert_eq!(forward_timeout(ms(2000), ms(0)), ms(2000));
        assert_eq!(forward_timeout(ms(2000), ms(10_000)), ms(12_000));
        assert_eq!(forward_timeout(ms(0), ms(0)), ms(500));
        assert_eq!(forward_timeout(ms(499), ms(0)), ms(500));
        assert_eq!(forward_timeout(ms(501), ms(0)), ms(501));
    }

    #[test]
    fn failed_calls_become_unavailable_naming_the_node_when_garbled() {
        assert_eq!(
            call_error("n2", CallFail::NoAnswer("late".into())),
            KvError::Unavailable("late".into())
        );
        assert_eq!(
            call_error("n2", CallFail::Unreachable("gone".into())),
            KvError::Unavailable("gone".into())
        );
        assert_eq!(
            call_error("n2", CallFail::Garbled("eof".into())),
            KvError::Unavailable("unreadable answer from node 'n2': eof".into())
        );
    }
}
