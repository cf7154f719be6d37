//! The admin HTTP server (axum): health, metrics, the tree as JSON, the dashboard page, and a
//! JSON API to spawn, restart, kill and stop actors and message them. Bound to loopback by default.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"status":"ok","node":NAME,"down":[]}`; 503 with `"status":"unhealthy"` and what is down |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/tree` | `{"node":NAME,"tree":{...}}` |
//! | GET | `/tree/all` | `{"nodes":[{"node":NAME,"tree":{...}}, ...]}` (every live node) |
//! | GET | `/cluster` | `{"nodes":[{"name","state","self","connected",...}]}` |
//! | GET | `/` | the dashboard: members, every node's tree with live figures, actor detail, KV / broker / registry / proxy panels, actions (one self-contained page; served without the token, which it asks for) |
//! | GET | `/api/factories` | factory names |
//! | POST | `/api/spawn` | `{"factory","name","args"?,"on"?}` → `{"name","actor_id","node"}` |
//! | POST | `/api/actors/{name}/tell` | body: any JSON → 202 |
//! | POST | `/api/actors/{name}/call?timeout_ms=N` | body: any JSON → the reply JSON |
//! | DELETE | `/api/actors/{name}` | stop a spawned actor on any node → `{"stopped":NAME,"node":NODE}` |
//! | POST | `/api/actors/{name}/restart` | restart a spawned actor on any node (its supervisor starts it again) → `{"restarted":NAME,"node":NODE}` |
//! | POST | `/api/actors/{name}/kill` | kill a spawned actor on any node (restarted as after a crash) → `{"killed":NAME,"node":NODE}` |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status. While a node built with
//! [`crate::NodeBuilder::services_pending`] is still starting its services, a path nobody serves
//! yet answers 503 with `Retry-After: 1` instead of 404.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::Request,
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{error::RuntimeError, node::Node};

#[cfg(test)]
mod fuzz_tests;

const PAGE: &str = include_str!("admin/dashboard.html");
/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn router(node: Node) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/tree", get(tree))
        .route("/tree/all", get(tree_all))
        .route("/cluster", get(cluster))
        .route("/api/factories", get(factories))
        .route("/api/spawn", post(spawn))
        .route("/api/actors/{name}/tell", post(tell))
        .route("/api/actors/{name}/call", post(call))
        .route("/api/actors/{name}", delete(stop))
        .route("/api/actors/{name}/restart", post(restart))
        .route("/api/actors/{name}/kill", post(kill))
        .fallback(extension)
        .layer(axum::middleware::from_fn_with_state(node.clone(), traced))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

struct ApiError(RuntimeError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        ApiError(e)
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(RuntimeError::BadJson(e.to_string())))
}

/// Routes added by other crates with [`Node::add_admin_routes`] (KV, registry, broker...).
async fn extension(State(node): State<Node>, req: Request) -> Response {
    use tower::ServiceExt;
    let path = req.uri().path().to_string();
    let resp = match node.extra_routes() {
        Some(router) => match router.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no such endpoint: {path}") })),
        )
            .into_response(),
    };
    if resp.status() == StatusCode::NOT_FOUND && node.is_starting() {
        // The service that will serve this path may not have mounted its routes yet: say so,
        // rather than a 404 a client would take as "this does not exist".
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({
                "error": format!("node is still starting: {path} is not served yet")
            })),
        )
            .into_response();
    }
    resp
}

/// Serve a request in its trace: the caller's `traceparent` (a child span of it) or a new
/// trace; the context is current while the request is handled (messages it sends carry it) and
/// goes back in the answer's `traceparent` header. Requests that act (anything but GET/HEAD) or
/// that came with a `traceparent` are logged at info level, in their span.
/// Those logged requests are the ones exported as spans when OTLP export is on.
async fn traced(State(node): State<Node>, req: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::TraceContext::parse);
    let ctx = parent.map_or_else(crate::TraceContext::new_root, |p| p.child());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "http",
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
        parent_span_id = %parent.map(|p| p.span_id_hex()).unwrap_or_default(),
        %method,
        %path,
    );
    let acting = method != axum::http::Method::GET && method != axum::http::Method::HEAD;
    let logged = acting || parent.is_some();
    if logged {
        span.in_scope(|| tracing::info!("admin request"));
    }
    let started = std::time::SystemTime::now();
    let mut resp = crate::trace::scope(ctx, next.run(req).instrument(span)).await;
    if let (true, Some(spans)) = (logged, &node.inner.spans) {
        use opentelemetry::KeyValue;
        let status = resp.status();
        spans.export(crate::otlp::Finished {
            name: "http",
            kind: opentelemetry::trace::SpanKind::Server,
            ctx,
            parent,
            start: started,
            attributes: vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.path", path),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ],
            error: status
                .is_server_error()
                .then(|| format!("HTTP {}", status.as_u16())),
        });
    }
    if let Ok(v) = header::HeaderValue::from_str(&ctx.to_string()) {
        resp.headers_mut().insert("traceparent", v);
    }
    resp
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health(State(node): State<Node>) -> Response {
    let health = node.health().await;
    let (status, word) = if health.is_healthy() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    (
        status,
        Json(json!({ "status": word, "node": health.node, "down": health.down })),
    )
        .into_response()
}

async fn stop(State(node): State<Node>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let on = node.stop(&name).await?;
    Ok(Json(json!({ "stopped": name, "node": on })))
}

async fn restart(
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let on = node.act(&name, crate::Action::Restart).await?;
    Ok(Json(json!({ "restarted": name, "node": on })))
}

async fn kill(State(node): State<Node>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let on = node.act(&name, crate::Action::Kill).await?;
    Ok(Json(json!({ "killed": name, "node": on })))
}

impl Node {
    /// The node's metrics as OpenMetrics text, as `GET /metrics` serves them (for a service that
    /// serves `/metrics` on its own HTTP port too).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("metrics-doc").without_admin().start().await.unwrap();
    /// assert!(node.metrics_text().await.contains("draft_actors_alive"));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn metrics_text(&self) -> String {
        let alive = match self.tree().await {
            Ok(t) => t.count_running(),
            Err(_) => 0,
        };
        self.inner.metrics.render(alive, &self.inner.stats)
    }
}

async fn metrics(State(node): State<Node>) -> Response {
    let text = node.metrics_text().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn tree(State(node): State<Node>) -> Result<Json<Value>, ApiError> {
    let tree = node.node_tree().await?;
    Ok(Json(serde_json::to_value(tree).unwrap_or(Value::Null)))
}

async fn tree_all(State(node): State<Node>) -> Result<Json<Value>, ApiError> {
    let trees = node.cluster_tree().await?;
    Ok(Json(json!({ "nodes": trees })))
}

async fn cluster(State(node): State<Node>) -> Json<Value> {
    Json(json!({ "node": node.name(), "nodes": node.members().await }))
}

async fn factories(State(node): State<Node>) -> Json<Value> {
    Json(json!({ "factories": node.factories() }))
}

#[derive(Deserialize)]
struct SpawnReq {
    factory: String,
    name: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    on: Option<String>,
}

async fn spawn(State(node): State<Node>, body: Bytes) -> Result<Response, ApiError> {
    let req: SpawnReq = serde_json::from_slice(&body).map_err(|e| {
        ApiError(RuntimeError::BadJson(format!(
            "spawn request must be {{\"factory\":..,\"name\":..,\"args\":..}}: {e}"
        )))
    })?;
    let target = req.on.unwrap_or_else(|| node.name().to_string());
    let actor_id = node
        .spawn_on(&target, &req.factory, &req.name, req.args)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": req.name, "actor_id": actor_id, "node": target })),
    )
        .into_response())
}

async fn tell(
    State(node): State<Node>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let payload = parse_json(&body)?;
    node.tell_json(&name, payload).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
struct CallQuery {
    timeout_ms: Option<u64>,
}

async fn call(
    State(node): State<Node>,
    Path(name): Path<String>,
    Query(q): Query<CallQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let payload = parse_json(&body)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(5000).clamp(1, 600_000));
    Ok(Json(node.call_json(&name, payload, timeout).await?))
}
