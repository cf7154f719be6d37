//! `etcdserverpb.Lease`: Grant, Revoke, KeepAlive (a stream), TimeToLive, Leases. Lease ids
//! are chosen by the store; keep-alives are served by the leader on its monotonic clock.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{codegen::BoxStream, Request, Response, Status, Streaming};

use super::{
    header,
    pb::etcdserverpb::{self as rpc, lease_server::Lease as LeaseApi},
    status::to_status,
};
use crate::kv::{Kv, KvError, MAX_TTL_SECS};

/// The shortest TTL granted (etcd's minimum for its default election timeout); shorter asks
/// get it.
const MIN_TTL_SECS: i64 = 2;

pub(crate) struct LeaseService {
    pub(crate) kv: Kv,
}

fn secs_up(d: Duration) -> i64 {
    d.as_millis().div_ceil(1000) as i64
}

#[tonic::async_trait]
impl LeaseApi for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<rpc::LeaseGrantRequest>,
    ) -> Result<Response<rpc::LeaseGrantResponse>, Status> {
        let r = req.into_inner();
        if r.id != 0 {
            return Err(Status::unimplemented(
                "choosing a lease ID is not supported: this store picks lease IDs (leave ID 0)",
            ));
        }
        if r.ttl > MAX_TTL_SECS as i64 {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let ttl = r.ttl.max(MIN_TTL_SECS);
        let id = self
            .kv
            .grant(Duration::from_secs(ttl as u64))
            .await
            .map_err(to_status)?;
        Ok(Response::new(rpc::LeaseGrantResponse {
            header: Some(header(&self.kv, 0)),
            id: id as i64,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<rpc::LeaseRevokeRequest>,
    ) -> Result<Response<rpc::LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        self.kv.revoke(id as u64).await.map_err(to_status)?;
        Ok(Response::new(rpc::LeaseRevokeResponse {
            header: Some(header(&self.kv, 0)),
        }))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<rpc::LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<rpc::LeaseKeepAliveResponse>>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let kv = self.kv.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = input.next().await {
                // etcd answers an unknown lease with TTL 0, not an error.
                let ttl = match kv.keep_alive(r.id as u64).await {
                    Ok(ttl) => secs_up(ttl),
                    Err(KvError::Lease(_)) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                let resp = rpc::LeaseKeepAliveResponse {
                    header: Some(header(&kv, 0)),
                    id: r.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<rpc::LeaseTimeToLiveRequest>,
    ) -> Result<Response<rpc::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        match self.kv.lease_info(r.id as u64).await {
            Ok(info) => Ok(Response::new(rpc::LeaseTimeToLiveResponse {
                header: Some(header(&self.kv, 0)),
                id: r.id,
                ttl: (info.remaining.as_millis() / 1000) as i64,
                granted_ttl: secs_up(info.ttl),
                keys: if r.keys {
                    info.keys.into_iter().map(String::into_bytes).collect()
                } else {
                    Vec::new()
                },
            })),
            // etcd: an unknown (expired, revoked) lease has TTL -1.
            Err(KvError::Lease(_)) => Ok(Response::new(rpc::LeaseTimeToLiveResponse {
                header: Some(header(&self.kv, 0)),
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            })),
            Err(e) => Err(to_status(e)),
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<rpc::LeaseLeasesRequest>,
    ) -> Result<Response<rpc::LeaseLeasesResponse>, Status> {
        let leases = self.kv.leases().await.map_err(to_status)?;
        Ok(Response::new(rpc::LeaseLeasesResponse {
            header: Some(header(&self.kv, 0)),
            leases: leases
                .into_iter()
                .map(|(id, _, _)| rpc::LeaseStatus { id: id as i64 })
                .collect(),
        }))
    }
}
