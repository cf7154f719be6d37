//! Histories in Jepsen's shape: one operation record per line, `invoke` then `ok` / `fail` /
//! `info` from the same process.
//!
//! - `ok`: the operation took effect (and `value` is what it returned);
//! - `fail`: it certainly did not take effect (a compare that failed, a refused request);
//! - `info`: unknown (a timeout, a dropped connection): it may take effect at any time after its
//!   invocation, or never. A process that got `info` is never used again (its next operation
//!   would not be sequential with the unknown one), as in Jepsen.
//!
//! ```
//! use chaos::history::{History, OpType, Process};
//! let h = History::new();
//! h.invoke(Process::Client(0), "write", serde_json::json!(["k", 1]), Some("n1"));
//! h.complete(Process::Client(0), OpType::Ok, "write", serde_json::json!(["k", 1]), None);
//! assert_eq!(h.snapshot().len(), 2);
//! ```

use std::{
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The four record types of a Jepsen history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The operation began.
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown whether it took effect.
    Info,
}

/// Who performed an operation: a client (numbered) or the nemesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    /// A client process.
    Client(u64),
    /// `"nemesis"` (faults) or another named actor.
    Named(String),
}

impl Process {
    /// The nemesis.
    pub fn nemesis() -> Process {
        Process::Named("nemesis".into())
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history.
    pub index: usize,
    /// Invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The process.
    pub process: Process,
    /// Nanoseconds since the history began.
    pub time: u64,
    /// The operation (`read`, `write`, `cas`, `add`, `produce`, `recv`, `register`, ...).
    pub f: String,
    /// The argument (invoke) or result (completion).
    pub value: Value,
    /// The node the request went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The error, for `fail` and `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A history being recorded by concurrent clients (cheap to clone, shared).
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn push(
        &self,
        kind: OpType,
        process: Process,
        f: &str,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let time = self.now();
        let index = ops.len();
        ops.push(Op {
            index,
            kind,
            process,
            time,
            f: f.to_string(),
            value,
            node: node.map(str::to_string),
            error,
        });
    }

    /// Record an invocation.
    pub fn invoke(&self, process: Process, f: &str, value: Value, node: Option<&str>) {
        self.push(OpType::Invoke, process, f, value, node, None);
    }

    /// Record a completion (`ok`, `fail` or `info`).
    pub fn complete(
        &self,
        process: Process,
        kind: OpType,
        f: &str,
        value: Value,
        error: Option<String>,
    ) {
        self.push(kind, process, f, value, None, error);
    }

    /// A copy of the records so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Write the history as JSON lines.
    pub fn write_jsonl(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in self.snapshot() {
            serde_json::to_writer(&mut f, &op)?;
            f.write_all(b"\n")?;
        }
        f.flush()
    }
}

/// Parse a JSON-lines history (as [`History::write_jsonl`] writes it).
pub fn parse_jsonl(text: &str) -> Result<Vec<Op>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// An operation with its invocation and completion paired.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The process.
    pub process: Process,
    /// The operation name.
    pub f: String,
    /// The invocation's value (the argument).
    pub invoke_value: Value,
    /// The completion's value (the result), `Null` when still pending at the end.
    pub value: Value,
    /// `Ok`, `Fail` or `Info` (an invocation never completed counts as `Info`).
    pub kind: OpType,
    /// Invocation time.
    pub invoke_time: u64,
    /// Completion time (`u64::MAX` for `info`: it may take effect at any time later).
    pub complete_time: u64,
    /// Index of the invocation record.
    pub index: usize,
}

/// Pair each invocation with the next completion of the same process; nemesis records skipped.
pub fn pair(ops: &[Op]) -> Vec<Completed> {
    let mut open: std::collections::HashMap<Process, usize> = Default::default();
    let mut out: Vec<Completed> = Vec::new();
    for op in ops {
        if op.process == Process::nemesis() {
            continue;
        }
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process.clone(), out.len());
                out.push(Completed {
                    process: op.process.clone(),
                    f: op.f.clone(),
                    invoke_value: op.value.clone(),
                    value: Value::Null,
                    kind: OpType::Info,
                    invoke_time: op.time,
                    complete_time: u64::MAX,
                    index: op.index,
                });
            }
            kind => {
                if let Some(i) = open.remove(&op.process) {
                    let c = &mut out[i];
                    c.kind = kind;
                    c.value = op.value.clone();
                    c.complete_time = if kind == OpType::Info {
                        u64::MAX
                    } else {
                        op.time
                    };
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_as_json_lines() {
        let h = History::new();
        h.invoke(Process::Client(3), "cas", json!(["k", [1, 2]]), Some("n2"));
        h.complete(
            Process::Client(3),
            OpType::Info,
            "cas",
            json!(["k", [1, 2]]),
            Some("timeout".into()),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        h.write_jsonl(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.lines().next().unwrap().contains("\"type\":\"invoke\""));
        let back = parse_jsonl(&text).unwrap();
        assert_eq!(back, h.snapshot());
    }

    #[test]
    fn pairing_makes_info_and_pending_open_ended() {
        let h = History::new();
        h.invoke(Process::Client(0), "write", json!(["k", 1]), None);
        h.invoke(Process::Client(1), "read", json!(["k", null]), None);
        h.complete(
            Process::Client(0),
            OpType::Info,
            "write",
            json!(["k", 1]),
            None,
        );
        let p = pair(&h.snapshot());
        assert_eq!(p.len(), 2);
        assert!(p
            .iter()
            .all(|c| c.kind == OpType::Info && c.complete_time == u64::MAX));
    }
}
