//! `etcdserverpb.Cluster`: MemberList. Membership changes go through `dctl kv members`
//! (a member is a Draft node, not an etcd peer URL), so MemberAdd / Remove / Update / Promote
//! answer `Unimplemented`.

use tonic::{Request, Response, Status};

use super::{
    header,
    pb::etcdserverpb::{self as rpc, cluster_server::Cluster as ClusterApi},
    status::to_status,
    GOSSIP_KEY,
};
use crate::kv::Kv;

pub(crate) struct ClusterService {
    pub(crate) kv: Kv,
}

/// Every member of the store as etcd's `Member`: its node name, its Raft id, its etcd API
/// address (from gossip) as client URL, its actor-transport address as peer URL.
pub(crate) async fn members(kv: &Kv) -> Result<Vec<rpc::Member>, Status> {
    let list = kv.members().await.map_err(to_status)?;
    let addrs = kv.gossip_scan(GOSSIP_KEY).await;
    Ok(list
        .into_iter()
        .map(|m| {
            let client: Vec<String> = addrs
                .iter()
                .filter(|(node, _, _)| *node == m.name)
                .map(|(_, _, a)| format!("http://{a}"))
                .collect();
            rpc::Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: Vec::new(),
                client_ur_ls: client,
                is_learner: m.role == "learner",
            }
        })
        .collect())
}

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported over the etcd API: members are Draft nodes, changed with `dctl kv members add|remove|promote`"
    ))
}

#[tonic::async_trait]
impl ClusterApi for ClusterService {
    async fn member_list(
        &self,
        _req: Request<rpc::MemberListRequest>,
    ) -> Result<Response<rpc::MemberListResponse>, Status> {
        Ok(Response::new(rpc::MemberListResponse {
            header: Some(header(&self.kv, 0)),
            members: members(&self.kv).await?,
        }))
    }

    async fn member_add(
        &self,
        _req: Request<rpc::MemberAddRequest>,
    ) -> Result<Response<rpc::MemberAddResponse>, Status> {
        Err(unsupported("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _req: Request<rpc::MemberRemoveRequest>,
    ) -> Result<Response<rpc::MemberRemoveResponse>, Status> {
        Err(unsupported("MemberRemove"))
    }

    async fn member_update(
        &self,
        _req: Request<rpc::MemberUpdateRequest>,
    ) -> Result<Response<rpc::MemberUpdateResponse>, Status> {
        Err(unsupported("MemberUpdate"))
    }

    async fn member_promote(
        &self,
        _req: Request<rpc::MemberPromoteRequest>,
    ) -> Result<Response<rpc::MemberPromoteResponse>, Status> {
        Err(unsupported("MemberPromote"))
    }
}
