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

use crate::{actor_stats::StatsRegistry, counted::Counted};

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
                Ok(spec_for(name, actor, start_args, counting))
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

/// The child spec of a user actor: transient, registered under `name`, messages counted.
pub(crate) fn spec_for<A>(
    name: &str,
    actor: A,
    args: A::Arguments,
    counting: &Counting,
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
        running: OnceLock::new(),
    };
    ChildSpec::worker(name, Some(name.to_string()), counted, args).restart(Restart::Transient)
}
