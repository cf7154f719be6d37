//! Operator actions on a spawned (user) actor, on whichever node runs it: restart it (a stop
//! with an abnormal reason, so its supervisor starts it again and counts a restart) or kill it
//! (no `post_stop`, as a crash). Requests to other nodes go through their spawner
//! ([`crate::SpawnerMsg::Act`]).

use serde::{Deserialize, Serialize};

use crate::{error::RuntimeError, node::Node, spawn_protocol::SpawnerMsg};

/// What to do to an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Stop it with the reason `restarted by an operator`: its supervisor restarts it.
    Restart,
    /// Kill it at once (no cleanup): its supervisor restarts it as after a crash.
    Kill,
}

/// The stop reason of [`Action::Restart`].
pub const RESTART_REASON: &str = "restarted by an operator";

impl std::str::FromStr for Action {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        match s {
            "restart" => Ok(Action::Restart),
            "kill" => Ok(Action::Kill),
            other => Err(RuntimeError::Config(format!(
                "unknown action '{other}' (restart or kill)"
            ))),
        }
    }
}

/// A request to another node's spawner (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ActRequest {
    pub name: String,
    pub action: Action,
}

impl Node {
    /// Restart or kill a spawned actor of *this* node ([`RuntimeError::UnknownActor`] when it
    /// has no running user actor of that name).
    pub async fn act_local(&self, name: &str, action: Action) -> Result<(), RuntimeError> {
        let user = self.user_supervisor()?;
        let cell = actors::child_cell(&user, name)
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?
            .ok_or_else(|| RuntimeError::UnknownActor(name.to_string()))?;
        match action {
            Action::Restart => cell.stop(Some(RESTART_REASON.to_string())),
            Action::Kill => cell.kill(),
        }
        Ok(())
    }

    /// Restart or kill a spawned actor on whichever node runs it (this one first); returns
    /// the node.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let node = runtime::Node::builder().name("act-doc").without_admin().start().await.unwrap();
    /// node.spawn("act-doc-echo", runtime::echo::Echo, ()).await.unwrap();
    /// let on = node.act("act-doc-echo", runtime::Action::Restart).await.unwrap();
    /// assert_eq!(on, "act-doc");
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn act(&self, name: &str, action: Action) -> Result<String, RuntimeError> {
        match self.act_local(name, action).await {
            Ok(()) => return Ok(self.name().to_string()),
            Err(RuntimeError::UnknownActor(_)) => {}
            Err(e) => return Err(e),
        }
        self.on_the_other_node_running(name, |node| async move {
            self.act_on(&node, name, action).await
        })
        .await
    }

    /// Ask `node`'s spawner to act on its user actor `name`: `Ok(false)` when it has none.
    async fn act_on(&self, node: &str, name: &str, action: Action) -> Result<bool, RuntimeError> {
        let req = serde_json::to_vec(&ActRequest {
            name: name.to_string(),
            action,
        })
        .map_err(|e| RuntimeError::BadJson(e.to_string()))?;
        self.ask_spawner(node, |p| SpawnerMsg::Act(req, p), "unreadable reply")
            .await
    }
}
