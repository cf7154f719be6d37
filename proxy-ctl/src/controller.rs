//! The proxy-controller actor: one per node, under the node's `system` supervisor. It keeps a
//! view of the registry (a registry watch) and of the route table (a KV watch on `routes/`) and
//! publishes a new [`Snapshot`](crate::snapshot::Snapshot) into the node's [`SnapshotCell`]
//! after every change. Changes that queue up while a build runs are folded into the next build
//! (no timed debounce: a change is built as soon as the actor gets to it).

use std::{collections::BTreeMap, time::Duration};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use registry::{
    kv::EventKind,
    service::{Instance, Registry, WatchKind},
};

use crate::{
    snapshot::{build, SnapshotCell},
    table::{parse_entry, RouteTable, ROUTES_PREFIX},
    Route,
};

/// Messages of the controller.
#[derive(Debug)]
pub enum ControllerMsg {
    /// The registry watch (re)started: forget the instances known so far.
    InstancesReset,
    /// A registry change.
    Instance(WatchKind, Instance),
    /// The route table as read at a revision (replaces the view).
    RoutesReset(BTreeMap<String, Route>, Vec<(String, String)>),
    /// A route was put (`Ok`) or an invalid entry was written (`Err` with the reason).
    RoutePut(String, Result<Route, String>),
    /// A route key was deleted.
    RouteDeleted(String),
    /// Build and publish a snapshot from the current view.
    Rebuild,
}

impl ractor::Message for ControllerMsg {}

/// The actor.
#[derive(Clone)]
pub struct Controller {
    pub(crate) registry: Registry,
    pub(crate) cell: SnapshotCell,
}

/// Its state.
pub struct State {
    instances: BTreeMap<(String, String), Instance>,
    routes: BTreeMap<String, Route>,
    invalid: BTreeMap<String, String>,
    rebuild_queued: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a failed watch waits before starting again.
const RETRY: Duration = Duration::from_millis(500);

fn watch_registry(registry: Registry, me: ActorRef<ControllerMsg>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match registry.watch(None).await {
                Ok(mut rx) => {
                    if me.cast(ControllerMsg::InstancesReset).is_err() {
                        return;
                    }
                    while let Some(e) = rx.recv().await {
                        if me
                            .cast(ControllerMsg::Instance(e.event, e.instance))
                            .is_err()
                        {
                            return;
                        }
                    }
                    // The registry dropped this watcher (it fell behind) or restarted.
                }
                Err(e) => tracing::warn!(error = %e, "proxy controller: registry watch failed"),
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

fn watch_routes(node: String, me: ActorRef<ControllerMsg>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = follow_routes(&node, &me).await {
                if me.get_status() != ractor::ActorStatus::Running {
                    return;
                }
                tracing::debug!(error = %e, "proxy controller: route watch restarts");
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

async fn follow_routes(node: &str, me: &ActorRef<ControllerMsg>) -> Result<(), String> {
    let table = RouteTable::of_node(node).map_err(|e| e.to_string())?;
    let (entries, rev) = table
        .kv()
        .range_at(ROUTES_PREFIX, false)
        .await
        .map_err(|e| e.to_string())?;
    let mut routes = BTreeMap::new();
    let mut invalid = Vec::new();
    for e in entries {
        match parse_entry(&e.key, &e.value) {
            Ok(r) => {
                routes.insert(e.key, r);
            }
            Err(why) => invalid.push((e.key, why)),
        }
    }
    me.cast(ControllerMsg::RoutesReset(routes, invalid))
        .map_err(|e| e.to_string())?;
    let mut w = table
        .kv()
        .watch(ROUTES_PREFIX, Some(rev + 1))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let ev = w.next().await.map_err(|e| e.to_string())?;
        let msg = match (ev.kind, ev.value) {
            (EventKind::Put, Some(v)) => {
                let parsed = parse_entry(&ev.key, &v);
                ControllerMsg::RoutePut(ev.key, parsed)
            }
            _ => ControllerMsg::RouteDeleted(ev.key),
        };
        me.cast(msg).map_err(|e| e.to_string())?;
    }
}

impl Actor for Controller {
    type Msg = ControllerMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<ControllerMsg>,
        _: (),
    ) -> Result<State, ActorProcessingErr> {
        let node = self.registry.node().name().to_string();
        Ok(State {
            instances: BTreeMap::new(),
            routes: BTreeMap::new(),
            invalid: BTreeMap::new(),
            rebuild_queued: false,
            tasks: vec![
                watch_registry(self.registry.clone(), myself.clone()),
                watch_routes(node, myself),
            ],
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ControllerMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        for t in state.tasks.drain(..) {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ControllerMsg>,
        msg: ControllerMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ControllerMsg::InstancesReset => state.instances.clear(),
            ControllerMsg::Instance(kind, i) => {
                let k = (i.service.clone(), i.id.clone());
                match kind {
                    WatchKind::Removed => {
                        state.instances.remove(&k);
                    }
                    WatchKind::Added | WatchKind::Changed => {
                        state.instances.insert(k, i);
                    }
                }
            }
            ControllerMsg::RoutesReset(routes, invalid) => {
                state.routes = routes;
                state.invalid = invalid.into_iter().collect();
            }
            ControllerMsg::RoutePut(key, Ok(r)) => {
                state.invalid.remove(&key);
                state.routes.insert(key, r);
            }
            ControllerMsg::RoutePut(key, Err(why)) => {
                tracing::warn!(%key, %why, "ignoring an invalid route entry");
                state.routes.remove(&key);
                state.invalid.insert(key, why);
            }
            ControllerMsg::RouteDeleted(key) => {
                state.routes.remove(&key);
                state.invalid.remove(&key);
            }
            ControllerMsg::Rebuild => {
                state.rebuild_queued = false;
                let instances: Vec<Instance> = state.instances.values().cloned().collect();
                let routes: Vec<Route> = state.routes.values().cloned().collect();
                self.cell.publish(build(&instances, &routes));
                return Ok(());
            }
        }
        if !state.rebuild_queued {
            state.rebuild_queued = true;
            myself.cast(ControllerMsg::Rebuild)?;
        }
        Ok(())
    }
}
