//! Cluster-wide gossip key management (`dctl keys list|install|use|remove`), as Serf's
//! `serf keys`: a change asked of one node is applied by every live node, each keeping its
//! keyring on disk, and the answer says what each node did.
//!
//! Each node runs a `gossip-keys` actor (process group `gossip-keys@<node>`, under `system`)
//! that applies changes to its own keyring; requests between nodes travel on the actor
//! transport, which only nodes that know the cookie can use. HTTP: `GET /keys`,
//! `POST /keys/{install|use|remove}` with `{"key": BASE64}`.
//!
//! Rotation without losing a member: `install` the new key (every node now opens it), `use` it
//! (every node seals with it), `remove` the old one. A node that was down during the rotation
//! must be given the new key (`--gossip-key`, or its keyring file) before it can rejoin.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use ractor::{pg, Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    error::RuntimeError,
    json::JsonMsg,
    node::Node,
    sealed_transport::{GossipSeal, KeyOp},
    MemberState,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn group(node: &str) -> String {
    format!("gossip-keys@{node}")
}

/// What one node did with a key request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeys {
    /// The node.
    pub node: String,
    /// Its keys after the request, primary first (absent when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// Whether its keyring changed.
    #[serde(default)]
    pub changed: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    op: Option<KeyOp>,
    key: Option<String>,
}

#[derive(Clone)]
struct KeysActor;

impl Actor for KeysActor {
    type Msg = JsonMsg;
    type State = (String, Arc<GossipSeal>);
    type Arguments = (String, Arc<GossipSeal>);

    async fn pre_start(
        &self,
        myself: ActorRef<JsonMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        pg::join(group(&args.0), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<JsonMsg>,
        msg: JsonMsg,
        (node, seal): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Not wrapped by the node's actor wrapper: drop the decoded message's trace context
        // here, so it is not taken for the next message handled on this thread.
        let _ = crate::trace::take_received();
        if let JsonMsg::Call(body, reply) = msg {
            let answer = apply_local(node, seal, &body);
            let _ = reply.send(serde_json::to_vec(&answer).unwrap_or_default());
        }
        Ok(())
    }
}

pub(crate) fn apply_local(node: &str, seal: &GossipSeal, body: &[u8]) -> NodeKeys {
    let result = serde_json::from_slice::<Request>(body)
        .map_err(|e| format!("bad key request: {e}"))
        .and_then(|req| match (req.op, req.key) {
            (None, _) => Ok(false),
            (Some(op), Some(key)) => seal.change(op, &key).map_err(|e| e.to_string()),
            (Some(_), None) => Err("the request has no key".to_string()),
        });
    match result {
        Ok(changed) => NodeKeys {
            node: node.to_string(),
            keys: Some(seal.list()),
            changed,
            error: None,
        },
        Err(e) => NodeKeys {
            node: node.to_string(),
            keys: None,
            changed: false,
            error: Some(e),
        },
    }
}

/// Start this node's key actor and serve `/keys`.
pub(crate) async fn start(node: &Node) -> Result<(), RuntimeError> {
    let Some(seal) = node.cluster().map(|c| c.gossip_seal().clone()) else {
        return Ok(());
    };
    let sup = node.system_supervisor()?;
    let spec = actors::ChildSpec::worker(
        "gossip-keys",
        None,
        KeysActor,
        (node.name().to_string(), seal),
    );
    actors::start_child(&sup, spec)
        .await
        .map_err(|e| RuntimeError::Config(format!("cannot start the gossip-keys actor: {e}")))?;
    node.add_admin_routes(routes(node.clone()));
    Ok(())
}

impl Node {
    /// Ask every live node (this one included) to apply `op` with `key` (`None`: only list its
    /// keys). One entry per node, sorted by name; a node that failed has `error` set.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let node = runtime::Node::builder().name("keys-doc").without_admin()
    ///     .cookie("doc").data_dir(dir.path()).start().await.unwrap();
    /// let key = runtime::keyring::generate_key().unwrap();
    /// let done = node.gossip_keys(Some((runtime::KeyOp::Install, key.clone()))).await;
    /// assert_eq!(done[0].keys.as_ref().unwrap()[1], key);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn gossip_keys(&self, change: Option<(KeyOp, String)>) -> Vec<NodeKeys> {
        let body = match &change {
            Some((op, key)) => json!({"op": op, "key": key}),
            None => json!({}),
        };
        let bytes = body.to_string().into_bytes();
        let mut out = Vec::new();
        if let Some(c) = self.cluster() {
            out.push(apply_local(self.name(), c.gossip_seal(), &bytes));
        }
        for m in self.members().await {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            let actor: Option<ActorRef<JsonMsg>> = pg::get_members(&group(&m.name))
                .into_iter()
                .find(|c| !c.get_id().is_local())
                .map(ActorRef::from);
            let failed = |e: String| NodeKeys {
                node: m.name.clone(),
                keys: None,
                changed: false,
                error: Some(e),
            };
            let Some(actor) = actor else {
                out.push(failed("no connection to its key service yet".into()));
                continue;
            };
            let b = bytes.clone();
            let answer = self
                .call(&actor, |p| JsonMsg::Call(b, p), CALL_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| serde_json::from_slice::<NodeKeys>(&r).map_err(|e| e.to_string()));
            out.push(answer.unwrap_or_else(failed));
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

fn routes(node: Node) -> Router {
    Router::new()
        .route("/keys", get(list))
        .route("/keys/{op}", post(change))
        .with_state(node)
}

fn answer(nodes: Vec<NodeKeys>) -> Response {
    let failed: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.error.as_ref().map(|e| format!("{}: {e}", n.node)))
        .collect();
    if failed.is_empty() {
        Json(json!({ "nodes": nodes })).into_response()
    } else {
        (
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "error": format!("not applied on every node ({})", failed.join("; ")),
                "nodes": nodes,
            })),
        )
            .into_response()
    }
}

async fn list(State(node): State<Node>) -> Response {
    answer(node.gossip_keys(None).await)
}

async fn change(State(node): State<Node>, Path(op): Path<String>, body: Bytes) -> Response {
    let bad = |e: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response();
    let op = match op.as_str() {
        "install" => KeyOp::Install,
        "use" => KeyOp::Use,
        "remove" => KeyOp::Remove,
        other => {
            return bad(format!(
                "unknown key operation '{other}' (install, use, remove)"
            ))
        }
    };
    let key = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("key").and_then(Value::as_str) {
            Some(k) => k.to_string(),
            None => return bad("the body must be {\"key\": BASE64}".into()),
        },
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    if let Err(e) = crate::keyring::parse_key(&key) {
        return bad(e.to_string());
    }
    answer(node.gossip_keys(Some((op, key))).await)
}
