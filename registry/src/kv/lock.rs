//! A lock / leader election on a lease, on top of the KV store.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{EventKind, Expect, Kv, KvEntry, KvError, WatchEvent};

/// Shortest lease a lock is held by.
const MIN_LOCK_TTL: Duration = Duration::from_secs(1);

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
        let key = lock_key(name);
        let ttl = lock_ttl(ttl);
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
            let from = wait_from(r.current.as_ref());
            let mut w = self.watch(&key, Some(from)).await?;
            loop {
                self.keep_alive(lease).await?;
                let ev = tokio::time::timeout(renew_every(ttl), w.next()).await;
                match ev {
                    Ok(Ok(e)) if frees(&e, &key) => break,
                    Ok(Ok(_)) | Err(_) => continue,
                    Ok(Err(e)) => return Err(e),
                }
            }
        }
        let kv = self.clone();
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew_every(ttl)).await;
                if let Err(e) = kv.keep_alive(lease).await {
                    if lease_lost(&e) {
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
        Ok(self.get(&lock_key(name)).await?.map(|e| e.value))
    }
}

/// The key of the lock `name`.
fn lock_key(name: &str) -> String {
    format!("locks/{name}")
}

/// The TTL of a lock's lease: the asked one, at least [`MIN_LOCK_TTL`].
fn lock_ttl(asked: Duration) -> Duration {
    asked.max(MIN_LOCK_TTL)
}

/// How often a lock's lease is renewed: three times per TTL.
fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// The revision to watch a held lock from: the one after its holder's write (`None`: the key
/// was gone by the time it was read; 0 watches from now on).
fn wait_from(holder: Option<&KvEntry>) -> u64 {
    holder.map(|e| e.mod_revision + 1).unwrap_or(0)
}

/// Whether `ev` frees the lock at `key`: the key's deletion (its holder's lease ended).
fn frees(ev: &WatchEvent, key: &str) -> bool {
    ev.key == key && ev.kind == EventKind::Delete
}

/// Whether a failed renewal means the lease is gone (the lock lost), rather than a
/// transient failure worth trying again.
fn lease_lost(e: &KvError) -> bool {
    matches!(e, KvError::Lease(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, key: &str) -> WatchEvent {
        WatchEvent {
            revision: 5,
            kind,
            key: key.into(),
            value: None,
        }
    }

    #[test]
    fn a_lock_is_a_key_under_locks() {
        assert_eq!(lock_key("billing-leader"), "locks/billing-leader");
        assert_eq!(lock_key(""), "locks/");
    }

    #[test]
    fn a_lock_lease_lasts_at_least_a_second_and_is_renewed_thrice_per_ttl() {
        assert_eq!(lock_ttl(Duration::ZERO), MIN_LOCK_TTL);
        assert_eq!(lock_ttl(Duration::from_millis(999)), MIN_LOCK_TTL);
        assert_eq!(lock_ttl(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(renew_every(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(renew_every(MIN_LOCK_TTL), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn a_held_lock_is_watched_from_after_its_holders_write() {
        let holder = KvEntry {
            key: "locks/x".into(),
            value: "n2".into(),
            create_revision: 10,
            mod_revision: 12,
            version: 2,
            lease: Some(3),
        };
        assert_eq!(wait_from(Some(&holder)), 13);
        assert_eq!(wait_from(None), 0);
    }

    #[test]
    fn only_the_deletion_of_the_lock_key_frees_it() {
        assert!(frees(&event(EventKind::Delete, "locks/x"), "locks/x"));
        assert!(!frees(&event(EventKind::Put, "locks/x"), "locks/x"));
        assert!(!frees(&event(EventKind::Delete, "locks/xy"), "locks/x"));
    }

    #[test]
    fn only_a_lease_error_means_the_lock_is_lost() {
        assert!(lease_lost(&KvError::Lease("lease 3 not found".into())));
        assert!(!lease_lost(&KvError::NoQuorum("late".into())));
        assert!(!lease_lost(&KvError::Unavailable("no session".into())));
        assert!(!lease_lost(&KvError::NotLeader { leader: None }));
    }
}
