//! A consumer's stream: replay from a durable log, then live events, without gap or duplicate.
//!
//! A [`Subscription`] reads its [`SubQueue`]; on a durable channel it first replays the log
//! from its start offset, and whenever the live queue shows a gap (events dropped, or an offset
//! beyond the next expected one) it reads the missing events back from the log. The decision
//! for each live event is the pure [`on_live`]. A queue group's offset is committed as events
//! are handed out.
//!
//! A durable channel's subscription is in this node's table, and the channel's home knows it
//! (`Durable::attach`), before it is answered: the home routes every event from the head it
//! answered on to this node, and the replay reads the log after that answer, so there is no
//! window between the end of a replay and the live events in which an event reaches neither.
//! A subscription without a start offset starts at that head.

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use tokio::sync::Notify;

use crate::{
    durable::Durable,
    error::BrokerError,
    event::CloudEvent,
    subscribers::Subscribers,
    subscription::{Item, Policy, Pop, SubQueue},
};

/// Default block deadline: how long a full block-policy subscription may take no event before
/// it is cut off.
pub const DEFAULT_BLOCK_DEADLINE: Duration = Duration::from_secs(10);
/// The longest block deadline a consumer may ask for.
pub const MAX_BLOCK_DEADLINE: Duration = Duration::from_secs(600);
/// Records read from the log per replay step.
const REPLAY_STEP: u64 = 256;
/// A group commits its offset at least every this many events (and whenever it is idle).
const COMMIT_EVERY: u32 = 64;

/// Where a consumer of a durable channel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Offset 0: replay everything kept.
    Beginning,
    /// This offset (replay from it, then live).
    Offset(u64),
}

impl std::str::FromStr for StartAt {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<StartAt, BrokerError> {
        if s == "beginning" {
            return Ok(StartAt::Beginning);
        }
        s.parse::<u64>().map(StartAt::Offset).map_err(|_| {
            BrokerError::BadRequest(format!("invalid start '{s}': use 'beginning' or an offset"))
        })
    }
}

/// Options of `Broker::consume`.
///
/// ```
/// use broker::{ConsumeOptions, Policy, StartAt};
/// use std::time::Duration;
/// let opts = ConsumeOptions::default().group("billing").policy(Policy::Drop).capacity(64);
/// let replay = ConsumeOptions::default().from(StartAt::Beginning);
/// let patient = ConsumeOptions::default().block_deadline(Duration::from_secs(60));
/// # let _ = (opts, replay, patient);
/// ```
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Queue group: members of a group share the channel's events (one member gets each).
    pub group: Option<String>,
    /// Full-buffer policy.
    pub policy: Policy,
    /// Buffer size in events.
    pub capacity: usize,
    /// Durable channels: replay from here before going live. For a group without it, the
    /// group's committed offset (if any) is used.
    pub from: Option<StartAt>,
    /// [`Policy::Block`]: a full buffer from which nothing is taken for this long cuts the
    /// consumer off ([`Delivery::Closed`]) so that producers go on (at most
    /// [`MAX_BLOCK_DEADLINE`]).
    pub block_deadline: Duration,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            group: None,
            policy: Policy::Block,
            capacity: 1024,
            from: None,
            block_deadline: DEFAULT_BLOCK_DEADLINE,
        }
    }
}

impl ConsumeOptions {
    /// Join a queue group.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.group = Some(g.into());
        self
    }
    /// Set the full-buffer policy.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }
    /// Set the buffer size (at least 1).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }
    /// Start a durable channel's consumer at this position.
    pub fn from(mut self, s: StartAt) -> Self {
        self.from = Some(s);
        self
    }
    /// Set the block deadline (capped at [`MAX_BLOCK_DEADLINE`]).
    pub fn block_deadline(mut self, d: Duration) -> Self {
        self.block_deadline = d.min(MAX_BLOCK_DEADLINE);
        self
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An event; `offset` is its position in a durable channel's log.
    Event {
        /// The event.
        event: CloudEvent,
        /// Log offset (durable channels only).
        offset: Option<u64>,
    },
    /// This many events were dropped (policy [`Policy::Drop`]) before the next one.
    Lost(u64),
    /// The broker ended the subscription, for this reason (a block-policy consumer that took
    /// nothing within its block deadline); nothing follows.
    Closed(String),
}

/// A stream of [`Delivery`]s for one subscription; dropping it unsubscribes.
pub struct Subscription {
    stream: Pin<Box<dyn Stream<Item = Delivery> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Stream for Subscription {
    type Item = Delivery;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.stream.as_mut().poll_next(cx)
    }
}

/// Takes the subscription out of the table when the stream is dropped (and tells a durable
/// channel's home).
struct Guard {
    subs: Arc<Subscribers>,
    changed: Arc<Notify>,
    channel: String,
    queue: Arc<SubQueue>,
    durable: Option<Arc<Durable>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.queue.close();
        let removed = self.subs.remove(&self.channel, self.queue.id);
        self.changed.notify_one();
        if let (true, Some(durable)) = (removed, &self.durable) {
            let (interest, stamp) = self.subs.stamped(&self.channel);
            durable.detach(&self.channel, interest, stamp);
        }
    }
}

/// What to do with a live event on the way out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Live {
    /// Hand it out.
    Deliver,
    /// Already replayed: skip it.
    Skip,
    /// Events are missing before it: read them from the log first.
    Replay,
}

/// The decision for a live event with `offset`, when `next` is the next offset expected.
/// Only a durable broadcast consumer fills gaps (a group member sees only its share).
pub(crate) fn on_live(next: u64, offset: Option<u64>, durable: bool, group: bool) -> Live {
    match offset {
        None => Live::Deliver,
        Some(o) if o < next => Live::Skip,
        Some(o) if o > next && durable && !group => Live::Replay,
        Some(_) => Live::Deliver,
    }
}

/// A subscription being read.
pub(crate) struct Consumer {
    guard: Guard,
    replay: bool,
    next: u64,
    pending: VecDeque<(u64, String)>,
    since_commit: u32,
    done: bool,
}

impl Consumer {
    /// Subscribe `queue` to `channel`: in the table now (events are queued from here on), out
    /// of it when the consumer is dropped. [`Consumer::read_from`] makes it a stream.
    pub fn subscribe(
        subs: Arc<Subscribers>,
        changed: Arc<Notify>,
        channel: &str,
        queue: Arc<SubQueue>,
        durable: Option<Arc<Durable>>,
    ) -> Consumer {
        subs.add(channel, queue.clone());
        changed.notify_one();
        Consumer {
            guard: Guard {
                subs,
                changed,
                channel: channel.to_string(),
                queue,
                durable,
            },
            replay: false,
            next: 0,
            pending: VecDeque::new(),
            since_commit: 0,
            done: false,
        }
    }

    /// The subscription's stream, from offset `next` of a durable channel: replayed from the
    /// log first when `replay`, live events before `next` skipped.
    pub fn read_from(mut self, next: u64, replay: bool) -> Subscription {
        self.next = next;
        self.replay = replay;
        let stream = futures::stream::unfold(self, |mut c| async move {
            let d = c.next().await?;
            Some((d, c))
        });
        Subscription {
            stream: Box::pin(stream),
        }
    }

    async fn next(&mut self) -> Option<Delivery> {
        if self.done {
            return None;
        }
        let d = self.next_inner().await?;
        if let Delivery::Closed(_) = d {
            self.done = true;
        }
        if let (
            Delivery::Event {
                offset: Some(o), ..
            },
            Some(g),
            Some(durable),
        ) = (&d, &self.guard.queue.group, &self.guard.durable)
        {
            self.since_commit += 1;
            if self.guard.queue.is_empty() || self.since_commit >= COMMIT_EVERY {
                self.since_commit = 0;
                durable.commit(&self.guard.channel, g, o + 1);
            }
        }
        Some(d)
    }

    async fn next_inner(&mut self) -> Option<Delivery> {
        loop {
            if let Some((off, text)) = self.pending.pop_front() {
                self.next = off + 1;
                return Some(Delivery::Event {
                    event: CloudEvent::trusted(text.into()),
                    offset: Some(off),
                });
            }
            if let (true, Some(durable)) = (self.replay, &self.guard.durable) {
                match durable
                    .read(&self.guard.channel, self.next, REPLAY_STEP)
                    .await
                {
                    Ok(batch) if !batch.is_empty() => {
                        self.pending.extend(batch);
                        continue;
                    }
                    Ok(_) => self.replay = false,
                    Err(e) => {
                        // Going live would skip what could not be read: end the stream with the
                        // reason instead (the consumer resumes from its last offset later).
                        tracing::warn!("broker: replay of {}: {e}", self.guard.channel);
                        return Some(Delivery::Closed(format!(
                            "cannot replay from offset {}: {e}",
                            self.next
                        )));
                    }
                }
            }
            match self.guard.queue.pop().await {
                Pop::Closed(None) => return None,
                Pop::Closed(Some(reason)) => return Some(Delivery::Closed(reason)),
                Pop::Lost(lost) => {
                    if self.guard.durable.is_some() {
                        // The log has what was dropped: read it back.
                        self.replay = true;
                        continue;
                    }
                    return Some(Delivery::Lost(lost));
                }
                Pop::Item(item) => match self.live(&item) {
                    Live::Skip => continue,
                    Live::Replay => {
                        self.replay = true;
                        continue;
                    }
                    Live::Deliver => {
                        if let Some(o) = item.offset {
                            self.next = o + 1;
                        }
                        return Some(Delivery::Event {
                            event: CloudEvent::trusted(item.event),
                            offset: item.offset,
                        });
                    }
                },
            }
        }
    }

    fn live(&self, item: &Item) -> Live {
        on_live(
            self.next,
            item.offset,
            self.guard.durable.is_some(),
            self.guard.queue.group.is_some(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_events_after_a_replay_are_neither_repeated_nor_missed() {
        assert_eq!(on_live(5, Some(3), true, false), Live::Skip);
        assert_eq!(on_live(5, Some(5), true, false), Live::Deliver);
        assert_eq!(on_live(5, Some(7), true, false), Live::Replay);
        // A group member gets only its share: a jump is no gap.
        assert_eq!(on_live(5, Some(7), true, true), Live::Deliver);
        assert_eq!(on_live(5, None, false, false), Live::Deliver);
    }

    #[test]
    fn start_at_and_deadline_options() {
        assert_eq!("beginning".parse::<StartAt>().unwrap(), StartAt::Beginning);
        assert_eq!("12".parse::<StartAt>().unwrap(), StartAt::Offset(12));
        assert!("-1"
            .parse::<StartAt>()
            .unwrap_err()
            .to_string()
            .contains("invalid start"));
        let o = ConsumeOptions::default().block_deadline(Duration::from_secs(1 << 20));
        assert_eq!(o.block_deadline, MAX_BLOCK_DEADLINE);
        assert_eq!(ConsumeOptions::default().capacity(0).capacity, 1);
    }
}
