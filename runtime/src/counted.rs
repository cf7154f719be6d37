//! A transparent wrapper that counts the messages an actor handles (for metrics) and, when the
//! node's live figures are on, times each handler and records its failures (see
//! [`crate::actor_stats`]). It also records the actor's memory shape (the sizes of its state
//! and messages) and asks its memory hook, if it has one, at most once per sampler round.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Instant,
};

use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::actor_stats::{ActorFigures, MemoryShape, StatsRegistry};

/// A user's estimate of the heap bytes an actor's state holds (see
/// [`crate::Factory::with_memory`]).
pub(crate) type MemoryHook<S> = Arc<dyn Fn(&S) -> usize + Send + Sync>;

pub(crate) struct Counted<A: Actor> {
    pub(crate) inner: A,
    pub(crate) handled: Counter,
    /// This actor's figures (per name) and the node's registry (for the on/off switch).
    pub(crate) figures: Arc<ActorFigures>,
    pub(crate) registry: Arc<StatsRegistry>,
    /// The node's count of running spawned actors (for `--max-actors`).
    pub(crate) live: Arc<AtomicUsize>,
    /// The node's OTLP exporter, if on: traced messages' spans go there.
    pub(crate) spans: Option<Arc<crate::otlp::SpanExport>>,
    /// What the actor says its state holds on the heap, if it can tell.
    pub(crate) memory: Option<MemoryHook<A::State>>,
    /// The node's name directory.
    pub(crate) directory: Arc<crate::directory_service::Directory>,
    /// Set once this incarnation started; dropped with the actor however it ends (ractor
    /// skips `post_stop` after a panic or a kill, but always drops the actor's handler).
    pub(crate) running: OnceLock<Running>,
    /// This incarnation's entry in the name directory, if it is named; removed on drop, as
    /// `running`.
    pub(crate) listed: OnceLock<Listed>,
}

/// A named actor's entry in the node's directory, for as long as it is held.
pub(crate) struct Listed {
    directory: Arc<crate::directory_service::Directory>,
    name: String,
    pid: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.directory.remove(&self.name, self.pid);
    }
}

/// One running actor in the node's count, for as long as it is held.
pub(crate) struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::AcqRel);
        Running(live.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Each incarnation (a clone made by the child spec) counts afresh.
impl<A: Actor + Clone> Clone for Counted<A> {
    fn clone(&self) -> Self {
        Counted {
            inner: self.inner.clone(),
            handled: self.handled.clone(),
            figures: self.figures.clone(),
            registry: self.registry.clone(),
            live: self.live.clone(),
            spans: self.spans.clone(),
            memory: self.memory.clone(),
            directory: self.directory.clone(),
            running: OnceLock::new(),
            listed: OnceLock::new(),
        }
    }
}

impl<A: Actor> Counted<A> {
    /// Ask the memory hook, if any, what the state holds now. A hook that panics is not asked
    /// again for this name (the estimate goes back to the shallow one).
    fn report_memory(&self, state: &A::State) {
        let Some(hook) = &self.memory else { return };
        if self.figures.hook_broken() {
            return;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| hook(state))) {
            Ok(bytes) => self.figures.report_memory(bytes),
            Err(_) => {
                tracing::warn!("an actor's memory hook panicked; its estimate stays shallow");
                self.figures.hook_failed();
            }
        }
    }

    /// The inner handler, timed for the live figures when they are on.
    async fn timed(
        &self,
        myself: ActorRef<A::Msg>,
        message: A::Msg,
        state: &mut A::State,
    ) -> Result<(), ActorProcessingErr> {
        if !self.registry.enabled() {
            return self.inner.handle(myself, message, state).await;
        }
        let started = Instant::now();
        let outcome = AssertUnwindSafe(self.inner.handle(myself, message, state))
            .catch_unwind()
            .await;
        self.figures.record(started.elapsed());
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.figures.failed(e.to_string());
                Err(e)
            }
            Err(panic) => {
                self.figures.failed(panic_text(panic.as_ref()));
                std::panic::resume_unwind(panic)
            }
        }
    }
}

/// A panic's message, as ractor reports it.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

impl<A: Actor> Actor for Counted<A> {
    type Msg = A::Msg;
    type State = A::State;
    type Arguments = A::Arguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = self.inner.pre_start(myself.clone(), args).await?;
        let _ = self.running.set(Running::new(&self.live));
        self.figures.started();
        self.figures
            .set_shape(MemoryShape::of::<A::State, A::Msg>());
        // Named user actors are findable cluster-wide through the name directory (their name's
        // owner node learns where they run; no other node holds anything for them).
        if let Some(name) = myself.get_name() {
            let json = myself.get_cell().is_message_type_of::<crate::JsonMsg>() == Some(true);
            let pid = myself.get_id().pid();
            self.directory.put(&name, pid, json);
            let _ = self.listed.set(Listed {
                directory: self.directory.clone(),
                name,
                pid,
            });
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner.post_start(myself, state).await?;
        self.report_memory(state);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner.post_stop(myself, state).await
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.handled.inc();
        // The received context is taken before the first await: set by the message's
        // decoding on this very thread.
        let actor = myself.get_name().unwrap_or_default();
        let outcome = crate::message_span::handle_received(
            self.spans.as_deref(),
            &actor,
            self.timed(myself, message, state),
        )
        .await;
        if self.memory.is_some() && outcome.is_ok() && self.figures.report_due() {
            self.report_memory(state);
        }
        outcome
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner
            .handle_supervisor_evt(myself, message, state)
            .await
    }
}
