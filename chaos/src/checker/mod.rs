//! Checkers: each reads a history and reports the anomalies it finds, named as Jepsen names them.
//!
//! | checker | workload | what it asserts |
//! |---|---|---|
//! | [`register`] | `kv-register` | every key's history is linearizable (Wing-Gong-Lowe search) |
//! | [`set`] | `kv-set` | every acknowledged add is in every final read; nothing failed or never added is |
//! | [`broker`] | `broker` | durable: no acknowledged event lost, no duplicate, per-producer order, equal final logs; plain: no duplicate, order kept, loss only around faults (counted) |
//! | [`lock`] | `kv-lock` | no two holders' safe intervals (acquire until release or last confirmed renewal + TTL) overlap |
//! | [`registry`] | `registry` | every node's final view is the same set, the one the acknowledged operations imply |

pub mod broker;
pub mod lock;
pub mod register;
pub mod registry;
pub mod set;

use serde::Serialize;

/// One anomaly found in a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Its kind: `stale-read`, `lost-update`, `duplicate-cas-winner`, `lost`, `duplicate`,
    /// `reordered`, `divergent`, ...
    pub kind: String,
    /// What exactly, for a person.
    pub detail: String,
    /// History indexes of the operations involved.
    pub indexes: Vec<usize>,
}

/// A checker's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The checker's name.
    pub checker: String,
    /// Operations examined.
    pub ops: usize,
    /// Anomalies found (the run passes only when empty).
    pub anomalies: Vec<Anomaly>,
    /// Counters worth printing that are not anomalies (e.g. documented plain-channel loss).
    pub notes: Vec<(String, u64)>,
}

impl Report {
    /// An empty report for `checker`.
    pub fn new(checker: &str) -> Report {
        Report {
            checker: checker.to_string(),
            ..Default::default()
        }
    }

    fn anomaly(&mut self, kind: &str, detail: String, indexes: Vec<usize>) {
        self.anomalies.push(Anomaly {
            kind: kind.to_string(),
            detail,
            indexes,
        });
    }

    /// Anomaly counts by kind, sorted by kind.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut m: std::collections::BTreeMap<String, usize> = Default::default();
        for a in &self.anomalies {
            *m.entry(a.kind.clone()).or_default() += 1;
        }
        m.into_iter().collect()
    }
}

/// The periods during which a fault was active, from the nemesis records of a history:
/// `(start, end)` in history time (end `u64::MAX` if never healed), with the nodes involved.
pub fn fault_windows(ops: &[crate::history::Op]) -> Vec<FaultWindow> {
    use crate::history::{OpType, Process};
    let mut out: Vec<FaultWindow> = Vec::new();
    for op in ops.iter().filter(|o| o.process == Process::nemesis()) {
        let nodes: Vec<String> = op.value["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match (op.kind, op.f.as_str()) {
            (OpType::Invoke, f) if f != "heal" => out.push(FaultWindow {
                fault: f.to_string(),
                nodes,
                start: op.time,
                end: u64::MAX,
            }),
            (OpType::Info, "heal") => {
                for w in out.iter_mut().filter(|w| w.end == u64::MAX) {
                    w.end = op.time;
                }
            }
            _ => {}
        }
    }
    out
}

/// A fault's active period.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    /// The nemesis (`kill`, `pause`, `partition-halves`, ...).
    pub fault: String,
    /// The nodes it targeted.
    pub nodes: Vec<String>,
    /// When it began.
    pub start: u64,
    /// When it was healed.
    pub end: u64,
}
