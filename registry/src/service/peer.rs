//! The registry's door for other nodes: one actor per node (process group `registry@<node>`)
//! that takes the [`Hint`]s other nodes push (see [`super::hints`]) and hands them to this
//! node's registry actor; and the sending side, which pushes a change to every other node.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use actors::codec::Wire;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use runtime::Node;

use super::{actor::RegistryMsg, hints::Hint};

/// What one node's registry sends another's.
#[derive(RactorClusterMessage)]
pub(crate) enum PeerMsg {
    /// A change of one of the sender's instances.
    Hint(Wire<Hint>),
}

fn group(node: &str) -> String {
    format!("registry@{node}")
}

/// The name of a node's registry actor (registered locally).
pub(crate) fn registry_name(node: &str) -> String {
    format!("{node}/registry")
}

/// The fast path's counters, in the node's `/metrics`.
#[derive(Default)]
pub(crate) struct HintCounters {
    /// Hints sent to other nodes.
    pub(crate) sent: AtomicU64,
    /// Hints received from other nodes and recorded.
    pub(crate) received: AtomicU64,
    /// Hints received and refused (malformed, or naming another node's instance).
    pub(crate) refused: AtomicU64,
}

impl HintCounters {
    /// OpenMetrics text for the node's `/metrics`.
    pub(crate) fn text(&self) -> String {
        runtime::metrics_text(&[
            (
                "draft_registry_hints_sent_total",
                "counter",
                "Registry changes pushed to other nodes ahead of gossip",
                self.sent.load(Ordering::Relaxed),
            ),
            (
                "draft_registry_hints_received_total",
                "counter",
                "Registry changes received from other nodes ahead of gossip",
                self.received.load(Ordering::Relaxed),
            ),
            (
                "draft_registry_hints_refused_total",
                "counter",
                "Registry hints refused (malformed, or naming another node's instance)",
                self.refused.load(Ordering::Relaxed),
            ),
        ])
    }
}

/// Receives other nodes' hints.
#[derive(Clone)]
pub(crate) struct RegistryPeer {
    pub(crate) node: Node,
    pub(crate) counters: Arc<HintCounters>,
}

impl Actor for RegistryPeer {
    type Msg = PeerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<PeerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(group(self.node.name()), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<PeerMsg>,
        msg: PeerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let PeerMsg::Hint(wire) = msg;
        match wire.decode() {
            Ok(hint) => {
                let registry = ractor::registry::where_is(registry_name(self.node.name()))
                    .map(ActorRef::<RegistryMsg>::from);
                // Without a running registry the hint is moot: gossip will bring the change.
                if let Some(r) = registry {
                    let _ = r.cast(RegistryMsg::Hint(hint));
                }
            }
            Err(e) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "ignoring a malformed registry hint");
            }
        }
        Ok(())
    }
}

/// Push a change of one of this node's instances to every other node's registry. Best effort:
/// a node that misses it gets the change by gossip.
pub(crate) fn push(node: &Node, hint: &Hint, counters: &HintCounters) {
    let wire = match Wire::new(hint) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a registry hint");
            return;
        }
    };
    let mine = group(node.name());
    for g in ractor::pg::which_groups() {
        if !g.starts_with("registry@") || g == mine {
            continue;
        }
        for cell in ractor::pg::get_members(&g) {
            if cell.get_id().is_local() {
                continue;
            }
            let peer = ActorRef::<PeerMsg>::from(cell);
            match node.tell(&peer, PeerMsg::Hint(wire.clone())) {
                Ok(()) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(group = %g, error = %e, "registry hint not sent (gossip will carry it)")
                }
            }
        }
    }
}
