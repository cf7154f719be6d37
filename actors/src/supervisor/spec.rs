//! How a supervisor is configured: its strategy, restart intensity (and its scope), automatic
//! shutdown, backoff and child specs; and the OTP rule on significant children.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    child::{ChildSpec, Restart},
    error::SupervisorError,
    stats::SupervisorStats,
};

/// Which children are restarted when one exits and must be restarted (OTP strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// All children: the others are stopped (reverse order), then all are started (in order).
    OneForAll,
    /// The child that exited and the children started after it.
    RestForOne,
}

impl Strategy {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

/// Restart intensity: more than `max_restarts` restarts within `period` makes the supervisor
/// stop its children and fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// 3 restarts in 5 seconds.
    fn default() -> Self {
        Intensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        }
    }
}

/// Where restart intensity is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntensityScope {
    /// OTP: one count for the whole supervisor; exceeding it stops every child and fails the
    /// supervisor, which its own supervisor sees as a child failure (escalation).
    #[default]
    Supervisor,
    /// Akka's `OneForOneStrategy`: one count per child (only with [`Strategy::OneForOne`]). A
    /// child that exceeds it is stopped alone, with the reason recorded
    /// ([`ChildStatus::Failed`](crate::ChildStatus::Failed), [`ChildInfo::reason`](crate::ChildInfo::reason)); its siblings and the supervisor keep
    /// running. For supervisors of unrelated children (actors spawned on request), where one
    /// crash-looping child must not take the others down.
    PerChild,
}

/// When a supervisor stops itself because significant children exited (OTP 24
/// `auto_shutdown`). The supervisor then stops with reason `shutdown`, which its own supervisor
/// treats as a normal exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoShutdown {
    /// Never (significant children are refused).
    #[default]
    Never,
    /// When any significant child exits and is not restarted.
    AnySignificant,
    /// When every significant child has exited and none of them will be restarted.
    AllSignificant,
}

/// Optional exponential restart backoff (beyond OTP): the n-th consecutive restart of a child
/// waits `min(max, initial * 2^(n-1))`; a child that ran for `reset_after` starts over at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Uptime after which the consecutive-restart count resets.
    pub reset_after: Duration,
}

/// Everything a [`Supervisor`](crate::Supervisor) is started with.
///
/// ```
/// use actors::{Intensity, Strategy, SupervisorSpec};
/// use std::time::Duration;
/// let spec = SupervisorSpec::new(Strategy::RestForOne).intensity(Intensity {
///     max_restarts: 10,
///     period: Duration::from_secs(1),
/// });
/// assert_eq!(spec.strategy(), Strategy::RestForOne);
/// ```
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    pub(super) strategy: Strategy,
    pub(super) intensity: Intensity,
    pub(super) scope: IntensityScope,
    pub(super) backoff: Option<Backoff>,
    pub(super) children: Vec<ChildSpec>,
    pub(super) stats: Option<Arc<SupervisorStats>>,
    pub(super) auto_shutdown: AutoShutdown,
    pub(super) max_children: Option<usize>,
}

impl SupervisorSpec {
    /// A spec with no children and the default [`Intensity`].
    pub fn new(strategy: Strategy) -> Self {
        SupervisorSpec {
            strategy,
            intensity: Intensity::default(),
            scope: IntensityScope::Supervisor,
            backoff: None,
            children: Vec::new(),
            stats: None,
            auto_shutdown: AutoShutdown::Never,
            max_children: None,
        }
    }

    /// Add a static child; children start in the order they are added.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// Set the restart intensity.
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Count the intensity per child instead of for the whole supervisor (see
    /// [`IntensityScope::PerChild`]; only with [`Strategy::OneForOne`], the start fails
    /// otherwise).
    ///
    /// ```
    /// use actors::{IntensityScope, Strategy, SupervisorSpec};
    /// let spec = SupervisorSpec::new(Strategy::OneForOne).intensity_scope(IntensityScope::PerChild);
    /// # let _ = spec;
    /// ```
    pub fn intensity_scope(mut self, scope: IntensityScope) -> Self {
        self.scope = scope;
        self
    }

    /// Stop the supervisor when significant children exit (see [`AutoShutdown`]).
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// At most `n` children (Elixir's `DynamicSupervisor` `max_children`): [`start_child`](crate::start_child)
    /// beyond it fails with [`SupervisorError::MaxChildren`].
    ///
    /// A one_for_one supervisor with no static children, children added with [`start_child`](crate::start_child)
    /// and `max_children` is the dynamic supervisor of many children of one kind (OTP's
    /// `simple_one_for_one`): no ordered restart between them, and they stop concurrently
    /// (see [`Supervisor`](crate::Supervisor)).
    ///
    /// ```
    /// use actors::{Strategy, SupervisorSpec};
    /// let sessions = SupervisorSpec::new(Strategy::OneForOne).max_children(10_000);
    /// # let _ = sessions;
    /// ```
    pub fn max_children(mut self, n: usize) -> Self {
        self.max_children = Some(n);
        self
    }

    /// Enable restart backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Count restarts into shared stats (for metrics).
    pub fn stats(mut self, stats: Arc<SupervisorStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
}

/// OTP refuses significant children under `auto_shutdown = never` and significant permanent
/// children (they would never exit for good).
pub(super) fn check_significant(
    spec: &ChildSpec,
    auto: AutoShutdown,
) -> Result<(), SupervisorError> {
    if !spec.significant {
        return Ok(());
    }
    if auto == AutoShutdown::Never {
        return Err(SupervisorError::BadSpec(format!(
            "child '{}' is significant but auto_shutdown is never",
            spec.id
        )));
    }
    if spec.restart == Restart::Permanent {
        return Err(SupervisorError::BadSpec(format!(
            "child '{}' is significant and permanent (only transient or temporary may be)",
            spec.id
        )));
    }
    Ok(())
}
