//! The HTTP client the workloads use against a node's admin API, and how an outcome maps to a
//! history record type.
//!
//! A request that could not even connect certainly had no effect (`fail`); one that timed out
//! or lost its connection after being sent may have (`info`); an HTTP answer is an answer.
//!
//! ```
//! use chaos::client::Outcome;
//! let o = Outcome::Status(409, "{}".into());
//! assert_eq!(o.status(), Some(409));
//! ```

use std::time::Duration;

use serde_json::Value;

/// How long a client waits for one answer (a KV write without a quorum fails on the server
/// within about 8 s; waiting less turns it into `info`, as a real client with a timeout would).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The result of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An HTTP answer: status and body.
    Status(u16, String),
    /// The connection could not be made: the request had no effect.
    Refused(String),
    /// Sent, but no answer (timeout, connection lost): unknown effect.
    Unknown(String),
}

impl Outcome {
    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Status(s, _) => Some(*s),
            _ => None,
        }
    }

    /// The body as JSON (`Null` when there is none or it is not JSON).
    pub fn json(&self) -> Value {
        match self {
            Outcome::Status(_, b) => serde_json::from_str(b).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// A one-line description for the history's `error` field.
    pub fn error(&self) -> String {
        match self {
            Outcome::Status(s, b) => {
                let v: Value = serde_json::from_str(b).unwrap_or(Value::Null);
                match v["error"].as_str() {
                    Some(e) => format!("{s}: {e}"),
                    None => format!("{s}: {}", b.chars().take(200).collect::<String>()),
                }
            }
            Outcome::Refused(e) => format!("refused: {e}"),
            Outcome::Unknown(e) => format!("no answer: {e}"),
        }
    }
}

/// A client of nodes' admin APIs.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    /// A client with [`REQUEST_TIMEOUT`] per request.
    pub fn new() -> anyhow::Result<Client> {
        Self::with_timeout(REQUEST_TIMEOUT)
    }

    /// A client that waits `timeout` per request (to see a node's own answer when the node
    /// takes [`REQUEST_TIMEOUT`] itself to give up, as a cut-off KV leader does).
    pub fn with_timeout(timeout: Duration) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(0)
                .build()?,
        })
    }

    /// The underlying reqwest client (for streams).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Outcome {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.text().await {
                    Ok(body) => Outcome::Status(status, body),
                    Err(e) => Outcome::Unknown(e.to_string()),
                }
            }
            Err(e) if e.is_connect() => Outcome::Refused(e.to_string()),
            Err(e) => Outcome::Unknown(e.to_string()),
        }
    }

    /// `GET http://{admin}{path}`.
    pub async fn get(&self, admin: &str, path: &str) -> Outcome {
        self.send(self.http.get(format!("http://{admin}{path}")))
            .await
    }

    /// `POST` a JSON body.
    pub async fn post_json(&self, admin: &str, path: &str, body: &Value) -> Outcome {
        self.send(self.http.post(format!("http://{admin}{path}")).json(body))
            .await
    }

    /// `PUT` with an empty body.
    pub async fn put(&self, admin: &str, path: &str) -> Outcome {
        self.send(self.http.put(format!("http://{admin}{path}")))
            .await
    }

    /// `DELETE`.
    pub async fn delete(&self, admin: &str, path: &str) -> Outcome {
        self.send(self.http.delete(format!("http://{admin}{path}")))
            .await
    }

    /// `POST` with headers and a raw body.
    pub async fn post_raw(
        &self,
        admin: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Outcome {
        let mut req = self.http.post(format!("http://{admin}{path}")).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.send(req).await
    }
}
