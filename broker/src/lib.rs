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
//!   the producer, `Drop` drops the oldest event and reports the loss ([`Delivery::Lost`], and
//!   `broker_events_dropped_total` at `/broker/metrics`).
//! - **Durable channels** ([`Broker::declare_durable`]): events are appended to an fsynced log
//!   on the channel's home node before the produce is acknowledged; consumers replay from an
//!   offset or the beginning and continue live; queue groups' committed offsets survive restarts.
//!   Every node keeps the durable channels it has heard of on disk and gossips them, so after a
//!   whole-cluster restart no node takes a durable channel for a plain one.
//! - **HTTP binding** on the admin server (binary/structured/batch POST, Server-Sent Events).
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

mod actor;
mod broker;
mod error;
mod event;
mod http;
mod log;

pub use actor::{BrokerActor, BrokerMsg};
pub use broker::{
    valid_channel, Broker, ConsumeOptions, Delivery, Interest, Policy, StartAt, Subscription,
};
pub use error::{BrokerError, EventError};
pub use event::{fresh_id, CloudEvent, CloudEventBuilder};
pub use http::parse_events;

/// Start the broker on a node (the hook `dctl node start` calls).
pub async fn start(node: &runtime::Node) -> Result<Broker, BrokerError> {
    Broker::start(node).await
}
