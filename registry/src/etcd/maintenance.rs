//! `etcdserverpb.Maintenance`: Status and the alarm list. Defragment, Hash, HashKV, Snapshot,
//! MoveLeader and Downgrade answer `Unimplemented` with the reason.

use tonic::{codegen::BoxStream, Request, Response, Status};

use super::{
    header,
    pb::etcdserverpb::{self as rpc, maintenance_server::Maintenance as MaintenanceApi},
};
use crate::kv::Kv;

/// The etcd API version this server speaks (reported by Status).
pub const API_VERSION: &str = "3.4.0";

pub(crate) struct MaintenanceService {
    pub(crate) kv: Kv,
}

#[tonic::async_trait]
impl MaintenanceApi for MaintenanceService {
    async fn status(
        &self,
        _req: Request<rpc::StatusRequest>,
    ) -> Result<Response<rpc::StatusResponse>, Status> {
        let kv = &self.kv;
        let (raft_index, applied) = kv.raft_indexes();
        let size = kv.db_size() as i64;
        Ok(Response::new(rpc::StatusResponse {
            header: Some(header(kv, 0)),
            version: API_VERSION.into(),
            db_size: size,
            leader: kv.leader_id().unwrap_or(0),
            raft_index,
            raft_term: kv.header_info().raft_term,
            raft_applied_index: applied,
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: kv.is_learner(),
            ..Default::default()
        }))
    }

    async fn alarm(
        &self,
        req: Request<rpc::AlarmRequest>,
    ) -> Result<Response<rpc::AlarmResponse>, Status> {
        use rpc::alarm_request::AlarmAction;
        match AlarmAction::try_from(req.into_inner().action) {
            Ok(AlarmAction::Get) => Ok(Response::new(rpc::AlarmResponse {
                header: Some(header(&self.kv, 0)),
                alarms: Vec::new(),
            })),
            _ => Err(Status::unimplemented(
                "alarms are not supported: this store raises none",
            )),
        }
    }

    async fn defragment(
        &self,
        _req: Request<rpc::DefragmentRequest>,
    ) -> Result<Response<rpc::DefragmentResponse>, Status> {
        Err(Status::unimplemented(
            "defragment is not supported: the store's redb files reuse their free pages",
        ))
    }

    async fn hash(
        &self,
        _req: Request<rpc::HashRequest>,
    ) -> Result<Response<rpc::HashResponse>, Status> {
        Err(Status::unimplemented("Hash is not supported"))
    }

    async fn hash_kv(
        &self,
        _req: Request<rpc::HashKvRequest>,
    ) -> Result<Response<rpc::HashKvResponse>, Status> {
        Err(Status::unimplemented("HashKV is not supported"))
    }

    async fn snapshot(
        &self,
        _req: Request<rpc::SnapshotRequest>,
    ) -> Result<Response<BoxStream<rpc::SnapshotResponse>>, Status> {
        Err(Status::unimplemented(
            "Snapshot is not supported: copy a node's data dir (<data-dir>/kv) instead",
        ))
    }

    async fn move_leader(
        &self,
        _req: Request<rpc::MoveLeaderRequest>,
    ) -> Result<Response<rpc::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("MoveLeader is not supported"))
    }

    async fn downgrade(
        &self,
        _req: Request<rpc::DowngradeRequest>,
    ) -> Result<Response<rpc::DowngradeResponse>, Status> {
        Err(Status::unimplemented("Downgrade is not supported"))
    }
}
