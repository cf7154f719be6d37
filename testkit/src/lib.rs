//! # testkit: run `dctl` node processes on loopback for tests and benchmarks
//!
//! The end-to-end tests (`dctl/tests`) and the multi-node benchmarks (`bench`) start real
//! `dctl node start` processes and wait on conditions over their admin API. This crate is the
//! one copy of that harness:
//!
//! * [`ports`] — [`free_port`]: a loopback port free for TCP and UDP, below the ephemeral range.
//! * [`node`] — [`NodeProcess`]: one `dctl node start` child (ports, data directory, log,
//!   cookie), restartable, stopped by signal or killed, and killed on drop; [`locate_dctl`].
//! * [`wait`] — [`wait_until`] / [`wait_until_seen`] / [`wait_for`] / [`wait_until_async`]: poll
//!   a condition until it holds or a deadline passes (an error naming what was awaited and, for
//!   [`wait_until_seen`], what was last seen; never a silent give-up).
//! * [`http`] — [`http::request`]: a raw HTTP/1.1 request to an admin API, with timeouts.
//! * [`metric`] — [`metric::sample`]: one sample of a Prometheus text exposition, an error when
//!   it is missing (never read as 0).
//! * [`error`] — [`Error`], what each of these returns on failure.

#![warn(missing_docs)]

pub mod error;
pub mod http;
pub mod metric;
pub mod node;
pub mod ports;
pub mod wait;

pub use error::Error;
pub use node::{locate_dctl, Cookie, NodeProcess, DCTL_BIN_ENV};
pub use ports::free_port;
pub use wait::{wait_for, wait_until, wait_until_async, wait_until_seen};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
