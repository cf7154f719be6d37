//! [`Member`]: one node of the cluster as this node sees it, and the gossip keys its fields
//! are published under.

use serde::{Deserialize, Serialize};

pub(super) const KEY_NAME: &str = "name";
pub(super) const KEY_ACTOR_ADDR: &str = "actor_addr";
pub(super) const KEY_ADMIN_ADDR: &str = "admin_addr";
pub(super) const KEY_VERSION: &str = "version";
pub(super) const KEY_ROLES: &str = "roles";
pub(super) const KEY_ACTOR_COUNT: &str = "actor_count";
pub(super) const KEY_LANE_ADDR: &str = "lane_addr";
/// Published by the proxy controller (`proxy_ctl::XDS_ADDR_KEY`).
pub(super) const KEY_XDS_ADDR: &str = "xds_addr";

/// Liveness of a cluster member as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Gossiping and (once a session is up) reachable.
    Alive,
    /// Declared dead by the failure detector.
    Dead,
}

/// One node of the cluster, as published in its gossip state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Alive or dead.
    pub state: MemberState,
    /// Whether this is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Whether an authenticated actor-transport session to it is up (always true for self).
    pub connected: bool,
    /// Whether the direct message lane to it is up (always true for self).
    #[serde(default)]
    pub lane: bool,
    /// Gossip address.
    pub gossip_addr: String,
    /// Actor-transport address.
    pub actor_addr: Option<String>,
    /// Direct message lane address.
    #[serde(default)]
    pub lane_addr: Option<String>,
    /// Admin HTTP address.
    pub admin_addr: Option<String>,
    /// Envoy ADS (xDS gRPC) address, when the node serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xds_addr: Option<String>,
    /// Runtime version.
    pub version: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// How many actors it runs for users (spawned through the node: factories, `Node::spawn`,
    /// other nodes' requests), as it last gossiped.
    #[serde(default)]
    pub actor_count: u64,
    /// The failure detector's phi for it (suspicion grows with silence; dead past 8); `None`
    /// for this node itself and before two heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
}
