//! Remote children: a child of a supervisor on this node that runs on another node.
//!
//! [`Node::remote_child`] makes a [`ChildSpec`] like any other, so it goes into any
//! [`SupervisorSpec`](actors::SupervisorSpec) and is restarted by that supervisor's strategy and
//! intensity. The supervisor's actual child is a small local stand-in (the *guard*): at every
//! (re)start the guard picks a live node that matches the child's [`Placement`], asks that node's
//! spawner to start the actor from a factory (as a `temporary` child there, so only this
//! supervisor restarts it), and monitors it. When the actor exits, the guard exits with it;
//! when its node is lost, the guard exits with reason `noconnection` (Erlang's `DOWN` reason).
//! Either way the supervisor applies its strategy, and the restart places the child again, on
//! another live node when its node is gone. Stopping the guard (restart of a sibling under
//! `one_for_all`, `terminate_child`, shutdown) stops the remote actor.
//!
//! When the placement picks this node, the guard starts the actor as its own linked child
//! (nothing crosses the network, and the real exit reason is known).
//!
//! Callers address the child by its name (the child id), which is registered cluster-wide on the
//! node it runs on, so they reach each new incarnation wherever it runs. The tree shows the guard
//! with `runs_on: NODE`, and the actor on its node with `supervised_from: NODE/SUPERVISOR`.
//!
//! Limits: ractor_cluster tells a node only that a remote actor exited, not why, so a remote
//! child's exit counts as abnormal (`exited on node N`) whatever its reason: a `transient` remote
//! child is restarted after a normal exit too (a child placed on this node keeps its real
//! reason). A node that is cut off but alive keeps its copy running while the supervisor starts
//! another one elsewhere, as in Erlang.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{Arc, LazyLock, Mutex, Weak},
    time::Duration,
};

use actors::{ChildSpec, Restart, Shutdown, TreeSnapshot};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    cluster::{Member, MemberState},
    names::{actor_group, spawner_group},
    node::{Inner, Node},
    spawn_protocol::SpawnRequest,
};

/// How long the guard waits for a spawned remote actor to appear in its name group.
const RESOLVE_WITHIN: Duration = Duration::from_secs(3);
/// How long stopping the remote actor may take when the guard stops.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Where a remote child may run.
///
/// Written as text in JSON and on the command line: `any`, `other`, `role:NAME`, `node:NAME` or
/// just `NAME` (a node).
///
/// ```
/// use runtime::Placement;
/// assert_eq!("any".parse::<Placement>().unwrap(), Placement::Any);
/// assert_eq!("n2".parse::<Placement>().unwrap(), Placement::Node("n2".into()));
/// assert_eq!("role:gpu".parse::<Placement>().unwrap(), Placement::Role("gpu".into()));
/// assert!("role:".parse::<Placement>().is_err());
/// assert_eq!(Placement::Other.to_string(), "other");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Placement {
    /// This node only.
    Node(String),
    /// Any live node announcing this role (`dctl node start --role R`).
    Role(String),
    /// Any live node, this one included.
    Any,
    /// Any live node but this one.
    Other,
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = |w: &str, what: &str| {
            if w.is_empty() {
                Err(format!("placement '{s}' names no {what}"))
            } else {
                Ok(w.to_string())
            }
        };
        match s {
            "any" => Ok(Placement::Any),
            "other" => Ok(Placement::Other),
            _ => match s.split_once(':') {
                Some(("role", r)) => word(r, "role").map(Placement::Role),
                Some(("node", n)) => word(n, "node").map(Placement::Node),
                Some(_) => Err(format!(
                    "placement '{s}' is not any, other, role:NAME, node:NAME or a node name"
                )),
                None => word(s, "node").map(Placement::Node),
            },
        }
    }
}

impl TryFrom<String> for Placement {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Placement> for String {
    fn from(p: Placement) -> String {
        p.to_string()
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Node(n) => write!(f, "node:{n}"),
            Placement::Role(r) => write!(f, "role:{r}"),
            Placement::Any => f.write_str("any"),
            Placement::Other => f.write_str("other"),
        }
    }
}

/// The nodes a child with `placement` may be started on now, in the order to try them: live
/// members with an actor-transport session that match, by name, rotated to start after `last`
/// (the node of the previous incarnation, which goes last), so a child whose node failed moves.
pub(crate) fn candidates(
    placement: &Placement,
    members: &[Member],
    last: Option<&str>,
) -> Vec<String> {
    let mut names: Vec<String> = members
        .iter()
        .filter(|m| m.state == MemberState::Alive && m.connected)
        .filter(|m| match placement {
            Placement::Node(n) => &m.name == n,
            Placement::Role(r) => m.roles.iter().any(|x| x == r),
            Placement::Any => true,
            Placement::Other => !m.is_self,
        })
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    if let Some(last) = last {
        let after = names.iter().position(|n| n.as_str() > last).unwrap_or(0);
        names.rotate_left(after);
        if let Some(i) = names.iter().position(|n| n == last) {
            let l = names.remove(i);
            names.push(l);
        }
    }
    names
}

/// The reason a monitor of another node's actor reports when it went down: `noconnection` when
/// the node was lost (its session closed), else that it exited (ractor_cluster does not carry
/// the reason across nodes).
pub(crate) fn remote_down_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("remote") | Some("remote_exit") => "exited",
        _ => "noconnection",
    }
}

#[derive(Debug, Clone)]
enum Note {
    RunsOn(String),
    SupervisedFrom(String),
}

/// What the inspector adds to tree snapshots, by actor id (one process is one node).
static NOTES: LazyLock<Mutex<HashMap<ActorId, Note>>> = LazyLock::new(Default::default);

fn notes() -> std::sync::MutexGuard<'static, HashMap<ActorId, Note>> {
    NOTES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Record that `cell` runs here as the remote child of `from` (`NODE/SUPERVISOR`).
pub(crate) fn hosted(cell: &ActorCell, from: String) {
    notes().insert(cell.get_id(), Note::SupervisedFrom(from));
}

/// Mark remote children (`runs_on`) and hosted actors (`supervised_from`) in a snapshot of this
/// node's tree; forgets actors that are gone.
pub(crate) fn annotate(tree: &mut TreeSnapshot) {
    let mut notes = notes();
    notes.retain(|id, _| ractor::registry::pid_registry::where_is_pid(*id).is_some());
    if notes.is_empty() {
        return;
    }
    let by_id: HashMap<String, Note> = notes
        .iter()
        .map(|(id, n)| (id.to_string(), n.clone()))
        .collect();
    drop(notes);
    tree.visit_mut(&mut |t| {
        if let Some(note) = t.actor_id.as_ref().and_then(|id| by_id.get(id)) {
            match note {
                Note::RunsOn(n) => t.runs_on = Some(n.clone()),
                Note::SupervisedFrom(s) => t.supervised_from = Some(s.clone()),
            }
        }
    });
}

struct RemoteSpec {
    id: String,
    factory: String,
    args: Value,
    placement: Placement,
}

/// The local stand-in of a remote child (see the module doc).
#[derive(Clone)]
struct Guard {
    node: Weak<Inner>,
    spec: Arc<RemoteSpec>,
    /// The node the previous incarnation ran on.
    last: Arc<Mutex<Option<String>>>,
}

struct GuardState {
    node: Weak<Inner>,
    host: String,
    remote: ActorCell,
    /// The remote actor is known to be gone (no need to stop it).
    gone: bool,
}

impl Guard {
    fn node(&self) -> Result<Node, ActorProcessingErr> {
        self.node
            .upgrade()
            .map(|inner| Node { inner })
            .ok_or_else(|| "node is stopping".into())
    }
}

/// Find the actor `name` that the other node `host` just spawned with id `actor_id`.
async fn find_spawned(host: &str, name: &str, actor_id: &str) -> Result<ActorCell, String> {
    let pid: u64 = actor_id
        .rsplit('.')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("node '{host}' answered a bad actor id '{actor_id}'"))?;
    let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
    loop {
        let host_node = ractor::pg::get_members(&spawner_group(host))
            .into_iter()
            .find(|c| !c.get_id().is_local())
            .map(|c| c.get_id().node());
        let found = host_node.and_then(|n| {
            ractor::pg::get_members(&actor_group(name))
                .into_iter()
                .find(|c| {
                    !c.get_id().is_local() && c.get_id().node() == n && c.get_id().pid() == pid
                })
        });
        if let Some(cell) = found {
            return Ok(cell);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "'{name}' started on node '{host}' but did not become reachable within {}s",
                RESOLVE_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stop the actor `name` on `host` (its own child when `host` is this node), within
/// [`STOP_WITHIN`].
async fn stop_remote(node: &Node, host: &str, name: &str, cell: &ActorCell) {
    if host == node.name() {
        let _ = cell
            .stop_and_wait(Some("shutdown".into()), Some(STOP_WITHIN))
            .await;
        return;
    }
    // Straight to its node's spawner: `Node::stop` would ask this node's `user` supervisor
    // first, which may be the one stopping us (and waiting for us).
    match tokio::time::timeout(STOP_WITHIN, node.stop_on(host, name)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(child = %name, %host, "cannot stop remote child: {e}"),
        Err(_) => tracing::warn!(child = %name, %host, "stopping the remote child timed out"),
    }
}

impl Actor for Guard {
    type Msg = ();
    type State = GuardState;
    /// The supervisor's registered name, if it has one.
    type Arguments = Option<String>;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        supervisor: Option<String>,
    ) -> Result<GuardState, ActorProcessingErr> {
        let node = self.node()?;
        let spec = &self.spec;
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let hosts = candidates(&spec.placement, &node.members().await, last.as_deref());
        if hosts.is_empty() {
            return Err(format!(
                "no live node matches placement '{}' of remote child '{}'",
                spec.placement, spec.id
            )
            .into());
        }
        let from = format!(
            "{}/{}",
            node.name(),
            supervisor.as_deref().unwrap_or("supervisor")
        );
        let mut errors = Vec::new();
        for host in hosts {
            if host == node.name() {
                // Here: the guard supervises the actor itself (linked to it, so its exit
                // reason is known), rather than asking `user`, which may be busy starting the
                // guard's own supervisor.
                let started =
                    match node.factory_child_spec(&spec.factory, &spec.id, spec.args.clone()) {
                        Ok(child) => child
                            .start_linked(myself.get_cell())
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                match started {
                    Ok(cell) => {
                        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(host.clone());
                        return Ok(GuardState {
                            node: self.node.clone(),
                            host,
                            remote: cell,
                            gone: false,
                        });
                    }
                    Err(e) => {
                        errors.push(format!("{host}: {e}"));
                        continue;
                    }
                }
            }
            let req = SpawnRequest {
                factory: spec.factory.clone(),
                name: spec.id.clone(),
                args: spec.args.clone(),
                restart: Some(Restart::Temporary),
                supervised_from: Some(from.clone()),
            };
            let actor_id = match node.spawn_request_on(&host, req).await {
                Ok(id) => id,
                Err(e) => {
                    errors.push(format!("{host}: {e}"));
                    continue;
                }
            };
            let cell = match find_spawned(&host, &spec.id, &actor_id).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::time::timeout(STOP_WITHIN, node.stop_on(&host, &spec.id)).await;
                    errors.push(format!("{host}: {e}"));
                    continue;
                }
            };
            myself.get_cell().monitor(cell.clone());
            if cell.get_status() >= ractor::ActorStatus::Stopping {
                errors.push(format!(
                    "{host}: '{}' stopped as soon as it started",
                    spec.id
                ));
                continue;
            }
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(host.clone());
            notes().insert(myself.get_id(), Note::RunsOn(host.clone()));
            tracing::info!(child = %spec.id, %host, "remote child started");
            return Ok(GuardState {
                node: self.node.clone(),
                host,
                remote: cell,
                gone: false,
            });
        }
        Err(format!(
            "cannot start remote child '{}': {}",
            spec.id,
            errors.join("; ")
        )
        .into())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut GuardState,
    ) -> Result<(), ActorProcessingErr> {
        let why = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if cell.get_id() == state.remote.get_id() =>
            {
                if cell.get_id().is_local() {
                    reason.unwrap_or_else(|| "normal".into())
                } else {
                    match remote_down_reason(reason.as_deref()) {
                        "exited" => format!("exited on node {}", state.host),
                        other => other.to_string(),
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, err) if cell.get_id() == state.remote.get_id() => {
                err.to_string()
            }
            _ => return Ok(()),
        };
        tracing::info!(child = %self.spec.id, host = %state.host, reason = %why, "remote child went down");
        state.gone = true;
        myself.stop(Some(why));
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<()>,
        state: &mut GuardState,
    ) -> Result<(), ActorProcessingErr> {
        notes().remove(&myself.get_id());
        if !state.gone {
            if let Some(inner) = state.node.upgrade() {
                stop_remote(&Node { inner }, &state.host, &self.spec.id, &state.remote).await;
            }
        }
        Ok(())
    }
}

impl Node {
    /// A child spec for a supervisor on this node whose actor runs on a node matching
    /// `placement`, started there from the factory `factory` with `args` and registered under
    /// `id` (see the module doc of `remote_child`). Defaults: `permanent`, shutdown timeout 10 s.
    ///
    /// ```
    /// use runtime::{Node, Placement, Strategy, SupervisorSpec};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = Node::builder().name("rc-doc").without_admin().start().await.unwrap();
    /// let spec = SupervisorSpec::new(Strategy::OneForOne)
    ///     .child(node.remote_child("rc-doc-echo", "echo", serde_json::Value::Null, Placement::Any));
    /// node.spawn_spec("rc-doc-sup", runtime::ChildSpec::supervisor("rc-doc-sup", Some("rc-doc-sup".into()), spec))
    ///     .await
    ///     .unwrap();
    /// let reply = node
    ///     .call_json("rc-doc-echo", serde_json::json!(1), std::time::Duration::from_secs(1))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(reply, serde_json::json!(1));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub fn remote_child(
        &self,
        id: impl Into<String>,
        factory: impl Into<String>,
        args: Value,
        placement: Placement,
    ) -> ChildSpec {
        let id = id.into();
        let guard = Guard {
            node: Arc::downgrade(&self.inner),
            spec: Arc::new(RemoteSpec {
                id: id.clone(),
                factory: factory.into(),
                args,
                placement,
            }),
            last: Arc::new(Mutex::new(None)),
        };
        ChildSpec::new(id, move |sup: ActorCell| {
            let guard = guard.clone();
            async move {
                let name = sup.get_name();
                let (r, _) = Actor::spawn_linked(None, guard, name, sup).await?;
                Ok(r.get_cell())
            }
        })
        .shutdown(Shutdown::Timeout(Duration::from_secs(10)))
        .start_timeout(Some(Duration::from_secs(15)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, alive: bool, connected: bool, roles: &[&str], me: bool) -> Member {
        Member {
            name: name.into(),
            state: if alive {
                MemberState::Alive
            } else {
                MemberState::Dead
            },
            is_self: me,
            connected,
            lane: connected,
            gossip_addr: String::new(),
            actor_addr: None,
            lane_addr: None,
            admin_addr: None,
            xds_addr: None,
            version: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            actor_count: 0,
            phi: None,
        }
    }

    fn cluster() -> Vec<Member> {
        vec![
            member("n3", true, true, &["runtime"], false),
            member("n1", true, true, &["runtime"], true),
            member("n2", true, true, &["runtime", "gpu"], false),
            member("n4", false, false, &["runtime", "gpu"], false),
            member("n5", true, false, &["runtime"], false),
        ]
    }

    #[test]
    fn only_live_connected_matching_nodes_are_candidates() {
        let m = cluster();
        assert_eq!(candidates(&Placement::Any, &m, None), ["n1", "n2", "n3"]);
        assert_eq!(candidates(&Placement::Other, &m, None), ["n2", "n3"]);
        assert_eq!(candidates(&Placement::Role("gpu".into()), &m, None), ["n2"]);
        assert_eq!(candidates(&Placement::Node("n3".into()), &m, None), ["n3"]);
        assert!(candidates(&Placement::Node("n4".into()), &m, None).is_empty());
        assert!(candidates(&Placement::Node("n5".into()), &m, None).is_empty());
    }

    #[test]
    fn the_previous_node_is_tried_last_and_the_next_one_first() {
        let m = cluster();
        assert_eq!(
            candidates(&Placement::Any, &m, Some("n1")),
            ["n2", "n3", "n1"]
        );
        assert_eq!(
            candidates(&Placement::Any, &m, Some("n3")),
            ["n1", "n2", "n3"]
        );
        // The previous node is gone: start after where it sorted.
        assert_eq!(candidates(&Placement::Other, &m, Some("n25")), ["n3", "n2"]);
        assert_eq!(
            candidates(&Placement::Node("n3".into()), &m, Some("n3")),
            ["n3"]
        );
    }

    #[test]
    fn placements_parse_and_print() {
        for (text, p) in [
            ("any", Placement::Any),
            ("other", Placement::Other),
            ("role:edge", Placement::Role("edge".into())),
            ("node:n7", Placement::Node("n7".into())),
            ("n7", Placement::Node("n7".into())),
        ] {
            assert_eq!(text.parse::<Placement>().unwrap(), p, "{text}");
        }
        assert_eq!(
            "zone:a".parse::<Placement>().unwrap_err(),
            "placement 'zone:a' is not any, other, role:NAME, node:NAME or a node name"
        );
        assert_eq!(
            "node:".parse::<Placement>().unwrap_err(),
            "placement 'node:' names no node"
        );
        let json: Placement = serde_json::from_str("\"role:gpu\"").unwrap();
        assert_eq!(json, Placement::Role("gpu".into()));
        assert_eq!(serde_json::to_string(&Placement::Any).unwrap(), "\"any\"");
    }

    #[test]
    fn a_lost_session_reads_as_noconnection() {
        assert_eq!(remote_down_reason(Some("remote")), "exited");
        assert_eq!(remote_down_reason(Some("remote_exit")), "exited");
        assert_eq!(remote_down_reason(Some("killed")), "noconnection");
        assert_eq!(remote_down_reason(None), "noconnection");
    }
}
