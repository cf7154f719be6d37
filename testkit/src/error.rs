//! The errors of the harness: every failure names what it was doing.

use std::{process::ExitStatus, time::Duration};

/// What a harness call failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every candidate port was taken.
    #[error("no free loopback port in {low}..{high}")]
    NoFreePort {
        /// First port tried.
        low: u16,
        /// One past the last port tried.
        high: u16,
    },
    /// A condition did not hold before its deadline.
    #[error("timed out after {limit:?} waiting for: {what}")]
    TimedOut {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        limit: Duration,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A peer's answer was not an HTTP response.
    #[error("not an HTTP response from {addr}: {text:?}")]
    BadResponse {
        /// The address asked.
        addr: String,
        /// What came back.
        text: String,
    },
    /// A sample is absent from a Prometheus exposition.
    #[error("metric {name} is not in the exposition")]
    MissingMetric {
        /// The sample's name (with labels, if any).
        name: String,
    },
    /// A sample's value is not a number of the asked kind.
    #[error("metric {name} = {value:?} is not {kind}")]
    BadMetric {
        /// The sample's name.
        name: String,
        /// Its text.
        value: String,
        /// What it should have been (`"a number"`, `"a count"`).
        kind: &'static str,
    },
    /// A node process exited on its own.
    #[error("node {name} exited ({status}): {last_line}")]
    Exited {
        /// The node's name.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last line of its log.
        last_line: String,
    },
    /// A node process is not running (never spawned, or killed).
    #[error("node {name} is not running")]
    NotRunning {
        /// The node's name.
        name: String,
    },
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
