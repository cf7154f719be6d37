//! The service's own HTTP port: the user's router plus `/health/live`, `/health/ready`,
//! `/metrics` and `/service`, counted per request, drained on shutdown.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use crate::service::shared::Shared;

/// Request counters of the service's HTTP port.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    pub(crate) requests: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Set when the port is draining.
    pub(crate) draining: AtomicBool,
}

/// The user's router with the chassis's routes and request accounting.
pub(crate) fn router(user: Router, shared: Arc<Shared>) -> Router {
    let ours = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/service", get(service))
        .with_state(shared.clone());
    user.merge(ours)
        .layer(axum::middleware::from_fn_with_state(shared, count))
}

async fn count(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let stats = &shared.http;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("http", service = %shared.name, method = %req.method(), path = %req.uri().path());
    let res = tracing::Instrument::instrument(next.run(req), span).await;
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    if res.status().is_server_error() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

async fn live(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_live() {
        Json(json!({"live": true, "service": shared.name})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"live": false, "service": shared.name})),
        )
            .into_response()
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let r = shared.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn service(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(shared.describe())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = shared.node.metrics_text().await;
    // The node's text already carries the chassis's families (added as a metrics source).
    if !text.ends_with("# EOF\n") {
        text.push_str("# EOF\n");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The chassis's metric families, labelled with the service's name (OpenMetrics text).
pub(crate) fn metrics_text(shared: &Shared) -> String {
    let l = format!("{{service=\"{}\"}}", shared.name);
    let s = &shared.http;
    let cfg = shared.config_status();
    let (applied, rejected) = cfg.map(|c| (c.applied, c.rejected)).unwrap_or((0, 0));
    let ready = u64::from(shared.readiness().ready);
    format!(
        "# HELP chassis_http_requests HTTP requests the service received.\n# TYPE chassis_http_requests counter\nchassis_http_requests_total{l} {}\n\
         # HELP chassis_http_errors HTTP requests answered 5xx.\n# TYPE chassis_http_errors counter\nchassis_http_errors_total{l} {}\n\
         # HELP chassis_http_in_flight HTTP requests being served.\n# TYPE chassis_http_in_flight gauge\nchassis_http_in_flight{l} {}\n\
         # HELP chassis_ready Whether the instance is ready (1) or not (0).\n# TYPE chassis_ready gauge\nchassis_ready{l} {ready}\n\
         # HELP chassis_config_applied Configuration values applied.\n# TYPE chassis_config_applied counter\nchassis_config_applied_total{l} {applied}\n\
         # HELP chassis_config_rejected Configuration values refused (the old one kept).\n# TYPE chassis_config_rejected counter\nchassis_config_rejected_total{l} {rejected}\n",
        s.requests.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed),
        s.in_flight.load(Ordering::Relaxed),
    )
}
