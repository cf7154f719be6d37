//! What the running parts of a service share: readiness, counters, where it is registered.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use actors::SupervisorMsg;
use ractor::ActorRef;
use registry::service::{Health, Registration};
use runtime::Node;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{config::ConfigStatus, health::Readiness, http::HttpStats};

/// What the running parts share: readiness, counters, where it is registered.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(super) version: String,
    pub(super) instance: String,
    pub(crate) node: Node,
    pub(super) supervisor: ActorRef<SupervisorMsg>,
    pub(super) stopping: AtomicBool,
    pub(super) readiness: watch::Sender<Readiness>,
    pub(super) config: Option<Arc<Mutex<ConfigStatus>>>,
    pub(crate) http: HttpStats,
    pub(super) address: Mutex<Option<(SocketAddr, String)>>,
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

    pub(super) fn registration(&self) -> Registration {
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
