//! The spawner actor: starts actors from named factories on behalf of other nodes (remote spawn).

use std::sync::{Arc, OnceLock, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef};

pub use crate::spawn_protocol::SpawnerMsg;
use crate::{
    actions::ActRequest,
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
        let (bytes, reply) = match msg {
            SpawnerMsg::Spawn(bytes, reply) => (bytes, reply),
            SpawnerMsg::Act(req, reply) => {
                tokio::spawn(async move {
                    let answer = match (node, serde_json::from_slice::<ActRequest>(&req)) {
                        (None, _) => SpawnReply::Err {
                            status: 503,
                            message: "node is starting or stopping".into(),
                        },
                        (_, Err(e)) => SpawnReply::Err {
                            status: 400,
                            message: format!("bad action request: {e}"),
                        },
                        (Some(node), Ok(req)) => {
                            match node.act_local(&req.name, req.action).await {
                                Ok(()) => SpawnReply::Ok { actor_id: req.name },
                                Err(e) => SpawnReply::Err {
                                    status: e.http_status(),
                                    message: e.to_string(),
                                },
                            }
                        }
                    };
                    if let Ok(out) = serde_json::to_vec(&answer) {
                        let _ = reply.send(out);
                    }
                });
                return Ok(());
            }
            SpawnerMsg::Stop(name, reply) => {
                tokio::spawn(async move {
                    let answer = match node {
                        None => SpawnReply::Err {
                            status: 503,
                            message: "node is starting or stopping".into(),
                        },
                        Some(node) => match node.stop_actor(&name).await {
                            Ok(()) => SpawnReply::Ok { actor_id: name },
                            Err(e) => SpawnReply::Err {
                                status: e.http_status(),
                                message: e.to_string(),
                            },
                        },
                    };
                    if let Ok(out) = serde_json::to_vec(&answer) {
                        let _ = reply.send(out);
                    }
                });
                return Ok(());
            }
        };
        // Spawning waits on the user supervisor; do it off the spawner's mailbox.
        tokio::spawn(async move {
            let answer = match (node, serde_json::from_slice::<SpawnRequest>(&bytes)) {
                (None, _) => SpawnReply::Err {
                    status: 503,
                    message: "node is starting or stopping".into(),
                },
                (_, Err(e)) => SpawnReply::Err {
                    status: 400,
                    message: format!("bad spawn request: {e}"),
                },
                (Some(node), Ok(req)) => {
                    let here = node.name().to_string();
                    match node.spawn_request_on(&here, req).await {
                        Ok(actor_id) => SpawnReply::Ok { actor_id },
                        Err(e) => SpawnReply::Err {
                            status: e.http_status(),
                            message: e.to_string(),
                        },
                    }
                }
            };
            if let Ok(out) = serde_json::to_vec(&answer) {
                let _ = reply.send(out);
            }
        });
        Ok(())
    }
}
