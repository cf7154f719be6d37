//! The set checker (Jepsen's `set`): unique integers added, then read back from every node.
//!
//! Records: `add` with the integer; `read` (after the heal) whose `ok` value is the list read.
//! Anomalies: `lost` (an acknowledged add missing from a final read), `unexpected` (a value that
//! was never added, or whose add failed, present), `duplicate` (a value twice in one read),
//! `no-final-read` (no final read succeeded, so nothing could be checked).
//!
//! ```
//! use chaos::checker::set::check;
//! use chaos::history::{History, OpType, Process};
//! use serde_json::json;
//! let h = History::new();
//! h.invoke(Process::Client(0), "add", json!(1), None);
//! h.complete(Process::Client(0), OpType::Ok, "add", json!(1), None);
//! h.invoke(Process::Client(1), "read", json!(null), None);
//! h.complete(Process::Client(1), OpType::Ok, "read", json!([1]), None);
//! assert!(check(&h.snapshot()).anomalies.is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::Report;
use crate::history::{pair, Op, OpType};

/// Check a set history.
pub fn check(ops: &[Op]) -> Report {
    let mut r = Report::new("set");
    let done = pair(ops);
    let mut adds: BTreeMap<i64, (OpType, usize)> = BTreeMap::new();
    for c in done.iter().filter(|c| c.f == "add") {
        if let Some(v) = c.invoke_value.as_i64() {
            adds.insert(v, (c.kind, c.index));
        }
    }
    r.ops = adds.len();
    let mut reads = 0;
    for c in done
        .iter()
        .filter(|c| c.f == "read" && c.kind == OpType::Ok)
    {
        reads += 1;
        let Some(list) = c.value.as_array() else {
            r.anomaly(
                "no-final-read",
                format!("read at {} returned no list", c.index),
                vec![c.index],
            );
            continue;
        };
        let mut seen = BTreeSet::new();
        for v in list.iter().filter_map(|v| v.as_i64()) {
            if !seen.insert(v) {
                r.anomaly(
                    "duplicate",
                    format!("{v} twice in the read at {}", c.index),
                    vec![c.index],
                );
            }
            match adds.get(&v) {
                None => r.anomaly(
                    "unexpected",
                    format!("{v} was never added, yet read at {}", c.index),
                    vec![c.index],
                ),
                Some((OpType::Fail, i)) => r.anomaly(
                    "unexpected",
                    format!("{v}'s add failed (at {i}), yet read at {}", c.index),
                    vec![*i, c.index],
                ),
                _ => {}
            }
        }
        let node = c.value_node();
        for (v, (kind, i)) in &adds {
            if *kind == OpType::Ok && !seen.contains(v) {
                r.anomaly(
                    "lost",
                    format!(
                        "acknowledged add of {v} (at {i}) missing from the final read at {}{node}",
                        c.index
                    ),
                    vec![*i, c.index],
                );
            }
        }
    }
    if reads == 0 {
        r.anomaly("no-final-read", "no final read succeeded".into(), vec![]);
    }
    let info = adds.values().filter(|(k, _)| *k == OpType::Info).count();
    r.notes
        .push(("adds of unknown outcome (info)".into(), info as u64));
    r
}

trait NodeOf {
    fn value_node(&self) -> String;
}

impl NodeOf for crate::history::Completed {
    fn value_node(&self) -> String {
        self.invoke_value["node"]
            .as_str()
            .map(|n| format!(" (through {n})"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Process};
    use serde_json::json;

    fn op(
        h: &History,
        p: u64,
        f: &str,
        inv: serde_json::Value,
        kind: OpType,
        out: serde_json::Value,
    ) {
        h.invoke(Process::Client(p), f, inv, None);
        h.complete(Process::Client(p), kind, f, out, None);
    }

    #[test]
    fn info_adds_may_or_may_not_be_present() {
        let h = History::new();
        op(&h, 0, "add", json!(1), OpType::Ok, json!(1));
        op(&h, 1, "add", json!(2), OpType::Info, json!(2));
        op(&h, 2, "add", json!(3), OpType::Info, json!(3));
        op(
            &h,
            3,
            "read",
            json!({"node": "n1"}),
            OpType::Ok,
            json!([1, 2]),
        );
        let r = check(&h.snapshot());
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
    }

    #[test]
    fn lost_and_unexpected_values_are_reported() {
        let h = History::new();
        op(&h, 0, "add", json!(1), OpType::Ok, json!(1));
        op(&h, 0, "add", json!(2), OpType::Fail, json!(2));
        op(
            &h,
            3,
            "read",
            json!({"node": "n2"}),
            OpType::Ok,
            json!([2, 7]),
        );
        let r = check(&h.snapshot());
        let kinds: Vec<_> = r.anomalies.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, vec!["unexpected", "unexpected", "lost"]);
        assert!(r.anomalies[2].detail.contains("through n2"));
    }

    #[test]
    fn no_final_read_is_an_anomaly() {
        let h = History::new();
        op(&h, 0, "add", json!(1), OpType::Ok, json!(1));
        op(
            &h,
            3,
            "read",
            json!({"node": "n2"}),
            OpType::Fail,
            json!(null),
        );
        assert_eq!(check(&h.snapshot()).anomalies[0].kind, "no-final-read");
    }
}
