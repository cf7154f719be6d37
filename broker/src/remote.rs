//! Calls to another node's broker: a durable channel's home answers [`Request`]s about its log.

use std::time::Duration;

use actors::codec::Wire;
use ractor::ActorRef;
use runtime::{MemberState, Node};

use crate::{
    error::BrokerError,
    protocol::{remote_broker, BrokerMsg, Request, Response},
};

/// How long a produce (or replay) waits for a durable channel's home node to be connected
/// before it fails with [`BrokerError::HomeUnavailable`].
pub(crate) const HOME_WAIT: Duration = Duration::from_secs(3);
/// How long a call to a home waits for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker actor of a durable channel's home node, waiting up to [`HOME_WAIT`] for it to be
/// connected (right after a restart the actor transport may still be coming up).
pub(crate) async fn home_actor(
    node: &Node,
    channel: &str,
    home: &str,
) -> Result<ActorRef<BrokerMsg>, BrokerError> {
    let deadline = tokio::time::Instant::now() + HOME_WAIT;
    loop {
        if let Some(t) = remote_broker(home) {
            return Ok(t);
        }
        let dead = node
            .members()
            .await
            .iter()
            .any(|m| m.name == home && m.state == MemberState::Dead);
        if dead || tokio::time::Instant::now() >= deadline {
            return Err(BrokerError::HomeUnavailable {
                channel: channel.to_string(),
                node: home.to_string(),
                reason: if dead {
                    "the node is down".into()
                } else {
                    "not connected".into()
                },
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ask the home of `channel`; a [`Response::Failed`] becomes [`BrokerError::Log`].
pub(crate) async fn ask(
    node: &Node,
    channel: &str,
    home: &str,
    req: Request,
) -> Result<Response, BrokerError> {
    let unavailable = |reason: String| BrokerError::HomeUnavailable {
        channel: channel.to_string(),
        node: home.to_string(),
        reason,
    };
    let target = home_actor(node, channel, home).await?;
    let req = Wire::new(&req).map_err(|e| unavailable(e.to_string()))?;
    let answer = node
        .call(&target, |r| BrokerMsg::Ask(req, r), CALL_TIMEOUT)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    match Response::decode(answer.as_bytes()).map_err(|e| unavailable(e.to_string()))? {
        Response::Failed(reason) => Err(BrokerError::Log {
            channel: channel.to_string(),
            reason,
        }),
        ok => Ok(ok),
    }
}

/// Tell the home of `channel`, if it is connected (best effort).
pub(crate) fn tell(node: &Node, home: &str, req: Request) {
    let Some(target) = remote_broker(home) else {
        return;
    };
    match Wire::new(&req) {
        Ok(msg) => {
            if let Err(e) = node.tell(&target, BrokerMsg::Tell(msg)) {
                tracing::warn!("broker: cannot send {} to {home}: {e}", req.kind());
            }
        }
        Err(e) => tracing::warn!("broker: cannot encode {}: {e}", req.kind()),
    }
}

/// The error for an answer of the wrong kind.
pub(crate) fn unexpected(channel: &str, req: &'static str, r: Response) -> BrokerError {
    BrokerError::Log {
        channel: channel.to_string(),
        reason: crate::protocol::ProtocolError::Unexpected {
            request: req,
            response: r,
        }
        .to_string(),
    }
}
