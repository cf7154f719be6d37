//! The etcd v3 gRPC API on the KV store, so that etcd's own clients (`etcdctl`, the Go and
//! Rust clients, Kubernetes' kine, Patroni...) work against a Draft cluster. Every node serves
//! it (`--etcd-listen`), each service in its own file:
//!
//! | Service | File | Served |
//! |---|---|---|
//! | `etcdserverpb.KV` | `kv.rs` | Range (prefix, limit, revision, sort, keys/count only, filters), Put (prev_kv, lease, ignore_value/lease), DeleteRange, Txn, Compact |
//! | `etcdserverpb.Watch` | `watch.rs` | create / cancel, start revision, ranges, filters, prev_kv, progress notify and requests, compacted error |
//! | `etcdserverpb.Lease` | `lease.rs` | Grant, Revoke, KeepAlive, TimeToLive, Leases |
//! | `etcdserverpb.Cluster` | `cluster.rs` | MemberList (changes: `dctl kv members`) |
//! | `etcdserverpb.Maintenance` | `maintenance.rs` | Status, Alarm (list) |
//! | `v3lockpb.Lock`, `v3electionpb.Election` | `lock.rs`, `election.rs` | all, on leases |
//! | `etcdserverpb.Auth` | `auth.rs` | AuthStatus (disabled); the rest `Unimplemented` |
//!
//! Semantics are etcd's: one revision per write request (a transaction or a multi-key delete
//! included), `version` counting changes since creation, `create_revision` / `mod_revision`,
//! compaction. Differences (keys and values are UTF-8, key and value limits, lease ids chosen
//! by the store) answer `InvalidArgument` / `Unimplemented` with a message; the README lists
//! them.
//!
//! ```no_run
//! # async fn f(kv: registry::kv::Kv) -> Result<(), registry::etcd::EtcdError> {
//! let server = registry::etcd::serve(kv, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("etcd API on {}", server.addr());
//! # Ok(()) }
//! ```

mod auth;
mod cluster;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
pub mod pb;
mod status;
mod watch;

#[cfg(test)]
mod fuzz_tests;

use std::net::SocketAddr;

use thiserror::Error;
use tonic::{codegen::http, transport::Server};

use crate::kv::Kv;
use pb::{etcdserverpb as rpc, mvccpb};

pub use status::to_status;

/// Largest request accepted, in bytes: etcd's default `--max-request-bytes` (1.5 MiB) plus
/// its 512 KiB gRPC overhead allowance. Larger requests get `ResourceExhausted`.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Most operations in one transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// Errors starting the etcd API.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// The listen address could not be bound.
    #[error("cannot listen for the etcd API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running etcd API server (it stops with the KV store).
#[derive(Debug, Clone)]
pub struct EtcdServer {
    addr: SocketAddr,
}

impl EtcdServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The gossip key under which every node publishes its etcd API address.
pub const GOSSIP_KEY: &str = "etcd.addr";

/// Serve the etcd v3 API for `kv` on `listen` (port 0: a free one), until the KV store stops.
pub async fn serve(kv: Kv, listen: SocketAddr) -> Result<EtcdServer, EtcdError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EtcdError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EtcdError::Bind {
        addr: listen,
        source,
    })?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut stop = kv.stop_signal();
    let max = MAX_REQUEST_BYTES;
    let router = Server::builder()
        .layer(tower::util::MapResponseLayer::new(too_large_is_exhausted))
        .add_service(
            rpc::kv_server::KvServer::new(kv::KvService { kv: kv.clone() })
                .max_decoding_message_size(max),
        )
        .add_service(
            rpc::watch_server::WatchServer::new(watch::WatchService { kv: kv.clone() })
                .max_decoding_message_size(max),
        )
        .add_service(rpc::lease_server::LeaseServer::new(lease::LeaseService {
            kv: kv.clone(),
        }))
        .add_service(rpc::cluster_server::ClusterServer::new(
            cluster::ClusterService { kv: kv.clone() },
        ))
        .add_service(rpc::maintenance_server::MaintenanceServer::new(
            maintenance::MaintenanceService { kv: kv.clone() },
        ))
        .add_service(pb::v3lockpb::lock_server::LockServer::new(
            lock::LockService { kv: kv.clone() },
        ))
        .add_service(
            pb::v3electionpb::election_server::ElectionServer::new(election::ElectionService {
                kv: kv.clone(),
            })
            .max_decoding_message_size(max),
        )
        .add_service(rpc::auth_server::AuthServer::new(auth::AuthService {
            kv: kv.clone(),
        }));
    tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::warn!("etcd API on {addr} stopped: {e}");
        }
    });
    kv.set_etcd_addr(addr).await;
    tracing::info!(%addr, "etcd v3 API listening");
    Ok(EtcdServer { addr })
}

/// grpc-go (etcd's server) answers a request over its size limit with `ResourceExhausted`;
/// tonic answers `OutOfRange`: rewrite that status to etcd's.
fn too_large_is_exhausted<B>(mut r: http::Response<B>) -> http::Response<B> {
    let h = r.headers_mut();
    let too_large = h.get("grpc-status").is_some_and(|s| s == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    r
}

/// A response header for `kv` at `revision` (0: the node's current one).
pub(crate) fn header(kv: &Kv, revision: u64) -> rpc::ResponseHeader {
    let h = kv.header_info();
    rpc::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: if revision == 0 {
            h.revision as i64
        } else {
            revision as i64
        },
        raft_term: h.raft_term,
    }
}

/// A stored entry as etcd's `KeyValue`.
pub(crate) fn key_value(e: crate::kv::KvEntry) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: e.key.into_bytes(),
        create_revision: e.create_revision as i64,
        mod_revision: e.mod_revision as i64,
        version: e.version as i64,
        value: e.value.into_bytes(),
        lease: e.lease.unwrap_or(0) as i64,
    }
}
