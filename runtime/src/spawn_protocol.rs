//! The spawner's wire protocol: what one node asks another node's spawner (spawn, stop, act on
//! an actor) and how its JSON answer reads as a result. The spawner actor itself is in
//! `spawner.rs`.

use ractor::{ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::RuntimeError,
    names::{remote_member, spawner_group},
};

/// A remote spawn request (JSON on the wire).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub factory: String,
    pub name: String,
    #[serde(default)]
    pub args: Value,
    /// Restart type under the host's `user` supervisor (default `transient`); a remote child is
    /// spawned `temporary`, its own supervisor on the other node restarts it.
    #[serde(default)]
    pub restart: Option<actors::Restart>,
    /// `NODE/SUPERVISOR` when the actor is another node's remote child (shown in the tree).
    #[serde(default)]
    pub supervised_from: Option<String>,
}

/// The answer: the actor id, or an error with an HTTP-style status.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SpawnReply {
    Ok { actor_id: String },
    Err { status: u16, message: String },
}

/// Messages of the spawner.
#[derive(RactorClusterMessage)]
pub enum SpawnerMsg {
    /// Spawn from a factory; request and reply are JSON.
    #[rpc]
    Spawn(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Stop a user actor of this node by name; the reply is JSON (`ok` with the name as
    /// `actor_id`, or an error with a status: 404 when it is not here).
    #[rpc]
    Stop(String, RpcReplyPort<Vec<u8>>),
    /// Restart or kill a user actor of this node (JSON `{"name","action"}`); the reply is as
    /// for `Stop`.
    #[rpc]
    Act(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl SpawnReply {
    /// What `node`'s spawner answered: the actor id (the name, for a stop or an action), or the
    /// error it reports; an answer that is not a [`SpawnReply`] is a 502 saying `unreadable`
    /// (e.g. "unreadable spawn reply") and why.
    pub(crate) fn read(node: &str, bytes: &[u8], unreadable: &str) -> Result<String, RuntimeError> {
        match serde_json::from_slice::<SpawnReply>(bytes) {
            Ok(SpawnReply::Ok { actor_id }) => Ok(actor_id),
            Ok(SpawnReply::Err { status, message }) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status,
                message,
            }),
            Err(e) => Err(RuntimeError::Remote {
                node: node.to_string(),
                status: 502,
                message: format!("{unreadable}: {e}"),
            }),
        }
    }

    /// [`SpawnReply::read`] for a request about an existing actor (stop, act): `Ok(false)` when
    /// `node` has no such actor (its spawner answered 404).
    pub(crate) fn found(node: &str, bytes: &[u8], unreadable: &str) -> Result<bool, RuntimeError> {
        match SpawnReply::read(node, bytes, unreadable) {
            Ok(_) => Ok(true),
            Err(RuntimeError::Remote { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The spawner of the other node `node` (its local proxy), or why there is none.
pub(crate) fn spawner_of(node: &str) -> Result<ActorRef<SpawnerMsg>, RuntimeError> {
    remote_member(&spawner_group(node)).ok_or_else(|| RuntimeError::Unreachable {
        node: node.to_string(),
        what: "no actor-transport session to it".into(),
    })
}
