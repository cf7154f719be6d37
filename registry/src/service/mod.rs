//! The service registry (AP), Draft's Blueprint registry rebuilt on gossip.
//!
//! * An instance (service name, instance id, node, address, protocol, metadata, health) is a
//!   key-value `svc:{service}:{id}` in the gossip state of the node it was registered on, so it
//!   lives exactly as long as that node: when the node dies its instances disappear from every
//!   view within failure-detection time (about 1–2 s); a node that stops gracefully deregisters
//!   its instances first (a shutdown hook) and waits [`DRAIN`] for the deletions to spread.
//! * A registry actor on every node keeps the view, turns gossip changes into
//!   added/removed/changed events for watchers, and serves register/deregister/resolve.
//! * Fast path: the node where an instance changes also pushes the change over the message lane
//!   to every other node's `registry-peer` actor, so other nodes see it in about a lane
//!   round-trip instead of one or two gossip rounds; gossip stays the truth and repairs what a
//!   push missed (see `hints.rs`).
//! * Admin HTTP routes under `/registry` (see [`routes`]) back `dctl svc ...`.
//!
//! ```no_run
//! # async fn demo(node: runtime::Node) -> Result<(), registry::service::RegistryError> {
//! use registry::service::{Registration, Registry};
//! let registry = Registry::start(&node).await?;
//! let me = registry.register(Registration::new("billing", "127.0.0.1:8080")).await?;
//! let instances = registry.resolve("billing").await?;
//! assert!(instances.iter().any(|i| i.id == me.id));
//! let mut events = registry.watch(Some("billing".into())).await?;
//! # let _ = events.recv().await;
//! # Ok(()) }
//! ```

mod actor;
mod hints;
mod http;
mod model;
mod peer;

use std::time::Duration;

use ractor::{rpc::CallResult, ActorRef};
use runtime::Node;
use tokio::sync::mpsc;

pub use http::routes;
pub use model::{
    Health, Instance, Registration, RegistryError, WatchEvent, WatchKind, MAX_INSTANCE_BYTES,
};

use actor::{RegistryActor, RegistryMsg};

/// How long a gracefully stopping node waits after deleting its instances, so the deletions
/// reach the other nodes before it goes silent.
pub const DRAIN: Duration = Duration::from_millis(800);

/// A handle to this node's registry actor.
#[derive(Clone)]
pub struct Registry {
    node: Node,
    actor: ActorRef<RegistryMsg>,
}

impl Registry {
    /// Start the registry actor under the node's `system` supervisor, serve its admin routes, and
    /// deregister this node's instances when the node shuts down.
    pub async fn start(node: &Node) -> Result<Registry, RegistryError> {
        let sup = node
            .system_supervisor()
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let counters = std::sync::Arc::new(peer::HintCounters::default());
        let spec = actors::ChildSpec::worker(
            "registry",
            Some(peer::registry_name(node.name())),
            RegistryActor {
                node: node.clone(),
                counters: counters.clone(),
            },
            (),
        );
        let cell = actors::start_child(&sup, spec)
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let door = actors::ChildSpec::worker(
            "registry-peer",
            Some(format!("{}/registry-peer", node.name())),
            peer::RegistryPeer {
                node: node.clone(),
                counters: counters.clone(),
            },
            (),
        );
        actors::start_child(&sup, door)
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        node.metrics().add_source(move || counters.text());
        let registry = Registry {
            node: node.clone(),
            actor: cell.into(),
        };
        node.add_admin_routes(routes(registry.clone()));
        let on_stop = registry.clone();
        node.on_shutdown(move || async move {
            let n = on_stop.deregister_all().await;
            if n > 0 {
                tracing::info!(
                    instances = n,
                    "deregistered this node's instances before stopping"
                );
                tokio::time::sleep(DRAIN).await;
            }
        });
        Ok(registry)
    }

    fn actor(&self) -> Result<ActorRef<RegistryMsg>, RegistryError> {
        // The actor may have been restarted by its supervisor: find the current one by name.
        if self.actor.get_status() == ractor::ActorStatus::Running {
            return Ok(self.actor.clone());
        }
        ractor::registry::where_is(peer::registry_name(self.node.name()))
            .map(ActorRef::from)
            .ok_or_else(|| RegistryError::Unavailable("registry actor is not running".into()))
    }

    async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(ractor::RpcReplyPort<T>) -> RegistryMsg,
    ) -> Result<T, RegistryError> {
        match self
            .actor()?
            .call(build, Some(Duration::from_secs(10)))
            .await
        {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(_) => Err(RegistryError::Unavailable(
                "the registry actor did not answer".into(),
            )),
            Err(e) => Err(RegistryError::Unavailable(e.to_string())),
        }
    }

    /// Register an instance on this node; it is visible cluster-wide within a gossip round or two.
    /// An instance larger than gossip carries ([`MAX_INSTANCE_BYTES`] with its key) is refused
    /// with [`RegistryError::TooLarge`].
    pub async fn register(&self, reg: Registration) -> Result<Instance, RegistryError> {
        let instance = reg.into_instance(self.node.name())?;
        self.ask(|r| RegistryMsg::Register(instance, r)).await?
    }

    /// Remove an instance registered on this node.
    pub async fn deregister(&self, service: &str, id: &str) -> Result<(), RegistryError> {
        let (s, i) = (service.to_string(), id.to_string());
        self.ask(|r| RegistryMsg::Deregister(s, i, r)).await?
    }

    /// Remove every instance registered on this node; returns how many there were.
    pub async fn deregister_all(&self) -> usize {
        self.ask(RegistryMsg::DeregisterAll).await.unwrap_or(0)
    }

    /// The instances of a service on live nodes, sorted by id.
    pub async fn resolve(&self, service: &str) -> Result<Vec<Instance>, RegistryError> {
        model::validate_service(service)?;
        let s = service.to_string();
        self.ask(|r| RegistryMsg::List(Some(s), r)).await
    }

    /// Every instance on live nodes, sorted by service then id.
    pub async fn list(&self) -> Result<Vec<Instance>, RegistryError> {
        self.ask(|r| RegistryMsg::List(None, r)).await
    }

    /// A stream of changes for one service (or all, with `None`): first an `added` event for each
    /// current instance, then `added` / `removed` / `changed` as they happen.
    pub async fn watch(
        &self,
        service: Option<String>,
    ) -> Result<mpsc::Receiver<WatchEvent>, RegistryError> {
        if let Some(s) = &service {
            model::validate_service(s)?;
        }
        let (tx, rx) = mpsc::channel(1024);
        self.ask(|r| RegistryMsg::Watch(service, tx, r)).await?;
        Ok(rx)
    }

    /// The node this registry runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }
}
