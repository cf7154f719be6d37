//! A handled message as a span: the child of the trace context the message carried, current
//! while its handler runs, logged, and exported when OTLP export is on.

use std::fmt;

use crate::{
    otlp::{Finished, SpanExport},
    trace,
};

/// Handle a message in its trace: when the message just decoded on this thread carried a
/// context, run `work` as a child span of it (`message{trace_id, span_id, parent_span_id,
/// actor}`, one log line, current while `work` runs, exported to `spans` if on); otherwise just
/// run `work`. Call before the handler's first await.
pub(crate) async fn handle_received<T, E: fmt::Display>(
    spans: Option<&SpanExport>,
    actor: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;
    let Some(parent) = trace::take_received() else {
        return work.await;
    };
    let ctx = parent.child();
    let span = tracing::info_span!(
        "message",
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
        parent_span_id = %parent.span_id_hex(),
        actor = %actor,
    );
    span.in_scope(|| tracing::info!("handling a traced message"));
    let started = std::time::SystemTime::now();
    let outcome = trace::scope(ctx, work.instrument(span)).await;
    if let Some(spans) = spans {
        spans.export(Finished {
            name: "message",
            kind: opentelemetry::trace::SpanKind::Server,
            ctx,
            parent: Some(parent),
            start: started,
            attributes: vec![opentelemetry::KeyValue::new("actor", actor.to_string())],
            error: outcome.as_ref().err().map(|e| e.to_string()),
        });
    }
    outcome
}
