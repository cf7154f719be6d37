use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every supervisor of one tree, read by metrics exporters.
///
/// ```
/// let stats = actors::SupervisorStats::default();
/// assert_eq!(stats.restarts(), 0);
/// ```
#[derive(Debug, Default)]
pub struct SupervisorStats {
    restarts: AtomicU64,
    escalations: AtomicU64,
    gave_up: AtomicU64,
}

impl SupervisorStats {
    /// Total child restarts performed by supervisors sharing these stats.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Times a supervisor gave up because its restart intensity was exceeded.
    pub fn escalations(&self) -> u64 {
        self.escalations.load(Ordering::Relaxed)
    }

    /// Children stopped because they exceeded their own (per-child) restart intensity.
    pub fn children_given_up(&self) -> u64 {
        self.gave_up.load(Ordering::Relaxed)
    }

    pub(crate) fn record_gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_escalation(&self) {
        self.escalations.fetch_add(1, Ordering::Relaxed);
    }
}
