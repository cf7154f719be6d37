//! # runtime: a node of the actor system
//!
//! A [`Node`] owns a supervision tree (`root` → `system`, `user`), a registry of named actor
//! [`Factory`]s (the built-in [`echo`], [`counter`], `watch`, `forward` and `supervisor` among them; a
//! supervisor's children may run on other nodes: [`Node::remote_child`], [`Placement`]), an inspector that answers tree snapshots, and
//! an admin HTTP server (health, Prometheus metrics, the tree as JSON and as a self-refreshing
//! page, and a JSON API to spawn actors and send them messages).
//!
//! ```
//! use runtime::{JsonMsg, Node};
//! use std::time::Duration;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let node = Node::builder().name("doc-node").admin_addr("127.0.0.1:0").start().await.unwrap();
//! node.spawn_factory("echo", "doc-echo", serde_json::Value::Null).await.unwrap();
//! let reply = node
//!     .call_json("doc-echo", serde_json::json!({"x": 1}), Duration::from_secs(1))
//!     .await
//!     .unwrap();
//! assert_eq!(reply, serde_json::json!({"x": 1}));
//! let tree = node.tree().await.unwrap();
//! assert!(tree.find("doc-echo").is_some());
//! node.shutdown().await;
//! # });
//! ```
//!
//! ## Layout
//!
//! [`Node`] (`node/`) is the handle: its state, and one file per capability (start, messaging,
//! spawning, cluster view, admin API, lifecycle, spans). Below it, holding no `Node`:
//! configuration (`config`, `builder`), clustering (`cluster/`: gossip and the actor transport;
//! `lane/`: the direct message lane; `seal`, `keyring`, `sealed_transport`, `tls`,
//! `transport_door`), the name directory (`directory`, `directory_service`), the wrapping and
//! live figures of actors (`factory`, `counted`, `actor_stats/`, `actor_metrics`), tracing
//! (`trace`, `otlp`, `message_span`), the names and process groups of the node's own actors
//! (`names`), the spawner's wire protocol (`spawn_protocol`), errors (`error`, `gossip_entry`).
//! Above it, taking a `Node`: the node's actors and servers (`spawner`, `inspector`, `watch`,
//! `forward`, `remote_child`, `supervisor_factory`, `keys`, `actions`, `admin`, `admin_serve`,
//! `health`, `diagnostics`).

#![warn(missing_docs)]

mod actions;
mod actor_metrics;
mod actor_stats;
mod admin;
mod admin_serve;
mod builder;
mod cluster;
mod config;
mod counted;
pub mod counter;
mod diagnostics;
mod directory;
mod directory_service;
pub mod echo;
mod error;
mod factory;
mod forward;
#[cfg(test)]
mod fuzz_tests;
mod gossip_entry;
mod health;
pub mod inspector;
mod json;
pub mod keyring;
mod keys;
mod lane;
mod message_span;
mod metrics;
mod names;
mod node;
pub mod otlp;
mod remote_child;
mod seal;
mod sealed_transport;
pub mod secret;
mod signal;
mod spawn_protocol;
pub mod spawner;
mod supervisor_factory;
mod tls;
mod trace;
mod transport_door;
mod watch;

pub use actions::{Action, RESTART_REASON};
pub use actor_stats::{NodeTotals, ACTOR_BASE_BYTES};
pub use builder::NodeBuilder;
pub use cluster::{failure_detector, Member, MemberState};
pub use config::{NodeConfig, GOSSIP_DATAGRAM_MAX, GOSSIP_DATAGRAM_MIN};
pub use error::RuntimeError;
pub use factory::Factory;
pub use gossip_entry::{GOSSIP_ENTRY_MAX, NODE_NAME_MAX};
pub use health::Health;
pub use inspector::InspectorMsg;
pub use json::JsonMsg;
pub use keys::NodeKeys;
pub use metrics::{metrics_text, Metrics, Sample};
pub use node::{Node, NodeTree};
pub use remote_child::Placement;
pub use sealed_transport::KeyOp;
pub use signal::wait_for_signal;
pub use spawner::SpawnerMsg;
pub use tls::TlsFiles;
pub use trace::{
    current as trace_context, in_trace, outgoing as trace_metadata, received as trace_received,
    TraceContext,
};

/// Re-exported so users need not depend on `actors` directly for the common types.
pub use actors::{
    ChildKind, ChildSpec, ChildStatus, LiveStats, Restart, Shutdown, Strategy, SupervisorSpec,
    TreeSnapshot,
};
