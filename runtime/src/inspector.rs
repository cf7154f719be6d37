//! The inspector actor: answers snapshots of its node's supervision tree.

use std::time::Duration;

use actors::SupervisorMsg;
use ractor::{rpc::CallResult, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use crate::node::NodeTree;

/// Messages of the inspector. Replies are JSON ([`NodeTree`]) so they can cross the network.
#[derive(RactorClusterMessage)]
pub enum InspectorMsg {
    /// The node's tree as JSON.
    #[rpc]
    Tree(RpcReplyPort<Vec<u8>>),
}

#[derive(Clone)]
pub(crate) struct Inspector {
    pub(crate) node: String,
    pub(crate) root_name: String,
    pub(crate) stats: std::sync::Arc<crate::actor_stats::StatsRegistry>,
}

impl Actor for Inspector {
    type Msg = InspectorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<InspectorMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(
            crate::names::inspector_group(&self.node),
            vec![myself.get_cell()],
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<InspectorMsg>,
        msg: InspectorMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let InspectorMsg::Tree(reply) = msg;
        let Some(root) = ractor::registry::where_is(self.root_name.clone()) else {
            return Ok(()); // dropping the reply port tells the caller
        };
        let root: ActorRef<SupervisorMsg> = root.into();
        let node = self.node.clone();
        let stats = self.stats.clone();
        // Answer from a task so the inspector is free while the tree is gathered.
        tokio::spawn(async move {
            if let Ok(CallResult::Success(mut tree)) = root
                .call(SupervisorMsg::Snapshot, Some(Duration::from_secs(5)))
                .await
            {
                tree.name = "root".into();
                crate::remote_child::annotate(&mut tree);
                stats.annotate(&mut tree);
                let totals = stats.totals(&tree);
                let body = NodeTree {
                    node,
                    tree,
                    totals: Some(totals),
                };
                if let Ok(bytes) = serde_json::to_vec(&body) {
                    let _ = reply.send(bytes);
                }
            }
        });
        Ok(())
    }
}
