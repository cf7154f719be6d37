//! [`Service`]: a user's actors, factories, HTTP router, live configuration and health checks,
//! turned into a cluster member that registers itself and shuts down cleanly.

mod running;
pub(crate) mod shared;
mod shutdown;
mod start;

use std::{
    any::{Any, TypeId},
    collections::{BTreeMap, HashMap},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use actors::{ChildSpec, Intensity, Strategy};
use clap::Parser;
use runtime::Node;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use running::Running;

use crate::{
    config::{ConfigApplier, ConfigStatus, LiveConfig, Validator},
    error::Error,
    flags::{NodeFlags, Services},
    health::Check,
};

/// The command line of a service binary: the node flags of `dctl node start` plus the service's
/// own ports.
///
/// ```
/// use clap::Parser;
/// let args = chassis::ServiceArgs::parse_from(["orders", "--name", "orders-1", "--http", "127.0.0.1:8080"]);
/// assert_eq!(args.http, "127.0.0.1:8080");
/// assert_eq!(args.node.name.as_deref(), Some("orders-1"));
/// ```
#[derive(Debug, Clone, Parser)]
pub struct ServiceArgs {
    /// Admin API address (health, metrics, tree page, the JSON API `dctl` talks to) [default:
    /// a free loopback port, printed at start].
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin: String,
    /// Where the service's HTTP router listens (registered in the service registry).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: String,
    /// The instance id in the registry [default: the node's name].
    #[arg(long)]
    pub instance: Option<String>,
    /// The node's flags.
    #[command(flatten)]
    pub node: NodeFlags,
}

type ChildFn = Box<dyn Fn(&ServiceCtx) -> ChildSpec + Send + Sync>;
type FactoryFn = Box<dyn Fn(&ServiceCtx) -> runtime::Factory + Send + Sync>;
type RouterFn = Box<dyn FnOnce(&ServiceCtx) -> axum::Router + Send>;
type TaskFn = Box<dyn FnOnce(ServiceCtx) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type ConfigFn = Box<
    dyn FnOnce(
            registry::kv::Kv,
            watch::Sender<u64>,
        ) -> Pin<Box<dyn Future<Output = Result<StartedConfig, Error>> + Send>>
        + Send,
>;

struct StartedConfig {
    type_id: TypeId,
    live: Arc<dyn Any + Send + Sync>,
    status: Arc<Mutex<ConfigStatus>>,
    task: tokio::task::JoinHandle<()>,
}

/// Entry point: `Service::builder("orders")`.
#[derive(Debug)]
pub struct Service;

impl Service {
    /// A builder for the service called `name` (letters, digits, `-`, `_`, `.`).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), chassis::Error> {
    /// use axum::routing::get;
    /// chassis::Service::builder("hello")
    ///     .http(|_ctx| axum::Router::new().route("/", get(|| async { "hello" })))
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            version: "0.0.0".into(),
            strategy: Strategy::OneForOne,
            intensity: None,
            children: Vec::new(),
            factories: Vec::new(),
            router: None,
            protocol: "http".into(),
            metadata: BTreeMap::new(),
            config: None,
            checks: Vec::new(),
            tasks: Vec::new(),
            shutdown_timeout: Duration::from_secs(5),
            readiness_grace: Duration::from_secs(1),
        }
    }
}

/// Describes a service; [`ServiceBuilder::run`] (or [`ServiceBuilder::start`]) brings it up.
pub struct ServiceBuilder {
    name: String,
    version: String,
    strategy: Strategy,
    intensity: Option<Intensity>,
    children: Vec<ChildFn>,
    factories: Vec<(String, FactoryFn)>,
    router: Option<RouterFn>,
    protocol: String,
    metadata: BTreeMap<String, String>,
    config: Option<ConfigFn>,
    checks: Vec<(String, Check)>,
    tasks: Vec<TaskFn>,
    shutdown_timeout: Duration,
    readiness_grace: Duration,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the service's own code gets while it is set up and while it runs: the node, its
/// services (KV, registry, broker), the live configuration.
#[derive(Clone)]
pub struct ServiceCtx {
    name: String,
    node: Node,
    services: Services,
    configs: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for ServiceCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCtx")
            .field("name", &self.name)
            .field("node", &self.node.name())
            .finish()
    }
}

impl ServiceCtx {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The node the service runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }
    /// The cluster's KV store.
    pub fn kv(&self) -> &registry::kv::Kv {
        &self.services.kv
    }
    /// The service registry.
    pub fn registry(&self) -> &registry::service::Registry {
        &self.services.registry
    }
    /// The CloudEvents broker.
    pub fn broker(&self) -> &broker::Broker {
        &self.services.broker
    }
    /// All of the node's services.
    pub fn services(&self) -> &Services {
        &self.services
    }
    /// The live configuration of type `C` (given with [`ServiceBuilder::config`]).
    pub fn config<C: Send + Sync + 'static>(&self) -> Option<LiveConfig<C>> {
        self.configs
            .get(&TypeId::of::<C>())
            .and_then(|a| a.downcast_ref::<LiveConfig<C>>())
            .cloned()
    }
    /// A typed [`crate::Remote`] for a named actor on any node.
    pub fn remote<P: crate::Protocol>(&self, name: &str) -> crate::Remote<P> {
        crate::Remote::new(&self.node, name)
    }
}

impl ServiceBuilder {
    /// The version, published in the registry's metadata (`version`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The restart strategy of the service's supervisor (default `one_for_one`).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The restart intensity of the service's supervisor (default: the `actors` crate's).
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = Some(intensity);
        self
    }

    /// Add a child to the service's supervisor (started in the order given, stopped in
    /// reverse). Use [`crate::worker`] for a typed actor, or any [`ChildSpec`] (a nested
    /// [`ChildSpec::supervisor`] for a subtree).
    pub fn child(
        mut self,
        child: impl Fn(&ServiceCtx) -> ChildSpec + Send + Sync + 'static,
    ) -> Self {
        self.children.push(Box::new(child));
        self
    }

    /// Register a factory, so `dctl spawn NAME --on NODE` starts this actor type on this
    /// service's nodes (use [`crate::factory`] for a typed actor).
    pub fn factory(
        mut self,
        name: impl Into<String>,
        factory: impl Fn(&ServiceCtx) -> runtime::Factory + Send + Sync + 'static,
    ) -> Self {
        self.factories.push((name.into(), Box::new(factory)));
        self
    }

    /// Serve this router on the service's HTTP port (`--http`), registered in the registry with
    /// its address, the protocol ([`ServiceBuilder::protocol`], default `http`) and the metadata.
    pub fn http(
        mut self,
        router: impl FnOnce(&ServiceCtx) -> axum::Router + Send + 'static,
    ) -> Self {
        self.router = Some(Box::new(router));
        self
    }

    /// The protocol registered for the HTTP port (default `http`; e.g. `grpc`).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = protocol.into();
        self
    }

    /// A metadata entry for the registry.
    pub fn meta(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }

    /// A typed configuration read from the KV key `key` (JSON; `default` while the key is
    /// absent), re-applied on every change. `validate` refuses a value (the old one stays, the
    /// refusal is reported); a refused value at start fails the start. Read it with
    /// [`ServiceCtx::config`].
    pub fn config<C>(
        mut self,
        key: impl Into<String>,
        default: C,
        validate: impl Fn(&C) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let key = key.into();
        let validate: Validator<C> = Arc::new(validate);
        self.config = Some(Box::new(move |kv, changes| {
            Box::pin(async move {
                let mut watcher =
                    registry::kv::ConfigWatcher::start(kv, &key)
                        .await
                        .map_err(|e| Error::Config {
                            key: key.clone(),
                            reason: format!("cannot read it: {e}"),
                        })?;
                let (applier, live) = ConfigApplier::first(
                    &key,
                    watcher.current().as_deref(),
                    default,
                    validate,
                    changes,
                )
                .map_err(|reason| Error::Config {
                    key: key.clone(),
                    reason,
                })?;
                let status = applier.status();
                let task = tokio::spawn(async move {
                    while let Some(raw) = watcher.changed().await {
                        let _ = applier.apply(raw.as_deref());
                    }
                });
                Ok(StartedConfig {
                    type_id: TypeId::of::<C>(),
                    live: Arc::new(live),
                    status,
                    task,
                })
            })
        }));
        self
    }

    /// A readiness check, run every 250 ms (bounded by 2 s): while any fails, the instance is
    /// not ready (`/health/ready` 503, `critical` in the registry).
    pub fn readiness<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// Run `task` once the service is up (e.g. a client loop); it is aborted on shutdown.
    pub fn task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(ServiceCtx) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |ctx| Box::pin(task(ctx))));
        self
    }

    /// How long draining HTTP requests and mailboxes may take on shutdown (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// How long the instance stays up, not ready, before it deregisters (default 1 s: the
    /// proxy controller and Envoy stop routing to it meanwhile).
    pub fn readiness_grace(mut self, d: Duration) -> Self {
        self.readiness_grace = d;
        self
    }
}

fn supervisor_name(service: &str) -> String {
    format!("svc:{service}")
}

/// Log to stderr at `info` (or as `RUST_LOG` says), without colour when not on a terminal.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
