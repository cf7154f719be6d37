//! A small client for a node's admin HTTP API.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

pub struct Client {
    base: String,
    admin: String,
    http: reqwest::Client,
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
            .connect_timeout(Duration::from_secs(3))
            .default_headers(headers)
            .build()
            .context("cannot build HTTP client")?;
        let admin = admin.trim_start_matches("http://").trim_end_matches('/');
        Ok(Client {
            base: format!("http://{admin}"),
            admin: admin.to_string(),
            http,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let (status, body) = self.send_raw(req).await?;
        if status.is_success() {
            Ok(body)
        } else {
            let msg = body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            Err(anyhow!(msg))
        }
    }

    /// Send a request; the answer's status and JSON body, whatever the status.
    async fn send_raw(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Value)> {
        let resp = req.send().await.map_err(|e| {
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
        })?;
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
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(30)),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(
            self.http
                .delete(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(30)),
        )
        .await
    }

    /// Follow a Server-Sent-Events stream, handing each event's data to `on_event` until it
    /// returns false or the stream ends.
    pub async fn sse(&self, path: &str, mut on_event: impl FnMut(&str) -> bool) -> Result<()> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    anyhow!("cannot reach the node's admin API at {}", self.admin)
                } else {
                    anyhow!("request to {} failed: {e}", self.admin)
                }
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(anyhow!(msg));
        }
        let mut resp = resp;
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
            .send_raw(
                self.http
                    .post(format!("{}{path}", self.base))
                    .header("content-type", "application/json")
                    .body(body)
                    .timeout(timeout),
            )
            .await?;
        Ok((status.as_u16(), body))
    }

    pub async fn post(&self, path: &str, body: String, timeout: Duration) -> Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body)
                .timeout(timeout),
        )
        .await
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
