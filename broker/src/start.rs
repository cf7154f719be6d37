//! Starting a node's broker: its parts, its actor and its two gossip loops under the `system`
//! supervisor (`broker`, `broker-interest`, `broker-gossip-watch`), and the HTTP routes.

use std::sync::{atomic::AtomicU64, Arc, Weak};

use runtime::{MemberState, Node};
use tokio::sync::Notify;

use crate::{
    actor::BrokerActor,
    broker::{Broker, Inner},
    durable::Durable,
    error::BrokerError,
    fanout::Fanout,
    hints::RemoteInterest,
    homes::READY_KEY,
    interest::{self, INTEREST_PREFIX},
    link::Links,
    metrics::Metrics,
    subscribers::Subscribers,
};

impl Broker {
    /// Start the node's broker: under the `system` supervisor its actor (`broker`), the interest
    /// publisher (`broker-interest`) and the gossip follower (`broker-gossip-watch`); the
    /// durable channels homed here (from `<data_dir>/broker`), and the HTTP routes under
    /// `/broker/` on the admin server.
    ///
    /// Fails, naming the file and how to recover, when `channels.json` or `durable.json` in
    /// `<data_dir>/broker` is damaged (and no good previous copy exists).
    pub async fn start(node: &Node) -> Result<Broker, BrokerError> {
        let metrics = Arc::new(Metrics::default());
        let subs = Arc::new(Subscribers::default());
        let remote = Arc::new(RemoteInterest::default());
        let changed = Arc::new(Notify::new());
        let links = Links::new(node.clone(), metrics.clone());
        let fanout = Arc::new(Fanout::new(
            node.name().to_string(),
            subs.clone(),
            remote.clone(),
            links.clone(),
            metrics.clone(),
            changed.clone(),
        ));
        // Durable channels known before a restart (homed here or elsewhere): known at once,
        // before the first produce, whatever gossip has brought yet.
        let durable = Arc::new(Durable::open(node, fanout.clone()).await?);
        durable.homes.publish().await;
        if let Err(e) = node.gossip_set(READY_KEY, "1").await {
            tracing::error!("broker: cannot publish {READY_KEY}: {e}");
        }
        let broker = Broker {
            inner: Arc::new(Inner {
                node: node.clone(),
                name: node.name().to_string(),
                subs: subs.clone(),
                remote,
                links,
                fanout,
                durable,
                metrics,
                changed: changed.clone(),
                next_sub: AtomicU64::new(1),
            }),
        };
        let sup = node
            .system_supervisor()
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let actor = BrokerActor {
            broker: broker.clone(),
        };
        actors::start_child(&sup, actors::ChildSpec::worker("broker", None, actor, ()))
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot start the broker actor: {e}")))?;
        // Both loops end when the broker is dropped (they hold it weakly); a panic restarts
        // them, from a fresh view (the interest publisher re-publishes all of it).
        let (publisher, alive) = (node.clone(), Arc::downgrade(&broker.inner));
        let interest = actors::ChildSpec::infallible_task("broker-interest", move || {
            let snapshot = subs.clone();
            interest::publish(
                publisher.clone(),
                changed.clone(),
                alive.clone(),
                move || snapshot.all_stamped(),
            )
        });
        start_loop(&sup, interest).await?;
        let watched = Arc::downgrade(&broker.inner);
        let watch = actors::ChildSpec::infallible_task("broker-gossip-watch", move || {
            watch_gossip(watched.clone())
        });
        start_loop(&sup, watch).await?;
        node.add_admin_routes(crate::http::routes(broker.clone()));
        let scraped = broker.clone();
        node.metrics().add_source(move || scraped.metrics_text());
        Ok(broker)
    }
}

/// Start one of the broker's loops under the node's `system` supervisor.
async fn start_loop(
    sup: &ractor::ActorRef<actors::SupervisorMsg>,
    spec: actors::ChildSpec,
) -> Result<(), BrokerError> {
    let id = spec.id().to_string();
    actors::start_child(sup, spec)
        .await
        .map(|_| ())
        .map_err(|e| BrokerError::Unavailable(format!("cannot start {id}: {e}")))
}

/// Keep the view of other nodes' interest and of durable homes current.
async fn watch_gossip(inner: Weak<Inner>) {
    let changes = match inner.upgrade() {
        Some(i) => i.node.gossip_changes().await,
        None => return,
    };
    let Some(mut changes) = changes else {
        return; // no cluster: a node of one
    };
    loop {
        let Some(i) = inner.upgrade() else {
            return;
        };
        let scan = i.node.gossip_scan(INTEREST_PREFIX).await;
        i.remote.set(interest::parse(&i.name, scan));
        if i.remote.has_hints() {
            let dead: Vec<String> = i
                .node
                .members()
                .await
                .into_iter()
                .filter(|m| m.state == MemberState::Dead)
                .map(|m| m.name)
                .collect();
            i.remote.forget(&dead);
        }
        i.durable.homes.refresh().await;
        drop(i);
        if changes.changed().await.is_err() {
            return;
        }
    }
}
