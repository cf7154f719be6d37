//! `dctl events ...`: produce and consume CloudEvents through a node's broker (HTTP binding).

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{encode, Client, StatusError};

/// `dctl events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Publish one CloudEvent (or a file of them) on a channel.
    Produce {
        /// Channel name.
        channel: String,
        /// Event `type`.
        #[arg(long = "type", required_unless_present = "file")]
        ty: Option<String>,
        /// Event `source`.
        #[arg(long, required_unless_present = "file")]
        source: Option<String>,
        /// Event `data` as JSON.
        #[arg(long, default_value = "null")]
        data: String,
        /// Event `id` (default: a fresh unique id).
        #[arg(long)]
        id: Option<String>,
        /// A structured-mode CloudEvent JSON file (or a JSON array of them: a batch); `-` reads
        /// standard input.
        #[arg(long, conflicts_with_all = ["ty", "source", "id"])]
        file: Option<String>,
        /// The node answers 503 if the events are not handed on within this many ms (a
        /// block-policy consumer holding producers back); default 15000.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Print a channel's events, one JSON event per line.
    Consume {
        /// Channel name.
        channel: String,
        /// Join this queue group (members share the events).
        #[arg(long)]
        group: Option<String>,
        /// Durable channels: start at `beginning` or at an offset.
        #[arg(long)]
        from: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// When the buffer is full: `block` the producer or `drop` the oldest.
        #[arg(long, default_value = "block")]
        policy: String,
        /// Buffer size in events.
        #[arg(long, default_value_t = 1024)]
        capacity: usize,
        /// Block policy: the node cuts this consumer off when it takes no event for this many
        /// ms while its buffer is full (default 10000, at most 600000).
        #[arg(long)]
        block_deadline_ms: Option<u64>,
    },
    /// Declare a channel durable (its events are kept in a log on disk on this node).
    Durable {
        /// Channel name.
        channel: String,
    },
    /// Channels with consumers (per node) and durable channels, as this node sees them.
    Channels,
}

/// A node's refusal as `dctl events` words it: the node's `error` text (or its whole answer)
/// and the status code.
fn refusal(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<StatusError>() {
        Ok(s) => anyhow!("{} (HTTP {})", s.error.unwrap_or(s.body), s.status.as_u16()),
        Err(e) => e,
    }
}

/// Run a `dctl events` command against the node at `admin`.
pub async fn run(admin: &str, json_out: bool, cmd: EventsCmd) -> Result<()> {
    let client = Client::new(admin)?;
    match cmd {
        EventsCmd::Produce {
            channel,
            ty,
            source,
            data,
            id,
            file,
            timeout_ms,
        } => {
            let (ctype, body) = match file {
                Some(path) => {
                    let text = if path == "-" {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                            .context("cannot read standard input")?;
                        s
                    } else {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {path}"))?
                    };
                    let v: Value = serde_json::from_str(&text)
                        .map_err(|e| anyhow!("{path} is not valid JSON: {e}"))?;
                    let ctype = if v.is_array() {
                        "application/cloudevents-batch+json"
                    } else {
                        "application/cloudevents+json"
                    };
                    (ctype, v.to_string())
                }
                None => {
                    let data: Value = serde_json::from_str(&data)
                        .map_err(|e| anyhow!("--data is not valid JSON: {e}"))?;
                    let mut ev = json!({
                        "specversion": "1.0",
                        "id": id.unwrap_or_else(broker::fresh_id),
                        "source": source.unwrap_or_default(),
                        "type": ty.unwrap_or_default(),
                    });
                    if !data.is_null() {
                        ev["datacontenttype"] = json!("application/json");
                        ev["data"] = data;
                    }
                    ("application/cloudevents+json", ev.to_string())
                }
            };
            let req = client
                .request(
                    Method::POST,
                    &format!("/broker/channels/{}/events", encode(&channel)),
                )
                .query(
                    &timeout_ms
                        .map(|t| vec![("timeout_ms", t)])
                        .unwrap_or_default(),
                )
                .header("content-type", ctype)
                .body(body);
            let out: Value = client.open(req).await.map_err(refusal)?.json().await?;
            if json_out {
                println!("{out}");
            } else {
                let n = out["accepted"].as_u64().unwrap_or(0);
                let offsets: Vec<String> = out["offsets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(|o| o.to_string())
                    .collect();
                if offsets.is_empty() {
                    println!("produced {n} event(s) on {channel}");
                } else {
                    println!(
                        "produced {n} event(s) on {channel} at offset(s) {}",
                        offsets.join(",")
                    );
                }
            }
            Ok(())
        }
        EventsCmd::Consume {
            channel,
            group,
            from,
            count,
            policy,
            capacity,
            block_deadline_ms,
        } => {
            let mut q: Vec<(&str, String)> =
                vec![("policy", policy), ("capacity", capacity.to_string())];
            if let Some(g) = group {
                q.push(("group", g));
            }
            if let Some(f) = from {
                q.push(("from", f));
            }
            if let Some(ms) = block_deadline_ms {
                q.push(("block_deadline_ms", ms.to_string()));
            }
            if let Some(c) = count {
                // The node then hands out (and, for a durable group, commits) no more than this.
                q.push(("count", c.to_string()));
            }
            let req = client
                .request(
                    Method::GET,
                    &format!("/broker/channels/{}/events", encode(&channel)),
                )
                .query(&q);
            let mut resp = client.open(req).await.map_err(refusal)?;
            consume_sse(&mut resp, count).await
        }
        EventsCmd::Durable { channel } => {
            let req = client.request(
                Method::PUT,
                &format!("/broker/channels/{}/durable", encode(&channel)),
            );
            let out: Value = client.open(req).await.map_err(refusal)?.json().await?;
            if json_out {
                println!("{out}");
            } else {
                println!(
                    "channel {channel} is durable (log on node {})",
                    out["home"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        EventsCmd::Channels => {
            let req = client.request(Method::GET, "/broker/channels");
            let out: Value = client.open(req).await.map_err(refusal)?.json().await?;
            if json_out {
                println!("{out}");
            } else {
                let chans = out["channels"].as_object().cloned().unwrap_or_default();
                if chans.is_empty() {
                    println!("no channels");
                }
                for (name, c) in chans {
                    let home = c["durable_home"]
                        .as_str()
                        .map(|h| format!(" (durable, log on {h})"))
                        .unwrap_or_default();
                    println!("{name}{home}");
                    for (node, i) in c["nodes"].as_object().cloned().unwrap_or_default() {
                        println!("  {node}: {} broadcast, groups {}", i["b"], i["g"]);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Read Server-Sent Events, printing each event's data as one line.
async fn consume_sse(resp: &mut reqwest::Response, count: Option<u64>) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0u64;
    let (mut event, mut data) = (String::new(), String::new());
    if count == Some(0) {
        return Ok(());
    }
    let stdout = std::io::stdout();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| anyhow!("the event stream failed: {e}"))?;
        let Some(chunk) = chunk else {
            bail!("the node closed the event stream");
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match event.as_str() {
                    "" | "message" if !data.is_empty() => {
                        let mut out = stdout.lock();
                        writeln!(out, "{data}").context("cannot write to stdout")?;
                        out.flush().context("cannot write to stdout")?;
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            return Ok(());
                        }
                    }
                    "lost" => {
                        let n = serde_json::from_str::<Value>(&data)
                            .ok()
                            .and_then(|v| v["dropped"].as_u64())
                            .unwrap_or(0);
                        eprintln!("warning: {n} event(s) dropped (consumer too slow)");
                    }
                    "closed" => {
                        let reason = serde_json::from_str::<Value>(&data)
                            .ok()
                            .and_then(|v| v["reason"].as_str().map(str::to_string))
                            .unwrap_or(data.clone());
                        bail!("the node ended the subscription: {reason}");
                    }
                    _ => {}
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn a_refusal_gives_the_nodes_error_and_the_status_code() {
        let e = StatusError::new(
            StatusCode::BAD_REQUEST,
            br#"{"error":"required attribute 'id' is missing"}"#,
        );
        assert_eq!(
            refusal(e.into()).to_string(),
            "required attribute 'id' is missing (HTTP 400)"
        );
    }

    #[test]
    fn a_refusal_without_an_error_field_gives_the_whole_answer() {
        let e = StatusError::new(StatusCode::SERVICE_UNAVAILABLE, b"busy");
        assert_eq!(refusal(e.into()).to_string(), "busy (HTTP 503)");
    }

    #[test]
    fn other_errors_pass_unchanged() {
        assert_eq!(refusal(anyhow!("no route")).to_string(), "no route");
    }
}
