//! `dctl kv ...`: the KV store's client commands, and the node flags that configure it.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use runtime::Node;
use serde_json::{json, Value};

use crate::client::Client;

/// KV flags of `dctl node start`.
#[derive(Debug, Args, Clone)]
pub struct KvNodeArgs {
    /// A KV (Raft) voter, by node name; repeat for each voter and give the same list to every
    /// node. Nodes not in the list forward to the leader. Default: this node alone.
    #[arg(long = "kv-voter")]
    pub kv_voters: Vec<String>,
    /// Snapshot the KV state and compact the log every this many log entries.
    #[arg(long = "kv-snapshot-every", default_value_t = 10_000)]
    pub kv_snapshot_every: u64,
    /// Join the KV store as a learner (a non-voting full replica): the leader adds this node,
    /// which then serves serializable reads and watches from its own copy and forwards writes.
    /// Needs the voters (`--kv-voter`), and this node must not be one of them.
    #[arg(long = "kv-learner")]
    pub kv_learner: bool,
}

/// Start the KV store on a node (called from `services::start`).
pub async fn start(node: &Node, args: &KvNodeArgs) -> Result<()> {
    let cfg = registry::kv::KvConfig {
        voters: args.kv_voters.clone(),
        learner: args.kv_learner,
        snapshot_every: args.kv_snapshot_every,
        ..Default::default()
    };
    registry::kv::start(node, cfg)
        .await
        .context("cannot start the KV store")?;
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Set a key (`--ttl SECS`: the key vanishes after that, unless rewritten).
    Put {
        key: String,
        value: String,
        /// Time to live in seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Print a key's value (a missing key is an error).
    Get {
        key: String,
        /// Read the answering node's copy instead of a linearizable read through the leader.
        #[arg(long)]
        serializable: bool,
    },
    /// Delete a key.
    Del { key: String },
    /// List the keys under a prefix (all keys when omitted).
    Ls {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Compare-and-swap: set KEY to NEW only if its value is OLD (or as the other --expect* say).
    Cas {
        key: String,
        /// The value the key must have.
        #[arg(long, conflicts_with_all = ["expect_absent", "expect_revision"])]
        expect: Option<String>,
        /// The key must not exist.
        #[arg(long)]
        expect_absent: bool,
        /// The key's mod_revision must be this.
        #[arg(long, conflicts_with = "expect_absent")]
        expect_revision: Option<u64>,
        /// The new value.
        new: String,
    },
    /// Print every change under a prefix, in order, as it happens.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// Start from this revision (default: from now on).
        #[arg(long)]
        from: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Raft status: leader, voters, term, commit index.
    Status,
}

/// Percent-encode a query value.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(admin: &str, as_json: bool, cmd: KvCmd) -> Result<()> {
    let client = Client::new(admin)?;
    match cmd {
        KvCmd::Put { key, value, ttl } => {
            let mut body = json!({"key": key, "value": value});
            if let Some(t) = ttl {
                body["ttl_secs"] = json!(t);
            }
            let out = client
                .post("/kv/put", body.to_string(), WRITE_TIMEOUT)
                .await?;
            if as_json {
                println!("{out}");
            } else {
                println!("OK");
            }
        }
        KvCmd::Get { key, serializable } => {
            let mut path = format!("/kv/get?key={}", q(&key));
            if serializable {
                path.push_str("&serializable=true");
            }
            let out = client.get(&path).await?;
            if as_json {
                println!("{out}");
            } else {
                println!("{}", out["value"].as_str().unwrap_or_default());
            }
        }
        KvCmd::Del { key } => {
            let out = client
                .post("/kv/delete", json!({"key": key}).to_string(), WRITE_TIMEOUT)
                .await?;
            if as_json {
                println!("{out}");
            } else if out["deleted"] == true {
                println!("deleted {key}");
            } else {
                println!("{key} did not exist");
            }
        }
        KvCmd::Ls { prefix } => {
            let out = client
                .get(&format!("/kv/range?prefix={}", q(&prefix)))
                .await?;
            if as_json {
                println!("{out}");
            } else {
                for e in out["entries"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{}\t{}",
                        e["key"].as_str().unwrap_or_default(),
                        e["value"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        KvCmd::Cas {
            key,
            expect,
            expect_absent,
            expect_revision,
            new,
        } => {
            let mut body = json!({"key": key, "value": new});
            match (expect, expect_absent, expect_revision) {
                (Some(v), false, None) => body["expect_value"] = json!(v),
                (None, true, None) => body["expect_value"] = Value::Null,
                (None, false, Some(r)) => body["expect_revision"] = json!(r),
                _ => bail!("give one of --expect OLD, --expect-absent, --expect-revision REV"),
            }
            let out = client
                .post("/kv/cas", body.to_string(), WRITE_TIMEOUT)
                .await?;
            if as_json {
                println!("{out}");
            } else {
                println!("OK");
            }
        }
        KvCmd::Status => {
            let out = client.get("/kv/status").await?;
            if as_json {
                println!("{out}");
            } else {
                let voters: Vec<&str> = out["voters"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "leader: {}  term: {}  commit_index: {}",
                    out["leader"].as_str().unwrap_or("none"),
                    out["term"],
                    out["commit_index"]
                );
                println!("voters: {}", voters.join(", "));
                let learners: Vec<&str> = out["learners"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !learners.is_empty() {
                    println!("learners: {}", learners.join(", "));
                }
                println!(
                    "answered by {} ({}): last_applied {}, revision {}, snapshot at {}",
                    out["node"].as_str().unwrap_or("?"),
                    out["role"].as_str().unwrap_or("?"),
                    out["last_applied"],
                    out["revision"],
                    out["snapshot_index"]
                );
            }
        }
        KvCmd::Watch {
            prefix,
            from,
            count,
        } => watch(admin, as_json, &prefix, from, count).await?,
    }
    Ok(())
}

async fn watch(
    admin: &str,
    as_json: bool,
    prefix: &str,
    from: Option<u64>,
    count: Option<usize>,
) -> Result<()> {
    let admin = admin.trim_start_matches("http://").trim_end_matches('/');
    let mut url = format!("http://{admin}/kv/watch?prefix={}", q(prefix));
    if let Some(f) = from {
        url.push_str(&format!("&from={f}"));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .context("cannot build HTTP client")?;
    let mut resp = http.get(&url).send().await.map_err(|e| {
        if e.is_connect() {
            anyhow!("cannot reach the node's admin API at {admin} (is a node running?)")
        } else {
            anyhow!("watch request to {admin} failed: {e}")
        }
    })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        bail!(msg);
    }
    let mut seen = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    if count == Some(0) {
        return Ok(());
    }
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| anyhow!("the watch stream from {admin} broke: {e}"))?;
        let Some(chunk) = chunk else {
            bail!("the node at {admin} ended the watch stream");
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line)
                .map_err(|e| anyhow!("unreadable watch event from {admin}: {e}"))?;
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                bail!("watch failed: {e}");
            }
            if as_json {
                println!("{v}");
            } else {
                let kind = v["kind"].as_str().unwrap_or("?").to_uppercase();
                match v["value"].as_str() {
                    Some(val) => println!(
                        "{} {kind} {} {val}",
                        v["revision"],
                        v["key"].as_str().unwrap_or("")
                    ),
                    None => println!(
                        "{} {kind} {}",
                        v["revision"],
                        v["key"].as_str().unwrap_or("")
                    ),
                }
            }
            seen += 1;
            if Some(seen) == count {
                return Ok(());
            }
        }
    }
}
