//! The actor transport's sessions as ractor_cluster reports them: which session-local node id
//! is which node, and sessions refused before authentication (a cookie mismatch).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use ractor_cluster::{node::NodeServerSessionInformation, NodeEventSubscription};

use crate::transport_door::Door;

/// Tracks transport sessions: which session-local node id is which node, and refusals.
#[derive(Default)]
pub(super) struct Sessions {
    /// ractor_cluster's session-local node id → node name.
    pub(super) by_node_id: RwLock<HashMap<u64, String>>,
    /// Sessions opened but not yet authenticated, by peer address.
    pub(super) pending: Mutex<HashSet<String>>,
    /// The transport port's front door (slots and deadlines of unauthenticated connections).
    pub(super) door: Arc<Door>,
}

pub(super) struct Events(pub(super) Arc<Sessions>);

pub(super) fn peer_node_name(info: &NodeServerSessionInformation) -> Option<String> {
    info.peer_name
        .as_ref()
        .map(|n| n.name.split('@').next().unwrap_or_default().to_string())
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        if let Ok(mut p) = self.0.pending.lock() {
            p.insert(ses.peer_addr.clone());
        }
        self.0
            .door
            .opened(&ses.peer_addr, ses.actor.clone(), ses.is_server);
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        if let Ok(mut p) = self.0.pending.lock() {
            p.remove(&ses.peer_addr);
        }
        self.0.door.forget(&ses.peer_addr);
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(name) = peer_node_name(&ses) {
            tracing::info!(peer = %name, addr = %ses.peer_addr, "actor transport connected");
            if let Ok(mut m) = self.0.by_node_id.write() {
                m.insert(ses.node_id, name);
            }
        }
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let was_pending = self
            .0
            .pending
            .lock()
            .map(|mut p| p.remove(&ses.peer_addr))
            .unwrap_or(false);
        self.0.door.forget(&ses.peer_addr);
        if was_pending {
            tracing::warn!(
                addr = %ses.peer_addr,
                "actor-transport session refused before authentication: the peer's cookie does \
                 not match ours (or it is not a draft node)"
            );
        } else {
            tracing::info!(peer = ?peer_node_name(&ses), addr = %ses.peer_addr, "actor transport disconnected");
        }
        if let Ok(mut m) = self.0.by_node_id.write() {
            m.remove(&ses.node_id);
        }
    }
}
