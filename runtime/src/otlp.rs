//! OpenTelemetry export of the node's spans (`--otlp-endpoint`, [`crate::NodeBuilder::otlp_endpoint`]),
//! off by default.
//!
//! The spans are the ones `trace.rs` already names and logs, exported with the very ids that
//! travel in `traceparent` (so a collector links the hops of one request across nodes):
//!
//! * `http`: an admin request that acts (anything but GET/HEAD) or came with a `traceparent`;
//! * `message`: an actor handling a message that carried a trace context (a call or a tell);
//! * `produce`: a broker produce inside a trace ([`crate::Node::in_span`]).
//!
//! Each node has its own tracer provider whose resource names the node (`service.name` and
//! `service.instance.id`), so several nodes in one process export as several services. Spans go
//! through the SDK's batch processor: a bounded queue ([`QUEUE`] spans; beyond it spans are
//! dropped, with one warning) drained by its own thread every [`EXPORT_EVERY`] over OTLP/gRPC
//! (the `opentelemetry-otlp` crate on tonic). A collector that is down or slow costs the node
//! nothing but the dropped spans and an `opentelemetry_sdk` error line per failed batch
//! (`BatchSpanProcessor.ExportError`); the handlers never wait for it.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer, TracerProvider,
    },
    Context, KeyValue,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanExporter},
    Resource,
};

use crate::TraceContext;

/// At most this many finished spans wait for export; more are dropped.
pub const QUEUE: usize = 2048;
/// How often the queue is sent to the collector.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the OTLP exporter could not be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error("OTLP endpoint '{0}' is not an http:// or https:// URL (e.g. http://127.0.0.1:4317)")]
    BadEndpoint(String),
    /// The SDK refused to build the exporter.
    #[error("OTLP exporter for '{endpoint}': {reason}")]
    Build {
        /// The endpoint given.
        endpoint: String,
        /// The SDK's reason.
        reason: String,
    },
}

/// Check an OTLP/gRPC endpoint: `http(s)://HOST[:PORT][/]`.
///
/// ```
/// use runtime::otlp::{check_endpoint, OtlpError};
/// assert!(check_endpoint("http://127.0.0.1:4317").is_ok());
/// assert_eq!(check_endpoint("127.0.0.1:4317"),
///            Err(OtlpError::BadEndpoint("127.0.0.1:4317".into())));
/// ```
pub fn check_endpoint(url: &str) -> Result<(), OtlpError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') && !host.contains(' ') => Ok(()),
        _ => Err(OtlpError::BadEndpoint(url.to_string())),
    }
}

/// The OpenTelemetry span context of one of our trace contexts.
fn span_context(ctx: &TraceContext, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(ctx.trace_id),
        SpanId::from_bytes(ctx.span_id),
        TraceFlags::new(ctx.flags),
        remote,
        TraceState::default(),
    )
}

/// The resource every span of node `node` carries.
fn resource(node: &str) -> Resource {
    Resource::builder()
        .with_service_name(node.to_string())
        .with_attribute(KeyValue::new("service.instance.id", node.to_string()))
        .build()
}

/// One finished span, as the runtime hands it to the exporter.
pub(crate) struct Finished {
    /// `http`, `message` or `produce`.
    pub(crate) name: &'static str,
    pub(crate) kind: SpanKind,
    /// This span's ids (the ones its messages carry on).
    pub(crate) ctx: TraceContext,
    /// The span it is a child of (another node's, or the caller's), if any.
    pub(crate) parent: Option<TraceContext>,
    pub(crate) start: SystemTime,
    pub(crate) attributes: Vec<KeyValue>,
    /// Set when the work failed.
    pub(crate) error: Option<String>,
}

/// A node's span exporter (see the module's documentation).
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExport").finish_non_exhaustive()
    }
}

impl SpanExport {
    /// Export node `node`'s spans over OTLP/gRPC to `endpoint`. Call within a Tokio runtime
    /// (the gRPC channel's connection runs on it); nothing connects until the first export.
    pub fn otlp(endpoint: &str, node: &str) -> Result<Self, OtlpError> {
        check_endpoint(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| OtlpError::Build {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self::with_exporter(exporter, node))
    }

    /// Export node `node`'s spans to `exporter` (any SDK exporter, e.g. an in-memory one).
    pub fn with_exporter(exporter: impl SpanExporter + 'static, node: &str) -> Self {
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource(node))
            .with_span_processor(BatchSpanProcessor::new(exporter, batch))
            .build();
        let tracer = provider.tracer("draft-runtime");
        SpanExport { provider, tracer }
    }

    /// Queue a finished span (ending now). Never blocks: a full queue drops it.
    pub(crate) fn export(&self, span: Finished) {
        let parent = match &span.parent {
            Some(p) => Context::new().with_remote_span_context(span_context(p, true)),
            None => Context::new(),
        };
        let builder = self
            .tracer
            .span_builder(span.name)
            .with_kind(span.kind)
            .with_trace_id(TraceId::from_bytes(span.ctx.trace_id))
            .with_span_id(SpanId::from_bytes(span.ctx.span_id))
            .with_start_time(span.start)
            .with_attributes(span.attributes);
        let mut s = self.tracer.build_with_context(builder, &parent);
        if let Some(e) = span.error {
            opentelemetry::trace::Span::set_status(&mut s, Status::error(e));
        }
        opentelemetry::trace::Span::end(&mut s);
    }

    /// Send what is queued now (waits for the export; blocking).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Send what is queued and stop the export thread (blocking, at most a few seconds).
    pub fn shutdown(&self) {
        let _ = self
            .provider
            .shutdown_with_timeout(EXPORT_TIMEOUT + Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::{error::OTelSdkResult, trace::SpanData};
    use std::sync::{Arc, Mutex};

    /// An exporter that keeps what it is given (spans, and the resource they carry).
    #[derive(Debug, Clone, Default)]
    struct Recorder {
        spans: Arc<Mutex<Vec<SpanData>>>,
        resource: Arc<Mutex<Option<Resource>>>,
    }

    impl SpanExporter for Recorder {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.spans.lock().unwrap().extend(batch);
            Ok(())
        }
        fn set_resource(&mut self, resource: &Resource) {
            *self.resource.lock().unwrap() = Some(resource.clone());
        }
    }

    fn ctx(t: u8, s: u8) -> TraceContext {
        TraceContext {
            trace_id: [t; 16],
            span_id: [s; 8],
            flags: 1,
        }
    }

    fn finished(c: TraceContext, parent: Option<TraceContext>) -> Finished {
        Finished {
            name: "message",
            kind: SpanKind::Server,
            ctx: c,
            parent,
            start: SystemTime::now(),
            attributes: vec![KeyValue::new("actor", "a1")],
            error: None,
        }
    }

    #[test]
    fn endpoints_are_checked() {
        for ok in [
            "http://127.0.0.1:4317",
            "https://collector",
            "http://[::1]:4317/",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:4317",
            "http://",
            "grpc://x:1",
            "http:///x",
            "http://a b",
        ] {
            assert_eq!(
                check_endpoint(bad),
                Err(OtlpError::BadEndpoint(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn spans_keep_our_ids_their_parent_and_the_node_resource() {
        let rec = Recorder::default();
        let export = SpanExport::with_exporter(rec.clone(), "n-7");
        let parent = ctx(3, 4);
        let child = ctx(3, 5);
        export.export(finished(child, Some(parent)));
        let root = ctx(9, 1);
        let mut failed = finished(root, None);
        failed.error = Some("boom".into());
        export.export(failed);
        export.flush();
        let spans = rec.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s.name, "message");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(s.span_context.trace_id(), TraceId::from_bytes([3; 16]));
        assert_eq!(s.span_context.span_id(), SpanId::from_bytes([5; 8]));
        assert_eq!(s.parent_span_id, SpanId::from_bytes([4; 8]));
        assert!(s.attributes.contains(&KeyValue::new("actor", "a1")));
        let r = &spans[1];
        assert_eq!(r.span_context.trace_id(), TraceId::from_bytes([9; 16]));
        assert_eq!(r.span_context.span_id(), SpanId::from_bytes([1; 8]));
        assert_eq!(r.parent_span_id, SpanId::INVALID);
        assert_eq!(r.status, Status::error("boom"));
        let res = rec.resource.lock().unwrap().clone().expect("a resource");
        let get = |k: &str| {
            res.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("n-7"));
        assert_eq!(get("service.instance.id").as_deref(), Some("n-7"));
        export.shutdown();
    }

    /// A collector that hangs: its export waits until the test lets it go.
    #[derive(Debug)]
    struct Stuck {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        got: Arc<Mutex<usize>>,
    }

    impl SpanExporter for Stuck {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let (open, cv) = &*self.gate;
            let guard = open.lock().unwrap();
            let _open = cv
                .wait_timeout_while(guard, Duration::from_secs(30), |o| !*o)
                .unwrap();
            *self.got.lock().unwrap() += batch.len();
            Ok(())
        }
    }

    #[test]
    fn a_hanging_collector_never_blocks_the_spans_and_the_queue_is_bounded() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let got = Arc::new(Mutex::new(0));
        let export = SpanExport::with_exporter(
            Stuck {
                gate: gate.clone(),
                got: got.clone(),
            },
            "n-9",
        );
        // Far more than the queue holds, while the exporter is stuck: every call returns.
        let total = 4 * QUEUE;
        for i in 0..total {
            let n = (i as u64 + 1).to_be_bytes();
            let mut c = ctx(7, 0);
            c.span_id = n;
            export.export(finished(c, None));
        }
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        export.shutdown();
        let exported = *got.lock().unwrap();
        assert!(
            exported > 0,
            "the queued spans went out once the collector answered"
        );
        // The queue's spans, plus at most one batch (512) the export thread held.
        assert!(
            exported <= QUEUE + 512,
            "{exported} of {total} spans kept: the queue is not bounded"
        );
    }

    #[test]
    fn an_unsampled_trace_exports_nothing() {
        let rec = Recorder::default();
        let export = SpanExport::with_exporter(rec.clone(), "n-8");
        let mut parent = ctx(3, 4);
        parent.flags = 0;
        let mut child = ctx(3, 5);
        child.flags = 0;
        export.export(finished(child, Some(parent)));
        export.export(finished(ctx(3, 6), Some(ctx(3, 5))));
        export.flush();
        let spans = rec.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), 1, "only the sampled one");
        assert_eq!(spans[0].span_context.span_id(), SpanId::from_bytes([6; 8]));
        export.shutdown();
    }
}
