//! Following the event log: a subscription from offset 0 told to the follower actor in order,
//! and the wait for the log's channel to be durable.

use std::time::Duration;

use broker::{ConsumeOptions, Delivery, StartAt};
use chassis::{Ctx, Protocol};
use futures::StreamExt;

use super::CHANNEL;

/// Subscribe to the log from offset 0 and tell each event, once and in order, to this actor
/// as `wrap(offset, json)`.
///
/// Workaround: a consumer on another node than the channel's home can miss events produced
/// between the end of its replay and the moment its interest reaches the home (until a later
/// event shows the gap). So when no event came for [`IDLE_RESUBSCRIBE`], the follower
/// subscribes again from the next offset: the replay brings whatever was missed, and offsets
/// already seen are skipped.
pub(super) async fn follow<P: Protocol + Sync>(
    ctx: &Ctx,
    broker: &broker::Broker,
    wrap: fn(u64, String) -> P,
) -> Result<tokio::task::JoinHandle<()>, ractor::ActorProcessingErr> {
    let name = ctx
        .myself()
        .get_name()
        .ok_or("a log follower must be named")?;
    let me = ctx.remote::<P>(&name);
    let broker = broker.clone();
    let mut sub = broker
        .consume(CHANNEL, ConsumeOptions::default().from(StartAt::Beginning))
        .await?;
    Ok(tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            match tokio::time::timeout(IDLE_RESUBSCRIBE, sub.next()).await {
                Ok(Some(Delivery::Event {
                    event,
                    offset: Some(o),
                })) if o >= next => {
                    next = o + 1;
                    if me
                        .tell(&wrap(o, event.as_json().to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Ok(Some(Delivery::Closed(why))) => {
                    tracing::warn!("the log subscription ended: {why}")
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {}
            }
            match broker
                .consume(
                    CHANNEL,
                    ConsumeOptions::default().from(StartAt::Offset(next)),
                )
                .await
            {
                Ok(s) => sub = s,
                Err(e) => {
                    tracing::warn!("cannot subscribe to the log again: {e}");
                    tokio::time::sleep(IDLE_RESUBSCRIBE).await;
                }
            }
        }
    }))
}

/// See [`follow`].
const IDLE_RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Wait (at most 30 s) until this node knows the log's channel as durable.
pub(super) async fn durable(broker: &broker::Broker) -> Result<(), ractor::ActorProcessingErr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broker.durable_home(CHANNEL).is_none() {
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("channel '{CHANNEL}' is not durable (is the home node up?)").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
