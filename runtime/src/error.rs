use std::time::Duration;

use thiserror::Error;

/// Errors of the runtime API. Each maps to a one-line message for the CLI and an HTTP status
/// for the admin API ([`RuntimeError::http_status`]).
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// No actor is registered under this name.
    #[error("unknown actor '{0}'")]
    UnknownActor(String),
    /// No live node has this name.
    #[error("unknown node '{0}'")]
    UnknownNode(String),
    /// The node hosting the actor (or the node asked for) is down.
    #[error("node '{node}' is down ({what})")]
    NodeDown {
        /// The node that is down.
        node: String,
        /// What was being reached there.
        what: String,
    },
    /// The node is alive in gossip, but there is no actor-transport session to it (e.g. TLS or
    /// cookie mismatch, or a network problem on the transport port).
    #[error("node '{node}' is unreachable ({what})")]
    Unreachable {
        /// The node.
        node: String,
        /// What was being reached there.
        what: String,
    },
    /// Another node refused the request.
    #[error("node '{node}': {message}")]
    Remote {
        /// The node that answered.
        node: String,
        /// Its HTTP-style status for the error.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// No factory is registered under this name.
    #[error("unknown factory '{0}' (known: {1})")]
    UnknownFactory(String, String),
    /// The name is already taken by a running actor.
    #[error("an actor named '{0}' already exists")]
    NameTaken(String),
    /// The actor exists but does not take this kind of message.
    #[error("actor '{0}' does not accept {1} messages")]
    WrongMessageType(String, &'static str),
    /// A call got no reply in time.
    #[error("call to '{name}' timed out after {}ms", timeout.as_millis())]
    Timeout {
        /// The actor called.
        name: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The actor stopped or failed before it replied.
    #[error("actor '{0}' stopped before replying (it may have crashed)")]
    NoReply(String),
    /// A message sent without a reply found the actor's mailbox closed: it stopped, or its
    /// supervisor is restarting it (a later send may find the new one).
    #[error("actor '{0}' is not running (it stopped or is being restarted): the message was not delivered")]
    NotRunning(String),
    /// A message or argument was not valid JSON.
    #[error("invalid JSON: {0}")]
    BadJson(String),
    /// Spawning failed (the factory refused the arguments, or the actor failed to start).
    #[error("spawn failed: {0}")]
    SpawnFailed(String),
    /// The node is shutting down or its supervisors are unavailable.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// The node's root supervisor gave up: a system service failed beyond its restart
    /// intensity, and the node stopped.
    #[error("node '{0}' stopped: its root supervisor gave up (a system service kept failing)")]
    RootGaveUp(String),
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another live node already has this node's name (found when joining the cluster).
    #[error(
        "the name '{name}' is taken: a live node at {gossip_addr} has it (choose another --name)"
    )]
    NodeNameTaken {
        /// The name.
        name: String,
        /// The gossip address of the node that has it.
        gossip_addr: String,
    },
    /// The node runs as many spawned actors as its `--max-actors` allows.
    #[error("node '{node}' is at its actor limit (--max-actors {limit}): stop an actor first")]
    ActorLimit {
        /// The node.
        node: String,
        /// The limit.
        limit: usize,
    },
    /// A message to a remote actor is larger than one lane frame carries.
    #[error("message to '{name}' is larger than a lane frame ({limit} bytes)")]
    TooLarge {
        /// The actor.
        name: String,
        /// The largest frame, in bytes.
        limit: usize,
    },
    /// A key-value too large for gossip to carry (see [`crate::GOSSIP_ENTRY_MAX`]); nothing
    /// was published.
    #[error("gossip entry '{key}' is {size} bytes (key and value); the limit is {limit} bytes")]
    GossipEntryTooLarge {
        /// The key (its first 80 characters).
        key: String,
        /// Key and value, in bytes.
        size: usize,
        /// [`crate::GOSSIP_ENTRY_MAX`].
        limit: usize,
    },
}

impl RuntimeError {
    /// The HTTP status the admin API answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            RuntimeError::UnknownActor(_)
            | RuntimeError::UnknownFactory(..)
            | RuntimeError::UnknownNode(_) => 404,
            RuntimeError::NameTaken(_) | RuntimeError::NodeNameTaken { .. } => 409,
            RuntimeError::WrongMessageType(..)
            | RuntimeError::BadJson(_)
            | RuntimeError::Config(_) => 400,
            RuntimeError::TooLarge { .. } | RuntimeError::GossipEntryTooLarge { .. } => 413,
            RuntimeError::Timeout { .. } => 504,
            RuntimeError::NoReply(_)
            | RuntimeError::NodeDown { .. }
            | RuntimeError::Unreachable { .. } => 502,
            RuntimeError::Remote { status, .. } => *status,
            RuntimeError::SpawnFailed(_) => 422,
            RuntimeError::Unavailable(_)
            | RuntimeError::NotRunning(_)
            | RuntimeError::ActorLimit { .. }
            | RuntimeError::RootGaveUp(_)
            | RuntimeError::Bind { .. } => 503,
        }
    }
}
