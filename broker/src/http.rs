//! The CloudEvents HTTP binding on the admin server.
//!
//! - `POST /broker/channels/{channel}/events[?timeout_ms=N]`: produce. Binary mode (`ce-*`
//!   headers, the body is `data`, `Content-Type` is `datacontenttype`), structured mode
//!   (`Content-Type: application/cloudevents+json`) or batch mode
//!   (`application/cloudevents-batch+json`). Answers `{"accepted": n, "offsets": [...]}`, 400
//!   `{"error": reason}` for an invalid event, 503 when the request did not complete within
//!   `timeout_ms` (default [`DEFAULT_PRODUCE_TIMEOUT`]).
//! - `GET /broker/channels/{channel}/events?group=G&from=beginning|N&policy=block|drop&capacity=N&block_deadline_ms=N&count=N`:
//!   consume as Server-Sent Events: first `event: subscribed`, then one `data:` line per event
//!   (structured-mode JSON; `id:` is the log offset on durable channels), `event: lost` with
//!   `{"dropped": n}` when a drop-policy subscription lost events, and `event: closed` with
//!   `{"reason": ...}` (then the end of the stream) when a block-policy consumer took no event
//!   within its block deadline. `count=N` ends the stream after N events. Events that are ready
//!   together are written in one chunk; a `:` comment line is sent after a second without events.
//! - `PUT /broker/channels/{channel}/durable`: declare the channel durable (home: this node).
//! - `GET /broker/channels`: interest and durable homes as this node sees them; for durable
//!   channels homed here, `log_length` and the groups' `committed` offsets (or `refused` with
//!   the reason when the log is damaged).
//! - `GET /broker/groups`: every durable channel this node knows of, its head (log length) and
//!   its consumer groups' committed offsets and lag (`head - committed`), asked of each
//!   channel's home ([`Broker::durable_groups`]).
//! - `GET /broker/metrics`: Prometheus text.

use std::convert::Infallible;

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    broker::Broker,
    consume::{ConsumeOptions, Delivery, StartAt},
    error::{BrokerError, EventError},
    event::CloudEvent,
    subscription::Policy,
};

/// How long a produce request may take by default before it is answered 503.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest produce timeout a request may ask for.
pub const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn routes(broker: Broker) -> Router {
    Router::new()
        .route(
            "/broker/channels/{channel}/events",
            post(produce).get(consume),
        )
        .route("/broker/channels/{channel}/durable", put(declare))
        .route("/broker/channels", get(channels))
        .route("/broker/groups", get(groups))
        .route("/broker/metrics", get(metrics))
        .with_state(broker)
}

fn error(status: u16, msg: impl std::fmt::Display) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn broker_error(e: BrokerError) -> Response {
    error(e.status(), e)
}

#[derive(Debug, Deserialize)]
struct ProduceQuery {
    /// Answer 503 when the request has not completed after this long.
    timeout_ms: Option<u64>,
}

async fn produce(
    State(broker): State<Broker>,
    Path(channel): Path<String>,
    Query(q): Query<ProduceQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let timeout = q
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_PRODUCE_TIMEOUT)
        .min(MAX_PRODUCE_TIMEOUT);
    let mut events = match parse_events(&headers, &body) {
        Ok(evs) => evs,
        Err(e) => {
            broker.count_rejected();
            return error(400, e);
        }
    };
    // A traced request (it came with a W3C `traceparent`): its events carry the trace in the
    // CloudEvents distributed-tracing extension, unless their producer set one.
    if headers.contains_key("traceparent") {
        if let Some(ctx) = runtime::trace_context() {
            let tp = ctx.to_string();
            events = events
                .into_iter()
                .map(|e| e.with_extension_if_absent("traceparent", &tp))
                .collect();
        }
    }
    match broker.produce_batch_within(&channel, events, timeout).await {
        Ok(offsets) => {
            Json(json!({ "accepted": offsets.len(), "offsets": offsets })).into_response()
        }
        Err(e) => broker_error(e),
    }
}

/// Events from an HTTP request in any of the three modes.
pub fn parse_events(headers: &HeaderMap, body: &[u8]) -> Result<Vec<CloudEvent>, String> {
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = || std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string());
    if ctype.starts_with("application/cloudevents-batch+json") {
        let text = text()?.trim_matches(|c: char| c.is_ascii_whitespace());
        let not_json = |e: serde_json::Error| EventError::NotJson(e.to_string()).to_string();
        if !text.starts_with('[') {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
            return Err("a batch must be a JSON array of events".into());
        }
        // Each event is validated from its own text, which is kept as it is.
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(text).map_err(not_json)?;
        return items
            .into_iter()
            .enumerate()
            .map(|(i, v)| CloudEvent::from_json(v.get()).map_err(|e| format!("event {i}: {e}")))
            .collect();
    }
    if ctype.starts_with("application/cloudevents") {
        return CloudEvent::from_json(text()?)
            .map(|e| vec![e])
            .map_err(|e| e.to_string());
    }
    // Binary mode.
    let mut map = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| format!("header ce-{attr} is not text"))?;
        let value = percent_decode(value)
            .ok_or_else(|| format!("header ce-{attr} does not percent-decode to UTF-8"))?;
        map.insert(attr.to_string(), Value::String(value));
    }
    if map.is_empty() {
        return Err("no CloudEvent: binary mode needs ce-specversion, ce-id, ce-source and ce-type headers; structured mode needs Content-Type: application/cloudevents+json".into());
    }
    if !body.is_empty() {
        let base = ctype.split(';').next().unwrap_or("").trim().to_string();
        if !base.is_empty() {
            map.insert("datacontenttype".into(), Value::String(base.clone()));
        }
        let is_json = base.is_empty() || base == "application/json" || base.ends_with("+json");
        if is_json {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "body is not valid JSON (content type '{}'): {e}",
                    if base.is_empty() {
                        "application/json"
                    } else {
                        &base
                    }
                )
            })?;
            map.insert("data".into(), v);
        } else {
            match std::str::from_utf8(body) {
                Ok(t) if base.starts_with("text/") => {
                    map.insert("data".into(), Value::String(t.to_string()));
                }
                _ => {
                    map.insert("data_base64".into(), Value::String(base64(body)));
                }
            }
        }
    }
    CloudEvent::from_value(Value::Object(map))
        .map(|e| vec![e])
        .map_err(|e| format!("binary mode: {e}"))
}

/// A binary-mode `ce-` header value, percent-decoded (CloudEvents HTTP binding, 3.1.3.2);
/// a `%` not followed by two hex digits is kept as it is.
/// A binary-mode attribute header's value (percent-encoded UTF-8); `None` when the decoded
/// bytes are not UTF-8 (never replaced by U+FFFD).
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A binary-mode body that is not JSON or text, for `data_base64`.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Debug, Deserialize)]
struct ConsumeQuery {
    group: Option<String>,
    from: Option<String>,
    policy: Option<String>,
    capacity: Option<usize>,
    /// Block policy: cut the consumer off after this long without it taking an event.
    block_deadline_ms: Option<u64>,
    /// End the stream after this many events.
    count: Option<u64>,
}

async fn consume(
    State(broker): State<Broker>,
    Path(channel): Path<String>,
    Query(q): Query<ConsumeQuery>,
) -> Response {
    let mut opts = ConsumeOptions::default();
    if let Some(g) = q.group.filter(|g| !g.is_empty()) {
        opts = opts.group(g);
    }
    if let Some(p) = q.policy {
        match p.parse::<Policy>() {
            Ok(p) => opts = opts.policy(p),
            Err(e) => return broker_error(e),
        }
    }
    if let Some(c) = q.capacity {
        opts = opts.capacity(c);
    }
    if let Some(ms) = q.block_deadline_ms {
        opts = opts.block_deadline(Duration::from_millis(ms));
    }
    if let Some(f) = q.from {
        match f.parse::<StartAt>() {
            Ok(s) => opts = opts.from(s),
            Err(e) => return broker_error(e),
        }
    }
    let sub = match broker.consume(&channel, opts).await {
        Ok(s) => s,
        Err(e) => return broker_error(e),
    };
    // Stop after `count` events without taking (or committing) one more.
    let limited = futures::stream::unfold((sub, q.count), |(mut sub, left)| async move {
        if left == Some(0) {
            return None;
        }
        let d = sub.next().await?;
        let left = match (&d, left) {
            (Delivery::Event { .. }, Some(n)) => Some(n - 1),
            (_, l) => l,
        };
        Some((d, (sub, left)))
    });
    sse_response(limited)
}

/// Events that are ready together go out in one body chunk.
const SSE_CHUNK: usize = 256;
/// A comment line is sent after this long without events (keeps proxies and clients informed).
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// A Server-Sent Events response: `event: subscribed` first, then one event per delivery.
/// Deliveries that are ready at the same time are written as one chunk, and a `:` comment is
/// sent after a second without any.
fn sse_response(deliveries: impl Stream<Item = Delivery> + Send + 'static) -> Response {
    let chunks = Box::pin(deliveries.ready_chunks(SSE_CHUNK));
    let first = Bytes::from_static(b"event: subscribed\ndata: {}\n\n");
    let body = futures::stream::unfold((Some(first), chunks), |(first, mut chunks)| async move {
        if let Some(f) = first {
            return Some((Ok::<_, Infallible>(f), (None, chunks)));
        }
        match tokio::time::timeout(SSE_KEEP_ALIVE, chunks.next()).await {
            Err(_) => Some((Ok(Bytes::from_static(b":\n\n")), (None, chunks))),
            Ok(None) => None,
            Ok(Some(batch)) => {
                let mut out = Vec::with_capacity(batch.len() * 512);
                for d in &batch {
                    sse_event(&mut out, d);
                }
                Some((Ok(Bytes::from(out)), (None, chunks)))
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Append one delivery in the SSE format: `id:` (log offset), `event:` and `data:` lines.
fn sse_event(out: &mut Vec<u8>, d: &Delivery) {
    let lost;
    let data = match d {
        Delivery::Event { event, offset } => {
            if let Some(o) = offset {
                out.extend_from_slice(format!("id: {o}\n").as_bytes());
            }
            event.as_json()
        }
        Delivery::Lost(n) => {
            out.extend_from_slice(b"event: lost\n");
            lost = json!({ "dropped": n }).to_string();
            &lost
        }
        Delivery::Closed(reason) => {
            out.extend_from_slice(b"event: closed\n");
            lost = json!({ "reason": reason }).to_string();
            &lost
        }
    };
    // Event JSON is one line; should a line break ever appear, each line gets its own `data:`.
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

async fn declare(State(broker): State<Broker>, Path(channel): Path<String>) -> Response {
    match broker.declare_durable(&channel).await {
        Ok(home) => {
            Json(json!({ "channel": channel, "durable": true, "home": home })).into_response()
        }
        Err(e) => broker_error(e),
    }
}

async fn channels(State(broker): State<Broker>) -> Response {
    Json(broker.channels().await).into_response()
}

async fn groups(State(broker): State<Broker>) -> Response {
    Json(broker.durable_groups().await).into_response()
}

async fn metrics(State(broker): State<Broker>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        broker.metrics_text(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_percent() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(percent_decode("a%20b%").as_deref(), Some("a b%"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("a%FFb"), None);
    }

    #[test]
    fn binary_mode() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-id", "1".parse().unwrap());
        h.insert("ce-source", "s".parse().unwrap());
        h.insert("ce-type", "t".parse().unwrap());
        h.insert("ce-traceparent", "x".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let evs = parse_events(&h, br#"{"a":1}"#).unwrap();
        assert_eq!(evs[0].data(), Some(json!({"a": 1})));
        assert_eq!(evs[0].attr("traceparent").as_deref(), Some("x"));
        let err = parse_events(&h, b"not json").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        h.insert("ce-subject", "caf%E9".parse().unwrap());
        let err = parse_events(&h, b"{}").unwrap_err();
        assert!(
            err.contains("ce-subject does not percent-decode to UTF-8"),
            "{err}"
        );
        h.remove("ce-subject");
        h.remove("ce-id");
        let err = parse_events(&h, b"{}").unwrap_err();
        assert!(err.contains("'id' is missing"), "{err}");
    }
}
