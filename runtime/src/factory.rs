//! Named actor factories: how a node spawns an actor it is asked for by name (from the CLI, the
//! admin API, or later from another node).

use std::{
    fmt,
    sync::{atomic::AtomicUsize, Arc, OnceLock},
};

use actors::{ChildSpec, Restart};
use prometheus_client::metrics::counter::Counter;
use ractor::Actor;
use serde_json::Value;

use crate::{
    actor_stats::StatsRegistry,
    counted::{Counted, MemoryHook},
};

type BuildFn = dyn Fn(&str, Value, &Counting) -> Result<ChildSpec, String> + Send + Sync;

/// Where a user actor's wrapper counts: the node's message counter and its live figures.
#[derive(Clone)]
pub(crate) struct Counting {
    pub(crate) handled: Counter,
    pub(crate) registry: Arc<StatsRegistry>,
    /// Actors spawned through the node that are running now.
    pub(crate) live: Arc<AtomicUsize>,
    /// The node's OTLP exporter, if on.
    pub(crate) spans: Option<Arc<crate::otlp::SpanExport>>,
    /// The node's name directory (named actors are published there).
    pub(crate) directory: Arc<crate::directory_service::Directory>,
}

/// A recipe that turns JSON arguments into a supervised actor.
///
/// Actors made by a factory are `transient` children of the node's `user` supervisor, registered
/// under the name they are spawned with, and counted in the node's metrics.
///
/// ```
/// use runtime::{echo::Echo, Factory};
/// let factory = Factory::new(|_args| Ok((Echo, ())));
/// # let _ = factory;
/// ```
#[derive(Clone)]
pub struct Factory {
    build: Arc<BuildFn>,
}

impl fmt::Debug for Factory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Factory")
    }
}

impl Factory {
    /// A factory from a function of the JSON arguments returning the actor and its start
    /// arguments (or a message saying what is wrong with the arguments).
    pub fn new<A, F>(make: F) -> Self
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
        F: Fn(Value) -> Result<(A, A::Arguments), String> + Send + Sync + 'static,
    {
        Factory {
            build: Arc::new(move |name: &str, args: Value, counting: &Counting| {
                let (actor, start_args) = make(args)?;
                Ok(spec_for(name, actor, start_args, counting, None))
            }),
        }
    }

    /// [`Factory::new`] for an actor that can tell how much memory its state holds:
    /// `memory(&state)` returns the bytes the state owns on the heap (what `size_of` does not
    /// see: buffers, maps, strings). The node adds it to the actor's shallow estimate (its
    /// fixed runtime cost, [`crate::ACTOR_BASE_BYTES`], the state's `size_of` and the queued
    /// messages'), shown as `memory_bytes` with `memory_reported: true` in the live figures.
    ///
    /// The hook is asked when the actor has started and then after a handled message at most
    /// once a second (never otherwise on the message path), on the actor's own task: keep it
    /// cheap (sum capacities, do not walk big structures). A hook that panics is not asked
    /// again for that name.
    ///
    /// ```
    /// use ractor::{Actor, ActorProcessingErr, ActorRef};
    /// use runtime::Factory;
    ///
    /// #[derive(Clone)]
    /// struct Cache;
    /// impl Actor for Cache {
    ///     type Msg = String;
    ///     type State = Vec<String>;
    ///     type Arguments = ();
    ///     async fn pre_start(&self, _: ActorRef<String>, _: ()) -> Result<Vec<String>, ActorProcessingErr> {
    ///         Ok(Vec::new())
    ///     }
    ///     async fn handle(&self, _: ActorRef<String>, s: String, kept: &mut Vec<String>) -> Result<(), ActorProcessingErr> {
    ///         kept.push(s);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let factory = Factory::with_memory(
    ///     |_args| Ok((Cache, ())),
    ///     |kept: &Vec<String>| {
    ///         kept.capacity() * std::mem::size_of::<String>()
    ///             + kept.iter().map(String::capacity).sum::<usize>()
    ///     },
    /// );
    /// # let _ = factory;
    /// ```
    pub fn with_memory<A, F, M>(make: F, memory: M) -> Self
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
        F: Fn(Value) -> Result<(A, A::Arguments), String> + Send + Sync + 'static,
        M: Fn(&A::State) -> usize + Send + Sync + 'static,
    {
        let memory: MemoryHook<A::State> = Arc::new(memory);
        Factory {
            build: Arc::new(move |name: &str, args: Value, counting: &Counting| {
                let (actor, start_args) = make(args)?;
                Ok(spec_for(
                    name,
                    actor,
                    start_args,
                    counting,
                    Some(memory.clone()),
                ))
            }),
        }
    }

    /// A factory that builds the whole child spec from the name it is spawned under and the
    /// JSON arguments: e.g. a supervisor with children of its own (the built-in `supervisor`
    /// factory is one). The spec's id must be the name; the spec decides its restart type.
    ///
    /// ```
    /// use runtime::{ChildSpec, Factory, Strategy, SupervisorSpec};
    /// let pool = Factory::from_spec(|name, _args| {
    ///     Ok(ChildSpec::supervisor(name, Some(name.to_string()), SupervisorSpec::new(Strategy::OneForAll)))
    /// });
    /// # let _ = pool;
    /// ```
    pub fn from_spec<F>(build: F) -> Self
    where
        F: Fn(&str, Value) -> Result<ChildSpec, String> + Send + Sync + 'static,
    {
        Factory {
            build: Arc::new(move |name: &str, args: Value, _: &Counting| {
                let spec = build(name, args)?;
                if spec.id() != name {
                    return Err(format!(
                        "the factory built a child named '{}' for '{name}'",
                        spec.id()
                    ));
                }
                Ok(spec)
            }),
        }
    }

    pub(crate) fn child_spec(
        &self,
        name: &str,
        args: Value,
        counting: &Counting,
    ) -> Result<ChildSpec, String> {
        (self.build)(name, args, counting)
    }
}

/// The child spec of a user actor: transient, registered under `name`, messages counted, its
/// memory estimated (with the actor's own figure when it has a hook).
pub(crate) fn spec_for<A>(
    name: &str,
    actor: A,
    args: A::Arguments,
    counting: &Counting,
    memory: Option<MemoryHook<A::State>>,
) -> ChildSpec
where
    A: Actor + Clone,
    A::Arguments: Clone + Sync,
{
    let counted = Counted {
        inner: actor,
        handled: counting.handled.clone(),
        figures: counting.registry.figures(name),
        registry: counting.registry.clone(),
        live: counting.live.clone(),
        spans: counting.spans.clone(),
        memory,
        directory: counting.directory.clone(),
        running: OnceLock::new(),
        listed: OnceLock::new(),
    };
    ChildSpec::worker(name, Some(name.to_string()), counted, args).restart(Restart::Transient)
}
