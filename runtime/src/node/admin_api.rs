//! The node's admin HTTP server: starting it, its address, the routes other crates add to it,
//! and whether the node still waits for its services to mount theirs.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::{AdminServer, Node};
use crate::{admin, error::RuntimeError};

impl Node {
    pub(super) async fn start_admin(&self) -> Result<(), RuntimeError> {
        let addr = self.inner.config.admin_addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RuntimeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| RuntimeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel();
        let app = admin::router(self.clone());
        let token = self.inner.config.admin_token.clone();
        let task = tokio::spawn(async move {
            crate::admin_serve::serve(listener, app, stopped, token).await;
        });
        *self.lock_admin() = Some(AdminServer {
            addr: bound,
            stop,
            task,
        });
        Ok(())
    }

    /// The address the admin HTTP server is bound to (with the real port when 0 was asked).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.lock_admin().as_ref().map(|a| a.addr)
    }

    /// Serve more routes on the admin HTTP server (merged with the ones added before). Paths the
    /// runtime serves itself take precedence.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("routes-doc").admin_addr("127.0.0.1:0").start().await.unwrap();
    /// node.add_admin_routes(axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" })));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn add_admin_routes(&self, routes: axum::Router) {
        let mut guard = self
            .inner
            .extra_routes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let merged = match guard.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        };
        *guard = Some(merged);
    }

    /// The services this node was built to wait for ([`crate::NodeBuilder::services_pending`])
    /// have mounted their routes: unknown paths answer 404 again and `/health` stops reporting
    /// `starting`.
    pub fn services_started(&self) {
        self.inner
            .services_pending
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the node still waits for [`Node::services_started`].
    pub fn is_starting(&self) -> bool {
        self.inner
            .services_pending
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn extra_routes(&self) -> Option<axum::Router> {
        self.inner
            .extra_routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
