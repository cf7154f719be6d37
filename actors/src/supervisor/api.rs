//! The supervisor's messages and the client functions that send them (OTP's
//! `supervisor:start_child/2`, `terminate_child/2`, ...).

use ractor::{rpc::CallResult, ActorCell, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::{
    child::{ChildKind, ChildSpec, Restart},
    error::SupervisorError,
    snapshot::{ChildStatus, TreeSnapshot},
};

/// One child as reported by [`which_children`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its actor id while it runs.
    pub actor_id: Option<String>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Running, restarting or stopped.
    pub status: ChildStatus,
    /// Restarts so far.
    pub restarts: u32,
    /// Restart type.
    pub restart: Restart,
    /// Why the child is not running, when it failed or was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counts as reported by [`count_children`] (OTP `count_children/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildCount {
    /// All child specs, running or not.
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Specs of supervisor kind.
    pub supervisors: usize,
    /// Specs of worker kind.
    pub workers: usize,
}

/// Messages a [`Supervisor`](crate::Supervisor) understands. Use the free functions ([`start_child`](crate::start_child), ...) rather
/// than building these by hand.
pub enum SupervisorMsg {
    /// Add and start a child.
    StartChild(ChildSpec, RpcReplyPort<Result<ActorCell, SupervisorError>>),
    /// Stop a child, keeping its spec (temporary children are deleted).
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// Start a stopped child again.
    RestartChild(String, RpcReplyPort<Result<ActorCell, SupervisorError>>),
    /// Remove a stopped child's spec.
    DeleteChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// List the children.
    WhichChildren(RpcReplyPort<Vec<ChildInfo>>),
    /// Count the children.
    CountChildren(RpcReplyPort<ChildCount>),
    /// The tree under this supervisor.
    Snapshot(RpcReplyPort<TreeSnapshot>),
    /// The running actor of a child, by id.
    ChildCell(String, RpcReplyPort<Option<ActorCell>>),
    /// Internal: restart these children now (sent to itself after an exit, or when a backoff
    /// delay elapsed), so the supervisor answers other messages between restart attempts.
    #[doc(hidden)]
    RestartDue(Vec<String>),
}

impl ractor::Message for SupervisorMsg {}

async fn ask<T: Send + 'static>(
    sup: &ActorRef<SupervisorMsg>,
    build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
) -> Result<T, SupervisorError> {
    match sup.call(build, None).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(SupervisorError::Unavailable("timed out".into())),
        Ok(CallResult::SenderError) => Err(SupervisorError::Unavailable(
            "supervisor stopped before answering".into(),
        )),
        Err(e) => Err(SupervisorError::Unavailable(e.to_string())),
    }
}

/// Add a child to a running supervisor and start it (OTP `start_child/2`).
pub async fn start_child(
    sup: &ActorRef<SupervisorMsg>,
    spec: ChildSpec,
) -> Result<ActorCell, SupervisorError> {
    ask(sup, |r| SupervisorMsg::StartChild(spec, r)).await?
}

/// Stop a child, keeping its spec unless it is temporary (OTP `terminate_child/2`).
pub async fn terminate_child(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<(), SupervisorError> {
    ask(sup, |r| SupervisorMsg::TerminateChild(id.to_string(), r)).await?
}

/// Start a stopped child again from its spec (OTP `restart_child/2`).
pub async fn restart_child(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<ActorCell, SupervisorError> {
    ask(sup, |r| SupervisorMsg::RestartChild(id.to_string(), r)).await?
}

/// Remove the spec of a stopped child (OTP `delete_child/2`).
pub async fn delete_child(sup: &ActorRef<SupervisorMsg>, id: &str) -> Result<(), SupervisorError> {
    ask(sup, |r| SupervisorMsg::DeleteChild(id.to_string(), r)).await?
}

/// List the children in start order (OTP `which_children/1`).
pub async fn which_children(
    sup: &ActorRef<SupervisorMsg>,
) -> Result<Vec<ChildInfo>, SupervisorError> {
    ask(sup, SupervisorMsg::WhichChildren).await
}

/// Count the children (OTP `count_children/1`).
pub async fn count_children(sup: &ActorRef<SupervisorMsg>) -> Result<ChildCount, SupervisorError> {
    ask(sup, SupervisorMsg::CountChildren).await
}

/// A snapshot of the tree under this supervisor.
pub async fn snapshot(sup: &ActorRef<SupervisorMsg>) -> Result<TreeSnapshot, SupervisorError> {
    ask(sup, SupervisorMsg::Snapshot).await
}

/// The running actor of the child `id`, if it runs (e.g. to monitor it or, in diagnostics, to
/// kill it).
///
/// ```
/// # use actors::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
/// # #[derive(Clone)] struct W;
/// # impl ractor::Actor for W { type Msg = (); type State = (); type Arguments = ();
/// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("w", None, W, ()));
/// let (sup, _) = Supervisor::start(None, spec).await.unwrap();
/// assert!(actors::child_cell(&sup, "w").await.unwrap().is_some());
/// assert!(actors::child_cell(&sup, "nope").await.unwrap().is_none());
/// # sup.stop_and_wait(None, None).await.unwrap();
/// # });
/// ```
pub async fn child_cell(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<Option<ActorCell>, SupervisorError> {
    ask(sup, |r| SupervisorMsg::ChildCell(id.to_string(), r)).await
}
