//! What the node's xDS server knows about its clients: each open stream (mode, the Envoy's
//! node id, per type the version sent and ACKed, the NACK of the latest response), the last
//! NACKs, and counters for `/metrics`.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use serde::Serialize;

use super::{Nack, StreamReport};

/// NACKs kept after their stream closed.
const RECENT_NACKS: usize = 32;

/// One open stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Stream id on this node.
    pub id: u64,
    /// `sotw` or `delta`.
    pub mode: &'static str,
    /// The client's address.
    pub peer: String,
    /// Its node, versions and NACKs.
    #[serde(flatten)]
    pub report: StreamReport,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    streams: BTreeMap<u64, StreamStatus>,
    recent: VecDeque<Nack>,
    nacks: u64,
    responses: u64,
    refused: u64,
}

/// The shared status (cheap to clone).
///
/// ```
/// use proxy_ctl::xds::status::XdsStatus;
/// let s = XdsStatus::default();
/// let id = s.open("sotw", "127.0.0.1:5000");
/// assert_eq!(s.json()["streams"][0]["id"], id);
/// s.close(id);
/// assert!(s.json()["streams"].as_array().unwrap().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct XdsStatus {
    inner: Arc<Mutex<Inner>>,
}

impl XdsStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream opened; returns its id.
    pub fn open(&self, mode: &'static str, peer: &str) -> u64 {
        let mut g = self.lock();
        g.next += 1;
        let id = g.next;
        g.streams.insert(
            id,
            StreamStatus {
                id,
                mode,
                peer: peer.to_string(),
                report: StreamReport::default(),
            },
        );
        id
    }

    /// A stream was refused (too many open).
    pub fn refused(&self) {
        self.lock().refused += 1;
    }

    /// After a step of a stream: its report, the NACKs it got, the responses it sent.
    pub fn update(&self, id: u64, report: StreamReport, nacks: Vec<Nack>, responses: usize) {
        let mut g = self.lock();
        if let Some(s) = g.streams.get_mut(&id) {
            s.report = report;
        }
        g.responses += responses as u64;
        for n in nacks {
            tracing::warn!(node = %n.node, kind = ?n.kind, version = %n.version, message = %n.message, "Envoy rejected a response (NACK)");
            g.nacks += 1;
            if g.recent.len() == RECENT_NACKS {
                g.recent.pop_front();
            }
            g.recent.push_back(n);
        }
    }

    /// A stream ended.
    pub fn close(&self, id: u64) {
        self.lock().streams.remove(&id);
    }

    /// Open streams now.
    pub fn open_streams(&self) -> usize {
        self.lock().streams.len()
    }

    /// `{"streams":[...], "recent_nacks":[...], "nacks_total":N, "responses_total":N}`.
    pub fn json(&self) -> serde_json::Value {
        let g = self.lock();
        serde_json::json!({
            "streams": g.streams.values().collect::<Vec<_>>(),
            "recent_nacks": g.recent,
            "nacks_total": g.nacks,
            "responses_total": g.responses,
            "streams_refused_total": g.refused,
        })
    }

    /// The counters for `/metrics`.
    pub fn metrics_text(&self) -> String {
        let g = self.lock();
        runtime::metrics_text(&[
            (
                "draft_xds_nacks_total",
                "counter",
                "xDS responses rejected by an Envoy (NACK).",
                g.nacks,
            ),
            (
                "draft_xds_responses_total",
                "counter",
                "xDS responses sent.",
                g.responses,
            ),
            (
                "draft_xds_streams_refused_total",
                "counter",
                "xDS streams refused because too many were open.",
                g.refused,
            ),
            (
                "draft_xds_streams",
                "gauge",
                "Open xDS streams.",
                g.streams.len() as u64,
            ),
        ])
    }
}
