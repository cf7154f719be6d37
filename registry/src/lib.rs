//! # registry: Draft's Blueprint as actor groups
//!
//! * [`service`]: the service registry (AP): instances live in gossip state and every node
//!   keeps a view; register, deregister, resolve, watch.
//! * [`kv`]: the KV store (CP): Raft (openraft) between KV actors over the actor transport, with
//!   redb storage.
//! * [`etcd`]: the etcd v3 gRPC API on the KV store, for etcd's own clients.

#![warn(missing_docs)]

pub mod etcd;
pub mod kv;
pub mod service;
