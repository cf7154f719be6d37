//! Linearizability of a set of registers (read / write / cas), checked key by key
//! (linearizability is compositional), with Wing & Gong's search as Lowe and Porcupine refine it:
//! walk the history's call and return events in time order, linearize a pending call if the
//! model allows it, backtrack when a return is reached whose call was not linearized, and
//! memoize (set of linearized operations, register state) so no configuration is explored twice.
//!
//! `fail` operations are left out (they did not happen); an `info` operation returns "at the end
//! of time": it may be linearized anywhere after its invocation or not at all (a history whose
//! only unlinearized operations are `info` ones is linearizable); `info` reads are left out.
//!
//! Values (Jepsen's `independent` tuples): `read` → `[key, v|null]` (null: absent),
//! `write` → `[key, v]`, `cas` → `[key, [old, new]]`. Written values are unique per key, so a
//! failing key is also named as the anomaly it shows: `stale-read`, `lost-update`,
//! `duplicate-cas-winner`, or `nonlinearizable` when none of those fits.
//!
//! ```
//! use chaos::checker::register::check;
//! use chaos::history::{History, OpType, Process};
//! use serde_json::json;
//! let h = History::new();
//! h.invoke(Process::Client(0), "write", json!(["k", 1]), None);
//! h.complete(Process::Client(0), OpType::Ok, "write", json!(["k", 1]), None);
//! h.invoke(Process::Client(1), "read", json!(["k", null]), None);
//! h.complete(Process::Client(1), OpType::Ok, "read", json!(["k", 1]), None);
//! assert!(check(&h.snapshot()).anomalies.is_empty());
//! ```

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::{Anomaly, Report};
use crate::history::{pair, Completed, Op, OpType};

type State = Option<i64>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum RegOp {
    Read(State),
    Write(i64),
    Cas(State, i64),
}

#[derive(Debug, Clone)]
struct KeyOp {
    op: RegOp,
    call: u64,
    ret: u64,
    info: bool,
    index: usize,
}

fn step(state: State, op: RegOp) -> Option<State> {
    match op {
        RegOp::Read(v) => (state == v).then_some(state),
        RegOp::Write(v) => Some(Some(v)),
        RegOp::Cas(old, new) => (state == old).then_some(Some(new)),
    }
}

fn parse(c: &Completed) -> Option<(String, RegOp)> {
    let inv = c.invoke_value.as_array()?;
    let key = inv.first()?.as_str()?.to_string();
    let op = match c.f.as_str() {
        "read" => {
            let v = c.value.as_array()?.get(1)?;
            RegOp::Read(v.as_i64())
        }
        "write" => RegOp::Write(inv.get(1)?.as_i64()?),
        "cas" => {
            let pair = inv.get(1)?.as_array()?;
            RegOp::Cas(pair.first()?.as_i64(), pair.get(1)?.as_i64()?)
        }
        _ => return None,
    };
    Some((key, op))
}

/// Group the history's operations by key, leaving out failed ones and `info` reads.
fn by_key(ops: &[Op]) -> BTreeMap<String, Vec<KeyOp>> {
    let mut keys: BTreeMap<String, Vec<KeyOp>> = BTreeMap::new();
    for c in pair(ops) {
        if c.kind == OpType::Fail || (c.kind == OpType::Info && c.f == "read") {
            continue;
        }
        if let Some((key, op)) = parse(&c) {
            keys.entry(key).or_default().push(KeyOp {
                op,
                call: c.invoke_time,
                ret: c.complete_time,
                info: c.kind == OpType::Info,
                index: c.index,
            });
        }
    }
    keys
}

/// The search's verdict for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists; the operation (history index of its invocation) that could never be
    /// linearized at the deepest point of the search.
    NotLinearizable {
        /// Invocation index of the blocking operation.
        blocking: usize,
    },
}

#[derive(Clone, Copy)]
enum Ev {
    Call(usize),
    Ret(usize),
}

/// Wing-Gong-Lowe search over one key's operations, from the register being absent.
fn search(ops: &[KeyOp]) -> Verdict {
    // Events in time order; a return sorts before a call at the same instant.
    let mut evs: Vec<(u64, u8, Ev)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        evs.push((o.call, 1, Ev::Call(i)));
        evs.push((o.ret, 0, Ev::Ret(i)));
    }
    evs.sort_by_key(|e| (e.0, e.1));
    let n = evs.len();
    // A doubly linked list over the events between a head (n) and an end (n + 1) sentinel.
    let (head, end) = (n, n + 1);
    // Event i links to i - 1 (the head for the first) and i + 1 (the end for the last).
    let mut next: Vec<usize> = (1..=n).collect();
    next[n.saturating_sub(1)..].fill(end);
    next.extend([if n == 0 { end } else { 0 }, end]);
    let mut prev: Vec<usize> = std::iter::once(head)
        .chain(0..n.saturating_sub(1))
        .collect();
    prev.truncate(n);
    prev.extend([head, if n == 0 { head } else { n - 1 }]);
    let mut call_pos = vec![0usize; ops.len()];
    let mut ret_pos = vec![0usize; ops.len()];
    for (p, e) in evs.iter().enumerate() {
        match e.2 {
            Ev::Call(i) => call_pos[i] = p,
            Ev::Ret(i) => ret_pos[i] = p,
        }
    }
    fn unlink(next: &mut [usize], prev: &mut [usize], p: usize) {
        next[prev[p]] = next[p];
        prev[next[p]] = prev[p];
    }
    fn relink(next: &mut [usize], prev: &mut [usize], p: usize) {
        next[prev[p]] = p;
        prev[next[p]] = p;
    }
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut cur = next[head];
    let mut deepest = (0usize, usize::MAX);
    // Terminates: every linearization step adds a new memo entry (finitely many), and every
    // other step moves along the list or pops the stack.
    loop {
        if next[head] == end {
            return Verdict::Linearizable;
        }
        let blocked = match (cur < n).then(|| evs[cur].2) {
            Some(Ev::Call(i)) => {
                if let Some(s) = step(state, ops[i].op) {
                    let mut lin = linearized.clone();
                    lin[i / 64] |= 1 << (i % 64);
                    if cache.insert((lin.clone(), s)) {
                        stack.push((i, state));
                        state = s;
                        linearized = lin;
                        unlink(&mut next, &mut prev, call_pos[i]);
                        unlink(&mut next, &mut prev, ret_pos[i]);
                        cur = next[head];
                        continue;
                    }
                }
                cur = next[cur];
                continue;
            }
            // Every op whose return comes earlier is linearized: what is left is `info`.
            Some(Ev::Ret(i)) if ops[i].info => return Verdict::Linearizable,
            Some(Ev::Ret(i)) => Some(i),
            None => None,
        };
        if let Some(i) = blocked {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), ops[i].index);
            }
        }
        let Some((i, s)) = stack.pop() else {
            return Verdict::NotLinearizable {
                blocking: deepest.1,
            };
        };
        state = s;
        linearized[i / 64] &= !(1 << (i % 64));
        relink(&mut next, &mut prev, ret_pos[i]);
        relink(&mut next, &mut prev, call_pos[i]);
        cur = next[call_pos[i]];
    }
}

/// Name the anomaly a non-linearizable key shows.
fn classify(ops: &[KeyOp]) -> &'static str {
    // Duplicate CAS winner: more successful CAS from `old` than there were chances for `old`.
    let mut wins: BTreeMap<State, usize> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.info) {
        if let RegOp::Cas(old, _) = o.op {
            *wins.entry(old).or_default() += 1;
        }
    }
    for (old, n) in &wins {
        let sources = ops
            .iter()
            .filter(|o| match o.op {
                RegOp::Write(v) | RegOp::Cas(_, v) => Some(v) == *old,
                RegOp::Read(_) => false,
            })
            .count()
            + usize::from(old.is_none());
        if *n > sources {
            return "duplicate-cas-winner";
        }
    }
    let writer = |v: State| {
        ops.iter().find(|o| match o.op {
            RegOp::Write(w) | RegOp::Cas(_, w) => Some(w) == v,
            RegOp::Read(_) => false,
        })
    };
    for r in ops.iter() {
        let RegOp::Read(v) = r.op else { continue };
        let written_before = |o: &KeyOp| match (v, writer(v)) {
            (None, _) => true,
            (Some(_), Some(w)) => w.ret < o.call,
            (Some(_), None) => false,
        };
        // An acknowledged write that completed before the read began, invoked after the read
        // value's writer completed: the read should have seen it (or something later).
        let newer = ops.iter().find(|o| {
            !o.info
                && matches!(o.op, RegOp::Write(_) | RegOp::Cas(..))
                && o.ret < r.call
                && written_before(o)
        });
        if let Some(w) = newer {
            let w_val = match w.op {
                RegOp::Write(x) | RegOp::Cas(_, x) => Some(x),
                RegOp::Read(_) => None,
            };
            // Seen later (or overwritten by something seen later)? Then this read was stale;
            // never seen again: the update was lost.
            let seen_later = ops.iter().any(|o| {
                o.call > r.ret
                    && matches!(o.op, RegOp::Read(x) if x.is_some() && x != v
                        && (x == w_val || writer(x).is_some_and(|wx| wx.call > w.call)))
            });
            return if seen_later {
                "stale-read"
            } else {
                "lost-update"
            };
        }
    }
    if ops
        .iter()
        .any(|o| matches!(o.op, RegOp::Read(Some(v)) if writer(Some(v)).is_none()))
    {
        return "read-of-unwritten-value";
    }
    "nonlinearizable"
}

/// Check every key of a register history.
pub fn check(ops: &[Op]) -> Report {
    let mut report = Report::new("register");
    for (key, kops) in by_key(ops) {
        report.ops += kops.len();
        match search(&kops) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { blocking } => report.anomalies.push(Anomaly {
                kind: classify(&kops).to_string(),
                detail: format!(
                    "key '{key}': no linearization; operation at history index {blocking} cannot be placed"
                ),
                indexes: vec![blocking],
            }),
        }
    }
    report
}

/// The verdict for a single key's operations (for tests of the search itself).
pub fn check_key(ops: &[Op], key: &str) -> Option<Verdict> {
    by_key(ops).get(key).map(|k| search(k))
}

/// Register value helpers for workloads: `[key, v]`.
pub fn kv(key: &str, v: Value) -> Value {
    Value::Array(vec![Value::String(key.into()), v])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, Process};
    use serde_json::json;

    /// A hand-written history: (process, type, f, value) in order, one time unit apart.
    fn h(lines: &[(u64, &str, &str, Value)]) -> Vec<Op> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, v))| Op {
                index: i,
                kind: serde_json::from_value(json!(t)).unwrap(),
                process: Process::Client(*p),
                time: i as u64 * 10,
                f: f.to_string(),
                value: v.clone(),
                node: None,
                error: None,
            })
            .collect()
    }

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let ops = h(&[
            (0, "invoke", "write", json!(["x", 1])),
            (0, "ok", "write", json!(["x", 1])),
            (0, "invoke", "cas", json!(["x", [1, 2]])),
            (0, "ok", "cas", json!(["x", [1, 2]])),
            (0, "invoke", "read", json!(["x", null])),
            (0, "ok", "read", json!(["x", 2])),
        ]);
        assert!(check(&ops).anomalies.is_empty());
    }

    #[test]
    fn concurrent_history_with_info_ops_is_linearizable() {
        // Two writers overlap; a reader overlapping both may see either. An info write (3)
        // takes effect late: a read long after its invocation sees it. Another info cas
        // (from 7) never takes effect. A failed cas is ignored. Two keys, independent.
        let ops = h(&[
            (0, "invoke", "write", json!(["x", 1])),
            (1, "invoke", "write", json!(["x", 2])),
            (2, "invoke", "read", json!(["x", null])),
            (0, "ok", "write", json!(["x", 1])),
            (2, "ok", "read", json!(["x", 2])),
            (1, "ok", "write", json!(["x", 2])),
            (3, "invoke", "write", json!(["x", 3])),
            (3, "info", "write", json!(["x", 3])),
            (4, "invoke", "read", json!(["x", null])),
            (4, "ok", "read", json!(["x", 2])),
            (5, "invoke", "cas", json!(["x", [1, 9]])),
            (5, "fail", "cas", json!(["x", [1, 9]])),
            (6, "invoke", "cas", json!(["x", [7, 8]])),
            (6, "info", "cas", json!(["x", [7, 8]])),
            (4, "invoke", "read", json!(["x", null])),
            (4, "ok", "read", json!(["x", 3])),
            (7, "invoke", "cas", json!(["y", [null, 5]])),
            (8, "invoke", "read", json!(["y", null])),
            (8, "ok", "read", json!(["y", null])),
            (7, "ok", "cas", json!(["y", [null, 5]])),
            (8, "invoke", "read", json!(["y", null])),
            (8, "ok", "read", json!(["y", 5])),
        ]);
        let r = check(&ops);
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert_eq!(
            check_key(&ops, "x"),
            Some(Verdict::Linearizable),
            "the info write must be placeable late"
        );
    }

    #[test]
    fn stale_read_is_reported() {
        // write 1, write 2 acknowledged; a later read sees 1, and a still later one 2.
        let ops = h(&[
            (0, "invoke", "write", json!(["x", 1])),
            (0, "ok", "write", json!(["x", 1])),
            (0, "invoke", "write", json!(["x", 2])),
            (0, "ok", "write", json!(["x", 2])),
            (1, "invoke", "read", json!(["x", null])),
            (1, "ok", "read", json!(["x", 1])),
            (1, "invoke", "read", json!(["x", null])),
            (1, "ok", "read", json!(["x", 2])),
        ]);
        assert_eq!(kinds(&check(&ops)), vec!["stale-read"]);
    }

    #[test]
    fn lost_update_is_reported() {
        // write 1, then write 2 acknowledged, but every later read still sees 1.
        let ops = h(&[
            (0, "invoke", "write", json!(["x", 1])),
            (0, "ok", "write", json!(["x", 1])),
            (1, "invoke", "write", json!(["x", 2])),
            (1, "ok", "write", json!(["x", 2])),
            (2, "invoke", "read", json!(["x", null])),
            (2, "ok", "read", json!(["x", 1])),
            (2, "invoke", "read", json!(["x", null])),
            (2, "ok", "read", json!(["x", 1])),
        ]);
        assert_eq!(kinds(&check(&ops)), vec!["lost-update"]);
    }

    #[test]
    fn duplicate_cas_winner_is_reported() {
        // Both cas(1 -> 2) and cas(1 -> 3) succeed although 1 was written once.
        let ops = h(&[
            (0, "invoke", "write", json!(["x", 1])),
            (0, "ok", "write", json!(["x", 1])),
            (1, "invoke", "cas", json!(["x", [1, 2]])),
            (2, "invoke", "cas", json!(["x", [1, 3]])),
            (1, "ok", "cas", json!(["x", [1, 2]])),
            (2, "ok", "cas", json!(["x", [1, 3]])),
        ]);
        assert_eq!(kinds(&check(&ops)), vec!["duplicate-cas-winner"]);
    }

    #[test]
    fn only_the_bad_key_is_reported() {
        let ops = h(&[
            (0, "invoke", "write", json!(["good", 1])),
            (0, "ok", "write", json!(["good", 1])),
            (1, "invoke", "read", json!(["bad", null])),
            (1, "ok", "read", json!(["bad", 4])),
        ]);
        let r = check(&ops);
        assert_eq!(kinds(&r), vec!["read-of-unwritten-value"]);
        assert!(r.anomalies[0].detail.contains("'bad'"));
    }

    #[test]
    fn long_history_of_several_processes_passes() {
        // 5 processes, 400 writes and reads, consistent with their order.
        let mut lines = Vec::new();
        for i in 0..400i64 {
            let p = (i % 5) as u64;
            if i % 2 == 0 {
                lines.push((p, "invoke", "write", json!(["x", i])));
                lines.push((p, "ok", "write", json!(["x", i])));
            } else {
                lines.push((p, "invoke", "read", json!(["x", null])));
                lines.push((p, "ok", "read", json!(["x", i - 1])));
            }
        }
        assert!(check(&h(&lines)).anomalies.is_empty());
    }

    /// Random concurrent executions of a real register (each op takes effect at a point inside
    /// its interval, `info` ops take effect or not) must all be found linearizable.
    #[test]
    fn simulated_linearizable_executions_pass() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            // (invoke time, effect time, return time, process, f, arg, applied?)
            let mut ops = Vec::new();
            let mut next_free = [0u64; 4];
            let mut v = 0i64;
            for _ in 0..30 {
                let p = rng.random_range(0..4);
                let t0 = next_free[p] + rng.random_range(1..20);
                let t1 = t0 + rng.random_range(1..20);
                let t2 = t1 + rng.random_range(1..20);
                next_free[p] = t2;
                let f = ["read", "write", "cas"][rng.random_range(0..3)];
                v += 1;
                let info = f != "read" && rng.random_bool(0.15);
                let applied = !info || rng.random_bool(0.5);
                ops.push((t0, t1, t2, p, f, v, info, applied));
            }
            // Apply at effect points, in order.
            let mut order: Vec<usize> = (0..ops.len()).collect();
            order.sort_by_key(|i| ops[*i].1);
            let mut state: Option<i64> = None;
            let mut results: Vec<(OpType, Value, Value)> =
                vec![(OpType::Ok, json!(null), json!(null)); ops.len()];
            let mut last_read = [None::<i64>; 4];
            for i in order {
                let (_, _, _, p, f, val, info, applied) = ops[i];
                results[i] = match f {
                    "read" => {
                        last_read[p] = state;
                        (OpType::Ok, json!(["x", null]), json!(["x", state]))
                    }
                    "write" => {
                        if applied {
                            state = Some(val);
                        }
                        let t = if info { OpType::Info } else { OpType::Ok };
                        (t, json!(["x", val]), json!(["x", val]))
                    }
                    _ => {
                        let old = state.filter(|_| rng.random_bool(0.5)).or(last_read[p]);
                        let ok = state == old && applied;
                        if ok {
                            state = Some(val);
                        }
                        let t = if info {
                            OpType::Info
                        } else if ok {
                            OpType::Ok
                        } else {
                            OpType::Fail
                        };
                        (t, json!(["x", [old, val]]), json!(["x", [old, val]]))
                    }
                };
            }
            let mut evs: Vec<(u64, Op)> = Vec::new();
            for (i, o) in ops.iter().enumerate() {
                let (kind, inv, out) = results[i].clone();
                let mk = |kind, time, value| Op {
                    index: 0,
                    kind,
                    process: Process::Client(o.3 as u64),
                    time,
                    f: o.4.into(),
                    value,
                    node: None,
                    error: None,
                };
                evs.push((o.0, mk(OpType::Invoke, o.0, inv)));
                evs.push((o.2, mk(kind, o.2, out)));
            }
            evs.sort_by_key(|e| e.0);
            let hist: Vec<Op> = evs
                .into_iter()
                .enumerate()
                .map(|(i, (_, mut o))| {
                    o.index = i;
                    o
                })
                .collect();
            let r = check(&hist);
            assert!(r.anomalies.is_empty(), "seed {seed}: {:?}", r.anomalies);
        }
    }
}
