//! The per-node broker actor: receives event batches and durable-log requests from other nodes.

use actors::codec;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use crate::broker::{broker_group, remote_broker, Broker, WireBatch};

/// Messages between brokers. Payloads are bincode-2 bytes (see [`actors::codec`]); a malformed
/// payload is logged and dropped (or answered with an error), never a crash.
#[derive(RactorClusterMessage)]
pub enum BrokerMsg {
    /// A batch of events for this node's subscribers, in production order: the sending node,
    /// then runs of events of one channel. Answered with an [`BrokerMsg::Ack`] once delivered.
    Deliver(Vec<u8>),
    /// `(node, batches)`: that node has delivered this many of our batches (flow control).
    Ack(Vec<u8>),
    /// Append `(channel, Vec<event JSON>)` to a durable log homed here; answers
    /// `Result<first offset, String>`.
    #[rpc]
    Append(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Read `(channel, from, max)` from a durable log homed here; answers
    /// `Result<Vec<(offset, event JSON)>, String>`.
    #[rpc]
    Read(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Commit `(channel, group, next offset)`.
    Commit(Vec<u8>),
    /// A group's committed offset: `(channel, group)` -> `Option<u64>`.
    #[rpc]
    Committed(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The broker actor of a node (process group `broker@<node>`).
#[derive(Clone)]
pub struct BrokerActor {
    pub(crate) broker: Broker,
}

impl Actor for BrokerActor {
    type Msg = BrokerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<BrokerMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(
            broker_group(self.broker.node_name()),
            vec![myself.get_cell()],
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<BrokerMsg>,
        msg: BrokerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // In order, on the actor: this keeps per-producer order, and a blocked subscriber
            // slows the sending node down (its link waits).
            BrokerMsg::Deliver(bytes) => match codec::decode::<WireBatch>(&bytes) {
                Ok(batch) => {
                    let from = batch.from.clone();
                    self.broker.receive(batch).await;
                    if let (Some(peer), Ok(ack)) = (
                        remote_broker(&from),
                        codec::encode(&(self.broker.node_name(), 1u64)),
                    ) {
                        let _ = self.broker.runtime().tell(&peer, BrokerMsg::Ack(ack));
                    }
                }
                Err(e) => tracing::warn!("broker: dropping malformed batch: {e}"),
            },
            BrokerMsg::Ack(bytes) => match codec::decode::<(String, u64)>(&bytes) {
                Ok((node, n)) => self.broker.acked(&node, n),
                Err(e) => tracing::warn!("broker: dropping malformed ack: {e}"),
            },
            BrokerMsg::Append(bytes, reply) => {
                let broker = self.broker.clone();
                tokio::spawn(async move {
                    let answer: Result<u64, String> =
                        match codec::decode::<(String, Vec<String>)>(&bytes) {
                            Err(e) => Err(e.to_string()),
                            Ok((channel, events)) => broker
                                .append_local(
                                    &channel,
                                    events.into_iter().map(Into::into).collect(),
                                )
                                .await
                                .map_err(|e| e.to_string()),
                        };
                    if let Ok(b) = codec::encode(&answer) {
                        let _ = reply.send(b);
                    }
                });
            }
            BrokerMsg::Read(bytes, reply) => {
                let broker = self.broker.clone();
                tokio::spawn(async move {
                    let answer: Result<Vec<(u64, String)>, String> =
                        match codec::decode::<(String, u64, u64)>(&bytes) {
                            Err(e) => Err(e.to_string()),
                            Ok((channel, from, max)) => broker
                                .read_log(&channel, from, max.min(4096) as usize)
                                .await
                                .map_err(|e| e.to_string()),
                        };
                    if let Ok(b) = codec::encode(&answer) {
                        let _ = reply.send(b);
                    }
                });
            }
            BrokerMsg::Commit(bytes) => match codec::decode::<(String, String, u64)>(&bytes) {
                Ok((channel, group, next)) => self.broker.commit(&channel, &group, next),
                Err(e) => tracing::warn!("broker: dropping malformed commit: {e}"),
            },
            BrokerMsg::Committed(bytes, reply) => {
                let broker = self.broker.clone();
                tokio::spawn(async move {
                    let answer = match codec::decode::<(String, String)>(&bytes) {
                        Ok((channel, group)) => broker.committed(&channel, &group).await,
                        Err(_) => None,
                    };
                    if let Ok(b) = codec::encode(&answer) {
                        let _ = reply.send(b);
                    }
                });
            }
        }
        Ok(())
    }
}
