//! Admin HTTP routes of the registry (served by the node's admin server).
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/registry/services` | body: a [`Registration`] → 201 the [`Instance`]; 413 when the instance would pass [`super::MAX_INSTANCE_BYTES`] |
//! | GET | `/registry/services[?service=NAME]` | `{"instances":[...]}` |
//! | DELETE | `/registry/services/{service}/{id}` | 204; 404 if not registered on this node |
//! | GET | `/registry/watch[?service=NAME]` | Server-Sent Events, one [`WatchEvent`] JSON per event |

use std::convert::Infallible;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{delete, get},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use super::{Registration, Registry, RegistryError};

struct ApiError(RegistryError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError(e)
    }
}

/// The registry's admin routes.
pub fn routes(registry: Registry) -> Router {
    Router::new()
        .route("/registry/services", get(list).post(register))
        .route("/registry/services/{service}/{id}", delete(deregister))
        .route("/registry/watch", get(watch))
        .with_state(registry)
}

#[derive(Deserialize)]
struct Filter {
    service: Option<String>,
}

async fn register(State(reg): State<Registry>, body: Bytes) -> Result<Response, ApiError> {
    let r: Registration = serde_json::from_slice(&body).map_err(|e| {
        RegistryError::Invalid(format!(
            "body must be {{\"service\":..,\"address\":\"HOST:PORT\",\"metadata\":{{..}}}}: {e}"
        ))
    })?;
    let instance = reg.register(r).await?;
    Ok((StatusCode::CREATED, Json(instance)).into_response())
}

async fn list(State(reg): State<Registry>, Query(f): Query<Filter>) -> Result<Response, ApiError> {
    let instances = match f.service {
        Some(s) => reg.resolve(&s).await?,
        None => reg.list().await?,
    };
    Ok(Json(json!({ "instances": instances })).into_response())
}

async fn deregister(
    State(reg): State<Registry>,
    Path((service, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    reg.deregister(&service, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn watch(State(reg): State<Registry>, Query(f): Query<Filter>) -> Result<Response, ApiError> {
    let rx = reg.watch(f.service).await?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let data = serde_json::to_string(&e).unwrap_or_default();
        Some((Ok::<_, Infallible>(Event::default().data(data)), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
