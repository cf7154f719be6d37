//! A service's live configuration: one KV key, read now and followed.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};

use super::{Kv, KvError, WatchEvent};

/// How long a failed config watch waits before it re-reads the key.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A service's configuration, read from one KV key and kept current: the value now, and a
/// notification on every change (deletion included, as `None`).
///
/// ```no_run
/// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
/// use registry::kv::ConfigWatcher;
/// let mut cfg = ConfigWatcher::start(kv, "config/billing").await?;
/// println!("starting with {:?}", cfg.current());
/// while let Some(new) = cfg.changed().await {
///     println!("config is now {new:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConfigWatcher {
    rx: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl ConfigWatcher {
    /// Read `key` (linearizable) and follow its changes from there on.
    pub async fn start(kv: Kv, key: &str) -> Result<ConfigWatcher, KvError> {
        let (entry, rev) = kv.get_at(key, true).await?;
        let mut w = kv.watch(key, Some(follow_from(rev))).await?;
        let (tx, rx) = watch::channel(entry.map(|e| e.value));
        let key = key.to_string();
        let task = tokio::spawn(async move {
            loop {
                match w.next().await {
                    Ok(ev) => {
                        if let Some(value) = value_change(ev, &key) {
                            if tx.send(value).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!("config watch on '{key}' failed: {e}; retrying");
                        tokio::time::sleep(RETRY_AFTER).await;
                        // Re-read and carry on from the current revision.
                        if let Ok((entry, rev)) = kv.get_at(&key, true).await {
                            let _ = tx.send(entry.map(|e| e.value));
                            if let Ok(nw) = kv.watch(&key, Some(follow_from(rev))).await {
                                w = nw;
                            }
                        }
                    }
                }
            }
        });
        Ok(ConfigWatcher { rx, task })
    }

    /// The current value (`None`: the key does not exist).
    pub fn current(&self) -> Option<String> {
        self.rx.borrow().clone()
    }

    /// Wait for the next change and return the new value (`Some(None)`: the key was deleted;
    /// `None`: the watcher stopped).
    pub async fn changed(&mut self) -> Option<Option<String>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }

    /// A receiver of the value, for `tokio::select!` loops.
    pub fn receiver(&self) -> watch::Receiver<Option<String>> {
        self.rx.clone()
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The revision to follow a key from after reading it at store revision `read_at`.
fn follow_from(read_at: u64) -> u64 {
    read_at + 1
}

/// The config's new value after `ev` (`Some(None)`: deleted), or `None` when the event is
/// about another key (the watch is on a prefix: `config/a` also sees `config/ab`).
fn value_change(ev: WatchEvent, key: &str) -> Option<Option<String>> {
    (ev.key == key).then_some(ev.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::EventKind;

    fn event(kind: EventKind, key: &str, value: Option<&str>) -> WatchEvent {
        WatchEvent {
            revision: 9,
            kind,
            key: key.into(),
            value: value.map(String::from),
        }
    }

    #[test]
    fn a_put_of_the_key_is_its_new_value() {
        let ev = event(EventKind::Put, "config/a", Some("v2"));
        assert_eq!(value_change(ev, "config/a"), Some(Some("v2".into())));
    }

    #[test]
    fn a_deletion_of_the_key_is_no_value() {
        let ev = event(EventKind::Delete, "config/a", None);
        assert_eq!(value_change(ev, "config/a"), Some(None));
    }

    #[test]
    fn a_key_that_only_starts_with_the_config_key_is_not_a_change() {
        let ev = event(EventKind::Put, "config/ab", Some("x"));
        assert_eq!(value_change(ev, "config/a"), None);
        let ev = event(EventKind::Put, "config/a/b", Some("x"));
        assert_eq!(value_change(ev, "config/a"), None);
    }

    #[test]
    fn the_watch_follows_from_the_revision_after_the_read() {
        assert_eq!(follow_from(0), 1);
        assert_eq!(follow_from(41), 42);
    }
}
