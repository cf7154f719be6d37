//! # actors: OTP-grade supervision on ractor
//!
//! This crate holds the parts of the runtime that involve no networking:
//!
//! * [`Supervisor`]: an actor with Erlang/OTP `supervisor` semantics built on ractor's linking:
//!   strategies ([`Strategy`]), restart types ([`Restart`]), restart intensity ([`Intensity`]),
//!   ordered start and reverse-ordered stop with per-child [`Shutdown`] policies, dynamic children
//!   and optional restart [`Backoff`].
//! * [`ChildSpec`]: how a supervisor starts, restarts and stops one child;
//!   [`ChildSpec::task`] makes a long-lived async loop such a child (`task`).
//! * [`TreeSnapshot`]: a serializable view of a supervision tree.
//! * [`codec`]: the one way to turn a serde type into bytes for a remote message (bincode 2).
//!
//! ```
//! use actors::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//!
//! #[derive(Clone)]
//! struct Counter;
//! impl Actor for Counter {
//!     type Msg = ();
//!     type State = u64;
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<u64, ActorProcessingErr> {
//!         Ok(0)
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let spec = SupervisorSpec::new(Strategy::OneForOne)
//!     .child(ChildSpec::worker("counter", None, Counter, ()));
//! let (sup, _handle) = Supervisor::start(None, spec).await.unwrap();
//! let children = actors::which_children(&sup).await.unwrap();
//! assert_eq!(children[0].id, "counter");
//! sup.stop_and_wait(None, None).await.unwrap();
//! # });
//! ```

#![warn(missing_docs)]

mod child;
pub mod codec;
mod error;
mod snapshot;
mod stats;
mod supervisor;
mod task;

pub use child::{
    ChildKind, ChildSpec, Ignore, Restart, Shutdown, StartFuture, DEFAULT_START_TIMEOUT,
};
pub use error::SupervisorError;
pub use snapshot::{ChildStatus, LiveStats, TreeSnapshot};
pub use stats::SupervisorStats;
pub use supervisor::{
    child_cell, count_children, delete_child, restart_child, snapshot, start_child,
    terminate_child, which_children, AutoShutdown, Backoff, ChildCount, ChildInfo, Intensity,
    IntensityScope, Strategy, Supervisor, SupervisorMsg, SupervisorSpec,
};
