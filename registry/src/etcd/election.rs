//! `v3electionpb.Election`: etcd's election service, on the same candidate keys as the lock
//! service (`name/<lease in hex>`, the oldest leads); the leader's value is its key's value.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{codegen::BoxStream, Request, Response, Status};

use super::{
    header, key_value,
    lock::{enter, first, proclaim, wait_turn},
    pb::v3electionpb::{self as pb, election_server::Election as ElectionApi},
    status::{to_status, utf8},
};
use crate::kv::{Compare, CompareOp, CompareTarget, KeyRange, Kv, KvEntry, Txn, TxnOp};

pub(crate) struct ElectionService {
    pub(crate) kv: Kv,
}

fn leader_key(name: String, e: &KvEntry) -> pb::LeaderKey {
    pb::LeaderKey {
        name: name.into_bytes(),
        key: e.key.clone().into_bytes(),
        rev: e.create_revision as i64,
        lease: e.lease.unwrap_or(0) as i64,
    }
}

fn held(l: Option<pb::LeaderKey>) -> Result<(String, KvEntry), Status> {
    let l = l.ok_or_else(|| Status::invalid_argument("the leader key is missing"))?;
    let key = utf8(l.key, "key")?;
    let name = utf8(l.name, "election name")?;
    Ok((
        name,
        KvEntry {
            key,
            value: String::new(),
            create_revision: l.rev.max(0) as u64,
            mod_revision: 0,
            version: 0,
            lease: Some(l.lease.max(0) as u64),
        },
    ))
}

fn no_leader() -> Status {
    Status::unavailable("etcdserver: election: no leader")
}

#[tonic::async_trait]
impl ElectionApi for ElectionService {
    async fn campaign(
        &self,
        req: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let r = req.into_inner();
        let name = utf8(r.name, "election name")?;
        if name.is_empty() {
            return Err(Status::invalid_argument("the election name is empty"));
        }
        let value = utf8(r.value, "value")?;
        let mine = enter(&self.kv, &name, r.lease as u64, Some(value)).await?;
        let rev = wait_turn(&self.kv, &name, &mine).await?;
        Ok(Response::new(pb::CampaignResponse {
            header: Some(header(&self.kv, rev)),
            leader: Some(leader_key(name, &mine)),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let r = req.into_inner();
        let (_, entry) = held(r.leader)?;
        let value = utf8(r.value, "value")?;
        let e = proclaim(&self.kv, &entry, value).await?;
        Ok(Response::new(pb::ProclaimResponse {
            header: Some(header(&self.kv, e.mod_revision)),
        }))
    }

    async fn leader(
        &self,
        req: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        let name = utf8(req.into_inner().name, "election name")?;
        let (head, rev) = first(&self.kv, &name).await?;
        let head = head.ok_or_else(no_leader)?;
        Ok(Response::new(pb::LeaderResponse {
            header: Some(header(&self.kv, rev)),
            kv: Some(key_value(head)),
        }))
    }

    async fn observe(
        &self,
        req: Request<pb::LeaderRequest>,
    ) -> Result<Response<BoxStream<pb::LeaderResponse>>, Status> {
        let name = utf8(req.into_inner().name, "election name")?;
        let (tx, rx) = mpsc::channel(16);
        let kv = self.kv.clone();
        tokio::spawn(async move {
            let mut last: Option<(String, u64)> = None;
            loop {
                let (head, rev) = match first(&kv, &name).await {
                    Ok(x) => x,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                };
                if let Some(h) = head {
                    let now = Some((h.key.clone(), h.mod_revision));
                    if now != last {
                        last = now;
                        let resp = pb::LeaderResponse {
                            header: Some(header(&kv, rev)),
                            kv: Some(key_value(h)),
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                kv.revision_after(rev, Duration::from_secs(1)).await;
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let (_, entry) = held(req.into_inner().leader)?;
        let r = self
            .kv
            .txn(Txn {
                compares: vec![Compare {
                    range: KeyRange::single(entry.key.clone()),
                    target: CompareTarget::Create(entry.create_revision),
                    op: CompareOp::Equal,
                }],
                success: vec![TxnOp::Delete(KeyRange::single(entry.key))],
                failure: vec![],
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ResignResponse {
            header: Some(header(&self.kv, r.revision)),
        }))
    }
}
