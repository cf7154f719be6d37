//! # registry: Draft's Blueprint as actor groups
//!
//! * [`service`]: the service registry (AP): instances live in gossip state and every node
//!   keeps a view; register, deregister, resolve, watch.
//! * [`kv`]: the KV store (CP): Raft (openraft) between KV actors over the actor transport, with
//!   redb storage.

#![warn(missing_docs)]

pub mod kv;
pub mod service;
