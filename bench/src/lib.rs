//! # bench: performance measurements of the actor runtime
//!
//! Each benchmark lives in its own module and is exposed as a subcommand of the `bench` binary
//! (`cargo run --release -p bench -- <name>`):
//!
//! * [`local`] — one-way throughput and call latency of an actor spawned through
//!   [`runtime::Node`] versus the same actor spawned with bare [`ractor::Actor::spawn`];
//!   [`local::api`] adds `Node::send`, calls by name and spawn rate.
//! * [`cluster`] — cross-node call latency and one-way throughput versus raw TCP, failure
//!   detection after `kill -9`, and convergence of a multi-node cluster, with `dctl node start`
//!   child processes as the other nodes (one OS process is one node).
//! * [`kv`] — KV store put/get throughput and p99 versus etcd 3.4, three members each.
//! * [`registry`] — service-registry propagation time for 3- and 10-node clusters.
//! * [`proxy`] — register -> first request routed by Envoy via another node, kill -> removed,
//!   1 000-service snapshot build + ACK, with a real Envoy.
//! * [`restart`] — supervisor restart latency (crash -> running again) versus Erlang/OTP.
//! * [`memory`] — idle actors' memory on their node and on the other nodes, spawn rate as the
//!   count grows, idle CPU.
//! * [`scale`] — clusters of 10, 25 and 50 node processes: convergence, failure detection,
//!   gossip bytes/s and CPU per node, and how they grow with N.
//! * [`erlang`] — local and cross-node messaging, memory per idle actor and spawn rate versus
//!   Erlang/OTP (processes, distribution) in the same run.
//!
//! * [`all`] — every benchmark in turn, one markdown report of every target's verdict.
//!
//! Shared pieces: [`checks`] (each target with its PASS/MISS verdict, the target table),
//! [`stats`] (percentiles, medians over rounds, limits), [`procs`] (the `dctl` node processes,
//! on the [`testkit`] harness).
//!
//! Benchmarks return a report value (printable with `Display`, serialisable to JSON) rather than
//! printing themselves, so tests can run them in a quick mode and inspect the results.

#![warn(missing_docs)]

pub mod all;
pub mod broker;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod erlang;
pub mod kv;
pub mod local;
pub mod memory;
pub mod procs;
pub mod proxy;
pub mod rawtcp;
pub mod registry;
pub mod restart;
pub mod scale;
pub mod stats;

pub use cluster::{run_cluster, ClusterConfig, ClusterReport, RawServerMode};
pub use local::{run_local, LocalConfig, LocalReport, StatsReport};
