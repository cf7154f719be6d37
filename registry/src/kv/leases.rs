//! Leases: grant, renew, revoke, and the leader's reaper that proposes the expiry of leases
//! whose time is up.

use std::time::Duration;

use super::{client::now_ms, CmdResult, Command, Kv, KvError, Proposal};

impl Kv {
    /// Create a lease with a time to live; keys put with it vanish when it expires.
    pub async fn grant(&self, ttl: Duration) -> Result<u64, KvError> {
        let r = self
            .write(Command::Grant {
                ttl_ms: ttl.as_millis() as u64,
                now_ms: now_ms(),
            })
            .await?;
        match r {
            CmdResult::Lease { id, .. } => Ok(id),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Renew a lease for another TTL.
    pub async fn keep_alive(&self, lease: u64) -> Result<(), KvError> {
        self.write(Command::KeepAlive {
            id: lease,
            now_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    /// End a lease now, deleting its keys.
    pub async fn revoke(&self, lease: u64) -> Result<(), KvError> {
        self.write(Command::Revoke { id: lease }).await.map(|_| ())
    }
}

/// On the leader: propose the expiry of leases whose time is up.
pub(crate) async fn reap_leases(kv: Kv) {
    let mut stop = kv.inner.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
        let (raft, sm) = (&kv.inner.raft, &kv.inner.sm);
        if raft.current_leader().await != Some(kv.inner.id) {
            continue;
        }
        let now = now_ms();
        match sm.expired_leases(now).await {
            Ok(ids) if !ids.is_empty() => {
                let p = Proposal {
                    request: None,
                    cmd: Command::Expire { now_ms: now },
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), raft.client_write(p)).await;
            }
            _ => {}
        }
    }
}
