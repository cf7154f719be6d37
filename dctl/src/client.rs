//! The client of a node's admin HTTP API: every dctl request to a node goes through it, so the
//! token header (`DCTL_ADMIN_TOKEN`), the connect timeout and the error messages live here.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a connection attempt to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a plain (non-streaming) GET or DELETE may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    base: String,
    admin: String,
    http: reqwest::Client,
}

/// A node answered a request with a non-success status.
///
/// Its text is the node's `error` field, or `HTTP <status>` when the answer has none;
/// [`StatusError::body`] keeps the answer for commands that show more of it.
#[derive(Debug, thiserror::Error)]
#[error("{}", error_message(*status, error.as_deref()))]
pub struct StatusError {
    /// The answer's status.
    pub status: StatusCode,
    /// The answer's `error` field, when it is JSON with one.
    pub error: Option<String>,
    /// The answer's body, as text.
    pub body: String,
}

impl StatusError {
    /// The error for an answer with `status` and body `bytes`.
    pub fn new(status: StatusCode, bytes: &[u8]) -> Self {
        let error = serde_json::from_slice::<Value>(bytes)
            .ok()
            .as_ref()
            .and_then(error_field);
        StatusError {
            status,
            error,
            body: String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// A JSON answer's `error` field, when it is a string.
fn error_field(body: &Value) -> Option<String> {
    body.get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What a failed request says: the node's `error` text, or the status.
fn error_message(status: StatusCode, error: Option<&str>) -> String {
    match error {
        Some(e) => e.to_string(),
        None => format!("HTTP {status}"),
    }
}

/// The base URL of the admin API at `admin` (`HOST:PORT`, `http://HOST:PORT` or
/// `https://HOST:PORT`, a trailing `/` ignored), and the name error messages give it.
fn base_url(admin: &str) -> (String, String) {
    let admin = admin.trim_end_matches('/');
    if admin.starts_with("https://") {
        return (admin.to_string(), admin.to_string());
    }
    let admin = admin.trim_start_matches("http://");
    (format!("http://{admin}"), admin.to_string())
}

impl Client {
    pub fn new(admin: &str) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        // A node whose admin API is bound off loopback requires its token (`admin-token` in
        // its data directory).
        if let Ok(token) = std::env::var("DCTL_ADMIN_TOKEN") {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("DCTL_ADMIN_TOKEN is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers)
            .build()
            .context("cannot build HTTP client")?;
        let (base, admin) = base_url(admin);
        Ok(Client { base, admin, http })
    }

    /// A request to `path` (from `/`, with any query) on the node, with no overall timeout:
    /// add one for a request that is not a stream.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Send a request and hand back the answer to read (a stream, or JSON with the caller's
    /// own reading) when its status is a success; otherwise a [`StatusError`].
    pub async fn open(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        Err(StatusError::new(status, &bytes).into())
    }

    /// What a request that got no answer says.
    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(
                "cannot reach the node's admin API at {} (is a node running? start one with `dctl node start`)",
                self.admin
            )
        } else if e.is_timeout() {
            anyhow!("the node at {} did not answer in time", self.admin)
        } else {
            anyhow!("request to {} failed: {e}", self.admin)
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let (status, body) = self.send_raw(req).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(anyhow!(error_message(
                status,
                error_field(&body).as_deref()
            )))
        }
    }

    /// Send a request; the answer's status and JSON body, whatever the status.
    async fn send_raw(&self, req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {}", self.admin))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("the node at {} answered with non-JSON", self.admin))?
        };
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.request(Method::GET, path).timeout(REQUEST_TIMEOUT))
            .await
    }

    /// GET `path` and read the answer as a `T`.
    async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.get(path).await?;
        serde_json::from_value(body).with_context(|| {
            format!(
                "the node at {} answered {path} with an unexpected shape",
                self.admin
            )
        })
    }

    /// The cluster's members as the node sees them (`GET /cluster`).
    pub async fn members(&self) -> Result<Vec<runtime::Member>> {
        #[derive(serde::Deserialize)]
        struct Cluster {
            nodes: Vec<runtime::Member>,
        }
        Ok(self.get_as::<Cluster>("/cluster").await?.nodes)
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.request(Method::DELETE, path).timeout(REQUEST_TIMEOUT))
            .await
    }

    /// Follow a Server-Sent-Events stream, handing each event's data to `on_event` until it
    /// returns false or the stream ends.
    pub async fn sse(&self, path: &str, mut on_event: impl FnMut(&str) -> bool) -> Result<()> {
        let mut resp = self
            .open(
                self.request(Method::GET, path)
                    .header("accept", "text/event-stream"),
            )
            .await?;
        let mut buf = String::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow!("event stream from {} broke: {e}", self.admin))?
        {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() && !on_event(&data.join("\n")) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// POST, answering the HTTP status with the JSON body (errors only for transport failures).
    pub async fn post_status(
        &self,
        path: &str,
        body: String,
        timeout: Duration,
    ) -> Result<(u16, Value)> {
        let (status, body) = self
            .send_raw(self.json_post(path, body).timeout(timeout))
            .await?;
        Ok((status.as_u16(), body))
    }

    pub async fn post(&self, path: &str, body: String, timeout: Duration) -> Result<Value> {
        self.send(self.json_post(path, body).timeout(timeout)).await
    }

    fn json_post(&self, path: &str, body: String) -> reqwest::RequestBuilder {
        self.request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
    }

    /// The name error messages give the node (`HOST:PORT`).
    pub fn admin(&self) -> &str {
        &self.admin
    }
}

/// Percent-encode a path segment (actor names are restricted, but be safe).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_error_says_the_nodes_error_field() {
        let e = StatusError::new(StatusCode::CONFLICT, br#"{"error":"key exists"}"#);
        assert_eq!(e.to_string(), "key exists");
        assert_eq!(e.error.as_deref(), Some("key exists"));
        assert_eq!(e.body, r#"{"error":"key exists"}"#);
    }

    #[test]
    fn a_status_error_without_an_error_field_says_the_status() {
        let e = StatusError::new(StatusCode::SERVICE_UNAVAILABLE, br#"{"other":1}"#);
        assert_eq!(e.to_string(), "HTTP 503 Service Unavailable");
        assert_eq!(e.error, None);
    }

    #[test]
    fn a_status_error_with_a_non_json_body_keeps_the_text() {
        let e = StatusError::new(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.to_string(), "HTTP 502 Bad Gateway");
        assert_eq!(e.body, "upstream down");
        let e = StatusError::new(StatusCode::BAD_REQUEST, br#"{"error":42}"#);
        assert_eq!(e.to_string(), "HTTP 400 Bad Request", "a non-string error");
    }

    #[test]
    fn base_url_takes_host_port_or_a_url() {
        let plain = (
            "http://127.0.0.1:7000".to_string(),
            "127.0.0.1:7000".to_string(),
        );
        assert_eq!(base_url("127.0.0.1:7000"), plain);
        assert_eq!(base_url("http://127.0.0.1:7000/"), plain);
        assert_eq!(
            base_url("https://node.example:7000/"),
            (
                "https://node.example:7000".to_string(),
                "https://node.example:7000".to_string()
            )
        );
    }

    #[test]
    fn requests_go_to_the_path_under_the_base() {
        let c = Client::new("http://127.0.0.1:7000/").unwrap();
        let req = c
            .request(Method::GET, "/kv/watch?prefix=a%2Fb")
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:7000/kv/watch?prefix=a%2Fb"
        );
        assert_eq!(c.admin(), "127.0.0.1:7000");
    }
}
