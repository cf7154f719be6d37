//! # broker: a CloudEvents broker as an actor group
//!
//! Producers publish [CloudEvents 1.0](https://cloudevents.io) on named channels; consumers
//! subscribe to a channel and get a stream. One broker actor runs on each node of a
//! [`runtime::Node`] cluster; nodes share which channels they have consumers for through gossip,
//! so an event crosses the network at most once per interested node, in batches, and events from
//! one producer reach every consumer in production order.
//!
//! - **Broadcast** (default): every consumer of a channel, on any node, gets every event.
//! - **Queue groups**: consumers with the same group name share the events; each event goes to
//!   one live member of each group (beside the broadcast consumers).
//! - **Flow control**: every subscription has a bounded buffer and a [`Policy`]: `Block` slows
//!   the producer (up to the subscription's block deadline, then the consumer is cut off with
//!   [`Delivery::Closed`]), `Drop` drops the oldest event and reports the loss
//!   ([`Delivery::Lost`], and `broker_events_dropped_total` at `/broker/metrics`).
//! - **Durable channels** ([`Broker::declare_durable`]): events are appended to an fsynced log
//!   on the channel's home node before the produce is acknowledged; consumers replay from an
//!   offset or the beginning and continue live; queue groups' committed offsets survive restarts.
//!   A consumer's subscription is pushed to the home before it is answered (not left to
//!   gossip), so every event produced after that reaches it, whichever node it is on.
//!   Every node keeps the durable channels it has heard of on disk and gossips them, so after a
//!   whole-cluster restart no node takes a durable channel for a plain one. Metadata files are
//!   checksummed and replaced atomically; a damaged file or log record is reported, never
//!   silently reset.
//! - **HTTP binding** on the admin server (binary/structured/batch POST, Server-Sent Events).
//!
//! ## Modules, one concept each
//!
//! | module | what it holds |
//! |---|---|
//! | `broker` | the [`Broker`] handle: produce, consume, declare, inspect |
//! | `start` | [`Broker::start`]: wiring the parts, the actor, gossip loops, routes |
//! | `subscription` | one subscription's bounded queue and its block/drop [`Policy`] |
//! | `subscribers` | the local subscription table (who on this node gets an event) |
//! | `routing` | which nodes and queue groups get an event (pure) |
//! | `fanout` | the shell that applies routing: local pushes, link queues, re-routes |
//! | `link` | per-node ordered batches and the acknowledgement (credit) window |
//! | `interest` | gossip keys `broker/i/<channel>` ([`Interest`]) and the view of other nodes' |
//! | `hints` | interest pushed to a durable channel's home ahead of gossip, laid over it (pure) |
//! | `homes` | which node is a durable channel's home (`broker/d/<channel>`, `durable.json`) |
//! | `durable` | the logs homed here; append/read/commit here or at the home |
//! | `log` | the on-disk record log and its recovery |
//! | `metafile` | atomic, checksummed metadata files with a previous copy |
//! | `consume` | a consumer's stream: replay then live ([`Subscription`], [`ConsumeOptions`]) |
//! | [`protocol`] | the typed broker-to-broker [`protocol::Request`] / [`protocol::Response`] |
//! | `remote` | calls to a durable channel's home |
//! | `actor` | the per-node [`BrokerActor`] serving other brokers |
//! | `http` | the CloudEvents HTTP binding ([`parse_events`]) |
//! | `event` | [`CloudEvent`] and its validation |
//!
//! ```
//! use broker::{Broker, CloudEvent, ConsumeOptions, Delivery, StartAt};
//! use futures::StreamExt;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let node = runtime::Node::builder().name("lib-doc").admin_addr("127.0.0.1:0")
//!     .data_dir(dir.path()).start().await.unwrap();
//! let broker = Broker::start(&node).await.unwrap();
//! broker.declare_durable("audit").await.unwrap();
//! let ev = CloudEvent::builder("app", "login").id("1").build().unwrap();
//! assert_eq!(broker.produce("audit", ev.clone()).await.unwrap(), Some(0));
//! let mut replay = broker
//!     .consume("audit", ConsumeOptions::default().from(StartAt::Beginning))
//!     .await
//!     .unwrap();
//! assert_eq!(replay.next().await, Some(Delivery::Event { event: ev, offset: Some(0) }));
//! node.shutdown().await;
//! # });
//! ```
#![warn(missing_docs)]

mod actor;
mod broker;
mod consume;
mod durable;
mod error;
mod event;
mod fanout;
#[cfg(test)]
mod fuzz_tests;
mod hints;
mod homes;
mod http;
mod interest;
mod lag;
mod link;
mod log;
mod metafile;
mod metrics;
mod names;
pub mod protocol;
mod remote;
mod routing;
mod start;
mod subscribers;
mod subscription;

pub use actor::BrokerActor;
pub use broker::Broker;
pub use consume::{
    ConsumeOptions, Delivery, StartAt, Subscription, DEFAULT_BLOCK_DEADLINE, MAX_BLOCK_DEADLINE,
};
pub use error::{BrokerError, EventError};
pub use event::{fresh_id, CloudEvent, CloudEventBuilder};
pub use http::{parse_events, DEFAULT_PRODUCE_TIMEOUT, MAX_PRODUCE_TIMEOUT};
pub use interest::{Interest, MAX_GROUPS_PER_CHANNEL};
pub use lag::{lags, GroupLag};
pub use log::LogError;
pub use metafile::MetaError;
pub use names::valid_channel;
pub use protocol::BrokerMsg;
pub use subscription::Policy;

/// Start the broker on a node (the hook `dctl node start` calls).
pub async fn start(node: &runtime::Node) -> Result<Broker, BrokerError> {
    Broker::start(node).await
}
