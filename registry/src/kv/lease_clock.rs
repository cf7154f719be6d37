//! When leases expire, as the leader's monotonic clock tells (pure logic, no I/O).
//!
//! etcd's rule, which we follow: only the leader times leases, on a monotonic clock
//! ([`tokio::time::Instant`]), never on a wall clock replicated in the log; a keep-alive re-arms
//! a lease's deadline to now + its TTL on the leader only (no log entry); and a new leader
//! re-arms every lease with its full TTL when it takes over, because the old leader's deadlines
//! (and the keep-alives it received) are lost with it. So a wall-clock jump on any node never
//! expires a lease early or late, and a leader change can only extend a lease, never cut it.
//! Expiry itself is a replicated `Revoke`, proposed by the leader.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// A renewal came after the lease's deadline (see [`LeaseClock::renew`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired;

/// The leader's lease deadlines (empty and unused on other nodes).
#[derive(Debug, Default)]
pub(crate) struct LeaseClock {
    /// The term the deadlines were armed in (`None`: not leading).
    term: Option<u64>,
    /// Lease id -> (deadline, TTL).
    deadlines: HashMap<u64, (Instant, Duration)>,
}

impl LeaseClock {
    /// This node leads in `term`: when the term is new, forget every deadline (they are
    /// re-armed with the full TTL by the next [`LeaseClock::sync`]).
    pub(crate) fn lead(&mut self, term: u64) {
        if self.term != Some(term) {
            self.term = Some(term);
            self.deadlines.clear();
        }
    }

    /// This node does not lead (any more).
    pub(crate) fn step_down(&mut self) {
        self.term = None;
        self.deadlines.clear();
    }

    /// Whether this node times leases now.
    pub(crate) fn leading(&self) -> bool {
        self.term.is_some()
    }

    /// Match the deadlines to the leases the state machine holds: a lease not timed yet (just
    /// granted, or this leader is new) gets `now + ttl`; a lease gone from the store is dropped.
    pub(crate) fn sync(&mut self, leases: &[(u64, Duration)], now: Instant) {
        if !self.leading() {
            return;
        }
        let live: HashMap<u64, Duration> = leases.iter().copied().collect();
        self.deadlines.retain(|id, _| live.contains_key(id));
        for (id, ttl) in live {
            self.deadlines.entry(id).or_insert((now + ttl, ttl));
        }
    }

    /// A keep-alive: the lease lives another full TTL from now. Refused once the lease's
    /// deadline has passed: its revocation may already be proposed (the reaper saw it
    /// expired), so acknowledging the renewal would promise a TTL the store will not keep.
    /// etcd's lessor refuses the same way (an expired lease's renewal waits for its revoke
    /// and answers "lease not found").
    pub(crate) fn renew(&mut self, id: u64, ttl: Duration, now: Instant) -> Result<(), Expired> {
        match self.deadlines.get(&id) {
            Some((deadline, _)) if *deadline <= now => Err(Expired),
            _ => {
                self.deadlines.insert(id, (now + ttl, ttl));
                Ok(())
            }
        }
    }

    /// Time left before the lease expires (`None`: not timed here).
    pub(crate) fn remaining(&self, id: u64, now: Instant) -> Option<Duration> {
        self.deadlines
            .get(&id)
            .map(|(d, _)| d.saturating_duration_since(now))
    }

    /// Leases whose deadline has passed, in id order.
    pub(crate) fn expired(&self, now: Instant) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const TTL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_one_ttl_after_it_was_first_seen() {
        let mut c = LeaseClock::default();
        c.lead(1);
        c.sync(&[(7, TTL)], Instant::now());
        advance(Duration::from_millis(9_999)).await;
        assert!(c.expired(Instant::now()).is_empty());
        assert_eq!(
            c.remaining(7, Instant::now()),
            Some(Duration::from_millis(1))
        );
        advance(Duration::from_millis(1)).await;
        assert_eq!(c.expired(Instant::now()), vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_rearms_the_full_ttl() {
        let mut c = LeaseClock::default();
        c.lead(1);
        c.sync(&[(7, TTL)], Instant::now());
        advance(Duration::from_secs(8)).await;
        assert_eq!(c.renew(7, TTL, Instant::now()), Ok(()));
        advance(Duration::from_secs(9)).await;
        assert!(c.expired(Instant::now()).is_empty(), "renewed at 8 s");
        // A later sync does not undo the renewal.
        c.sync(&[(7, TTL)], Instant::now());
        advance(Duration::from_secs(1)).await;
        assert_eq!(c.expired(Instant::now()), vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_past_its_deadline_cannot_be_renewed() {
        // The leader was paused (or its renewals delayed) past the deadline: the reaper may
        // already have proposed the revoke, so a late keep-alive must not be acknowledged.
        let mut c = LeaseClock::default();
        c.lead(1);
        c.sync(&[(7, TTL)], Instant::now());
        advance(TTL).await;
        assert_eq!(c.expired(Instant::now()), vec![7]);
        assert_eq!(c.renew(7, TTL, Instant::now()), Err(Expired));
        assert_eq!(c.expired(Instant::now()), vec![7], "still expired");
        assert_eq!(c.remaining(7, Instant::now()), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_rearms_every_lease_with_its_full_ttl() {
        let mut c = LeaseClock::default();
        c.lead(1);
        c.sync(&[(7, TTL), (8, TTL)], Instant::now());
        advance(Duration::from_secs(9)).await;
        // Leadership moves away and comes back in a later term, 1 s before the old deadline.
        c.step_down();
        assert!(c.expired(Instant::now()).is_empty());
        c.lead(3);
        c.sync(&[(7, TTL), (8, TTL)], Instant::now());
        advance(Duration::from_secs(5)).await;
        assert!(c.expired(Instant::now()).is_empty(), "re-armed at takeover");
        assert_eq!(c.remaining(8, Instant::now()), Some(Duration::from_secs(5)));
        advance(Duration::from_secs(5)).await;
        assert_eq!(c.expired(Instant::now()), vec![7, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_term_keeps_deadlines_and_revoked_leases_are_dropped() {
        let mut c = LeaseClock::default();
        c.lead(2);
        c.sync(&[(7, TTL), (9, TTL)], Instant::now());
        advance(Duration::from_secs(6)).await;
        c.lead(2);
        c.sync(&[(7, TTL)], Instant::now());
        assert_eq!(c.remaining(9, Instant::now()), None, "revoked");
        advance(Duration::from_secs(4)).await;
        assert_eq!(c.expired(Instant::now()), vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_times_nothing() {
        let mut c = LeaseClock::default();
        c.sync(&[(7, TTL)], Instant::now());
        advance(TTL * 2).await;
        assert!(c.expired(Instant::now()).is_empty());
        assert_eq!(c.remaining(7, Instant::now()), None);
    }
}
