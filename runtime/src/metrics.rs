//! Prometheus metrics of a node.

use std::sync::{Arc, Mutex};

use actors::SupervisorStats;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// The node's metrics, exported in the Prometheus text format at `/metrics`.
///
/// * `draft_actors_alive`: running actors in the node's supervision tree;
/// * `draft_restarts_total`: child restarts performed by the node's supervisors;
/// * `draft_supervisor_escalations_total`: supervisors that exceeded their restart intensity;
/// * `draft_children_given_up_total`: children stopped alone for exceeding their own (per-child)
///   restart intensity (a crash-looping user actor);
/// * `draft_messages_handled_total`: messages handled by user actors.
///
/// A clustered node adds its lanes' counters: `draft_lane_frames_sent_total`,
/// `draft_lane_bytes_sent_total`, `draft_lane_frames_received_total`,
/// `draft_lane_bytes_received_total`, `draft_lane_handshakes_refused_total`,
/// `draft_lane_frames_undeliverable_total`, and the gauge `draft_lanes_up`.
pub struct Metrics {
    registry: Registry,
    pub(crate) messages: Counter,
    restarts: Counter,
    escalations: Counter,
    given_up: Counter,
    alive: Gauge,
    sync: Mutex<()>,
    sources: Mutex<Vec<Source>>,
}

/// A function producing more metric families (OpenMetrics text) at every scrape.
type Source = Arc<dyn Fn() -> String + Send + Sync>;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("draft");
        let messages = Counter::default();
        let restarts = Counter::default();
        let escalations = Counter::default();
        let given_up = Counter::default();
        let alive = Gauge::default();
        registry.register(
            "messages_handled",
            "Messages handled by user actors",
            messages.clone(),
        );
        registry.register(
            "restarts",
            "Child restarts performed by supervisors",
            restarts.clone(),
        );
        registry.register(
            "supervisor_escalations",
            "Supervisors that exceeded their restart intensity",
            escalations.clone(),
        );
        registry.register(
            "children_given_up",
            "Children stopped for exceeding their own restart intensity",
            given_up.clone(),
        );
        registry.register(
            "actors_alive",
            "Running actors in the supervision tree",
            alive.clone(),
        );
        Metrics {
            registry,
            messages,
            restarts,
            escalations,
            given_up,
            alive,
            sync: Mutex::new(()),
            sources: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Messages handled so far by user actors.
    pub fn messages_handled(&self) -> u64 {
        self.messages.get()
    }

    /// Add metric families rendered by another component (KV, broker...) at every scrape. The
    /// function returns OpenMetrics text without the final `# EOF`: counters as
    /// `# TYPE name counter` followed by `name_total value`.
    ///
    /// ```
    /// let m = runtime::Metrics::default();
    /// m.add_source(|| "# TYPE demo_events counter\ndemo_events_total 3\n".to_string());
    /// ```
    pub fn add_source(&self, source: impl Fn() -> String + Send + Sync + 'static) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(source));
    }

    /// Render the text exposition, after bringing the sampled values up to date.
    pub(crate) fn render(&self, alive: usize, stats: &SupervisorStats) -> String {
        let _guard = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        self.alive.set(alive as i64);
        self.restarts
            .inc_by(stats.restarts().saturating_sub(self.restarts.get()));
        self.escalations
            .inc_by(stats.escalations().saturating_sub(self.escalations.get()));
        self.given_up.inc_by(
            stats
                .children_given_up()
                .saturating_sub(self.given_up.get()),
        );
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.push_str("# metrics encoding failed\n");
        }
        let sources: Vec<Source> = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !sources.is_empty() {
            if let Some(body) = out.strip_suffix("# EOF\n") {
                out = body.to_string();
            }
            for source in sources {
                out.push_str(&source());
            }
            out.push_str("# EOF\n");
        }
        out
    }
}

/// One sample for a [`Metrics::add_source`] function: `(sample name, "counter" or "gauge",
/// help text, value)`. A counter's sample name ends in `_total`.
pub type Sample<'a> = (&'a str, &'a str, &'a str, u64);

/// Render samples as OpenMetrics text for a [`Metrics::add_source`] function: a counter's
/// family is its sample name without `_total`.
///
/// ```
/// let text = runtime::metrics_text(&[("demo_events_total", "counter", "Demo events.", 3)]);
/// assert_eq!(
///     text,
///     "# HELP demo_events Demo events.\n# TYPE demo_events counter\ndemo_events_total 3\n"
/// );
/// ```
pub fn metrics_text(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for (name, kind, help, v) in samples {
        let family = name.strip_suffix("_total").unwrap_or(name);
        out.push_str(&format!(
            "# HELP {family} {help}\n# TYPE {family} {kind}\n{name} {v}\n"
        ));
    }
    out
}
