//! Stopping a node: shutdown hooks, then gossip and transport, the admin server, the tree; and
//! what became of the root supervisor (stopped, or gave up).

use std::time::Duration;

use super::{Node, RootState, ShutdownHook};
use crate::{error::RuntimeError, signal::wait_for_signal};

impl Node {
    /// Run `hook` at the start of [`Node::shutdown`], before the tree stops (hooks run in reverse
    /// order of registration). Used e.g. to deregister services before draining.
    pub fn on_shutdown<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner
            .shutdown_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(move || Box::pin(hook())));
    }

    /// Stop the node: the admin server first, then the tree in reverse start order.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let hooks: Vec<ShutdownHook> = std::mem::take(
            &mut *self
                .inner
                .shutdown_hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for hook in hooks.into_iter().rev() {
            if tokio::time::timeout(Duration::from_secs(10), hook())
                .await
                .is_err()
            {
                tracing::warn!("a shutdown hook took more than 10 s; moving on");
            }
        }
        if let Some(cluster) = self.inner.cluster.get() {
            // Nothing dials a session or a lane while the cluster shuts down.
            if let Ok(system) = self.system_supervisor() {
                let _ = actors::terminate_child(&system, crate::cluster::RECONCILE_CHILD).await;
            }
            cluster.shutdown().await;
        }
        let admin = self.lock_admin().take();
        if let Some(admin) = admin {
            let _ = admin.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), admin.task).await;
        }
        let _ = self
            .inner
            .root
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(60)))
            .await;
        if let Some(spans) = self.inner.spans.clone() {
            // The last spans go out (blocking, bounded by the export timeout).
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
        tracing::info!(node = %self.name(), "node stopped");
    }

    /// Wait for Ctrl-C or SIGTERM, then [`Node::shutdown`] and `Ok`. If the root supervisor
    /// gives up first, the node leaves the cluster (shutdown hooks, gossip, transport, admin
    /// API) and this returns [`RuntimeError::RootGaveUp`], so the process can exit non-zero
    /// and its supervisor restart it (as OTP stops a node whose permanent application died).
    pub async fn run_until_signal(&self) -> Result<(), RuntimeError> {
        tokio::select! {
            _ = wait_for_signal() => {
                tracing::info!(node = %self.name(), "signal received, shutting down");
                self.shutdown().await;
                Ok(())
            }
            _ = self.root_stopped() => {
                tracing::error!(
                    node = %self.name(),
                    "the root supervisor gave up; leaving the cluster and stopping"
                );
                self.shutdown().await;
                Err(RuntimeError::RootGaveUp(self.name().to_string()))
            }
        }
    }

    /// Resolves when the root supervisor has stopped. Unless [`Node::shutdown`] stopped it, that
    /// means it gave up (a system service failed beyond its restart intensity): the node can no
    /// longer serve.
    pub async fn root_stopped(&self) {
        let mut down = self.inner.root_down.clone();
        let _ = down.wait_for(|d| *d != RootState::Running).await;
    }

    /// Whether the root supervisor stopped without [`Node::shutdown`] asking it to.
    pub fn root_gave_up(&self) -> bool {
        *self.inner.root_down.borrow() == RootState::GaveUp
    }
}
