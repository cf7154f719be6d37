//! The spawner actor: starts actors from named factories on behalf of other nodes (remote spawn).

use std::sync::{Arc, OnceLock, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use crate::spawn_protocol::SpawnerMsg;
use crate::{
    actions::ActRequest,
    error::RuntimeError,
    names::spawner_group,
    node::{Inner, Node},
    spawn_protocol::{SpawnReply, SpawnRequest},
};

#[derive(Clone)]
pub(crate) struct Spawner {
    pub(crate) node_name: String,
    pub(crate) node: Arc<OnceLock<Weak<Inner>>>,
}

impl Actor for Spawner {
    type Msg = SpawnerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<SpawnerMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(spawner_group(&self.node_name), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<SpawnerMsg>,
        msg: SpawnerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let node = self
            .node
            .get()
            .and_then(Weak::upgrade)
            .map(|inner| Node { inner });
        // Each request waits on the user supervisor or other nodes: answer off the mailbox.
        match msg {
            SpawnerMsg::Spawn(bytes, reply) => answer_later(reply, async move {
                let Some(node) = node else {
                    return not_running();
                };
                match serde_json::from_slice::<SpawnRequest>(&bytes) {
                    Err(e) => SpawnReply::Err {
                        status: 400,
                        message: format!("bad spawn request: {e}"),
                    },
                    Ok(req) => {
                        let here = node.name().to_string();
                        answer(node.spawn_request_on(&here, req).await)
                    }
                }
            }),
            SpawnerMsg::Act(req, reply) => answer_later(reply, async move {
                let Some(node) = node else {
                    return not_running();
                };
                match serde_json::from_slice::<ActRequest>(&req) {
                    Err(e) => SpawnReply::Err {
                        status: 400,
                        message: format!("bad action request: {e}"),
                    },
                    Ok(req) => {
                        let done = node.act_local(&req.name, req.action).await;
                        answer(done.map(|()| req.name))
                    }
                }
            }),
            SpawnerMsg::Stop(name, reply) => answer_later(reply, async move {
                let Some(node) = node else {
                    return not_running();
                };
                let done = node.stop_actor(&name).await;
                answer(done.map(|()| name))
            }),
        }
        Ok(())
    }
}

/// The answer while the node is starting or stopping (no node to act on).
fn not_running() -> SpawnReply {
    SpawnReply::Err {
        status: 503,
        message: "node is starting or stopping".into(),
    }
}

/// The answer to a request: the actor id (or name), or the error with its HTTP status.
fn answer(result: Result<String, RuntimeError>) -> SpawnReply {
    match result {
        Ok(actor_id) => SpawnReply::Ok { actor_id },
        Err(e) => SpawnReply::Err {
            status: e.http_status(),
            message: e.to_string(),
        },
    }
}

/// Work out the answer in a task of its own and send it, as JSON, to `reply`.
fn answer_later(
    reply: RpcReplyPort<Vec<u8>>,
    work: impl std::future::Future<Output = SpawnReply> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Ok(out) = serde_json::to_vec(&work.await) {
            let _ = reply.send(out);
        }
    });
}
