//! Serving the admin API with bounds on every connection (axum's `serve` has none):
//!
//! | bound | value | answer |
//! |---|---|---|
//! | request headers (and the wait for the next request on a kept-alive connection) | [`HEADER_TIMEOUT`] | connection closed |
//! | request body received in full | [`BODY_TIMEOUT`] | 408 |
//! | request body size | 1 MiB (`MAX_BODY`) | 413 |
//! | request target (path and query) | [`MAX_URI`] bytes | 414 |
//! | request headers, all together | [`MAX_HEADERS`] bytes | 431 |
//! | percent-encoded path or query that is not UTF-8 once decoded | | 400 |
//!
//! When the node has an admin token (always, when bound off loopback), a request without
//! `Authorization: Bearer TOKEN` is answered 401, except `GET /` (the dashboard page, which
//! holds no data and asks for the token).
//!
//! Every error answer (these, 404, 405, and extractor rejections such as a bad query string) is
//! `{"error": "..."}` JSON: a response with an error status and no JSON body is rewritten.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json, Router,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::oneshot};

/// Time a client has to send a request's headers (and, between requests, to start the next).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's whole body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request target.
pub(crate) const MAX_URI: usize = 8 * 1024;
/// Largest request header section.
pub(crate) const MAX_HEADERS: usize = 32 * 1024;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// `app` with the bounds, the JSON error shape and (given a token) the bearer check around it:
/// the service every admin connection is served by.
pub(crate) fn bounded(app: Router, token: Option<&str>) -> Router {
    let app = app.layer(axum::middleware::from_fn(bounds));
    match token {
        Some(t) => {
            let want = Arc::new(Sha256::digest(format!("Bearer {t}").as_bytes()));
            app.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let want = want.clone();
                    async move { authorized(&want, req, next).await }
                },
            ))
        }
        None => app,
    }
}

/// Serve `app` on `listener` until `stop` fires, then let open connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stop: oneshot::Receiver<()>,
    token: Option<String>,
) {
    let app = bounded(app, token.as_deref());
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin server: cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut closing = closing.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
}

/// Requests without the bearer token get 401 (compared as SHA-256 digests, so the time taken
/// says nothing about the token). The one exception is `GET /`, the dashboard page itself: a
/// static file with no data in it, which asks for the token and sends it with every request.
async fn authorized(want: &[u8], req: Request, next: Next) -> Response {
    if req.uri().path() == "/"
        && (req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD)
    {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| Sha256::digest(v.as_bytes()));
    match given {
        Some(g) if g.as_slice() == want => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong admin token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "this admin API requires 'Authorization: Bearer <token>' (the token is in the node's data directory, file admin-token)",
        ),
    }
}

fn decodes_to_utf8(s: &str) -> bool {
    percent_decode(s.as_bytes()).is_some_and(|b| String::from_utf8(b).is_ok())
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let (h, l) = (hex(*s.get(i + 1)?)?, hex(*s.get(i + 2)?)?);
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(if s[i] == b'+' { b' ' } else { s[i] });
            i += 1;
        }
    }
    Some(out)
}

/// The bounds and the JSON error shape, around every route.
async fn bounds(req: Request, next: Next) -> Response {
    let uri_len = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if uri_len > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("request target of {uri_len} bytes (limit {MAX_URI})"),
        );
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_len > MAX_HEADERS {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers of {header_len} bytes (limit {MAX_HEADERS})"),
        );
    }
    if !decodes_to_utf8(req.uri().path()) {
        return error(
            StatusCode::BAD_REQUEST,
            "the path is not UTF-8 once percent-decoded (or has a bad %-escape)",
        );
    }
    if let Some(q) = req.uri().query() {
        if !decodes_to_utf8(q) {
            return error(
                StatusCode::BAD_REQUEST,
                "the query string is not UTF-8 once percent-decoded (or has a bad %-escape)",
            );
        }
    }
    // The whole body within BODY_TIMEOUT and MAX_BODY (streaming responses are unaffected).
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, crate::admin::MAX_BODY),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = e.to_string().contains("length limit");
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {} bytes", crate::admin::MAX_BODY),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            };
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
            )
        }
    };
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    json_errors(resp).await
}

/// An error status without a JSON body becomes `{"error": ...}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let body = json!({ "error": msg }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_finds_invalid_utf8() {
        assert!(decodes_to_utf8("/kv/get"));
        assert!(decodes_to_utf8("key=caf%C3%A9&x=a+b"));
        assert!(!decodes_to_utf8("key=%FF"));
        assert!(!decodes_to_utf8("key=%F"));
        assert!(!decodes_to_utf8("key=%zz"));
    }
}
