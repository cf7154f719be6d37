//! The [`Supervisor`] actor: Erlang/OTP `supervisor` semantics on ractor linking.
//!
//! Differences from ractor's default linking (which stops the parent when any child exits):
//! the supervisor keeps a list of [`ChildSpec`]s, restarts children per [`Strategy`] and
//! [`Restart`] type, gives up (and fails, so its own supervisor sees a child failure) when
//! more than [`Intensity::max_restarts`] restarts happen within [`Intensity::period`].
//!
//! Its parts: [`spec`] (how it is configured), [`api`] (its messages and client functions),
//! [`state`] (its bookkeeping, pure), and here the actor itself (starting, restarting and
//! stopping children).

mod api;
mod spec;
mod state;

use std::{collections::VecDeque, time::Duration};

use ractor::{
    rpc::CallResult, Actor, ActorCell, ActorProcessingErr, ActorRef, RactorErr, RpcReplyPort,
    SpawnErr, SupervisionEvent,
};
use tokio::time::Instant;

pub use api::{
    child_cell, count_children, delete_child, restart_child, snapshot, start_child,
    terminate_child, which_children, ChildCount, ChildInfo, SupervisorMsg,
};
pub use spec::{AutoShutdown, Backoff, Intensity, IntensityScope, Strategy, SupervisorSpec};

use crate::{
    child::{is_ignore, ChildKind, ChildSpec, Restart, Shutdown},
    error::SupervisorError,
    snapshot::{ChildStatus, TreeSnapshot},
};
use spec::check_significant;
use state::{is_abnormal, record_restart, Child, SupervisorState};

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

impl ChildSpec {
    /// A nested [`Supervisor`] child. Defaults: `permanent`, shutdown `Infinity`, start timeout
    /// infinity (its start is its children's starts, each with its own timeout).
    pub fn supervisor(id: impl Into<String>, name: Option<String>, spec: SupervisorSpec) -> Self {
        let mut child = ChildSpec::worker(id, name, Supervisor, spec);
        child.kind = ChildKind::Supervisor;
        child.shutdown = Shutdown::Infinity;
        child.start_timeout = None;
        child
    }
}

const KILL_WAIT: Duration = Duration::from_secs(5);

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
                        state.remove_child(idx);
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
            ids: Default::default(),
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
                Ok(cell) => state.push_child(Child::new(child, cell)),
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
                        state.push_child(Child::new(spec, Some(cell.clone())));
                        Ok(cell)
                    }
                    Ok(None) => {
                        if spec.restart != Restart::Temporary {
                            state.push_child(Child::new(spec, None));
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
                    state.remove_child(idx);
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
                        state.remove_child(idx);
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
                state.remove_child(idx);
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
