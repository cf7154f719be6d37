//! A lock / leader election on a lease, on top of the KV store.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{EventKind, Expect, Kv, KvError};

/// A held lock (see [`Kv::lock`]). The lock's key is attached to a lease that this guard keeps
/// alive; dropping the guard stops the renewals (the lock then ends when the lease expires),
/// [`LockGuard::unlock`] ends it at once.
#[derive(Debug)]
pub struct LockGuard {
    kv: Kv,
    key: String,
    lease: u64,
    keepalive: JoinHandle<()>,
}

impl LockGuard {
    /// The lock's key (`locks/<name>`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease holding the lock.
    pub fn lease(&self) -> u64 {
        self.lease
    }

    /// Whether renewals are still running (false once the lease was lost).
    pub fn is_held(&self) -> bool {
        !self.keepalive.is_finished()
    }

    /// Release the lock now.
    pub async fn unlock(self) -> Result<(), KvError> {
        self.keepalive.abort();
        self.kv.revoke(self.lease).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

impl Kv {
    /// Take the lock `name` (waiting while someone else holds it), held by a lease of `ttl`
    /// renewed every `ttl / 3`. The value of `locks/<name>` is `owner`, so the same call is a
    /// leader election: whoever holds the lock is the leader, and [`Kv::lock_owner`] tells who.
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// use std::time::Duration;
    /// let guard = kv.lock("billing-leader", "node1", Duration::from_secs(5)).await?;
    /// // ... lead ...
    /// guard.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<LockGuard, KvError> {
        let key = format!("locks/{name}");
        let ttl = ttl.max(Duration::from_secs(1));
        let lease = self.grant(ttl).await?;
        loop {
            let r = self
                .cas_with_lease(
                    &key,
                    Expect::Value(None),
                    Some(owner.to_string()),
                    Some(lease),
                )
                .await?;
            if r.ok {
                break;
            }
            // Held: wait for its deletion, then try again.
            let from = r.current.map(|e| e.mod_revision + 1).unwrap_or(0);
            let mut w = self.watch(&key, Some(from)).await?;
            loop {
                self.keep_alive(lease).await?;
                let ev = tokio::time::timeout(ttl / 3, w.next()).await;
                match ev {
                    Ok(Ok(e)) if e.key == key && e.kind == EventKind::Delete => break,
                    Ok(Ok(_)) | Err(_) => continue,
                    Ok(Err(e)) => return Err(e),
                }
            }
        }
        let kv = self.clone();
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = kv.keep_alive(lease).await {
                    if matches!(e, KvError::Lease(_)) {
                        tracing::warn!("kv lock lease {lease} lost: {e}");
                        return;
                    }
                }
            }
        });
        Ok(LockGuard {
            kv: self.clone(),
            key,
            lease,
            keepalive,
        })
    }

    /// Who holds the lock `name` (the leader of election `name`), if anyone.
    pub async fn lock_owner(&self, name: &str) -> Result<Option<String>, KvError> {
        Ok(self.get(&format!("locks/{name}")).await?.map(|e| e.value))
    }
}
