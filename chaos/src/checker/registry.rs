//! The registry convergence checker.
//!
//! Records: `register` / `deregister` `{service, id, node}` (the node the request went to, where
//! the instance lives); `view` `{node}` → `ok` `{ids: [...]}`, each node's list after the heal,
//! taken once the views agreed or the convergence bound passed.
//!
//! Expected set: an instance registered `ok`, never deregistered, whose node was not killed after
//! the registration began must be listed; one deregistered `ok`, whose registration failed, or
//! whose node was killed since (an instance lives as long as its node) must not. Others (`info`)
//! may be either. Anomalies: `divergent` (two nodes' final views differ), `lost`, `unexpected`,
//! `no-final-view`.
//!
//! ```
//! use chaos::checker::registry::check;
//! assert_eq!(check(&[]).anomalies[0].kind, "no-final-view");
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::{fault_windows, Report};
use crate::history::{pair, Op, OpType};

#[derive(Default)]
struct Inst {
    node: String,
    reg: Option<(OpType, u64, usize)>,
    dereg: Option<OpType>,
}

/// Check a registry history.
pub fn check(ops: &[Op]) -> Report {
    let mut r = Report::new("registry");
    let done = pair(ops);
    let kills: Vec<(String, u64)> = fault_windows(ops)
        .into_iter()
        .filter(|w| w.fault == "kill" || w.fault == "file-corruption")
        .flat_map(|w| w.nodes.into_iter().map(move |n| (n, w.start)))
        .collect();
    let mut insts: BTreeMap<String, Inst> = BTreeMap::new();
    for c in &done {
        let id = c.invoke_value["id"].as_str().unwrap_or("").to_string();
        match c.f.as_str() {
            "register" => {
                let i = insts.entry(id).or_default();
                i.node = c.invoke_value["node"].as_str().unwrap_or("").to_string();
                i.reg = Some((c.kind, c.invoke_time, c.index));
            }
            "deregister" => insts.entry(id).or_default().dereg = Some(c.kind),
            _ => {}
        }
    }
    r.ops = insts.len();
    let mut must: BTreeSet<&str> = BTreeSet::new();
    let mut must_not: BTreeSet<&str> = BTreeSet::new();
    for (id, i) in &insts {
        let killed = i
            .reg
            .is_some_and(|(_, t, _)| kills.iter().any(|(n, k)| *n == i.node && *k >= t));
        match (i.reg.map(|x| x.0), i.dereg) {
            (Some(OpType::Ok), None) if !killed => {
                must.insert(id);
            }
            (_, Some(OpType::Ok)) | (Some(OpType::Fail), _) => {
                must_not.insert(id);
            }
            _ if killed => {
                must_not.insert(id);
            }
            _ => {}
        }
    }
    let views: Vec<_> = done.iter().filter(|c| c.f == "view").collect();
    let mut first: Option<(String, BTreeSet<String>)> = None;
    let mut any = false;
    for v in views {
        let node = v.invoke_value["node"].as_str().unwrap_or("?").to_string();
        if v.kind != OpType::Ok {
            r.anomaly(
                "no-final-view",
                format!("the final view of {node} could not be read"),
                vec![v.index],
            );
            continue;
        }
        any = true;
        let ids: BTreeSet<String> = v.value["ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for id in &must {
            if !ids.contains(*id) {
                r.anomaly(
                    "lost",
                    format!(
                        "instance {id} (registered ok on {}) missing from {node}'s view",
                        insts[*id].node
                    ),
                    vec![insts[*id].reg.map(|x| x.2).unwrap_or(0), v.index],
                );
            }
        }
        for id in ids
            .iter()
            .filter(|id| must_not.contains(id.as_str()) || !insts.contains_key(*id))
        {
            r.anomaly(
                "unexpected",
                format!("instance {id} listed by {node}, though it should be gone"),
                vec![v.index],
            );
        }
        match &first {
            None => first = Some((node, ids)),
            Some((n0, ids0)) if *ids0 != ids => {
                let only0: Vec<_> = ids0.difference(&ids).collect();
                let only1: Vec<_> = ids.difference(ids0).collect();
                r.anomaly(
                    "divergent",
                    format!("{n0} and {node} disagree: only on {n0}: {only0:?}; only on {node}: {only1:?}"),
                    vec![v.index],
                );
            }
            _ => {}
        }
    }
    if !any {
        r.anomaly(
            "no-final-view",
            "no node's final view could be read".into(),
            vec![],
        );
    }
    r
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

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn converged_views_of_the_acknowledged_set_pass() {
        let h = History::new();
        op(
            &h,
            0,
            "register",
            json!({"id": "a", "node": "n1"}),
            OpType::Ok,
            json!({}),
        );
        op(
            &h,
            0,
            "register",
            json!({"id": "b", "node": "n2"}),
            OpType::Ok,
            json!({}),
        );
        op(
            &h,
            0,
            "deregister",
            json!({"id": "b", "node": "n2"}),
            OpType::Ok,
            json!({}),
        );
        op(
            &h,
            1,
            "register",
            json!({"id": "c", "node": "n3"}),
            OpType::Info,
            json!({}),
        );
        op(
            &h,
            2,
            "view",
            json!({"node": "n1"}),
            OpType::Ok,
            json!({"ids": ["a", "c"]}),
        );
        op(
            &h,
            3,
            "view",
            json!({"node": "n2"}),
            OpType::Ok,
            json!({"ids": ["a", "c"]}),
        );
        assert!(check(&h.snapshot()).anomalies.is_empty());
    }

    #[test]
    fn views_that_never_converged_are_divergent() {
        let h = History::new();
        op(
            &h,
            0,
            "register",
            json!({"id": "a", "node": "n1"}),
            OpType::Info,
            json!({}),
        );
        op(
            &h,
            2,
            "view",
            json!({"node": "n1"}),
            OpType::Ok,
            json!({"ids": ["a"]}),
        );
        op(
            &h,
            3,
            "view",
            json!({"node": "n2"}),
            OpType::Ok,
            json!({"ids": []}),
        );
        assert_eq!(kinds(&check(&h.snapshot())), vec!["divergent"]);
    }

    #[test]
    fn an_instance_of_a_killed_node_must_be_gone() {
        let h = History::new();
        op(
            &h,
            0,
            "register",
            json!({"id": "a", "node": "n1"}),
            OpType::Ok,
            json!({}),
        );
        op(
            &h,
            0,
            "register",
            json!({"id": "b", "node": "n2"}),
            OpType::Ok,
            json!({}),
        );
        h.invoke(Process::nemesis(), "kill", json!({"nodes": ["n1"]}), None);
        h.complete(Process::nemesis(), OpType::Info, "heal", json!({}), None);
        op(
            &h,
            2,
            "view",
            json!({"node": "n2"}),
            OpType::Ok,
            json!({"ids": ["a"]}),
        );
        assert_eq!(kinds(&check(&h.snapshot())), vec!["lost", "unexpected"]);
    }
}
