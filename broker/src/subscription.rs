//! One subscription's bounded buffer and its full-buffer policy.
//!
//! A [`SubQueue`] holds at most `capacity` events. When it is full, [`Policy::Block`] makes the
//! producer wait for room, but only up to the subscription's *block deadline*: a consumer that
//! takes nothing for that long is cut off (like NATS's slow-consumer handling), its queue is
//! closed with the reason, and the consumer is told once it has read what was buffered.
//! [`Policy::Drop`] drops the oldest buffered event instead and counts the loss, which the
//! consumer hears of before its next event.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::BrokerError;

/// What a subscription does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The producer waits for room: nothing is lost; a consumer that takes nothing for its
    /// block deadline is cut off so that it cannot hold producers back forever.
    #[default]
    Block,
    /// The oldest buffered event is dropped; the loss is counted, reported to the consumer
    /// ([`crate::Delivery::Lost`]) and in the metrics. Producers and other consumers never wait.
    Drop,
}

impl std::str::FromStr for Policy {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Policy, BrokerError> {
        match s {
            "block" => Ok(Policy::Block),
            "drop" => Ok(Policy::Drop),
            other => Err(BrokerError::BadRequest(format!(
                "unknown policy '{other}': use block or drop"
            ))),
        }
    }
}

/// An event on its way to subscribers: its JSON text, shared by every subscription that gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub event: Arc<str>,
    pub offset: Option<u64>,
}

/// The queue is closed (unsubscribed or cut off): the item was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed {
    /// This push is what cut the consumer off (its block deadline passed).
    pub cut_off: bool,
}

/// What [`SubQueue::pop`] yields.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop {
    Item(Item),
    /// This many events were dropped before the next one.
    Lost(u64),
    /// Closed and drained; the reason when the broker cut the consumer off.
    Closed(Option<String>),
}

#[derive(Default)]
struct State {
    q: VecDeque<Item>,
    dropped: u64,
    reported: u64,
    closed: bool,
    reason: Option<String>,
}

/// A subscription's bounded buffer.
pub(crate) struct SubQueue {
    pub id: u64,
    pub group: Option<String>,
    cap: usize,
    policy: Policy,
    deadline: Duration,
    state: Mutex<State>,
    items: Notify,
    space: Notify,
}

impl SubQueue {
    pub fn new(
        id: u64,
        group: Option<String>,
        cap: usize,
        policy: Policy,
        deadline: Duration,
    ) -> SubQueue {
        SubQueue {
            id,
            group,
            cap: cap.max(1),
            policy,
            deadline,
            state: Mutex::new(State::default()),
            items: Notify::new(),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.lock().q.is_empty()
    }

    /// Append `items` in order; returns how many events were dropped to make room. A full
    /// `Block` queue waits for room, at most the block deadline without the consumer taking
    /// anything: then the consumer is cut off and this fails with [`Closed`].
    pub async fn push_all(&self, items: &[Item]) -> Result<u64, Closed> {
        let mut next = 0;
        let mut dropped = 0;
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let pushed = self.try_push(&items[next..], &mut dropped)?;
            next += pushed;
            if pushed > 0 {
                self.items.notify_one();
            }
            if next == items.len() {
                return Ok(dropped);
            }
            if tokio::time::timeout(self.deadline, space).await.is_err() {
                self.cut_off();
                return Err(Closed { cut_off: true });
            }
        }
    }

    /// Push what fits now (all of it with the drop policy); returns how many were taken.
    fn try_push(&self, items: &[Item], dropped: &mut u64) -> Result<usize, Closed> {
        let mut st = self.lock();
        if st.closed {
            return Err(Closed { cut_off: false });
        }
        let mut n = 0;
        for item in items {
            if st.q.len() >= self.cap {
                if self.policy == Policy::Block {
                    break;
                }
                st.q.pop_front();
                *dropped += 1;
                // Counted under the lock: the consumer hears of the loss before the next event.
                st.dropped += 1;
            }
            st.q.push_back(item.clone());
            n += 1;
        }
        Ok(n)
    }

    /// The next item, a loss report, or the end; `None` when there is nothing yet.
    fn try_pop(&self) -> Option<Pop> {
        let mut st = self.lock();
        if st.dropped > st.reported {
            let lost = st.dropped - st.reported;
            st.reported = st.dropped;
            return Some(Pop::Lost(lost));
        }
        if let Some(item) = st.q.pop_front() {
            drop(st);
            self.space.notify_one();
            return Some(Pop::Item(item));
        }
        if st.closed {
            return Some(Pop::Closed(st.reason.take()));
        }
        None
    }

    /// Wait for the next item, loss report or the end.
    pub async fn pop(&self) -> Pop {
        loop {
            let items = self.items.notified();
            tokio::pin!(items);
            items.as_mut().enable();
            if let Some(r) = self.try_pop() {
                return r;
            }
            items.await;
        }
    }

    /// Close the queue (unsubscribed); waiting producers and the consumer wake up.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake_all();
    }

    /// Close the queue because its consumer took nothing for the block deadline.
    fn cut_off(&self) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            st.reason = Some(format!(
                "consumer too slow: took no event for {} ms with its buffer of {} full \
                 (block policy); cut off so that producers are not held back",
                self.deadline.as_millis(),
                self.cap
            ));
        }
        self.wake_all();
    }

    fn wake_all(&self) {
        self.items.notify_waiters();
        self.items.notify_one();
        self.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: u64) -> Item {
        Item {
            event: format!("{{\"id\":\"{i}\"}}").into(),
            offset: Some(i),
        }
    }

    fn items(r: std::ops::Range<u64>) -> Vec<Item> {
        r.map(item).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn drop_policy_drops_the_oldest_and_reports_the_loss_first() {
        let q = SubQueue::new(1, None, 2, Policy::Drop, Duration::from_secs(1));
        assert_eq!(q.push_all(&items(0..5)).await, Ok(3));
        assert_eq!(q.pop().await, Pop::Lost(3));
        assert_eq!(q.pop().await, Pop::Item(item(3)));
        assert_eq!(q.pop().await, Pop::Item(item(4)));
        q.close();
        assert_eq!(q.pop().await, Pop::Closed(None));
    }

    #[tokio::test(start_paused = true)]
    async fn block_policy_waits_for_room_and_loses_nothing() {
        let q = Arc::new(SubQueue::new(
            1,
            None,
            2,
            Policy::Block,
            Duration::from_secs(10),
        ));
        let producer = {
            let q = q.clone();
            tokio::spawn(async move { q.push_all(&items(0..6)).await })
        };
        let mut got = Vec::new();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(1)).await; // a slow reader, within the deadline
            match q.pop().await {
                Pop::Item(i) => got.push(i),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(producer.await.unwrap(), Ok(0));
        assert_eq!(got, items(0..6));
    }

    #[tokio::test(start_paused = true)]
    async fn block_policy_cuts_off_a_consumer_that_stops_reading_and_tells_it_why() {
        let q = SubQueue::new(1, None, 2, Policy::Block, Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        assert_eq!(
            q.push_all(&items(0..5)).await,
            Err(Closed { cut_off: true })
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Later producers are not held back at all.
        assert_eq!(
            q.push_all(&items(5..6)).await,
            Err(Closed { cut_off: false })
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // The consumer gets what was buffered, then the reason.
        assert_eq!(q.pop().await, Pop::Item(item(0)));
        assert_eq!(q.pop().await, Pop::Item(item(1)));
        match q.pop().await {
            Pop::Closed(Some(reason)) => assert!(reason.contains("too slow"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_consumer_that_keeps_reading_is_never_cut_off() {
        let q = Arc::new(SubQueue::new(
            1,
            None,
            1,
            Policy::Block,
            Duration::from_secs(2),
        ));
        let producer = {
            let q = q.clone();
            tokio::spawn(async move { q.push_all(&items(0..5)).await })
        };
        // Each pop comes 1.5 s after the previous one: slow, but within the deadline each time,
        // although the whole push takes longer than the deadline.
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(q.pop().await, Pop::Item(item(i)));
        }
        assert_eq!(producer.await.unwrap(), Ok(0));
    }

    #[test]
    fn policy_parses_and_names_bad_input() {
        assert_eq!("drop".parse::<Policy>().unwrap(), Policy::Drop);
        let err = "fast".parse::<Policy>().unwrap_err();
        assert_eq!(err.to_string(), "unknown policy 'fast': use block or drop");
    }
}
