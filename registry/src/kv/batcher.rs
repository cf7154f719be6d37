//! Group commit on the leader: writes that queue up while earlier log entries are in flight are
//! proposed together as one [`Command::Batch`] entry (one log append, one fsync and one
//! replication round for all of them).

use std::sync::Arc;

use openraft::Raft;

use super::{validate::write_error, CmdResult, Command, Expect, KvError, Proposal, TypeConfig};

/// A write waiting in the batcher's queue, and where its result goes.
pub(crate) type Queued = (
    Proposal,
    tokio::sync::oneshot::Sender<Result<CmdResult, KvError>>,
);

/// Most proposals in one batched log entry.
const BATCH_MAX_ITEMS: usize = 256;
/// Most key and value bytes in one batched log entry.
const BATCH_MAX_BYTES: usize = 1 << 20;
/// Batched entries proposed at a time: while they are in flight, new writes queue up and go
/// into the next entry together (one log append, one fsync and one replication round for all).
const BATCH_IN_FLIGHT: usize = 2;

/// Whether a command may share a log entry with others (`Grant` takes the entry's index as
/// the lease id, so it goes alone; so do the internal ones).
pub(crate) fn batchable(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Put { .. } | Command::Delete { .. } | Command::Cas { .. } | Command::Txn(_)
    )
}

fn proposal_bytes(p: &Proposal) -> usize {
    let payload = match &p.cmd {
        Command::Put { key, value, .. } => key.len() + value.len(),
        Command::Cas {
            key, expect, new, ..
        } => {
            let e = match expect {
                Expect::Value(Some(v)) => v.len(),
                _ => 0,
            };
            key.len() + e + new.as_ref().map_or(0, |v| v.len())
        }
        Command::Delete { key } => key.len(),
        Command::Txn(t) => t.payload_bytes(),
        _ => 0,
    };
    payload + 64
}

/// Group commit: take the writes that queued up while earlier entries were in flight and
/// propose them as one [`Command::Batch`] entry (a lone write goes as itself).
pub(crate) async fn batch_writes(
    raft: Raft<TypeConfig>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Queued>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCH_IN_FLIGHT));
    loop {
        let first = tokio::select! {
            q = rx.recv() => match q {
                Some(q) => q,
                None => return,
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = proposal_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX_ITEMS && bytes < BATCH_MAX_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += proposal_bytes(&q.0);
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if batch.len() == 1 {
                if let Some((p, tx)) = batch.pop() {
                    let r = raft.client_write(p).await;
                    let _ = tx.send(r.map(|r| r.data).map_err(write_error));
                }
                return;
            }
            let (items, txs): (Vec<Proposal>, Vec<_>) = batch.into_iter().unzip();
            let n = items.len();
            let p = Proposal {
                request: None,
                cmd: Command::Batch(items),
            };
            match raft.client_write(p).await {
                Ok(r) => match r.data {
                    CmdResult::Batch(results) if results.len() == n => {
                        for (tx, r) in txs.into_iter().zip(results) {
                            let _ = tx.send(Ok(r));
                        }
                    }
                    other => {
                        for tx in txs {
                            let _ = tx.send(Err(KvError::Unavailable(format!(
                                "unexpected answer to a batch: {other:?}"
                            ))));
                        }
                    }
                },
                Err(e) => {
                    let e = write_error(e);
                    for tx in txs {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}
