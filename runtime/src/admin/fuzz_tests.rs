//! Fuzz target of the admin HTTP API (run with the unit tests; see the `fuzz` crate for long
//! runs): arbitrary requests (method, request target, headers, body) through the router with
//! the same bounds and token check as a served connection, on a running node.
//!
//! An input is `METHOD SP TARGET LF (NAME ":" VALUE LF)* LF BODY`. Requests hyper would refuse
//! before they reach the router (a method or target that does not parse) are skipped; a header
//! line that is not a valid header is dropped.

use std::{sync::OnceLock, time::Duration};

use axum::{
    body::Body,
    http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Uri},
    Router,
};
use tower::ServiceExt;

use crate::node::Node;

const TOKEN: &str = "fuzz-admin-token";

/// The node (with its runtime, which must outlive it) every input is sent to.
fn app() -> &'static (tokio::runtime::Runtime, Node, Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, Node, Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let node = rt
            .block_on(
                Node::builder()
                    .name("fuzz-admin")
                    .cookie("fuzz-cookie")
                    .data_dir(dir)
                    .without_admin()
                    .max_actors(32)
                    .start(),
            )
            .expect("node");
        let router = crate::admin_serve::bounded(crate::admin::router(node.clone()), Some(TOKEN));
        (rt, node, router)
    })
}

/// The request an input describes, if hyper would hand it to the router.
fn request(b: &[u8]) -> Option<Request<Body>> {
    let line_end = b.iter().position(|c| *c == b'\n').unwrap_or(b.len());
    let (line, mut rest) = (&b[..line_end], b.get(line_end + 1..).unwrap_or_default());
    let sp = line.iter().position(|c| *c == b' ')?;
    let method = Method::from_bytes(&line[..sp]).ok()?;
    let uri = Uri::try_from(&line[sp + 1..]).ok()?;
    // hyper's server gets an origin-form target: a path, with a query perhaps.
    uri.path_and_query()?;
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return None;
    }
    let mut req = Request::builder().method(method).uri(uri);
    loop {
        let end = rest.iter().position(|c| *c == b'\n').unwrap_or(rest.len());
        let h = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if h.is_empty() {
            break;
        }
        if let Some(colon) = h.iter().position(|c| *c == b':') {
            let value = h[colon + 1..].strip_prefix(b" ").unwrap_or(&h[colon + 1..]);
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&h[..colon]),
                HeaderValue::from_bytes(value),
            ) {
                req = req.header(n, v);
            }
        }
    }
    req.body(Body::from(rest.to_vec())).ok()
}

fn seeds() -> Vec<Vec<u8>> {
    let auth = format!("authorization: Bearer {TOKEN}\n");
    let with = |line: &str, body: &str| format!("{line}\n{auth}\n{body}").into_bytes();
    vec![
        with("GET /health", ""),
        with("GET /metrics", ""),
        with("GET /tree", ""),
        with("GET /tree/all", ""),
        with("GET /cluster", ""),
        with("GET /api/factories", ""),
        with(
            "POST /api/spawn",
            r#"{"factory":"echo","name":"e1","args":null}"#,
        ),
        with("POST /api/actors/e1/tell", r#"{"x":1}"#),
        with("POST /api/actors/e1/call?timeout_ms=1000", r#"{"x":[1,2]}"#),
        with("POST /api/actors/e1/restart", ""),
        with("POST /api/actors/e1/kill", ""),
        with("DELETE /api/actors/e1", ""),
        with("GET /api/actors/caf%C3%A9/call?timeout_ms=x", ""),
        with("GET /no/such/path?k=%FF", ""),
        b"GET /\n\n".to_vec(),
        b"GET /health\n\n".to_vec(),
        b"POST /api/spawn\nauthorization: Bearer wrong\ncontent-type: application/json\n\n{}"
            .to_vec(),
    ]
}

/// Whatever the request: the router answers (within a deadline) and never panics; every error
/// answer is `{"error": "..."}` JSON with a 4xx status, or one of the three 5xx answers the API
/// documents for a request that was well-formed: 503 when the node's actor limit refuses a
/// spawn or a tell finds the actor stopped (crashed by an earlier input, being restarted), 504 when a call's actor did not answer within the caller's `timeout_ms`, 502 when it
/// stopped before answering (the echo actor crashes when asked to, `{"crash": true}`).
#[test]
fn fuzz_admin_router() {
    let (rt, _node, router) = app();
    fuzz::Target::new("admin_router")
        .seeds(seeds())
        .dict([
            "GET ",
            "POST ",
            "DELETE ",
            "HEAD ",
            "PUT ",
            "OPTIONS ",
            "/api/actors/",
            "/api/spawn",
            "/tell",
            "/call",
            "/kill",
            "/restart",
            "?timeout_ms=",
            "%FF",
            "%C3%A9",
            "%2F",
            "\n",
            "authorization: Bearer fuzz-admin-token\n",
            "content-type: application/json\n",
            "content-length: 99999999\n",
            "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
            "\"factory\"",
            "\"echo\"",
            "\"name\"",
            "\"args\"",
            "\"on\"",
        ])
        .run(|b| {
            let Some(req) = request(b) else {
                return;
            };
            // The echo actor sleeps when asked to (up to 60 s): a documented wait, not a hang.
            if memchr::memmem::find(b, b"sleep_ms").is_some() {
                return;
            }
            let head = req.method() == Method::HEAD;
            let path = req.uri().path().to_string();
            let resp = rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), router.clone().oneshot(req)).await
                })
                .expect("the admin API answered within 30 s")
                .unwrap_or_else(|never| match never {});
            let status = resp.status();
            if !(status.is_client_error() || status.is_server_error()) {
                return;
            }
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = rt
                .block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
                .expect("an error body of less than 1 MiB");
            assert!(
                content_type.starts_with("application/json"),
                "{status} on {path} answered as {content_type:?}"
            );
            // (an answer to HEAD has no body: its status and headers are checked)
            let error = if head {
                String::new()
            } else {
                let error = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_string));
                match error.filter(|e| !e.is_empty()) {
                    Some(e) => e,
                    None => panic!(
                        "{status} on {path} without an error message: {:?}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            };
            let call = path.ends_with("/call");
            let documented_5xx = (status == StatusCode::SERVICE_UNAVAILABLE
                && path == "/api/spawn"
                && (head || error.contains("actor limit")))
                || (status == StatusCode::SERVICE_UNAVAILABLE
                    && path.ends_with("/tell")
                    && (head || error.contains("is not running")))
                || (status == StatusCode::GATEWAY_TIMEOUT && call)
                || (status == StatusCode::BAD_GATEWAY
                    && call
                    && (head || error.contains("stopped before replying")));
            assert!(
                status.is_client_error() || documented_5xx,
                "{status} on {path}: {error}"
            );
        });
}
