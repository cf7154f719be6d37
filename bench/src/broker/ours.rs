//! Our side: three `dctl node start` processes, consumers on Server-Sent Events spread over
//! them, the producer POSTing CloudEvents to the first node (one event per request in latency
//! runs, batches of `batch` in throughput runs).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{
    seen::{event_json, Seen},
    BrokerConfig, Side,
};
use crate::procs::{cluster_view, http_client, sees_exactly, NodeSet};

/// A running 3-node cluster of ours with its consumers connected.
pub(super) struct Ours {
    /// Killed on drop.
    _set: NodeSet,
    client: reqwest::Client,
    url: String,
    seen: Arc<Seen>,
}

impl Ours {
    /// Start the nodes, wait until they see each other and serve the broker, connect the
    /// consumers and wait until the producer's node sees every consumer's interest.
    pub(super) async fn start(cfg: &BrokerConfig, dctl: &Path) -> anyhow::Result<Ours> {
        let mut set = NodeSet::new(dctl, "bench-broker")?;
        let a = set.spawn("b1", None)?;
        let seed = set.nodes[a].gossip.clone();
        set.spawn("b2", Some(&seed))?;
        set.spawn("b3", Some(&seed))?;
        let admins: Vec<String> = set.nodes.iter().map(|n| n.admin.clone()).collect();
        let client = http_client()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for admin in &admins {
            loop {
                set.check_running()?;
                let ok = matches!(cluster_view(&client, admin).await, Ok(m) if sees_exactly(&m, &["b1", "b2", "b3"]))
                    && client
                        .get(format!("http://{admin}/broker/channels"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the 3 nodes did not converge");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let seen = Seen::new(cfg.consumers);
        let sse = reqwest::Client::builder().no_proxy().build()?;
        for i in 0..cfg.consumers {
            let url = format!(
                "http://{}/broker/channels/bench/events?capacity=100000",
                admins[i % admins.len()]
            );
            let resp = sse.get(url).send().await?.error_for_status()?;
            tokio::spawn(consume(resp, i, seen.clone()));
        }
        let want = cfg.consumers as u64;
        loop {
            let total = interest(&client, &admins[0]).await?;
            if total == want {
                break;
            }
            if Instant::now() > deadline {
                bail!("consumers' interest not seen by the producer's node ({total} of {want})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Ours {
            _set: set,
            client,
            url: format!("http://{}/broker/channels/bench/events", admins[0]),
            seen,
        })
    }

    async fn post(&self, body: String, batch: bool) -> anyhow::Result<()> {
        let kind = if batch {
            "application/cloudevents-batch+json"
        } else {
            "application/cloudevents+json"
        };
        let r = self
            .client
            .post(&self.url)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .context("produce")?;
        if !r.status().is_success() {
            bail!("produce: HTTP {}", r.status());
        }
        Ok(())
    }
}

impl Side for Ours {
    fn seen(&self) -> &Seen {
        &self.seen
    }

    async fn publish_one(&mut self, i: u64, size: usize) -> anyhow::Result<()> {
        self.post(event_json(i, size), false).await
    }

    async fn publish_batch(&mut self, first: u64, n: u64, size: usize) -> anyhow::Result<()> {
        let evs: Vec<String> = (first..first + n).map(|i| event_json(i, size)).collect();
        self.post(format!("[{}]", evs.join(",")), true).await
    }
}

/// The consumers' interest in the `bench` channel that the node at `admin` knows of.
async fn interest(client: &reqwest::Client, admin: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = client
        .get(format!("http://{admin}/broker/channels"))
        .send()
        .await?
        .json()
        .await?;
    let nodes = v["channels"]["bench"]["nodes"].as_object();
    Ok(nodes.map_or(0, |m| m.values().filter_map(|i| i["b"].as_u64()).sum()))
}

/// Read one consumer's event stream until it ends.
async fn consume(mut resp: reqwest::Response, i: usize, seen: Arc<Seen>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        // Lines found with memchr, as the NATS client's BufReader::read_line does.
        while let Some(p) = memchr::memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + p];
            if let Some(data) = line.strip_prefix(b"data: ") {
                seen.record(i, std::str::from_utf8(data).unwrap_or(""));
            }
            start += p + 1;
        }
        buf.drain(..start);
    }
}
