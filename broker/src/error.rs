//! Errors of the broker.

use thiserror::Error;

/// Why a CloudEvent was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum EventError {
    /// The body is not JSON.
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("event must be a JSON object")]
    NotAnObject,
    /// A required attribute is absent.
    #[error("required attribute '{0}' is missing")]
    Missing(&'static str),
    /// A required attribute is the empty string.
    #[error("required attribute '{0}' must not be empty")]
    Empty(&'static str),
    /// A required attribute is not a string.
    #[error("attribute '{0}' must be a string")]
    NotString(&'static str),
    /// `specversion` is not `"1.0"`.
    #[error("unsupported specversion {0}: only \"1.0\" is supported")]
    SpecVersion(String),
    /// An attribute name that CloudEvents does not allow.
    #[error("invalid attribute name '{0}': names are lower-case letters and digits")]
    BadName(String),
    /// Anything else the CloudEvents SDK refused.
    #[error("invalid CloudEvent: {0}")]
    Invalid(String),
}

/// Errors of broker operations.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The event is not a valid CloudEvent.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The channel name is not allowed.
    #[error("invalid channel name '{0}': use 1-200 of [A-Za-z0-9._-]")]
    BadChannel(String),
    /// A request argument is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The durable channel's home node cannot be reached.
    #[error("durable channel '{channel}' lives on node '{node}', which is unavailable: {reason}")]
    HomeUnavailable {
        /// Channel.
        channel: String,
        /// Home node.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// Disk I/O of a durable channel failed.
    #[error("durable log of channel '{channel}': {reason}")]
    Log {
        /// Channel.
        channel: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker is not running (node starting or stopping).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// A metadata file in the broker's data directory is damaged.
    #[error(transparent)]
    Corrupt(crate::metafile::MetaError),
    /// This node already has consumers in [`crate::MAX_GROUPS_PER_CHANNEL`] queue groups of the
    /// channel (its interest in the channel, gossiped as one entry, must stay small enough for
    /// gossip to carry).
    #[error("channel '{channel}' already has consumers in {limit} queue groups on this node, the limit; join one of them or consume through another node")]
    TooManyGroups {
        /// Channel.
        channel: String,
        /// [`crate::MAX_GROUPS_PER_CHANNEL`].
        limit: usize,
    },
    /// A produce request did not complete in time (a consumer is holding producers back).
    #[error("producing to channel '{channel}' did not complete within {after_ms} ms (a consumer is not keeping up); some events of the request may have been delivered")]
    Timeout {
        /// Channel.
        channel: String,
        /// The request's timeout.
        after_ms: u64,
    },
}

impl BrokerError {
    /// The HTTP status that fits this error.
    pub fn status(&self) -> u16 {
        match self {
            BrokerError::Event(_) | BrokerError::BadChannel(_) | BrokerError::BadRequest(_) => 400,
            BrokerError::HomeUnavailable { .. }
            | BrokerError::Unavailable(_)
            | BrokerError::Timeout { .. } => 503,
            BrokerError::Log { .. } | BrokerError::Corrupt(_) => 500,
            BrokerError::TooManyGroups { .. } => 409,
        }
    }
}
