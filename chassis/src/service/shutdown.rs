//! The graceful shutdown of a service, run by the node's shutdown before its tree stops:
//! readiness off, deregister, drain HTTP and mailboxes within the deadline, stop the children
//! in reverse order.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use actors::SupervisorMsg;
use ractor::{ActorCell, ActorRef};
use tokio::sync::oneshot;

use super::{shared::Shared, supervisor_name};
use crate::{health, typed::Envelope};

/// What the shutdown stops, and its deadlines.
pub(super) struct Graceful {
    pub(super) shared: Arc<Shared>,
    pub(super) registry: registry::service::Registry,
    pub(super) http: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    pub(super) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) timeout: Duration,
    pub(super) grace: Duration,
}

impl Graceful {
    pub(super) async fn run(&self) {
        let s = &self.shared;
        tracing::info!(service = %s.name, "stopping: readiness off");
        // 1. Readiness off, published at once (the registrar is stopped first so it cannot
        //    write a stale `passing` after this).
        s.stopping.store(true, Ordering::SeqCst);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        s.readiness
            .send_replace(health::combine(s.is_live(), true, Vec::new()));
        if let Err(e) = self.registry.register(s.registration()).await {
            tracing::warn!("cannot publish readiness off: {e}");
        }
        tokio::time::sleep(self.grace).await;
        // 2. Deregister, and let that spread.
        match self.registry.deregister(&s.name, &s.instance).await {
            Ok(()) => tokio::time::sleep(registry::service::DRAIN).await,
            Err(e) => tracing::warn!("cannot deregister: {e}"),
        }
        // 3. Drain HTTP: stop accepting, finish in-flight requests, within the deadline.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = http {
            s.http.draining.store(true, Ordering::SeqCst);
            let _ = stop.send(());
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(
                    in_flight = s.http.in_flight.load(Ordering::Relaxed),
                    "HTTP requests still in flight at the shutdown deadline"
                );
            }
        }
        // 4. Drain the typed actors' mailboxes (last started first), within the deadline.
        let cells = children_reverse(&s.supervisor).await;
        for cell in &cells {
            if cell.is_message_type_of::<Envelope>() == Some(true) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !crate::typed::flush(&ActorRef::from(cell.clone()), left).await {
                    tracing::warn!(actor = ?cell.get_name(), "mailbox not drained by the deadline");
                }
            }
        }
        // 5. Stop the children in reverse order (the supervisor does, as OTP's does).
        let sup_name = supervisor_name(&s.name);
        if let Err(e) = s.node.stop_actor(&sup_name).await {
            tracing::warn!("cannot stop the service's supervisor: {e}");
        }
        tracing::info!(service = %s.name, "stopped");
    }
}

/// The running actors under `sup`, depth first, last started first.
async fn children_reverse(sup: &ActorRef<SupervisorMsg>) -> Vec<ActorCell> {
    let mut out = Vec::new();
    let mut stack = vec![sup.clone()];
    while let Some(sup) = stack.pop() {
        let Ok(children) = actors::which_children(&sup).await else {
            continue;
        };
        for child in children.iter().rev() {
            if let Ok(Some(cell)) = actors::child_cell(&sup, &child.id).await {
                if cell.is_message_type_of::<SupervisorMsg>() == Some(true) {
                    stack.push(cell.into());
                } else {
                    out.push(cell);
                }
            }
        }
    }
    out
}
