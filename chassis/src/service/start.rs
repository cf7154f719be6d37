//! Bringing a described service up: configuration, the supervisor and its children, the HTTP
//! port, readiness and registration, and the graceful shutdown hooked into the node's.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use actors::{ChildSpec, SupervisorMsg, SupervisorSpec};
use clap::Parser;
use ractor::ActorRef;
use runtime::Node;
use tokio::sync::{oneshot, watch};

use super::{
    init_tracing, running::Running, shared::Shared, shutdown::Graceful, supervisor_name,
    ServiceArgs, ServiceBuilder, ServiceCtx,
};
use crate::{
    error::Error,
    flags::{Defaults, Services},
    health::{self, Readiness},
    http::HttpStats,
};

impl ServiceBuilder {
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
