//! A running supervisor's bookkeeping: its children (spec, running actor, restarts, backoff,
//! give-up reason) and the restart-intensity window; and which exit reasons OTP calls normal.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use ractor::ActorCell;
use tokio::time::Instant;

use super::{
    api::ChildInfo,
    spec::{AutoShutdown, Backoff, Intensity, IntensityScope, Strategy},
};
use crate::{child::ChildSpec, snapshot::ChildStatus, stats::SupervisorStats};

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) cell: Option<ActorCell>,
    pub(super) restarts: u32,
    pub(super) started_at: Instant,
    pub(super) pending_restart: bool,
    pub(super) consecutive: u32,
    /// Restart times of this child (for [`IntensityScope::PerChild`]).
    pub(super) restart_log: VecDeque<Instant>,
    /// Given up on (per-child intensity exceeded): why.
    pub(super) gave_up: Option<String>,
}

impl Child {
    pub(super) fn new(spec: ChildSpec, cell: Option<ActorCell>) -> Child {
        Child {
            spec,
            cell,
            restarts: 0,
            started_at: Instant::now(),
            pending_restart: false,
            consecutive: 0,
            restart_log: VecDeque::new(),
            gave_up: None,
        }
    }

    pub(super) fn status(&self) -> ChildStatus {
        if self.cell.is_some() {
            ChildStatus::Running
        } else if self.pending_restart {
            ChildStatus::Restarting
        } else if self.gave_up.is_some() {
            ChildStatus::Failed
        } else {
            ChildStatus::Stopped
        }
    }

    pub(super) fn info(&self) -> ChildInfo {
        ChildInfo {
            id: self.spec.id.clone(),
            actor_id: self.cell.as_ref().map(|c| c.get_id().to_string()),
            kind: self.spec.kind,
            status: self.status(),
            restarts: self.restarts,
            restart: self.spec.restart,
            reason: self.gave_up.clone(),
        }
    }
}

/// Internal state of a running [`Supervisor`](crate::Supervisor).
pub struct SupervisorState {
    pub(super) strategy: Strategy,
    pub(super) intensity: Intensity,
    pub(super) scope: IntensityScope,
    pub(super) backoff: Option<Backoff>,
    pub(super) stats: Option<Arc<SupervisorStats>>,
    /// In start order. Add and remove only with [`SupervisorState::push_child`] and
    /// [`SupervisorState::remove_child`], which keep `ids` in step.
    pub(super) children: Vec<Child>,
    /// The ids of `children`: a spawn under a supervisor with 100 000 children must not
    /// compare its id with each of them (it did, and spawn rate fell to 1 % of the first).
    pub(super) ids: std::collections::HashSet<String>,
    pub(super) restart_log: VecDeque<Instant>,
    pub(super) auto_shutdown: AutoShutdown,
    pub(super) max_children: Option<usize>,
}

/// Records a restart at `now` in `log`; false when more than `intensity.max_restarts` fall
/// within `intensity.period` (OTP counts the restarts within the last `period`).
pub(super) fn record_restart(log: &mut VecDeque<Instant>, intensity: Intensity) -> bool {
    let now = Instant::now();
    log.push_back(now);
    while let Some(first) = log.front() {
        if now.duration_since(*first) > intensity.period {
            log.pop_front();
        } else {
            break;
        }
    }
    log.len() <= intensity.max_restarts as usize
}

impl SupervisorState {
    pub(super) fn position(&self, id: &str) -> Option<usize> {
        if !self.ids.contains(id) {
            return None;
        }
        self.children.iter().position(|c| c.spec.id == id)
    }

    /// Add a child at the end (the last to start, the first to stop).
    pub(super) fn push_child(&mut self, child: Child) {
        self.ids.insert(child.spec.id.clone());
        self.children.push(child);
    }

    /// Remove the child at `idx`.
    pub(super) fn remove_child(&mut self, idx: usize) -> Child {
        let child = self.children.remove(idx);
        self.ids.remove(&child.spec.id);
        child
    }

    pub(super) fn backoff_delay(&mut self, idx: usize) -> Duration {
        let Some(b) = self.backoff else {
            return Duration::ZERO;
        };
        let child = &mut self.children[idx];
        if child.started_at.elapsed() >= b.reset_after {
            child.consecutive = 0;
        }
        child.consecutive = child.consecutive.saturating_add(1);
        let factor = 1u32 << (child.consecutive - 1).min(16);
        b.initial.saturating_mul(factor).min(b.max)
    }
}

/// Exit reasons that OTP treats as normal: `normal`, `shutdown`, `shutdown: ...`, or none.
pub(super) fn is_abnormal(reason: Option<&str>) -> bool {
    match reason {
        None => false,
        Some(r) => !(r == "normal" || r == "shutdown" || r.starts_with("shutdown:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restarts_beyond_the_intensity_within_its_period_are_refused() {
        let i = Intensity {
            max_restarts: 2,
            period: Duration::from_secs(10),
        };
        let mut log = VecDeque::new();
        assert!(record_restart(&mut log, i));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(record_restart(&mut log, i));
        let mut over = log.clone();
        assert!(!record_restart(&mut over, i), "a third within 10 s");
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(
            record_restart(&mut log, i),
            "the first restart left the window"
        );
        assert_eq!(log.len(), 2, "only those of the last 10 s are kept");
    }

    #[test]
    fn only_normal_and_shutdown_exits_are_normal() {
        for normal in [
            None,
            Some("normal"),
            Some("shutdown"),
            Some("shutdown: node stops"),
        ] {
            assert!(!is_abnormal(normal), "{normal:?}");
        }
        for abnormal in [Some("panicked"), Some("normally"), Some("killed"), Some("")] {
            assert!(is_abnormal(abnormal), "{abnormal:?}");
        }
    }
}
