//! The lock checker (`kv-lock`): mutual exclusion of what holders may safely believe.
//!
//! A client holds the lock from its `acquire`'s `ok` until the earlier of its `release`'s
//! invocation and its lease's last confirmed renewal plus the TTL (the `acquire`'s invocation,
//! which precedes the lease grant, counts as the first renewal; a `renew` counts from its
//! invocation, when it was `ok`). The store promises a lease lives at least a TTL after each
//! renewal it acknowledged, so two such intervals of different holders must never overlap; an
//! overlap is a `double-holder`. An `acquire` that failed or is `info` holds nothing (an `info`
//! client never counts on the lock). A holder whose renewal is `info` goes on as a new process
//! that releases the lease: that release ends the hold too.

use super::Report;
use crate::history::{pair, Completed, Op, OpType, Process};

/// One holder's safe interval, in history time.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The client process.
    pub process: Process,
    /// The lock value it wrote.
    pub owner: String,
    /// From the acquire's completion.
    pub start: u64,
    /// Until the release's invocation or the lease's last confirmed renewal + TTL.
    pub end: u64,
    /// History indexes of its acquire and release (or last renewal).
    pub indexes: Vec<usize>,
}

fn lease_of(c: &Completed) -> Option<u64> {
    c.invoke_value["lease"]
        .as_u64()
        .or_else(|| c.value["lease"].as_u64())
}

/// The holds in a history.
pub fn holds(ops: &[Op]) -> Vec<Hold> {
    let done = pair(ops);
    let mut out = Vec::new();
    for (i, a) in done.iter().enumerate() {
        if a.f != "acquire" || a.kind != OpType::Ok {
            continue;
        }
        let (Some(lease), Some(ttl)) =
            (a.value["lease"].as_u64(), a.invoke_value["ttl_ms"].as_u64())
        else {
            continue;
        };
        let ttl = ttl.saturating_mul(1_000_000);
        let owner = a.value["owner"].as_str().unwrap_or("").to_string();
        let mut confirmed = a.invoke_time;
        let mut end = None;
        let mut last_index = a.index;
        for c in done[i + 1..].iter().filter(|c| c.process == a.process) {
            if lease_of(c) != Some(lease) {
                break;
            }
            match c.f.as_str() {
                "renew" if c.kind == OpType::Ok => {
                    confirmed = confirmed.max(c.invoke_time);
                    last_index = c.index;
                }
                "renew" => {}
                "release" => {
                    end = Some(c.invoke_time);
                    last_index = c.index;
                    break;
                }
                _ => break,
            }
        }
        // A renewal whose outcome is unknown (`info`) makes the client go on as a new process
        // (Jepsen's rule) that no longer counts on the lock and releases the lease: the
        // release ends the hold whichever process makes it (leases are not shared).
        let released = done[i + 1..]
            .iter()
            .filter(|c| c.f == "release" && lease_of(c) == Some(lease))
            .map(|c| c.invoke_time)
            .min();
        let end = match (end, released) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let safe = confirmed.saturating_add(ttl);
        let end = end.map_or(safe, |e| e.min(safe));
        if a.complete_time < end {
            out.push(Hold {
                process: a.process.clone(),
                owner,
                start: a.complete_time,
                end,
                indexes: vec![a.index, last_index],
            });
        }
    }
    out
}

/// Check a `kv-lock` history.
pub fn check(ops: &[Op]) -> Report {
    let mut r = Report::new("lock");
    let mut holds = holds(ops);
    r.ops = pair(ops).len();
    holds.sort_by_key(|h| h.start);
    for (i, a) in holds.iter().enumerate() {
        for b in holds[i + 1..].iter().take_while(|b| b.start < a.end) {
            r.anomaly(
                "double-holder",
                format!(
                    "{} ({:?}) held the lock until {:.3} s, but {} ({:?}) acquired it at {:.3} s",
                    a.owner,
                    a.process,
                    a.end as f64 / 1e9,
                    b.owner,
                    b.process,
                    b.start as f64 / 1e9
                ),
                [a.indexes.clone(), b.indexes.clone()].concat(),
            );
        }
    }
    r.notes.push(("holds".into(), holds.len() as u64));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const S: u64 = 1_000_000_000;

    fn op(index: usize, kind: OpType, p: u64, time: u64, f: &str, value: Value) -> Op {
        Op {
            index,
            kind,
            process: Process::Client(p),
            time,
            f: f.into(),
            value,
            node: None,
            error: None,
        }
    }

    /// Client `p` acquires at `t` (ok 10 ms later) with lease `lease`, renews at `renews`, and
    /// releases at `release`.
    fn hold(ops: &mut Vec<Op>, p: u64, lease: u64, t: u64, renews: &[u64], release: Option<u64>) {
        let mut push = |kind, time, f: &str, value| {
            let i = ops.len();
            ops.push(op(i, kind, p, time, f, value));
        };
        push(
            OpType::Invoke,
            t,
            "acquire",
            json!({"ttl_ms": 3000, "owner": format!("c{p}")}),
        );
        push(
            OpType::Ok,
            t + S / 100,
            "acquire",
            json!({"lease": lease, "owner": format!("c{p}")}),
        );
        for &r in renews {
            push(OpType::Invoke, r, "renew", json!({"lease": lease}));
            push(OpType::Ok, r + S / 100, "renew", json!({"lease": lease}));
        }
        if let Some(r) = release {
            push(OpType::Invoke, r, "release", json!({"lease": lease}));
            push(OpType::Ok, r + S / 100, "release", json!({"lease": lease}));
        }
    }

    fn sorted(mut ops: Vec<Op>) -> Vec<Op> {
        ops.sort_by_key(|o| o.time);
        for (i, o) in ops.iter_mut().enumerate() {
            o.index = i;
        }
        ops
    }

    #[test]
    fn holders_one_after_the_other_pass() {
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[S, 2 * S], Some(4 * S));
        hold(&mut ops, 1, 2, 4 * S + S / 10, &[], Some(5 * S));
        let r = check(&sorted(ops));
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert_eq!(r.notes, vec![("holds".to_string(), 2)]);
    }

    #[test]
    fn an_overlap_is_a_double_holder() {
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[S], Some(3 * S));
        hold(&mut ops, 1, 2, 2 * S, &[], Some(5 * S));
        let r = check(&sorted(ops));
        assert_eq!(r.counts(), vec![("double-holder".to_string(), 1)], "{r:?}");
        assert!(
            r.anomalies[0].detail.contains("c0"),
            "{}",
            r.anomalies[0].detail
        );
    }

    #[test]
    fn a_holder_without_renewals_is_safe_only_for_one_ttl() {
        // c0 never renews and releases late: its belief ended at 3 s, so c1 taking the lock at
        // 3.5 s (its lease expired) is no anomaly...
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[], Some(10 * S));
        hold(&mut ops, 1, 2, 3 * S + S / 2, &[], Some(4 * S));
        assert!(check(&sorted(ops)).anomalies.is_empty());
        // ...but a renewal at 2 s made c0's belief run to 5 s.
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[2 * S], Some(10 * S));
        hold(&mut ops, 1, 2, 3 * S + S / 2, &[], Some(4 * S));
        assert_eq!(check(&sorted(ops)).anomalies.len(), 1);
    }

    #[test]
    fn a_release_by_the_holders_next_process_ends_the_hold() {
        // The shape of seed 42's two reports: c0's renewal at 1 s is `info` (503 from a node
        // still starting), so c0 goes on as process 10, which releases the lease at 1.05 s;
        // c1 takes the lock at 1.2 s. c0 counted on it only until the release.
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[], None);
        let mut push = |kind, p, time, f: &str, value| {
            let i = ops.len();
            ops.push(op(i, kind, p, time, f, value));
        };
        push(OpType::Invoke, 0, S, "renew", json!({"lease": 1}));
        push(OpType::Info, 0, S + S / 50, "renew", json!({"lease": 1}));
        push(
            OpType::Invoke,
            10,
            S + S / 20,
            "release",
            json!({"lease": 1}),
        );
        push(OpType::Ok, 10, S + S / 10, "release", json!({"lease": 1}));
        hold(&mut ops, 1, 2, S + S / 5, &[], Some(2 * S));
        let r = check(&sorted(ops.clone()));
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        // Without that release, c0 counted on the lock until 3 s: an overlap.
        let no_release: Vec<Op> = ops
            .into_iter()
            .filter(|o| o.f != "release" || o.process != Process::Client(10))
            .collect();
        assert_eq!(check(&sorted(no_release)).anomalies.len(), 1);
    }

    #[test]
    fn an_acquire_that_failed_or_is_unknown_holds_nothing() {
        let mut ops = Vec::new();
        hold(&mut ops, 0, 1, 0, &[], Some(2 * S));
        let i = ops.len();
        ops.push(op(
            i,
            OpType::Invoke,
            1,
            S / 2,
            "acquire",
            json!({"ttl_ms": 3000, "owner": "c1"}),
        ));
        ops.push(op(
            i + 1,
            OpType::Info,
            1,
            S,
            "acquire",
            json!({"lease": 2, "owner": "c1"}),
        ));
        ops.push(op(
            i + 2,
            OpType::Invoke,
            2,
            S / 2,
            "acquire",
            json!({"ttl_ms": 3000, "owner": "c2"}),
        ));
        ops.push(op(
            i + 3,
            OpType::Fail,
            2,
            S,
            "acquire",
            json!({"lease": 3, "owner": "c2"}),
        ));
        let r = check(&sorted(ops));
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert_eq!(r.notes, vec![("holds".to_string(), 1)]);
    }
}
