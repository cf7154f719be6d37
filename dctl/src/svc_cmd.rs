//! `dctl svc ...`: the service registry.

use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;

/// Service registry commands.
#[derive(Debug, Subcommand)]
pub enum SvcCmd {
    /// Register an instance on the node you talk to (it lives as long as that node).
    Register {
        /// Service name.
        name: String,
        /// Address the instance serves on.
        #[arg(long)]
        addr: String,
        /// Metadata entry (repeatable).
        #[arg(long = "meta", value_name = "K=V")]
        meta: Vec<String>,
        /// Instance id (default: derived from node and address).
        #[arg(long)]
        id: Option<String>,
        /// Protocol (default http).
        #[arg(long)]
        protocol: Option<String>,
    },
    /// List instances (of one service, or all).
    Ls {
        /// Service name.
        name: Option<String>,
    },
    /// Print registry changes as they happen, one JSON event per line.
    Watch {
        /// Service name (default: all).
        name: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Remove an instance registered on the node you talk to.
    Deregister {
        /// Service name.
        name: String,
        /// Instance id.
        #[arg(long)]
        id: String,
    },
}

pub async fn run(admin: &str, json_out: bool, cmd: SvcCmd) -> Result<()> {
    let client = Client::new(admin)?;
    match cmd {
        SvcCmd::Register {
            name,
            addr,
            meta,
            id,
            protocol,
        } => {
            let mut metadata = serde_json::Map::new();
            for kv in meta {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--meta '{kv}' must be KEY=VALUE"))?;
                metadata.insert(k.to_string(), Value::String(v.to_string()));
            }
            let body = json!({"service": name, "address": addr, "id": id, "protocol": protocol, "metadata": metadata});
            let out = client
                .post(
                    "/registry/services",
                    body.to_string(),
                    Duration::from_secs(10),
                )
                .await?;
            if json_out {
                println!("{out}");
            } else {
                println!(
                    "registered {} instance {} at {} on {}",
                    out["service"].as_str().unwrap_or("?"),
                    out["id"].as_str().unwrap_or("?"),
                    out["address"].as_str().unwrap_or("?"),
                    out["node"].as_str().unwrap_or("?")
                );
            }
        }
        SvcCmd::Ls { name } => {
            let path = match &name {
                Some(n) => format!("/registry/services?service={}", crate::client::encode(n)),
                None => "/registry/services".to_string(),
            };
            let out = client.get(&path).await?;
            if json_out {
                println!("{out}");
            } else {
                println!(
                    "{:<20} {:<28} {:<22} {:<10} {:<8} METADATA",
                    "SERVICE", "ID", "ADDRESS", "NODE", "HEALTH"
                );
                for i in out["instances"].as_array().cloned().unwrap_or_default() {
                    let s = |k: &str| i[k].as_str().unwrap_or("-").to_string();
                    let meta: Vec<String> = i["metadata"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect()
                        })
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<28} {:<22} {:<10} {:<8} {}",
                        s("service"),
                        s("id"),
                        s("address"),
                        s("node"),
                        s("health"),
                        meta.join(",")
                    );
                }
            }
        }
        SvcCmd::Watch { name, count } => {
            let path = match &name {
                Some(n) => format!("/registry/watch?service={}", crate::client::encode(n)),
                None => "/registry/watch".to_string(),
            };
            let mut seen = 0usize;
            client
                .sse(&path, |data| {
                    println!("{data}");
                    seen += 1;
                    count.is_none_or(|c| seen < c)
                })
                .await?;
        }
        SvcCmd::Deregister { name, id } => {
            let path = format!(
                "/registry/services/{}/{}",
                crate::client::encode(&name),
                crate::client::encode(&id)
            );
            client.delete(&path).await?;
            if json_out {
                println!("{}", json!({"deregistered": true}));
            } else {
                println!("deregistered {name} instance {id}");
            }
        }
    }
    Ok(())
}
