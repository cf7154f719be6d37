//! What a node's `/health` reports: whether everything the node needs to serve runs.
//!
//! A node is healthy when its `root`, `system` and `user` supervisors run and every child of
//! `system` (inspector, spawner and the services other crates add: KV, broker, registry) is
//! running. A system service that crashed and waits for its restart counts as down from the
//! first moment, so nothing routes to (or elects) a node that cannot serve; a supervisor that
//! does not answer within 2 s counts as down too.

use std::time::Duration;

use actors::{ChildStatus, SupervisorMsg};
use ractor::{rpc::CallResult, ActorRef};
use serde::{Deserialize, Serialize};

use crate::node::Node;

/// How long a supervisor may take to answer a health check.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// A node's health: the parts that are down (empty when healthy).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let node = runtime::Node::builder().name("health-doc").without_admin().start().await.unwrap();
/// let health = node.health().await;
/// assert!(health.is_healthy(), "{:?}", health.down);
/// # node.shutdown().await;
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The node's name.
    pub node: String,
    /// What is down, e.g. `system/kv (restarting)` or `root`.
    pub down: Vec<String>,
}

impl Health {
    /// Whether nothing is down.
    pub fn is_healthy(&self) -> bool {
        self.down.is_empty()
    }
}

fn status_name(s: ChildStatus) -> &'static str {
    match s {
        ChildStatus::Running => "running",
        ChildStatus::Restarting => "restarting",
        ChildStatus::Stopped => "stopped",
        ChildStatus::Failed => "failed",
        ChildStatus::Unresponsive => "unresponsive",
    }
}

impl Node {
    /// Check the node's supervisors and system services (see the module doc).
    pub async fn health(&self) -> Health {
        let mut down = Vec::new();
        let root_down = *self.inner.root_down.borrow() != crate::node::RootState::Running;
        if root_down {
            down.push("root".to_string());
        }
        if self.is_starting() {
            down.push("services (starting)".to_string());
        }
        match self.system_supervisor() {
            Err(_) => down.push("system".into()),
            Ok(system) => match which(&system).await {
                None => down.push("system (unresponsive)".into()),
                Some(children) => {
                    for c in children {
                        if c.status != ChildStatus::Running {
                            let mut what = format!("system/{} ({})", c.id, status_name(c.status));
                            if let Some(r) = c.reason {
                                what.push_str(&format!(": {r}"));
                            }
                            down.push(what);
                        }
                    }
                }
            },
        }
        match self.user_supervisor() {
            Err(_) => down.push("user".into()),
            Ok(user) => {
                if which(&user).await.is_none() {
                    down.push("user (unresponsive)".into());
                }
            }
        }
        Health {
            node: self.name().to_string(),
            down,
        }
    }
}

async fn which(sup: &ActorRef<SupervisorMsg>) -> Option<Vec<actors::ChildInfo>> {
    match sup
        .call(SupervisorMsg::WhichChildren, Some(ANSWER_WITHIN))
        .await
    {
        Ok(CallResult::Success(c)) => Some(c),
        _ => None,
    }
}
