//! # chassis: your service as supervised actors in your own binary
//!
//! A few lines turn a user's actors and HTTP handlers into a cluster member that joins like any
//! `dctl` node (same flags: `--seed`, `--cookie`, `--data-dir`, ...), registers itself in the
//! service registry, reads its configuration live from the KV store, reports health, and shuts
//! down cleanly (Draft's Chassis, Go Micro's `Service`).
//!
//! * [`Service::builder`] describes the service: its actors under one supervisor (the
//!   supervision spec), factories (`dctl spawn FACTORY --on NODE`), an axum router, a typed
//!   configuration, readiness checks. [`ServiceBuilder::run`] parses the command line
//!   ([`ServiceArgs`]) and runs until SIGTERM.
//! * [`typed`]: messages between actors on any node are a serde enum ([`Protocol`]) sent with
//!   [`Remote::tell`] / [`Remote::call`], with typed replies and typed errors ([`CallError`]).
//! * [`config`]: [`LiveConfig`], a KV key parsed and validated, re-applied on change; a bad
//!   value is refused and reported, the old one kept.
//! * [`health`]: liveness and readiness, published in the registry so the proxy controller
//!   routes only to ready instances.
//! * [`flags`]: [`NodeFlags`], the node flags shared with `dctl node start`.
//!
//! On SIGTERM: readiness off (the registry says `critical`), a grace period, deregistration, the
//! HTTP port drained (in-flight requests finish), typed actors' mailboxes drained, the
//! service's children stopped in reverse order, then the node itself stops; all within
//! [`ServiceBuilder::shutdown_timeout`] plus the grace period.
//!
//! ```
//! use chassis::{Protocol, Remote, Service, ServiceArgs, TypedActor, Ctx};
//! use clap::Parser;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Greet { Hello(String) }
//! impl Protocol for Greet { type Reply = String; type Error = String; }
//!
//! #[derive(Clone)]
//! struct Greeter;
//! impl TypedActor for Greeter {
//!     type Msg = Greet;
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Ctx, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) }
//!     async fn handle(&self, _: &Ctx, Greet::Hello(who): Greet, _: &mut ()) -> Result<String, String> {
//!         if who.is_empty() { Err("nobody to greet".into()) } else { Ok(format!("hello, {who}")) }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let args = ServiceArgs::parse_from(["greeter", "--data-dir", dir.path().to_str().unwrap()]);
//! let svc = Service::builder("greeter")
//!     .child(|ctx| chassis::worker(ctx.node(), "greeter", Greeter, ()))
//!     .start(args)
//!     .await
//!     .unwrap();
//! let greeter = Remote::<Greet>::new(svc.node(), "greeter");
//! assert_eq!(greeter.call(&Greet::Hello("Ada".into())).await.unwrap(), "hello, Ada");
//! let err = greeter.call(&Greet::Hello(String::new())).await.unwrap_err();
//! assert_eq!(err.actor_error().map(String::as_str), Some("nobody to greet"));
//! svc.shutdown().await;
//! # });
//! ```

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod flags;
pub mod health;
mod http;
mod service;
pub mod typed;

pub use config::{parse_config, ConfigStatus, LiveConfig};
pub use error::Error;
pub use flags::{start_services, Defaults, KvFlags, NodeFlags, Services};
pub use health::Readiness;
pub use service::{init_tracing, Running, Service, ServiceArgs, ServiceBuilder, ServiceCtx};
pub use typed::{
    factory, spawn, worker, CallError, Ctx, Down, Envelope, ErrorOf, Outcome, Protocol, Remote,
    ReplyOf, TellError, Typed, TypedActor, WireError,
};

/// Re-exported so a service crate needs no direct dependency for the common types.
pub use ractor::ActorProcessingErr;
/// Re-exported so a service crate needs no direct dependency for the common types.
pub use runtime::{ChildSpec, Node, Restart, Strategy, SupervisorSpec};
