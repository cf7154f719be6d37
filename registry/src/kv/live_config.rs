//! A service's live configuration: one KV key, read now and followed.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};

use super::{Kv, KvError};

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
        let mut w = kv.watch(key, Some(rev + 1)).await?;
        let (tx, rx) = watch::channel(entry.map(|e| e.value));
        let key = key.to_string();
        let task = tokio::spawn(async move {
            loop {
                match w.next().await {
                    Ok(ev) if ev.key == key => {
                        if tx.send(ev.value).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("config watch on '{key}' failed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        // Re-read and carry on from the current revision.
                        if let Ok((entry, rev)) = kv.get_at(&key, true).await {
                            let _ = tx.send(entry.map(|e| e.value));
                            if let Ok(nw) = kv.watch(&key, Some(rev + 1)).await {
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
