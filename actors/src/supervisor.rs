//! The [`Supervisor`] actor: Erlang/OTP `supervisor` semantics on ractor linking.
//!
//! Differences from ractor's default linking (which stops the parent when any child exits):
//! the supervisor keeps a list of [`ChildSpec`]s, restarts children per [`Strategy`] and
//! [`Restart`] type, gives up (and fails, so its own supervisor sees a child failure) when
//! more than [`Intensity::max_restarts`] restarts happen within [`Intensity::period`].

use std::{collections::VecDeque, sync::Arc, time::Duration};

use ractor::{
    rpc::CallResult, Actor, ActorCell, ActorProcessingErr, ActorRef, RactorErr, RpcReplyPort,
    SpawnErr, SupervisionEvent,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    child::{is_ignore, ChildKind, ChildSpec, Restart, Shutdown},
    error::SupervisorError,
    snapshot::{ChildStatus, TreeSnapshot},
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
    fn as_str(self) -> &'static str {
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
    /// ([`ChildStatus::Failed`], [`ChildInfo::reason`]); its siblings and the supervisor keep
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

/// Everything a [`Supervisor`] is started with.
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
    strategy: Strategy,
    intensity: Intensity,
    scope: IntensityScope,
    backoff: Option<Backoff>,
    children: Vec<ChildSpec>,
    stats: Option<Arc<SupervisorStats>>,
    auto_shutdown: AutoShutdown,
    max_children: Option<usize>,
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

    /// At most `n` children (Elixir's `DynamicSupervisor` `max_children`): [`start_child`]
    /// beyond it fails with [`SupervisorError::MaxChildren`].
    ///
    /// A one_for_one supervisor with no static children, children added with [`start_child`]
    /// and `max_children` is the dynamic supervisor of many children of one kind (OTP's
    /// `simple_one_for_one`): no ordered restart between them, and they stop concurrently
    /// (see [`Supervisor`]).
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

/// One child as reported by [`which_children`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its actor id while it runs.
    pub actor_id: Option<String>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Running, restarting or stopped.
    pub status: ChildStatus,
    /// Restarts so far.
    pub restarts: u32,
    /// Restart type.
    pub restart: Restart,
    /// Why the child is not running, when it failed or was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counts as reported by [`count_children`] (OTP `count_children/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildCount {
    /// All child specs, running or not.
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Specs of supervisor kind.
    pub supervisors: usize,
    /// Specs of worker kind.
    pub workers: usize,
}

/// Messages a [`Supervisor`] understands. Use the free functions ([`start_child`], ...) rather
/// than building these by hand.
pub enum SupervisorMsg {
    /// Add and start a child.
    StartChild(ChildSpec, RpcReplyPort<Result<ActorCell, SupervisorError>>),
    /// Stop a child, keeping its spec (temporary children are deleted).
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// Start a stopped child again.
    RestartChild(String, RpcReplyPort<Result<ActorCell, SupervisorError>>),
    /// Remove a stopped child's spec.
    DeleteChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// List the children.
    WhichChildren(RpcReplyPort<Vec<ChildInfo>>),
    /// Count the children.
    CountChildren(RpcReplyPort<ChildCount>),
    /// The tree under this supervisor.
    Snapshot(RpcReplyPort<TreeSnapshot>),
    /// The running actor of a child, by id.
    ChildCell(String, RpcReplyPort<Option<ActorCell>>),
    /// Internal: restart these children now (sent to itself after an exit, or when a backoff
    /// delay elapsed), so the supervisor answers other messages between restart attempts.
    #[doc(hidden)]
    RestartDue(Vec<String>),
}

impl ractor::Message for SupervisorMsg {}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u32,
    started_at: Instant,
    pending_restart: bool,
    consecutive: u32,
    /// Restart times of this child (for [`IntensityScope::PerChild`]).
    restart_log: VecDeque<Instant>,
    /// Given up on (per-child intensity exceeded): why.
    gave_up: Option<String>,
}

impl Child {
    fn new(spec: ChildSpec, cell: Option<ActorCell>) -> Child {
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

    fn status(&self) -> ChildStatus {
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

    fn info(&self) -> ChildInfo {
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

/// Internal state of a running [`Supervisor`].
pub struct SupervisorState {
    strategy: Strategy,
    intensity: Intensity,
    scope: IntensityScope,
    backoff: Option<Backoff>,
    stats: Option<Arc<SupervisorStats>>,
    children: Vec<Child>,
    restart_log: VecDeque<Instant>,
    auto_shutdown: AutoShutdown,
    max_children: Option<usize>,
}

/// Records a restart at `now` in `log`; false when more than `intensity.max_restarts` fall
/// within `intensity.period` (OTP counts the restarts within the last `period`).
fn record_restart(log: &mut VecDeque<Instant>, intensity: Intensity) -> bool {
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
    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    fn backoff_delay(&mut self, idx: usize) -> Duration {
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

/// The supervisor actor. Start it with [`Supervisor::start`] or as a child with
/// [`ChildSpec::supervisor`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisor;

impl Supervisor {
    /// Spawn an unlinked (root) supervisor; its children are started before this returns, and
    /// a child that fails to start makes this fail with that child's error.
    pub async fn start(
        name: Option<String>,
        spec: SupervisorSpec,
    ) -> Result<(ActorRef<SupervisorMsg>, tokio::task::JoinHandle<()>), SpawnErr> {
        Actor::spawn(name, Supervisor, spec).await
    }
}

/// Exit reasons that OTP treats as normal: `normal`, `shutdown`, `shutdown: ...`, or none.
fn is_abnormal(reason: Option<&str>) -> bool {
    match reason {
        None => false,
        Some(r) => !(r == "normal" || r == "shutdown" || r.starts_with("shutdown:")),
    }
}

const KILL_WAIT: Duration = Duration::from_secs(5);

/// OTP refuses significant children under `auto_shutdown = never` and significant permanent
/// children (they would never exit for good).
fn check_significant(spec: &ChildSpec, auto: AutoShutdown) -> Result<(), SupervisorError> {
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

/// Stop one child according to its shutdown policy; returns when it is gone.
async fn shutdown_child(cell: ActorCell, shutdown: Shutdown) {
    match shutdown {
        Shutdown::BrutalKill => {
            let _ = cell.kill_and_wait(Some(KILL_WAIT)).await;
        }
        Shutdown::Timeout(d) => {
            if let Err(RactorErr::Timeout) =
                cell.stop_and_wait(Some("shutdown".into()), Some(d)).await
            {
                tracing::warn!(actor = %cell.get_id(), "child did not stop in {d:?}; killing it");
                let _ = cell.kill_and_wait(Some(KILL_WAIT)).await;
            }
        }
        Shutdown::Infinity => {
            let _ = cell.stop_and_wait(Some("shutdown".into()), None).await;
        }
    }
}

/// Start one child from its spec, within its start timeout. `Ok(None)`: the child answered
/// `ignore` ([`crate::Ignore`]).
async fn start_one(
    myself: &ActorRef<SupervisorMsg>,
    spec: &ChildSpec,
) -> Result<Option<ActorCell>, SupervisorError> {
    let failed = |reason: String| SupervisorError::StartFailed {
        id: spec.id.clone(),
        reason,
    };
    let start = (spec.start)(myself.get_cell());
    let result = match spec.start_timeout {
        Some(limit) => match tokio::time::timeout(limit, start).await {
            Ok(r) => r,
            // Dropping the start future drops the half-started actor with it.
            Err(_) => return Err(failed(format!("start timed out after {limit:?}"))),
        },
        None => start.await,
    };
    match result {
        Ok(cell) => Ok(Some(cell)),
        Err(e) if is_ignore(&e) => Ok(None),
        Err(e) => Err(failed(e.to_string())),
    }
}

async fn stop_all_reverse(state: &mut SupervisorState) {
    for child in state.children.iter_mut().rev() {
        child.pending_restart = false;
        if let Some(cell) = child.cell.take() {
            shutdown_child(cell, child.spec.shutdown).await;
        }
    }
}

impl Supervisor {
    /// Start the children named by `ids` (in spec order) that are waiting for a restart.
    /// Returns the id of the first child that failed to start, and why.
    async fn start_ids(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        ids: &[String],
    ) -> Result<(), (String, String)> {
        for id in ids {
            let Some(idx) = state.position(id) else {
                continue;
            };
            let child = &mut state.children[idx];
            if child.cell.is_some() || !child.pending_restart {
                continue;
            }
            child.pending_restart = false;
            match start_one(myself, &child.spec).await {
                Ok(cell) => {
                    let ignored = cell.is_none();
                    child.cell = cell;
                    child.restarts += 1;
                    child.started_at = Instant::now();
                    if let Some(s) = &state.stats {
                        s.record_restart();
                    }
                    if ignored && child.spec.restart == Restart::Temporary {
                        state.children.remove(idx);
                    }
                }
                Err(e) => {
                    tracing::warn!(supervisor = ?myself.get_name(), "restart failed: {e}");
                    return Err((id.clone(), e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// After a significant child exited for good: whether the supervisor must stop itself.
    fn auto_shutdown_due(state: &SupervisorState) -> bool {
        match state.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !state
                .children
                .iter()
                .any(|c| c.spec.significant && (c.cell.is_some() || c.pending_restart)),
        }
    }

    /// A child exited (or failed to restart) and must be restarted: apply intensity, strategy
    /// and backoff. The restart itself happens in a [`SupervisorMsg::RestartDue`] the
    /// supervisor sends itself, so it answers other calls in between; a restart that fails
    /// comes back here and counts against the intensity again, as in OTP.
    async fn restart(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        failed: String,
        why: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(idx) = state.position(&failed) else {
            return Ok(());
        };
        match state.scope {
            IntensityScope::Supervisor => {
                if !record_restart(&mut state.restart_log, state.intensity) {
                    tracing::error!(
                        supervisor = ?myself.get_name(),
                        "reached max restart intensity ({} in {:?}); shutting down",
                        state.intensity.max_restarts,
                        state.intensity.period
                    );
                    if let Some(s) = &state.stats {
                        s.record_escalation();
                    }
                    stop_all_reverse(state).await;
                    return Err(From::from(format!(
                        "reached max restart intensity: more than {} restarts in {:?}",
                        state.intensity.max_restarts, state.intensity.period
                    )));
                }
            }
            IntensityScope::PerChild => {
                let intensity = state.intensity;
                let child = &mut state.children[idx];
                if !record_restart(&mut child.restart_log, intensity) {
                    let reason = format!(
                        "reached max restart intensity: more than {} restarts in {:?}; last exit: {why}",
                        intensity.max_restarts, intensity.period
                    );
                    tracing::error!(supervisor = ?myself.get_name(), child = %failed, "{reason}; child stopped");
                    child.pending_restart = false;
                    child.gave_up = Some(reason);
                    if let Some(s) = &state.stats {
                        s.record_gave_up();
                    }
                    return Ok(());
                }
            }
        }
        let group: Vec<usize> = match state.strategy {
            Strategy::OneForOne => vec![idx],
            Strategy::OneForAll => (0..state.children.len()).collect(),
            Strategy::RestForOne => (idx..state.children.len()).collect(),
        };
        for &i in group.iter().rev() {
            let child = &mut state.children[i];
            if let Some(cell) = child.cell.take() {
                shutdown_child(cell, child.spec.shutdown).await;
            }
        }
        // Temporary siblings stopped for the group are not restarted: their specs go.
        let ids: Vec<String> = group
            .iter()
            .map(|&i| &state.children[i])
            .filter(|c| c.spec.restart != Restart::Temporary || c.spec.id == failed)
            .map(|c| c.spec.id.clone())
            .collect();
        state
            .children
            .retain(|c| c.spec.restart != Restart::Temporary || ids.contains(&c.spec.id));
        let Some(idx) = state.position(&failed) else {
            return Ok(());
        };
        let delay = state.backoff_delay(idx);
        for id in &ids {
            if let Some(i) = state.position(id) {
                state.children[i].pending_restart = true;
            }
        }
        if delay.is_zero() {
            // Queued behind whatever is already in the mailbox: admin calls get answered.
            myself.send_message(SupervisorMsg::RestartDue(ids))?;
        } else {
            myself.send_after(delay, move || SupervisorMsg::RestartDue(ids));
        }
        Ok(())
    }
    async fn snapshot(
        myself: &ActorRef<SupervisorMsg>,
        state: &SupervisorState,
        reply: RpcReplyPort<TreeSnapshot>,
    ) {
        let mut me = TreeSnapshot::leaf(
            myself.get_name().unwrap_or_else(|| "supervisor".into()),
            ChildKind::Supervisor,
            ChildStatus::Running,
        );
        me.actor_id = Some(myself.get_id().to_string());
        me.actor_name = myself.get_name();
        me.strategy = Some(state.strategy.as_str().into());
        let pending: Vec<(TreeSnapshot, Option<ActorCell>)> = state
            .children
            .iter()
            .map(|c| {
                let mut node = TreeSnapshot::leaf(c.spec.id.clone(), c.spec.kind, c.status());
                node.actor_id = c.cell.as_ref().map(|x| x.get_id().to_string());
                node.actor_name = c.cell.as_ref().and_then(|x| x.get_name());
                node.restarts = c.restarts;
                node.restart = Some(c.spec.restart.to_string());
                node.reason = c.gave_up.clone();
                let nested = c
                    .cell
                    .clone()
                    .filter(|_| c.spec.kind == ChildKind::Supervisor);
                (node, nested)
            })
            .collect();
        // Nested supervisors answer asynchronously so this supervisor is never blocked.
        tokio::spawn(async move {
            for (mut node, nested) in pending {
                if let Some(cell) = nested {
                    let sup: ActorRef<SupervisorMsg> = cell.into();
                    match sup
                        .call(SupervisorMsg::Snapshot, Some(Duration::from_secs(2)))
                        .await
                    {
                        Ok(CallResult::Success(sub)) => {
                            node.children = sub.children;
                            node.strategy = sub.strategy;
                        }
                        _ => node.status = ChildStatus::Unresponsive,
                    }
                }
                me.children.push(node);
            }
            let _ = reply.send(me);
        });
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorSpec;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        spec: SupervisorSpec,
    ) -> Result<Self::State, ActorProcessingErr> {
        if spec.scope == IntensityScope::PerChild && spec.strategy != Strategy::OneForOne {
            return Err(From::from(format!(
                "a per-child restart intensity needs one_for_one, not {}",
                spec.strategy.as_str()
            )));
        }
        let mut state = SupervisorState {
            strategy: spec.strategy,
            intensity: spec.intensity,
            scope: spec.scope,
            backoff: spec.backoff,
            stats: spec.stats,
            children: Vec::with_capacity(spec.children.len()),
            restart_log: VecDeque::new(),
            auto_shutdown: spec.auto_shutdown,
            max_children: spec.max_children,
        };
        if let Some(bad) = spec
            .children
            .iter()
            .find_map(|c| check_significant(c, state.auto_shutdown).err())
        {
            return Err(From::from(bad));
        }
        for child in spec.children {
            if state.position(&child.id).is_some() {
                stop_all_reverse(&mut state).await;
                return Err(From::from(SupervisorError::AlreadyPresent(child.id)));
            }
            match start_one(&myself, &child).await {
                // OTP: a static child that answers `ignore` keeps its spec (not running),
                // a temporary one is forgotten.
                Ok(None) if child.restart == Restart::Temporary => {}
                Ok(cell) => state.children.push(Child::new(child, cell)),
                Err(e) => {
                    stop_all_reverse(&mut state).await;
                    return Err(From::from(e));
                }
            }
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        stop_all_reverse(state).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                if state.position(&spec.id).is_some() {
                    let _ = reply.send(Err(SupervisorError::AlreadyPresent(spec.id)));
                    return Ok(());
                }
                if let Some(max) = state.max_children {
                    if state.children.len() >= max {
                        let _ = reply.send(Err(SupervisorError::MaxChildren(max)));
                        return Ok(());
                    }
                }
                if let Err(e) = check_significant(&spec, state.auto_shutdown) {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let id = spec.id.clone();
                let result = match start_one(&myself, &spec).await {
                    Ok(Some(cell)) => {
                        state.children.push(Child::new(spec, Some(cell.clone())));
                        Ok(cell)
                    }
                    Ok(None) => {
                        if spec.restart != Restart::Temporary {
                            state.children.push(Child::new(spec, None));
                        }
                        Err(SupervisorError::Ignored(id))
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::TerminateChild(id, reply) => {
                let Some(idx) = state.position(&id) else {
                    let _ = reply.send(Err(SupervisorError::NotFound(id)));
                    return Ok(());
                };
                let child = &mut state.children[idx];
                child.pending_restart = false;
                if let Some(cell) = child.cell.take() {
                    shutdown_child(cell, child.spec.shutdown).await;
                }
                if child.spec.restart == Restart::Temporary {
                    state.children.remove(idx);
                }
                let _ = reply.send(Ok(()));
            }
            SupervisorMsg::RestartChild(id, reply) => {
                let Some(idx) = state.position(&id) else {
                    let _ = reply.send(Err(SupervisorError::NotFound(id)));
                    return Ok(());
                };
                let child = &state.children[idx];
                if child.cell.is_some() {
                    let _ = reply.send(Err(SupervisorError::Running(id)));
                    return Ok(());
                }
                if child.pending_restart {
                    let _ = reply.send(Err(SupervisorError::Restarting(id)));
                    return Ok(());
                }
                let result = match start_one(&myself, &child.spec).await {
                    Ok(Some(cell)) => {
                        let child = &mut state.children[idx];
                        child.cell = Some(cell.clone());
                        child.started_at = Instant::now();
                        child.gave_up = None;
                        child.restart_log.clear();
                        Ok(cell)
                    }
                    Ok(None) => Err(SupervisorError::Ignored(id)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::DeleteChild(id, reply) => {
                let result = match state.position(&id) {
                    None => Err(SupervisorError::NotFound(id)),
                    Some(idx) if state.children[idx].cell.is_some() => {
                        Err(SupervisorError::Running(id))
                    }
                    Some(idx) if state.children[idx].pending_restart => {
                        Err(SupervisorError::Restarting(id))
                    }
                    Some(idx) => {
                        state.children.remove(idx);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::WhichChildren(reply) => {
                let _ = reply.send(state.children.iter().map(Child::info).collect());
            }
            SupervisorMsg::CountChildren(reply) => {
                let supervisors = state
                    .children
                    .iter()
                    .filter(|c| c.spec.kind == ChildKind::Supervisor)
                    .count();
                let _ = reply.send(ChildCount {
                    specs: state.children.len(),
                    active: state.children.iter().filter(|c| c.cell.is_some()).count(),
                    supervisors,
                    workers: state.children.len() - supervisors,
                });
            }
            SupervisorMsg::Snapshot(reply) => Self::snapshot(&myself, state, reply).await,
            SupervisorMsg::ChildCell(id, reply) => {
                let cell = state
                    .position(&id)
                    .and_then(|i| state.children[i].cell.clone());
                let _ = reply.send(cell);
            }
            SupervisorMsg::RestartDue(ids) => {
                // Children terminated meanwhile are no longer pending and are skipped.
                if let Err((failed, why)) = Self::start_ids(&myself, state, &ids).await {
                    Self::restart(&myself, state, failed, why).await?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, abnormal, reason) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                is_abnormal(reason.as_deref()),
                reason.clone().unwrap_or_else(|| "normal".into()),
            ),
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, err.to_string()),
            _ => return Ok(()),
        };
        // Events for actors we no longer track (stopped by us, or replaced) are stale.
        let Some(idx) = state.children.iter().position(|c| {
            c.cell
                .as_ref()
                .is_some_and(|own| own.get_id() == cell.get_id())
        }) else {
            return Ok(());
        };
        let child = &mut state.children[idx];
        child.cell = None;
        tracing::debug!(child = %child.spec.id, abnormal, %reason, "child exited");
        if !child.spec.wants_restart(abnormal) {
            let significant = child.spec.significant;
            if child.spec.restart == Restart::Temporary {
                state.children.remove(idx);
            }
            if significant && Self::auto_shutdown_due(state) {
                tracing::info!(supervisor = ?myself.get_name(), "significant child exited; auto_shutdown");
                stop_all_reverse(state).await;
                myself.stop(Some("shutdown".into()));
            }
            return Ok(());
        }
        let id = child.spec.id.clone();
        Self::restart(&myself, state, id, reason).await
    }
}

async fn ask<T: Send + 'static>(
    sup: &ActorRef<SupervisorMsg>,
    build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
) -> Result<T, SupervisorError> {
    match sup.call(build, None).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(SupervisorError::Unavailable("timed out".into())),
        Ok(CallResult::SenderError) => Err(SupervisorError::Unavailable(
            "supervisor stopped before answering".into(),
        )),
        Err(e) => Err(SupervisorError::Unavailable(e.to_string())),
    }
}

/// Add a child to a running supervisor and start it (OTP `start_child/2`).
pub async fn start_child(
    sup: &ActorRef<SupervisorMsg>,
    spec: ChildSpec,
) -> Result<ActorCell, SupervisorError> {
    ask(sup, |r| SupervisorMsg::StartChild(spec, r)).await?
}

/// Stop a child, keeping its spec unless it is temporary (OTP `terminate_child/2`).
pub async fn terminate_child(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<(), SupervisorError> {
    ask(sup, |r| SupervisorMsg::TerminateChild(id.to_string(), r)).await?
}

/// Start a stopped child again from its spec (OTP `restart_child/2`).
pub async fn restart_child(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<ActorCell, SupervisorError> {
    ask(sup, |r| SupervisorMsg::RestartChild(id.to_string(), r)).await?
}

/// Remove the spec of a stopped child (OTP `delete_child/2`).
pub async fn delete_child(sup: &ActorRef<SupervisorMsg>, id: &str) -> Result<(), SupervisorError> {
    ask(sup, |r| SupervisorMsg::DeleteChild(id.to_string(), r)).await?
}

/// List the children in start order (OTP `which_children/1`).
pub async fn which_children(
    sup: &ActorRef<SupervisorMsg>,
) -> Result<Vec<ChildInfo>, SupervisorError> {
    ask(sup, SupervisorMsg::WhichChildren).await
}

/// Count the children (OTP `count_children/1`).
pub async fn count_children(sup: &ActorRef<SupervisorMsg>) -> Result<ChildCount, SupervisorError> {
    ask(sup, SupervisorMsg::CountChildren).await
}

/// A snapshot of the tree under this supervisor.
pub async fn snapshot(sup: &ActorRef<SupervisorMsg>) -> Result<TreeSnapshot, SupervisorError> {
    ask(sup, SupervisorMsg::Snapshot).await
}

/// The running actor of the child `id`, if it runs (e.g. to monitor it or, in diagnostics, to
/// kill it).
///
/// ```
/// # use actors::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
/// # #[derive(Clone)] struct W;
/// # impl ractor::Actor for W { type Msg = (); type State = (); type Arguments = ();
/// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("w", None, W, ()));
/// let (sup, _) = Supervisor::start(None, spec).await.unwrap();
/// assert!(actors::child_cell(&sup, "w").await.unwrap().is_some());
/// assert!(actors::child_cell(&sup, "nope").await.unwrap().is_none());
/// # sup.stop_and_wait(None, None).await.unwrap();
/// # });
/// ```
pub async fn child_cell(
    sup: &ActorRef<SupervisorMsg>,
    id: &str,
) -> Result<Option<ActorCell>, SupervisorError> {
    ask(sup, |r| SupervisorMsg::ChildCell(id.to_string(), r)).await
}
