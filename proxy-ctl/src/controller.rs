//! The proxy-controller actor: one per node, under the node's `system` supervisor. It keeps a
//! view of the registry (a registry watch) and of the route table (a KV watch on `routes/`) and
//! publishes a new [`Snapshot`](crate::snapshot::Snapshot) into the node's [`SnapshotCell`]
//! after every change. Changes that queue up while a build runs are folded into the next build
//! (no timed debounce: a change is built as soon as the actor gets to it).
//!
//! The two watches are loops of their own, supervised beside the actor ([`supervisor_spec`]):
//!
//! ```text
//! system
//! └── proxy (rest_for_one)
//!     ├── proxy-controller       this actor, registered as <node>/proxy
//!     ├── proxy-registry-watch   registry watch -> Instance*, InstancesReset
//!     └── proxy-routes-watch     KV watch on routes/ -> RoutesReset, RoutePut, RouteDeleted
//! ```
//!
//! `rest_for_one`: a restarted controller starts with an empty view, so both watches restart
//! after it and send it everything again (a reset first). A failed registry watch restarts the
//! routes watch too (it comes after it), which sends the route table again: harmless.

use std::{collections::BTreeMap, time::Duration};

use actors::{ChildSpec, Intensity, Strategy, SupervisorSpec};
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
}

/// How long a failed watch waits before starting again.
const RETRY: Duration = Duration::from_millis(500);

/// The registered name of a node's controller.
pub(crate) fn controller_name(node: &str) -> String {
    format!("{node}/proxy")
}

/// The `proxy` supervisor's spec: the controller, then its two watches (see the module doc).
pub(crate) fn supervisor_spec(controller: Controller) -> SupervisorSpec {
    let node = controller.registry.node().name().to_string();
    let name = controller_name(&node);
    let registry = controller.registry.clone();
    let (to_registry, to_routes) = (name.clone(), name.clone());
    SupervisorSpec::new(Strategy::RestForOne)
        .intensity(Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        })
        .child(ChildSpec::worker(
            "proxy-controller",
            Some(name),
            controller,
            (),
        ))
        .child(ChildSpec::task("proxy-registry-watch", move || {
            let me = controller_ref(&to_registry);
            let registry = registry.clone();
            async move {
                watch_registry(registry, me?).await;
                Ok(())
            }
        }))
        .child(ChildSpec::task("proxy-routes-watch", move || {
            let me = controller_ref(&to_routes);
            let node = node.clone();
            async move {
                watch_routes(node, me?).await;
                Ok(())
            }
        }))
}

/// The running controller (a watch starts after it: `rest_for_one`).
fn controller_ref(name: &str) -> Result<ActorRef<ControllerMsg>, String> {
    ractor::registry::where_is(name)
        .map(ActorRef::from)
        .ok_or_else(|| format!("the proxy controller {name} is not running"))
}

/// Feed the registry's changes to the controller, a reset first at each (re)start of the
/// watch. Returns when the controller is gone (its supervisor then restarts both).
async fn watch_registry(registry: Registry, me: ActorRef<ControllerMsg>) {
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
}

/// Feed the route table to the controller: all of it at a revision, then its changes; again
/// from the start after an error. Returns when the controller is gone.
async fn watch_routes(node: String, me: ActorRef<ControllerMsg>) {
    loop {
        if let Err(e) = follow_routes(&node, &me).await {
            if me.get_status() != ractor::ActorStatus::Running {
                return;
            }
            tracing::debug!(error = %e, "proxy controller: route watch restarts");
        }
        tokio::time::sleep(RETRY).await;
    }
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
        _: ActorRef<ControllerMsg>,
        _: (),
    ) -> Result<State, ActorProcessingErr> {
        Ok(State {
            instances: BTreeMap::new(),
            routes: BTreeMap::new(),
            invalid: BTreeMap::new(),
            rebuild_queued: false,
        })
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
