//! Admin HTTP routes of the proxy controller (served by the node's admin server).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/proxy/routes` | `{"routes":[...],"invalid":[[key,reason]...],"revision":R}` |
//! | POST | `/proxy/routes` | body: a [`Route`] → 201 the route; 400 invalid, 409 name taken |
//! | GET | `/proxy/routes/{name}` | the route; 404 |
//! | DELETE | `/proxy/routes/{name}` | 204; 404 |
//! | GET | `/proxy/snapshot` | the current snapshot's versions and resource names per type |
//! | GET | `/proxy/status` | the xDS server: its address, every connected Envoy (node id, per type the version sent and ACKed, NACKs), the last NACKs |

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use crate::{snapshot::SnapshotCell, xds::status::XdsStatus, ProxyError, Route, RouteTable};

struct ApiError(ProxyError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        ApiError(e)
    }
}

#[derive(Clone)]
struct Ctx {
    node: String,
    snapshot: SnapshotCell,
    status: XdsStatus,
    xds_addr: std::net::SocketAddr,
}

impl Ctx {
    fn table(&self) -> Result<RouteTable, ApiError> {
        Ok(RouteTable::of_node(&self.node)?)
    }
}

/// The proxy controller's admin routes for the node named `node`.
pub fn routes(
    node: &str,
    snapshot: SnapshotCell,
    status: XdsStatus,
    xds_addr: std::net::SocketAddr,
) -> Router {
    Router::new()
        .route("/proxy/routes", get(list).post(add))
        .route("/proxy/routes/{name}", get(one).delete(remove))
        .route("/proxy/snapshot", get(snapshot_summary))
        .route("/proxy/status", get(xds_status))
        .with_state(Ctx {
            node: node.to_string(),
            snapshot,
            status,
            xds_addr,
        })
}

async fn list(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    Ok(Json(ctx.table()?.list().await?).into_response())
}

async fn add(State(ctx): State<Ctx>, body: Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ProxyError::Invalid("the body is not UTF-8".into()))?;
    let r = Route::from_json(text)?;
    let r = ctx.table()?.add(r).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

async fn one(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(ctx.table()?.get(&name).await?).into_response())
}

async fn remove(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    ctx.table()?.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_summary(State(ctx): State<Ctx>) -> Response {
    Json(ctx.snapshot.get().summary()).into_response()
}

async fn xds_status(State(ctx): State<Ctx>) -> Response {
    let mut v = ctx.status.json();
    v["node"] = json!(ctx.node);
    v["xds_addr"] = json!(ctx.xds_addr.to_string());
    Json(v).into_response()
}
