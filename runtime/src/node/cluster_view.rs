//! The node's view of its cluster: members, gossip key-values, spawning on another node, and
//! the supervision trees of this node and of every live one.

use std::{net::SocketAddr, time::Duration};

use actors::TreeSnapshot;
use ractor::ActorRef;
use serde_json::Value;

use super::{Node, NodeTree};
use crate::{
    cluster::{Member, MemberState},
    error::RuntimeError,
    inspector::InspectorMsg,
    json::JsonMsg,
    names::{actor_group, inspector_group, inspector_name, json_group, remote_member},
    spawn_protocol::{spawner_of, SpawnReply, SpawnRequest, SpawnerMsg},
};

impl Node {
    /// Publish a key-value in this node's gossip state (visible to every node). Key and value
    /// together may have at most [`crate::GOSSIP_ENTRY_MAX`] bytes (what one gossip message
    /// can carry): a larger one is refused with [`RuntimeError::GossipEntryTooLarge`] and
    /// nothing changes.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("gossip-set-doc").admin_addr("127.0.0.1:0")
    ///     .start().await.unwrap();
    /// node.gossip_set("demo", "1").await.unwrap();
    /// let big = "x".repeat(runtime::GOSSIP_ENTRY_MAX);
    /// let err = node.gossip_set("demo", &big).await.unwrap_err();
    /// assert_eq!(err.http_status(), 413);
    /// assert_eq!(node.gossip_scan("demo").await[0].2, "1");
    /// node.shutdown().await;
    /// # });
    /// ```
    pub async fn gossip_set(&self, key: &str, value: &str) -> Result<(), RuntimeError> {
        crate::gossip_entry::check(key, value)?;
        if let Some(c) = self.inner.cluster.get() {
            c.set_key(key, value).await;
        }
        Ok(())
    }

    /// Remove a key from this node's gossip state.
    pub async fn gossip_delete(&self, key: &str) {
        if let Some(c) = self.inner.cluster.get() {
            c.delete_key(key).await;
        }
    }

    /// Key-values under `prefix` published by live nodes (this one included), as
    /// `(node, key, value)`.
    pub async fn gossip_scan(&self, prefix: &str) -> Vec<(String, String, String)> {
        match self.inner.cluster.get() {
            Some(c) => c.scan_live(prefix).await,
            None => Vec::new(),
        }
    }

    /// A receiver that changes whenever membership or any node's gossip state changes (after
    /// it was made). `async` for the callers written when it was; it no longer waits.
    pub async fn gossip_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.cluster.get().map(|c| c.changes())
    }

    /// The members of the cluster as this node sees them (itself included).
    pub async fn members(&self) -> Vec<Member> {
        match self.inner.cluster.get() {
            Some(c) => c.members().await,
            None => Vec::new(),
        }
    }

    /// The actor-transport and gossip addresses this node is bound to.
    pub fn cluster_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.inner
            .cluster
            .get()
            .map(|c| (c.actor_addr, c.gossip_addr))
    }

    async fn ensure_alive(&self, node: &str) -> Result<(), RuntimeError> {
        match self.members().await.into_iter().find(|m| m.name == node) {
            Some(m) if m.state == MemberState::Alive => Ok(()),
            Some(_) => Err(RuntimeError::NodeDown {
                node: node.to_string(),
                what: "declared dead by the failure detector".into(),
            }),
            None => Err(RuntimeError::UnknownNode(node.to_string())),
        }
    }

    /// Spawn an actor from a factory on another node (or this one), by node name. The actor is
    /// supervised there and can be messaged by name from any node.
    pub async fn spawn_on(
        &self,
        node: &str,
        factory: &str,
        name: &str,
        args: Value,
    ) -> Result<String, RuntimeError> {
        self.spawn_request_on(
            node,
            SpawnRequest {
                factory: factory.to_string(),
                name: name.to_string(),
                args,
                restart: None,
                supervised_from: None,
            },
        )
        .await
    }

    /// Ask `node`'s spawner (or this node) to spawn; answers the new actor's id.
    pub(crate) async fn spawn_request_on(
        &self,
        node: &str,
        req: SpawnRequest,
    ) -> Result<String, RuntimeError> {
        if node == self.name() {
            let cell = self
                .spawn_factory_as(&req.factory, &req.name, req.args, req.restart)
                .await?;
            // Whoever asked (the admin API, another node) may use the name anywhere at once.
            if !self.names_published().await {
                tracing::debug!(actor = %req.name, "the name directory has not acknowledged it yet");
            }
            if let Some(from) = req.supervised_from {
                // Published: the supervising node gets its proxy at once, and the proxy stops
                // when the actor does (what the remote child's guard monitors).
                ractor::pg::join(actor_group(&req.name), vec![cell.clone()]);
                if cell.is_message_type_of::<JsonMsg>() == Some(true) {
                    ractor::pg::join(json_group(&req.name), vec![cell.clone()]);
                }
                crate::remote_child::hosted(&cell, from);
            }
            return Ok(cell.get_id().to_string());
        }
        self.ensure_alive(node).await?;
        let spawner = spawner_of(node)?;
        let bytes = serde_json::to_vec(&req).map_err(|e| RuntimeError::BadJson(e.to_string()))?;
        let reply = self
            .call(
                &spawner,
                |p| SpawnerMsg::Spawn(bytes, p),
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| match e {
                RuntimeError::NoReply(_) => RuntimeError::NodeDown {
                    node: node.to_string(),
                    what: "the spawn request got no answer".into(),
                },
                other => other,
            })?;
        SpawnReply::read(node, &reply, "unreadable spawn reply")
    }

    /// The trees of every live node, each tagged with its node name, sorted by node name.
    /// Nodes that do not answer in time are left out.
    pub async fn cluster_tree(&self) -> Result<Vec<NodeTree>, RuntimeError> {
        let mut out = vec![self.node_tree().await?];
        for m in self.members().await {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            let Some(inspector) = remote_member::<InspectorMsg>(&inspector_group(&m.name)) else {
                continue;
            };
            if let Ok(bytes) = self
                .call(&inspector, InspectorMsg::Tree, Duration::from_secs(5))
                .await
            {
                if let Ok(tree) = serde_json::from_slice::<NodeTree>(&bytes) {
                    out.push(tree);
                }
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(out)
    }

    /// This node's supervision tree, from its inspector.
    pub async fn tree(&self) -> Result<TreeSnapshot, RuntimeError> {
        Ok(self.node_tree().await?.tree)
    }

    /// This node's supervision tree tagged with the node's name.
    pub async fn node_tree(&self) -> Result<NodeTree, RuntimeError> {
        let inspector: ActorRef<InspectorMsg> =
            ractor::registry::where_is(inspector_name(self.name()))
                .map(ActorRef::from)
                .ok_or_else(|| RuntimeError::Unavailable("inspector not running".into()))?;
        let bytes = self
            .call(&inspector, InspectorMsg::Tree, Duration::from_secs(10))
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Unavailable(format!("inspector answered badly: {e}")))
    }
}
