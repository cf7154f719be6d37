//! The names the runtime registers its own actors under, and the process groups it joins, on
//! every node: one place, so the node that registers a name and the nodes that look it up agree.

use ractor::{ActorRef, Message};

/// The registered name of a node's `user` supervisor (spawned actors live under it).
pub(crate) fn user_name(node: &str) -> String {
    format!("{node}/user")
}
/// The registered name of a node's root supervisor.
pub(crate) fn root_name(node: &str) -> String {
    format!("{node}/root")
}
/// The registered name of a node's `system` supervisor (the node's own services).
pub(crate) fn system_name(node: &str) -> String {
    format!("{node}/system")
}
/// The registered name of a node's inspector.
pub(crate) fn inspector_name(node: &str) -> String {
    format!("{node}/inspector")
}
/// The process group of a *published* named actor: one that every node holds a proxy of at
/// once (typed service actors, remote children). Other named actors are found through the
/// name directory (`directory.rs`).
pub(crate) fn actor_group(name: &str) -> String {
    format!("actor:{name}")
}
/// The process group of published actors that take `JsonMsg` (so JSON callers on other
/// nodes can tell a JSON actor from a typed one, which a remote proxy cannot).
pub(crate) fn json_group(name: &str) -> String {
    format!("json:{name}")
}
/// The process group of a node's inspector.
pub(crate) fn inspector_group(node: &str) -> String {
    format!("inspector@{node}")
}
/// The process group of a node's spawner.
pub(crate) fn spawner_group(node: &str) -> String {
    format!("spawner@{node}")
}

/// A member of `group` on another node (its local proxy), if the group has reached us.
pub(crate) fn remote_member<M: Message>(group: &str) -> Option<ActorRef<M>> {
    ractor::pg::get_members(&group.to_string())
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}
