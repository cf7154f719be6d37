//! Starting a node: its supervision tree (`root` → `system`, `user`), the node's own actors
//! (directory, inspector, spawner), the built-in factories, the admin server, the cluster.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::Duration,
};

use actors::{
    ChildSpec, Intensity, IntensityScope, Strategy, Supervisor, SupervisorSpec, SupervisorStats,
};
use serde_json::Value;

use super::{Inner, Node, RootState};
use crate::{
    actor_stats::StatsRegistry,
    cluster::Cluster,
    config::NodeConfig,
    directory_service::{Directory, DirectoryActor},
    echo::Echo,
    error::RuntimeError,
    factory::Factory,
    inspector::Inspector,
    metrics::Metrics,
    names::{inspector_name, root_name, system_name, user_name},
    spawner::Spawner,
    watch::Watch,
};

impl Node {
    /// Start a node from a checked, filled-in config ([`NodeBuilder::start`] calls this):
    /// the tree, the node's own actors and factories, the admin server, then the cluster and
    /// the key manager. Whatever started is stopped again when a later step fails.
    ///
    /// [`NodeBuilder::start`]: crate::NodeBuilder::start
    pub(crate) async fn start(config: NodeConfig) -> Result<Node, RuntimeError> {
        let name = config.name.clone();
        let services_pending = config.services_pending;
        if ractor::registry::where_is(root_name(&name)).is_some() {
            return Err(RuntimeError::Config(format!(
                "a node named '{name}' already runs in this process"
            )));
        }
        let spans = match &config.otlp_endpoint {
            Some(url) => Some(Arc::new(
                crate::otlp::SpanExport::otlp(url, &name)
                    .map_err(|e| RuntimeError::Config(e.to_string()))?,
            )),
            None => None,
        };
        let stats = Arc::new(SupervisorStats::default());
        let actor_stats = StatsRegistry::new(config.actor_stats);
        let generous = Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        };
        let handle: Arc<OnceLock<std::sync::Weak<Inner>>> = Arc::new(OnceLock::new());
        let directory = Arc::new(Directory::default());
        let system = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .stats(stats.clone())
            .child(ChildSpec::worker(
                "directory",
                None,
                DirectoryActor {
                    node: name.clone(),
                    directory: directory.clone(),
                },
                (),
            ))
            .child(ChildSpec::worker(
                "inspector",
                Some(inspector_name(&name)),
                Inspector {
                    node: name.clone(),
                    root_name: root_name(&name),
                    stats: actor_stats.clone(),
                },
                (),
            ))
            .child(ChildSpec::worker(
                "spawner",
                None,
                Spawner {
                    node_name: name.clone(),
                    node: handle.clone(),
                },
                (),
            ))
            .child(ChildSpec::infallible_task("actor-stats-sampler", {
                let figures = Arc::downgrade(&actor_stats);
                move || crate::actor_stats::run_sampler(figures.clone())
            }));
        // Actors spawned on request are unrelated to each other: each has its own restart
        // count, and one that exceeds it is stopped alone (the `user` supervisor never
        // escalates because of its children).
        let user = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(generous)
            .intensity_scope(IntensityScope::PerChild)
            .stats(stats.clone());
        // `root` restarts nothing: `system` fails only after its services exceeded their
        // intensity, and a restarted `system` would come back without the services other crates
        // added to it at run time (KV, broker, registry). So root gives up at once, and the
        // node leaves the cluster and exits (see `Node::run_until_signal`): a node that cannot
        // serve must not look alive, and its process supervisor restarts it whole.
        let root = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(Intensity {
                max_restarts: 0,
                period: Duration::from_secs(10),
            })
            .stats(stats.clone())
            .child(ChildSpec::supervisor(
                "system",
                Some(system_name(&name)),
                system,
            ))
            .child(ChildSpec::supervisor("user", Some(user_name(&name)), user));
        let (root, root_task) = Supervisor::start(Some(root_name(&name)), root)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("root supervisor: {e}")))?;
        let (root_down_tx, root_down) = tokio::sync::watch::channel(RootState::Running);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = stopping.clone();
        tokio::spawn(async move {
            let _ = root_task.await;
            let _ = root_down_tx.send(if asked.load(std::sync::atomic::Ordering::SeqCst) {
                RootState::Stopped
            } else {
                RootState::GaveUp
            });
        });

        let mut factories = BTreeMap::new();
        factories.insert(
            "echo".to_string(),
            Factory::with_memory(|_| Ok((Echo, ())), crate::echo::held_bytes),
        );
        factories.insert(
            "counter".to_string(),
            Factory::new(|_| Ok((crate::counter::Counter, ()))),
        );
        let node = Node {
            inner: Arc::new(Inner {
                config,
                root,
                factories: RwLock::new(factories),
                metrics: Metrics::default(),
                stats,
                actor_stats,
                live_actors: Arc::default(),
                directory,
                spans,
                admin: Mutex::new(None),
                cluster: OnceLock::new(),
                extra_routes: RwLock::new(None),
                shutdown_hooks: Mutex::new(Vec::new()),
                root_down,
                stopping,
                services_pending: std::sync::atomic::AtomicBool::new(services_pending),
            }),
        };
        let _ = handle.set(Arc::downgrade(&node.inner));
        let directory = Arc::downgrade(&node.inner.directory);
        node.metrics().add_source(move || {
            directory
                .upgrade()
                .map(|d| d.metrics_text())
                .unwrap_or_default()
        });
        let figures = Arc::downgrade(&node.inner.actor_stats);
        node.metrics().add_source(move || {
            figures
                .upgrade()
                .map(|f| crate::actor_metrics::render(f.rows()))
                .unwrap_or_default()
        });
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "watch",
            Factory::new(move |args: Value| {
                let target = args
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or("watch needs arguments {\"target\": NAME}")?;
                Ok((Watch { node: weak.clone() }, target.to_string()))
            }),
        );
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "forward",
            Factory::new(move |args: Value| {
                let to = args
                    .get("to")
                    .and_then(Value::as_str)
                    .ok_or("forward needs arguments {\"to\": NAME}")?;
                Ok((
                    crate::forward::Forward { node: weak.clone() },
                    to.to_string(),
                ))
            }),
        );
        let weak = Arc::downgrade(&node.inner);
        node.register_factory(
            "supervisor",
            Factory::from_spec(move |name, args| {
                crate::supervisor_factory::build(&weak, name, args)
            }),
        );
        if node.inner.config.admin_enabled {
            if let Err(e) = node.start_admin().await {
                node.shutdown().await;
                return Err(e);
            }
        }
        match Cluster::start(
            &node.inner.config,
            node.admin_addr(),
            node.inner.live_actors.clone(),
        )
        .await
        {
            Ok(cluster) => {
                if let Err(e) = node.start_cluster_loops(&cluster).await {
                    node.shutdown().await;
                    return Err(e);
                }
                let scraped = Arc::downgrade(&cluster);
                node.metrics().add_source(move || {
                    scraped
                        .upgrade()
                        .map(|c| c.lane_metrics())
                        .unwrap_or_default()
                });
                let _ = node.inner.cluster.set(cluster);
                if let Err(e) = crate::keys::start(&node).await {
                    node.shutdown().await;
                    return Err(e);
                }
            }
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        }
        tracing::info!(node = %name, admin = ?node.admin_addr(), "node started");
        Ok(node)
    }

    /// The cluster's long-lived loops, as children of `system`: the name directory's publisher
    /// (`directory-publisher`), the gossip change counter (`gossip-changes`) and the dialer of
    /// sessions and lanes (`cluster-reconcile`, stopped first by [`Node::shutdown`]). Each holds
    /// the cluster weakly and returns when it is gone.
    async fn start_cluster_loops(&self, cluster: &Arc<Cluster>) -> Result<(), RuntimeError> {
        let system = self.system_supervisor()?;
        let (me, directory, weak) = (
            self.name().to_string(),
            Arc::downgrade(&self.inner.directory),
            Arc::downgrade(cluster),
        );
        let publisher = ChildSpec::infallible_task("directory-publisher", move || {
            crate::directory_service::run_publisher(me.clone(), directory.clone(), weak.clone())
        });
        let weak = Arc::downgrade(cluster);
        let changes = ChildSpec::infallible_task("gossip-changes", move || {
            Cluster::forward_changes(weak.clone())
        });
        let weak = Arc::downgrade(cluster);
        let reconcile = ChildSpec::infallible_task(crate::cluster::RECONCILE_CHILD, move || {
            Cluster::reconcile_loop(weak.clone())
        });
        for spec in [publisher, changes, reconcile] {
            let id = spec.id().to_string();
            actors::start_child(&system, spec)
                .await
                .map_err(|e| RuntimeError::Unavailable(format!("cannot start {id}: {e}")))?;
        }
        Ok(())
    }
}
