//! The chassis's errors.

use thiserror::Error;

/// Why a service could not start or run.
#[derive(Debug, Error)]
pub enum Error {
    /// The node could not start (flags, ports, secrets...).
    #[error("cannot start the node: {0}")]
    Node(#[from] runtime::RuntimeError),
    /// One of the node's services (KV store, registry, broker...) could not start.
    #[error("cannot start the {0}: {1}")]
    Service(&'static str, String),
    /// The service's configuration in the KV store is not valid, so the service does not start
    /// (a running service keeps its old configuration instead: see [`crate::LiveConfig`]).
    #[error("the configuration in KV key '{key}' is refused: {reason}")]
    Config {
        /// The KV key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The service's own actors could not start.
    #[error("cannot start the service's actors: {0}")]
    Actors(String),
    /// The service's HTTP listener could not be bound.
    #[error("cannot serve HTTP on {addr}: {reason}")]
    Http {
        /// The address asked for.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Registering the service in the registry failed.
    #[error("cannot register the service: {0}")]
    Register(String),
    /// The node's root supervisor gave up (the process should exit non-zero and be restarted).
    #[error("the node stopped: {0}")]
    Stopped(String),
}
