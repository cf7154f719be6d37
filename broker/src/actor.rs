//! The per-node broker actor: serves the [`Request`]s of other nodes' brokers.

use actors::codec::Wire;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::{
    broker::Broker,
    durable::READ_MAX,
    error::BrokerError,
    protocol::{broker_group, remote_broker, BrokerMsg, Request, Response},
};

/// The broker actor of a node (process group `broker@<node>`).
#[derive(Clone, Debug)]
pub struct BrokerActor {
    pub(crate) broker: Broker,
}

impl BrokerActor {
    /// A one-way request, in order on the actor: this keeps per-producer order, and a blocked
    /// subscriber slows the sending node down (its link waits for the acknowledgement).
    async fn tell(&self, req: Request) {
        let inner = &self.broker.inner;
        match req {
            Request::Deliver(batch) => {
                let from = batch.from.clone();
                inner.fanout.receive(batch).await;
                let ack = Request::Ack {
                    node: inner.name.clone(),
                    batches: 1,
                };
                if let (Some(peer), Ok(ack)) = (remote_broker(&from), Wire::new(&ack)) {
                    let _ = inner.node.tell(&peer, BrokerMsg::Tell(ack));
                }
            }
            Request::Ack { node, batches } => inner.links.acked(&node, batches),
            Request::Commit {
                channel,
                group,
                next,
            } => inner.durable.commit(&channel, &group, next),
            Request::Interest(pushed) => inner.durable.interest_here(pushed),
            other => tracing::warn!("broker: {} sent without a reply port", other.kind()),
        }
    }

    /// A call: answered off the actor, so a slow disk does not hold up deliveries.
    async fn ask(broker: Broker, req: Request) -> Response {
        let durable = &broker.inner.durable;
        let answer: Result<Response, BrokerError> = match req {
            Request::Append { channel, events } => durable
                .append_local(&channel, events.into_iter().map(Into::into).collect())
                .await
                .map(Response::Appended),
            Request::Read { channel, from, max } => durable
                .read(&channel, from, max.min(READ_MAX))
                .await
                .map(Response::Records),
            Request::Committed { channel, group } => durable
                .committed(&channel, &group)
                .await
                .map(Response::Committed),
            Request::Groups { channel } => {
                durable
                    .groups_local(&channel)
                    .await
                    .map(|(head, committed)| Response::Groups {
                        head,
                        committed: committed.into_iter().collect(),
                    })
            }
            Request::Attach(pushed) => durable
                .attach_here(pushed)
                .await
                .map(|head| Response::Attached { head }),
            other => Ok(Response::Failed(format!(
                "{} is not a call: it takes no answer",
                other.kind()
            ))),
        };
        answer.unwrap_or_else(|e| Response::Failed(e.to_string()))
    }
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
            BrokerMsg::Tell(bytes) => match Request::decode(bytes.as_bytes()) {
                Ok(req) => self.tell(req).await,
                Err(e) => tracing::warn!("broker: dropping a message from another node: {e}"),
            },
            BrokerMsg::Ask(bytes, reply) => {
                let broker = self.broker.clone();
                tokio::spawn(async move {
                    let answer = match Request::decode(bytes.as_bytes()) {
                        Ok(req) => BrokerActor::ask(broker, req).await,
                        Err(e) => Response::Failed(e.to_string()),
                    };
                    match Wire::new(&answer) {
                        Ok(w) => {
                            let _ = reply.send(w);
                        }
                        Err(e) => tracing::warn!("broker: cannot encode an answer: {e}"),
                    }
                });
            }
        }
        Ok(())
    }
}
