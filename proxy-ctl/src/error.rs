//! The errors of the proxy controller.

use thiserror::Error;

/// Errors of the proxy controller (route table, snapshots, xDS server).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProxyError {
    /// A route (or a request about one) is malformed; nothing was written.
    #[error("invalid route: {0}")]
    Invalid(String),
    /// A route with this name already exists; nothing was written.
    #[error("a route named '{0}' already exists (remove it first)")]
    Exists(String),
    /// No route with this name.
    #[error("no route named '{0}'")]
    NotFound(String),
    /// The KV store (or another part of the node) cannot serve now.
    #[error("proxy controller unavailable: {0}")]
    Unavailable(String),
    /// Writing files-mode resources failed.
    #[error("cannot write the xDS files: {0}")]
    Files(String),
}

impl ProxyError {
    /// The HTTP status for the admin API.
    pub fn http_status(&self) -> u16 {
        match self {
            ProxyError::Invalid(_) => 400,
            ProxyError::Exists(_) => 409,
            ProxyError::NotFound(_) => 404,
            ProxyError::Unavailable(_) => 503,
            ProxyError::Files(_) => 500,
        }
    }
}
