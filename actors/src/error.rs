use thiserror::Error;

/// Errors returned by the supervisor API ([`crate::start_child`] and friends).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SupervisorError {
    /// No child with this id is known to the supervisor.
    #[error("no child with id '{0}'")]
    NotFound(String),
    /// A child with this id already exists (running or not).
    #[error("a child with id '{0}' already exists")]
    AlreadyPresent(String),
    /// The operation needs the child to be stopped, but it is running.
    #[error("child '{0}' is running")]
    Running(String),
    /// The child is waiting for its restart (backoff, or a restart queued behind other calls):
    /// OTP's `{error, restarting}`. Terminate it first to cancel the restart.
    #[error("child '{0}' is restarting")]
    Restarting(String),
    /// The child's start answered [`crate::Ignore`] (OTP's `{ok, undefined}`): nothing runs;
    /// the spec is kept unless the child is temporary.
    #[error("child '{0}' ignored its start")]
    Ignored(String),
    /// The supervisor already has its `max_children`.
    #[error("the supervisor already has its maximum of {0} children")]
    MaxChildren(usize),
    /// The child spec is not allowed here (e.g. a significant permanent child).
    #[error("invalid child spec: {0}")]
    BadSpec(String),
    /// The child's start function failed.
    #[error("child '{id}' failed to start: {reason}")]
    StartFailed {
        /// Id of the child that failed.
        id: String,
        /// Why it failed, as reported by the start function.
        reason: String,
    },
    /// The supervisor did not answer (it is stopped, stopping, or timed out).
    #[error("supervisor unavailable: {0}")]
    Unavailable(String),
}
