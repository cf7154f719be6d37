//! Diagnostic admin routes for fault tests, off unless [`Node::enable_diagnostics`] is called
//! (`dctl node start --diagnostics`):
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/api/diag/kill/{service}` | kill a child of the `system` supervisor (`inspector`, `spawner`, `kv`, `broker`, ...): it exits abnormally (`killed`), as a crash would; answered once it has stopped → `{"killed":ID}` |
//!
//! Killing system services more than the `system` supervisor's intensity allows (10 in 10 s)
//! makes it give up, so the root supervisor gives up and the node stops: the way tests check
//! that a node whose services cannot run leaves the cluster.

use std::sync::Weak;

use axum::{extract::Path, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use serde_json::json;

use crate::node::{Inner, Node};

impl Node {
    /// Serve the diagnostic routes (see the module doc) on the admin API. Meant for fault
    /// tests: anyone who can reach the admin API can then crash the node's services.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("diag-doc").without_admin().start().await.unwrap();
    /// node.enable_diagnostics();
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn enable_diagnostics(&self) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        self.add_admin_routes(Router::new().route(
            "/api/diag/kill/{service}",
            post(move |Path(service): Path<String>| kill(weak.clone(), service)),
        ));
    }
}

/// How long a kill waits for the service to stop before it answers.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn kill(node: Weak<Inner>, service: String) -> axum::response::Response {
    let err = |status: StatusCode, msg: String| (status, Json(json!({ "error": msg })));
    let Some(inner) = node.upgrade() else {
        return err(StatusCode::SERVICE_UNAVAILABLE, "node is stopping".into()).into_response();
    };
    let node = Node { inner };
    let system = match node.system_supervisor() {
        Ok(s) => s,
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    match actors::child_cell(&system, &service).await {
        // A cell that already stopped (its exit not yet seen by the supervisor) or is still
        // starting is not killed: the caller is told it does not run, and retries.
        // The answer waits for the exit: a kill sent and answered at once let a caller's next
        // request find the same cell still running and kill it again, one crash counted by
        // the supervisor for two requests.
        Ok(Some(cell)) if cell.get_status() == ractor::ActorStatus::Running => {
            match cell.kill_and_wait(Some(KILL_WAIT)).await {
                Ok(()) => Json(json!({ "killed": service })).into_response(),
                Err(e) => err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("'{service}' was killed but did not stop within {KILL_WAIT:?}: {e}"),
                )
                .into_response(),
            }
        }
        Ok(_) => err(
            StatusCode::NOT_FOUND,
            format!("no running system service '{service}'"),
        )
        .into_response(),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
