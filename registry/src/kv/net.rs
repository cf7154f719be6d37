//! The KV actor (one per node, in process group `kv@<node>`) and the Raft network over the actor
//! transport: every Raft RPC and every forwarded client request is a ractor message.

use std::time::Duration;

use actors::codec::Wire;
use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable},
    network::RPCOption,
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
    AnyError, RaftNetwork, RaftNetworkFactory,
};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use runtime::{Node, RuntimeError};
use serde::{Deserialize, Serialize};

use super::{
    request::{Request, Response},
    types::{KvNode, NodeId, TypeConfig},
    Kv, KvError,
};

/// The process group of a node's KV actor.
pub(crate) fn kv_group(node: &str) -> String {
    format!("kv@{node}")
}

/// A Raft RPC between KV actors.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum RaftReq {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// A Raft RPC with the id of the sender's store: a node refuses RPCs of any other store, so two
/// stores never mix even when a node is pointed at the wrong cluster.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct RaftEnvelope {
    pub(crate) store: String,
    pub(crate) req: RaftReq,
}

/// The answer to a [`RaftReq`].
#[derive(Serialize, Deserialize)]
pub(crate) enum RaftResp {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The receiver is not a Raft member or could not read the request.
    Refused(String),
}

/// Messages of the KV actor (both cross the network as bincode-2 [`Wire`] values).
#[derive(RactorClusterMessage)]
pub(crate) enum KvMsg {
    /// A Raft RPC from another voter.
    #[rpc]
    Raft(Wire<RaftEnvelope>, RpcReplyPort<Wire<RaftResp>>),
    /// A client request forwarded by another node.
    #[rpc]
    Client(Wire<Request>, RpcReplyPort<Wire<Result<Response, KvError>>>),
}

/// The KV actor: serves Raft RPCs and forwarded requests for its node.
#[derive(Clone)]
pub(crate) struct KvActor {
    pub(crate) kv: Kv,
}

impl Actor for KvActor {
    type Msg = KvMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<KvMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(kv_group(self.kv.node_name()), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<KvMsg>,
        msg: KvMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let kv = self.kv.clone();
        // Each request is served by its own task so the mailbox never waits on disk or quorum.
        match msg {
            KvMsg::Raft(req, reply) => {
                tokio::spawn(async move {
                    let resp = match req.decode() {
                        Ok(r) => kv.serve_raft(r).await,
                        Err(e) => RaftResp::Refused(format!("malformed Raft RPC: {e}")),
                    };
                    if let Ok(w) = Wire::new(&resp) {
                        let _ = reply.send(w);
                    }
                });
            }
            KvMsg::Client(req, reply) => {
                tokio::spawn(async move {
                    let resp = match req.decode() {
                        Ok(r) => kv.serve(r).await,
                        Err(e) => Err(KvError::Invalid(format!("malformed KV request: {e}"))),
                    };
                    if let Ok(w) = Wire::new(&resp) {
                        let _ = reply.send(w);
                    }
                });
            }
        }
        Ok(())
    }
}

/// The KV actor of another node, if there is a transport session to it.
pub(crate) fn remote_actor(node: &str) -> Option<ActorRef<KvMsg>> {
    ractor::pg::get_members(&kv_group(node))
        .into_iter()
        .find(|c: &ActorCell| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// Why a call to another node's KV actor failed.
pub(crate) enum CallFail {
    /// Not delivered: no session / no actor there.
    Unreachable(String),
    /// Delivered (perhaps), but no answer.
    NoAnswer(String),
    /// The answer could not be read.
    Garbled(String),
}

/// Call another node's KV actor (over the direct lane when it is up).
pub(crate) async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned + Send + 'static>(
    rt: &Node,
    node: &str,
    build: impl FnOnce(Wire<Req>, RpcReplyPort<Wire<Resp>>) -> KvMsg,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, CallFail> {
    let actor = remote_actor(node).ok_or_else(|| {
        CallFail::Unreachable(format!("no actor-transport session to node '{node}'"))
    })?;
    let wire = Wire::new(req).map_err(|e| CallFail::Garbled(e.to_string()))?;
    match rt.call(&actor, |p| build(wire, p), timeout).await {
        Ok(w) => w.decode().map_err(|e| CallFail::Garbled(e.to_string())),
        Err(RuntimeError::Timeout { .. }) => Err(CallFail::NoAnswer(format!(
            "node '{node}' did not answer within {timeout:?}"
        ))),
        Err(RuntimeError::NoReply(_)) => Err(CallFail::NoAnswer(format!(
            "node '{node}' dropped the request (connection lost?)"
        ))),
        Err(e) => Err(CallFail::Unreachable(format!(
            "cannot send to node '{node}': {e}"
        ))),
    }
}

/// The Raft network factory: a client per target node.
pub(crate) struct Network {
    pub(crate) rt: Node,
    /// This node's store id.
    pub(crate) store: tokio::sync::watch::Receiver<Option<String>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &KvNode) -> Peer {
        Peer {
            rt: self.rt.clone(),
            store: self.store.clone(),
            target,
            name: node.name.clone(),
        }
    }
}

/// A Raft peer reached through its KV actor.
pub(crate) struct Peer {
    rt: Node,
    store: tokio::sync::watch::Receiver<Option<String>>,
    target: NodeId,
    name: String,
}

fn rpc_err<E: std::error::Error>(f: CallFail) -> RPCError<NodeId, KvNode, E> {
    match f {
        CallFail::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&AnyError::error(m))),
        CallFail::NoAnswer(m) | CallFail::Garbled(m) => {
            RPCError::Network(NetworkError::new(&AnyError::error(m)))
        }
    }
}

impl Peer {
    async fn rpc(&self, req: RaftReq, option: &RPCOption) -> Result<RaftResp, CallFail> {
        let timeout = option.hard_ttl().max(Duration::from_millis(200));
        let Some(store) = self.store.borrow().clone() else {
            return Err(CallFail::Unreachable(
                "this node has not joined a KV store".into(),
            ));
        };
        let env = RaftEnvelope { store, req };
        call(&self.rt, &self.name, KvMsg::Raft, &env, timeout).await
    }
}

fn unexpected<E: std::error::Error>(r: RaftResp) -> RPCError<NodeId, KvNode, E> {
    let m = match r {
        RaftResp::Refused(m) => m,
        _ => "mismatched Raft reply".to_string(),
    };
    RPCError::Network(NetworkError::new(&AnyError::error(m)))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, KvNode, RaftError<NodeId>>> {
        match self
            .rpc(RaftReq::Append(rpc), &option)
            .await
            .map_err(rpc_err)?
        {
            RaftResp::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, KvNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .rpc(RaftReq::Snapshot(rpc), &option)
            .await
            .map_err(rpc_err)?
        {
            RaftResp::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, KvNode, RaftError<NodeId>>> {
        match self
            .rpc(RaftReq::Vote(rpc), &option)
            .await
            .map_err(rpc_err)?
        {
            RaftResp::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }
}
