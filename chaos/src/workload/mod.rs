//! Workloads: concurrent clients that record their operations in a [`History`], each request
//! through a chosen node, then (after the nemesis healed everything) final reads.
//!
//! | name | operations | checker |
//! |---|---|---|
//! | `kv-register` | read / write / cas on a few keys | [`crate::checker::register`] |
//! | `kv-set` | unique adds (a put per element), a final range read on every node | [`crate::checker::set`] |
//! | `broker` | produce on a plain and a durable channel; broadcast, queue-group and replaying consumers on several nodes | [`crate::checker::broker`] |
//! | `kv-lock` | take one lock (lease + create-if-absent), renew while holding, revoke | [`crate::checker::lock`] |
//! | `registry` | register / deregister instances on several nodes, final views | [`crate::checker::registry`] |

pub mod broker;
pub mod kv_lock;
pub mod kv_register;
pub mod kv_set;
pub mod registry;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    client::{Client, Outcome},
    history::{History, OpType, Process},
};

/// What a workload's clients share.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The HTTP client.
    pub client: Client,
    /// The history being recorded.
    pub history: History,
    /// (name, admin address) per node.
    pub nodes: Vec<(String, String)>,
    /// Nodes the nemesis could not bring back (their final reads are skipped).
    pub down: Arc<Mutex<BTreeSet<usize>>>,
    /// Number of client processes.
    pub concurrency: usize,
    /// Seed for the clients' choices.
    pub seed: u64,
}

impl Ctx {
    /// Indexes of nodes that are up (not given up on).
    pub fn live(&self) -> Vec<usize> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        (0..self.nodes.len())
            .filter(|i| !down.contains(i))
            .collect()
    }
}

/// A client process's identity: after an `info` it continues as a new process (Jepsen's rule).
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    id: u64,
    stride: u64,
}

impl Proc {
    /// Client `i` of `n`.
    pub fn new(i: usize, n: usize) -> Proc {
        Proc {
            id: i as u64,
            stride: n as u64,
        }
    }

    /// The current process.
    pub fn process(&self) -> Process {
        Process::Client(self.id)
    }

    /// Move on to a fresh process id.
    pub fn crashed(&mut self) {
        self.id += self.stride;
    }
}

/// Record the completion of `f` and advance `p` after an `info`.
pub fn complete(
    h: &History,
    p: &mut Proc,
    kind: OpType,
    f: &str,
    value: serde_json::Value,
    err: Option<String>,
) {
    h.complete(p.process(), kind, f, value, err);
    if kind == OpType::Info {
        p.crashed();
    }
}

/// The type of a read's completion: an answer other than `ok_status` is a `fail` (reads have no
/// effect).
pub fn read_kind(o: &Outcome, ok_status: &[u16]) -> OpType {
    match o.status() {
        Some(s) if ok_status.contains(&s) => OpType::Ok,
        _ => OpType::Fail,
    }
}

/// The type of a write's completion: `ok`, `fail` for the definite refusals given (and a
/// refused connection), `info` otherwise (an error answer may come after the write was
/// proposed, a timeout is unknown).
pub fn write_kind(o: &Outcome, ok_status: &[u16], definite: &[u16]) -> OpType {
    match o {
        Outcome::Status(s, _) if ok_status.contains(s) => OpType::Ok,
        Outcome::Status(s, _) if definite.contains(s) => OpType::Fail,
        Outcome::Refused(_) => OpType::Fail,
        _ => OpType::Info,
    }
}

/// Pace a client: a short think time so a few clients do not saturate a 2-core machine.
pub async fn think(rng: &mut impl rand::Rng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(5..30))).await;
}

/// Run `ctx.concurrency` clients (`client(ctx, i)`) alongside `nemesis`; the nemesis's result
/// once every client has finished.
pub async fn run_clients<F, Fut>(
    ctx: &Ctx,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
    client: F,
) -> anyhow::Result<()>
where
    F: Fn(Ctx, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let clients: Vec<_> = (0..ctx.concurrency)
        .map(|i| tokio::spawn(client(ctx.clone(), i)))
        .collect();
    let nem = nemesis.await;
    for c in clients {
        c.await?;
    }
    nem
}

/// Upper bound on operations per client (the time bound usually ends a run first).
pub const MAX_OPS_PER_CLIENT: usize = 100_000;

/// Retry `f` until it returns `Some` or `limit` passes (polling every 250 ms).
pub async fn retry<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_record_types() {
        let ok = Outcome::Status(200, "{}".into());
        let conflict = Outcome::Status(409, "{}".into());
        let unavailable = Outcome::Status(503, "{}".into());
        assert_eq!(write_kind(&ok, &[200], &[409]), OpType::Ok);
        assert_eq!(write_kind(&conflict, &[200], &[409]), OpType::Fail);
        assert_eq!(write_kind(&unavailable, &[200], &[409]), OpType::Info);
        assert_eq!(
            write_kind(&Outcome::Refused("x".into()), &[200], &[]),
            OpType::Fail
        );
        assert_eq!(
            write_kind(&Outcome::Unknown("t".into()), &[200], &[]),
            OpType::Info
        );
        assert_eq!(read_kind(&unavailable, &[200, 404]), OpType::Fail);
    }

    #[test]
    fn a_process_that_crashed_gets_a_new_id() {
        let h = History::new();
        let mut p = Proc::new(1, 4);
        complete(
            &h,
            &mut p,
            OpType::Info,
            "write",
            serde_json::json!(1),
            None,
        );
        assert_eq!(p.process(), Process::Client(5));
        complete(&h, &mut p, OpType::Ok, "write", serde_json::json!(1), None);
        assert_eq!(p.process(), Process::Client(5));
    }
}
