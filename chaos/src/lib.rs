//! Jepsen-style fault testing of a `dctl` cluster: real `dctl node start` processes, each on its
//! own loopback address, faults injected between and into them, client histories recorded in
//! Jepsen's shape and checked for anomalies.
//!
//! - [`history`]: invoke / ok / fail / info records, one JSON line each;
//! - [`checker`]: linearizability of the KV register, the set, broker delivery, registry
//!   convergence (pure functions of a history, unit-tested on hand-written histories);
//! - [`net`]: iptables DROP rules between node addresses, in a chain of the run's own, removed on
//!   drop and swept at start when a crashed run left them;
//! - [`cluster`]: the node processes (start, SIGKILL + restart on the same data dir,
//!   SIGSTOP/SIGCONT, clock skew through libfaketime, data-file corruption while down);
//! - [`nemesis`]: Jepsen's fault names and a seeded schedule;
//! - [`workload`]: the clients of `kv-register`, `kv-set`, `broker` and `registry`;
//! - [`run`]: one test run (cluster + workload + nemesis + checker), as `cargo run -p chaos` does.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let opts = chaos::run::Options::parse_from(["chaos", "--workload", "kv-register",
//!     "--nemesis", "partition-halves", "--time", "10"]);
//! let outcome = chaos::run::run(opts).await?;
//! assert!(outcome.anomalies() == 0);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod run;
pub mod workload;
