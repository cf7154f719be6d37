use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use ractor::{Actor, ActorCell, ActorProcessingErr};
use serde::{Deserialize, Serialize};

/// The future a child's start function returns: the started, linked actor.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, ActorProcessingErr>> + Send>>;

type StartFn = Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>;

/// A child's start timeout unless its spec says otherwise (workers).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(5);

/// Returned by a child's `pre_start` (or start function) to say "do not start me" (OTP's
/// `ignore`): the supervisor keeps the spec, not running (a temporary child's spec is dropped),
/// and [`crate::start_child`] answers [`crate::SupervisorError::Ignored`].
///
/// ```
/// use ractor::{Actor, ActorProcessingErr, ActorRef};
/// #[derive(Clone)]
/// struct Optional;
/// impl Actor for Optional {
///     type Msg = ();
///     type State = ();
///     type Arguments = bool;
///     async fn pre_start(&self, _: ActorRef<()>, enabled: bool) -> Result<(), ActorProcessingErr> {
///         if !enabled {
///             return Err(Box::new(actors::Ignore));
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignore;

impl fmt::Display for Ignore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ignore")
    }
}

impl std::error::Error for Ignore {}

/// Whether a start error is (or wraps, as ractor's `SpawnErr::StartupFailed`) an [`Ignore`].
pub(crate) fn is_ignore(e: &ActorProcessingErr) -> bool {
    if e.downcast_ref::<Ignore>().is_some() {
        return true;
    }
    match e.downcast_ref::<ractor::SpawnErr>() {
        Some(ractor::SpawnErr::StartupFailed(inner)) => inner.downcast_ref::<Ignore>().is_some(),
        _ => false,
    }
}

/// When a supervisor restarts a child that exited (OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit (a panic, an error, or a stop reason other than
    /// `normal` / `shutdown`).
    Transient,
    /// Never restarted; its spec is deleted when it exits.
    Temporary,
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        })
    }
}

/// How a supervisor stops a child (OTP `shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Killed at once: no `post_stop`.
    BrutalKill,
    /// Asked to stop; killed if it has not stopped within the timeout.
    Timeout(Duration),
    /// Asked to stop, waited for without limit (the usual choice for supervisors).
    Infinity,
}

/// Whether a child is a worker or a supervisor (shown in tree snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// A leaf actor.
    Worker,
    /// A [`Supervisor`](crate::Supervisor) with children of its own.
    Supervisor,
}

/// How a supervisor starts, restarts and stops one child (OTP `child_spec()`).
///
/// The start function receives the supervisor's cell and must spawn the child **linked** to it
/// (`Actor::spawn_linked`), returning the child's cell. [`ChildSpec::worker`] and
/// [`ChildSpec::supervisor`] do that for you.
///
/// ```
/// use actors::{ChildSpec, Restart, Shutdown};
/// use std::time::Duration;
/// # #[derive(Clone)] struct W;
/// # impl ractor::Actor for W { type Msg = (); type State = (); type Arguments = ();
/// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
/// let spec = ChildSpec::worker("w", None, W, ())
///     .restart(Restart::Transient)
///     .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
/// assert_eq!(spec.id(), "w");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: String,
    pub(crate) start: StartFn,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) kind: ChildKind,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) significant: bool,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("start_timeout", &self.start_timeout)
            .field("significant", &self.significant)
            .finish()
    }
}

impl ChildSpec {
    /// A worker child from a start function. Defaults: `permanent`, shutdown timeout 5 s (OTP's
    /// default for workers), start timeout 5 s.
    pub fn new<F, Fut>(id: impl Into<String>, start: F) -> Self
    where
        F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, ActorProcessingErr>> + Send + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |sup| Box::pin(start(sup))),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            kind: ChildKind::Worker,
            start_timeout: Some(DEFAULT_START_TIMEOUT),
            significant: false,
        }
    }

    /// A worker that is a ractor [`Actor`], spawned linked with a clone of `actor` and `args` at
    /// every (re)start, registered under `name` when given.
    pub fn worker<A>(
        id: impl Into<String>,
        name: Option<String>,
        actor: A,
        args: A::Arguments,
    ) -> Self
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        ChildSpec::new(id, move |sup: ActorCell| {
            let actor = actor.clone();
            let args = args.clone();
            let name = name.clone();
            async move {
                let (r, _) = Actor::spawn_linked(name, actor, args, sup).await?;
                Ok(r.get_cell())
            }
        })
    }

    /// Start the child once, linked to `supervisor`: what a supervisor does at each (re)start.
    /// For actors that stand in for a child and supervise it themselves (the runtime's remote
    /// children placed on their own node).
    ///
    /// ```
    /// # use actors::ChildSpec;
    /// # #[derive(Clone)] struct W;
    /// # impl ractor::Actor for W { type Msg = (); type State = (); type Arguments = ();
    /// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
    /// # #[derive(Clone)] struct Parent;
    /// # impl ractor::Actor for Parent { type Msg = (); type State = (); type Arguments = ();
    /// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (parent, _) = ractor::Actor::spawn(None, Parent, ()).await.unwrap();
    /// let child = ChildSpec::worker("w", None, W, ()).start_linked(parent.get_cell()).await.unwrap();
    /// assert!(child.get_status() <= ractor::ActorStatus::Running);
    /// child.stop_and_wait(None, None).await.unwrap();
    /// # parent.stop(None);
    /// # });
    /// ```
    pub fn start_linked(&self, supervisor: ActorCell) -> StartFuture {
        (self.start)(supervisor)
    }

    /// How long a start (the start function, i.e. the actor's `pre_start`) may take; `None` =
    /// infinity. A start that takes longer fails like a start that returned an error (the
    /// half-started actor is dropped). Default 5 s for workers, infinity for supervisors.
    ///
    /// ```
    /// # use actors::ChildSpec;
    /// # use std::time::Duration;
    /// # #[derive(Clone)] struct W;
    /// # impl ractor::Actor for W { type Msg = (); type State = (); type Arguments = ();
    /// #   async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", None, W, ()).start_timeout(Some(Duration::from_secs(30)));
    /// # let _ = spec;
    /// ```
    pub fn start_timeout(mut self, limit: Option<Duration>) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Set the restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Set the shutdown policy.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Mark the child significant (OTP 24): its exit without restart can stop the supervisor,
    /// per the supervisor's [`crate::AutoShutdown`]. Only `transient` and `temporary` children
    /// may be significant (a supervisor refuses a significant `permanent` child).
    pub fn significant(mut self, significant: bool) -> Self {
        self.significant = significant;
        self
    }

    /// Mark the child as a supervisor (for snapshots and counts) when its start function
    /// starts a [`Supervisor`](crate::Supervisor) itself.
    pub fn kind(mut self, kind: ChildKind) -> Self {
        self.kind = kind;
        self
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether an exit with this outcome should be followed by a restart.
    pub(crate) fn wants_restart(&self, abnormal: bool) -> bool {
        match self.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        }
    }
}
