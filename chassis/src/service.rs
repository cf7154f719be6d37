//! [`Service`]: a user's actors, factories, HTTP router, live configuration and health checks,
//! turned into a cluster member that registers itself and shuts down cleanly.

use std::{
    any::{Any, TypeId},
    collections::{BTreeMap, HashMap},
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actors::{ChildSpec, Intensity, Strategy, SupervisorMsg, SupervisorSpec};
use clap::Parser;
use ractor::{ActorCell, ActorRef};
use registry::service::{Health, Registration};
use runtime::Node;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

use crate::{
    config::{ConfigApplier, ConfigStatus, LiveConfig, Validator},
    error::Error,
    flags::{Defaults, NodeFlags, Services},
    health::{self, Check, Readiness},
    http::HttpStats,
    typed::Envelope,
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

    /// Parse the command line ([`ServiceArgs`]: the same node flags as `dctl node start`), log
    /// to stderr, start, and run until SIGTERM / Ctrl-C (graceful shutdown) or until the node's
    /// root supervisor gives up (an error: exit non-zero so a process supervisor restarts it).
    pub async fn run(self) -> Result<(), Error> {
        let args = ServiceArgs::parse();
        init_tracing();
        self.run_with(args).await
    }

    /// [`ServiceBuilder::run`] with arguments parsed by the caller (flatten [`ServiceArgs`]
    /// into your own parser to add flags).
    pub async fn run_with(self, args: ServiceArgs) -> Result<(), Error> {
        let span = tracing::info_span!("service", name = %self.name);
        let running = tracing::Instrument::instrument(self.start(args), span).await?;
        running.wait().await
    }

    /// Start the service and return at once (for tests and embedding); see [`Running`].
    pub async fn start(self, args: ServiceArgs) -> Result<Running, Error> {
        let defaults = Defaults::service(&self.name);
        let (node, services) = args.node.start(&args.admin, &defaults).await?;
        match self.start_on(node.clone(), services, &args).await {
            Ok(r) => Ok(r),
            Err(e) => {
                node.shutdown().await;
                Err(e)
            }
        }
    }

    /// Start the service on a node that is already running, with its services (what
    /// [`ServiceBuilder::start`] does after starting the node; `args` gives the HTTP address
    /// and the instance id, its node flags are not used). On failure the node keeps running.
    pub async fn start_on(
        self,
        node: Node,
        services: Services,
        args: &ServiceArgs,
    ) -> Result<Running, Error> {
        let name = self.name.clone();
        let (changes_tx, mut changes_rx) = watch::channel(0u64);
        // Configuration first: the actors may read it as they start.
        let mut configs: HashMap<TypeId, Arc<dyn Any + Send + Sync>> = HashMap::new();
        let mut config_status = None;
        let mut config_task = None;
        if let Some(start) = self.config {
            let started = start(services.kv.clone(), changes_tx.clone()).await?;
            configs.insert(started.type_id, started.live);
            config_status = Some(started.status);
            config_task = Some(started.task);
        }
        let ctx = ServiceCtx {
            name: name.clone(),
            node: node.clone(),
            services: services.clone(),
            configs: Arc::new(configs),
        };
        for (fname, f) in &self.factories {
            node.register_factory(fname.clone(), f(&ctx));
        }
        let mut spec = SupervisorSpec::new(self.strategy);
        if let Some(i) = self.intensity {
            spec = spec.intensity(i);
        }
        for child in &self.children {
            spec = spec.child(child(&ctx));
        }
        let sup_name = supervisor_name(&name);
        let sup: ActorRef<SupervisorMsg> = node
            .spawn_spec(
                &sup_name,
                ChildSpec::supervisor(&sup_name, Some(sup_name.clone()), spec),
            )
            .await
            .map_err(|e| Error::Actors(e.to_string()))?
            .into();

        let (ready_tx, _) = watch::channel(Readiness::starting());
        let shared = Arc::new(Shared {
            name: name.clone(),
            version: self.version.clone(),
            instance: args
                .instance
                .clone()
                .unwrap_or_else(|| node.name().to_string()),
            node: node.clone(),
            supervisor: sup.clone(),
            stopping: AtomicBool::new(false),
            readiness: ready_tx,
            config: config_status,
            http: HttpStats::default(),
            address: Mutex::new(None),
        });
        let metrics_of = Arc::downgrade(&shared);
        node.metrics().add_source(move || {
            metrics_of
                .upgrade()
                .map(|s| crate::http::metrics_text(&s))
                .unwrap_or_default()
        });

        // HTTP: the user's router (if any) with the chassis's routes.
        let mut http = None;
        if let Some(router) = self.router {
            let router = crate::http::router(router(&ctx), shared.clone());
            let listener = tokio::net::TcpListener::bind(&args.http)
                .await
                .map_err(|e| Error::Http {
                    addr: args.http.clone(),
                    reason: e.to_string(),
                })?;
            let addr = listener.local_addr().map_err(|e| Error::Http {
                addr: args.http.clone(),
                reason: e.to_string(),
            })?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("the service's HTTP server failed: {e}");
                }
            });
            *shared.address.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((addr, self.protocol.clone()));
            http = Some((addr, stop_tx, task));
        } else if let Some(admin) = node.admin_addr() {
            *shared.address.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((admin, "actors".into()));
        }

        // Readiness, re-evaluated continuously; the registration follows it and the config.
        let checks = self.checks;
        let probe = shared.clone();
        let checker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(health::CHECK_EVERY);
            loop {
                tick.tick().await;
                let results = health::run_checks(&checks).await;
                let r = health::combine(
                    probe.is_live(),
                    probe.stopping.load(Ordering::SeqCst),
                    results,
                );
                probe.readiness.send_if_modified(|old| {
                    let changed = *old != r;
                    *old = r.clone();
                    changed
                });
            }
        });
        let reg = shared.clone();
        let registry = services.registry.clone();
        let mut ready_rx = shared.readiness.subscribe();
        let registrar = tokio::spawn(async move {
            // Held here so that `changes_rx` stays open when no configuration sends on it.
            let _changes = changes_tx;
            loop {
                if reg.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = registry.register(reg.registration()).await {
                    tracing::warn!("cannot register the service: {e}");
                }
                tokio::select! {
                    r = ready_rx.changed() => if r.is_err() { return },
                    r = changes_rx.changed() => if r.is_err() { return },
                }
            }
        });

        let mut tasks = vec![checker, registrar];
        if let Some(t) = config_task {
            tasks.push(t);
        }
        for task in self.tasks {
            tasks.push(tokio::spawn(task(ctx.clone())));
        }

        let http_addr = http.as_ref().map(|(a, _, _)| *a);
        // Graceful shutdown, run by the node's shutdown before its tree stops: readiness off,
        // deregister, drain HTTP and mailboxes within the deadline, stop the children in
        // reverse order.
        let graceful = Graceful {
            shared: shared.clone(),
            registry: services.registry.clone(),
            http: Mutex::new(http.map(|(_, stop, task)| (stop, task))),
            tasks: Mutex::new(tasks),
            timeout: self.shutdown_timeout,
            grace: self.readiness_grace,
        };
        let graceful = Arc::new(graceful);
        let g = graceful.clone();
        node.on_shutdown(move || async move { g.run().await });

        tracing::info!(service = %name, node = %node.name(), http = ?http_addr, admin = ?node.admin_addr(), "service started");
        Ok(Running {
            ctx,
            http: http_addr,
            shared,
        })
    }
}

fn supervisor_name(service: &str) -> String {
    format!("svc:{service}")
}

/// What the running parts share: readiness, counters, where it is registered.
pub(crate) struct Shared {
    pub(crate) name: String,
    version: String,
    instance: String,
    pub(crate) node: Node,
    supervisor: ActorRef<SupervisorMsg>,
    stopping: AtomicBool,
    readiness: watch::Sender<Readiness>,
    config: Option<Arc<Mutex<ConfigStatus>>>,
    pub(crate) http: HttpStats,
    address: Mutex<Option<(SocketAddr, String)>>,
}

impl Shared {
    pub(crate) fn is_live(&self) -> bool {
        self.supervisor.get_status() == ractor::ActorStatus::Running
    }

    pub(crate) fn readiness(&self) -> Readiness {
        self.readiness.borrow().clone()
    }

    pub(crate) fn config_status(&self) -> Option<ConfigStatus> {
        self.config
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn registration(&self) -> Registration {
        let (addr, protocol) = self
            .address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(a, p)| (a.to_string(), p))
            .unwrap_or_else(|| ("127.0.0.1:0".into(), "actors".into()));
        let mut r = Registration::new(&self.name, addr)
            .id(&self.instance)
            .meta("version", &self.version)
            .meta("node", self.node.name());
        r.protocol = Some(protocol);
        if let Some(admin) = self.node.admin_addr() {
            r = r.meta("admin", admin.to_string());
        }
        if let Some(st) = self.config_status() {
            r = r.meta("config_applied", st.applied.to_string());
            if let Some(e) = st.error {
                r = r.meta("config_error", e);
            }
        }
        r.health = if self.readiness().ready && !self.stopping.load(Ordering::SeqCst) {
            Health::Passing
        } else {
            Health::Critical
        };
        r
    }

    pub(crate) fn describe(&self) -> Value {
        let addr = self
            .address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "service": self.name,
            "instance": self.instance,
            "version": self.version,
            "node": self.node.name(),
            "address": addr.as_ref().map(|(a, _)| a.to_string()),
            "protocol": addr.map(|(_, p)| p),
            "live": self.is_live(),
            "readiness": self.readiness(),
            "config": self.config_status(),
        })
    }
}

struct Graceful {
    shared: Arc<Shared>,
    registry: registry::service::Registry,
    http: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    timeout: Duration,
    grace: Duration,
}

impl Graceful {
    async fn run(&self) {
        let s = &self.shared;
        tracing::info!(service = %s.name, "stopping: readiness off");
        // 1. Readiness off, published at once (the registrar is stopped first so it cannot
        //    write a stale `passing` after this).
        s.stopping.store(true, Ordering::SeqCst);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        s.readiness
            .send_replace(health::combine(s.is_live(), true, Vec::new()));
        if let Err(e) = self.registry.register(s.registration()).await {
            tracing::warn!("cannot publish readiness off: {e}");
        }
        tokio::time::sleep(self.grace).await;
        // 2. Deregister, and let that spread.
        match self.registry.deregister(&s.name, &s.instance).await {
            Ok(()) => tokio::time::sleep(registry::service::DRAIN).await,
            Err(e) => tracing::warn!("cannot deregister: {e}"),
        }
        // 3. Drain HTTP: stop accepting, finish in-flight requests, within the deadline.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = http {
            s.http.draining.store(true, Ordering::SeqCst);
            let _ = stop.send(());
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(
                    in_flight = s.http.in_flight.load(Ordering::Relaxed),
                    "HTTP requests still in flight at the shutdown deadline"
                );
            }
        }
        // 4. Drain the typed actors' mailboxes (last started first), within the deadline.
        let cells = children_reverse(&s.supervisor).await;
        for cell in &cells {
            if cell.is_message_type_of::<Envelope>() == Some(true) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !crate::typed::flush(&ActorRef::from(cell.clone()), left).await {
                    tracing::warn!(actor = ?cell.get_name(), "mailbox not drained by the deadline");
                }
            }
        }
        // 5. Stop the children in reverse order (the supervisor does, as OTP's does).
        let sup_name = supervisor_name(&s.name);
        if let Err(e) = s.node.stop_actor(&sup_name).await {
            tracing::warn!("cannot stop the service's supervisor: {e}");
        }
        tracing::info!(service = %s.name, "stopped");
    }
}

/// The running actors under `sup`, depth first, last started first.
async fn children_reverse(sup: &ActorRef<SupervisorMsg>) -> Vec<ActorCell> {
    let mut out = Vec::new();
    let mut stack = vec![sup.clone()];
    while let Some(sup) = stack.pop() {
        let Ok(children) = actors::which_children(&sup).await else {
            continue;
        };
        for child in children.iter().rev() {
            if let Ok(Some(cell)) = actors::child_cell(&sup, &child.id).await {
                if cell.is_message_type_of::<SupervisorMsg>() == Some(true) {
                    stack.push(cell.into());
                } else {
                    out.push(cell);
                }
            }
        }
    }
    out
}

/// A started service.
pub struct Running {
    ctx: ServiceCtx,
    http: Option<SocketAddr>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("service", &self.ctx.name)
            .field("http", &self.http)
            .finish()
    }
}

impl Running {
    /// The service's context (node, KV, registry, configuration).
    pub fn ctx(&self) -> &ServiceCtx {
        &self.ctx
    }
    /// The node.
    pub fn node(&self) -> &Node {
        &self.ctx.node
    }
    /// The address the HTTP router is served on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }
    /// The current readiness.
    pub fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }
    /// Print where the service is (to stdout) and run until a signal or the root gives up.
    pub async fn wait(self) -> Result<(), Error> {
        let node = self.ctx.node.clone();
        println!(
            "service {} running on node {}; admin API {}; http {}",
            self.ctx.name,
            node.name(),
            node.admin_addr()
                .map(|a| format!("http://{a}/"))
                .unwrap_or_else(|| "off".into()),
            self.http
                .map(|a| format!("http://{a}/"))
                .unwrap_or_else(|| "none".into()),
        );
        if let Some((_, gossip)) = node.cluster_addrs() {
            println!("gossip {gossip}");
        }
        node.run_until_signal()
            .await
            .map_err(|e| Error::Stopped(e.to_string()))
    }
    /// Stop gracefully (what SIGTERM does).
    pub async fn shutdown(self) {
        self.ctx.node.shutdown().await;
    }
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
