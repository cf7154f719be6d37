//! `dctl proxy ...`: Envoy in front of the cluster: a bootstrap pointing at every live node's
//! xDS server, and the status of the connected Envoys.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use proxy_ctl::bootstrap::Bootstrap;
use serde_json::{json, Value};

use crate::client::Client;

/// Proxy (Envoy) commands.
#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
    /// Print an Envoy bootstrap (YAML) whose ADS cluster lists every live node's xDS address.
    Bootstrap {
        /// The Envoy's node id.
        #[arg(long, default_value = "envoy")]
        node: String,
        /// Address of Envoy's ingress listener.
        #[arg(long, default_value = proxy_ctl::envoy::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Address of Envoy's admin API.
        #[arg(long = "envoy-admin", default_value = "127.0.0.1:9901")]
        envoy_admin: SocketAddr,
        /// Incremental (delta) xDS instead of state-of-the-world.
        #[arg(long, conflicts_with = "files")]
        delta: bool,
        /// Files mode: read the resources from the directory a node writes with
        /// `--xds-files DIR` (no gRPC; the listener address is the node's
        /// `--xds-files-listen`).
        #[arg(long)]
        files: Option<std::path::PathBuf>,
    },
    /// Every Envoy connected to a live node: its node id, per type the version sent and ACKed,
    /// and any NACK with Envoy's message.
    Status,
}

/// The xDS addresses of the live nodes, from `/cluster`.
async fn xds_addrs(client: &Client) -> Result<Vec<(String, SocketAddr, Option<String>)>> {
    let mut addrs = Vec::new();
    for m in client.members().await? {
        if m.state != runtime::MemberState::Alive {
            continue;
        }
        let Some(x) = m.xds_addr else {
            continue;
        };
        let addr: SocketAddr = x
            .parse()
            .with_context(|| format!("node {} announces a bad xds_addr '{x}'", m.name))?;
        addrs.push((m.name, addr, m.admin_addr));
    }
    Ok(addrs)
}

fn render_status(nodes: &[Value]) -> String {
    let mut out = format!(
        "{:<12} {:<20} {:<6} {:<10} {:<18} {:<18} NACK\n",
        "NODE", "ENVOY", "MODE", "TYPE", "SENT", "ACKED"
    );
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for n in nodes {
        if let Some(err) = n.get("error") {
            out.push_str(&format!("{:<12} unreachable: {}\n", s(&n["node"]), s(err)));
            continue;
        }
        for st in n["streams"].as_array().cloned().unwrap_or_default() {
            let types = st["types"].as_object().cloned().unwrap_or_default();
            for (kind, t) in types {
                let nack = match t.get("nack") {
                    Some(Value::Object(x)) => format!(
                        "{}: {}",
                        s(&x["version"]),
                        s(&x["message"]).lines().next().unwrap_or("")
                    ),
                    _ => String::new(),
                };
                out.push_str(&format!(
                    "{:<12} {:<20} {:<6} {:<10} {:<18} {:<18} {}\n",
                    s(&n["node"]),
                    s(&st["node"]),
                    s(&st["mode"]),
                    kind,
                    s(&t["sent"]),
                    s(&t["acked"]),
                    nack
                ));
            }
        }
    }
    out
}

pub async fn run(admin: &str, json_out: bool, cmd: ProxyCmd) -> Result<()> {
    let client = Client::new(admin)?;
    match cmd {
        ProxyCmd::Bootstrap {
            node,
            listen,
            envoy_admin,
            delta,
            files,
        } => {
            if let Some(dir) = files {
                let dir = std::fs::canonicalize(&dir)
                    .with_context(|| format!("no files directory {}", dir.display()))?;
                if !dir.join("cds.pb").is_file() {
                    bail!(
                        "{} has no cds.pb: start a node with --xds-files {}",
                        dir.display(),
                        dir.display()
                    );
                }
                let b = Bootstrap {
                    node_id: node,
                    listen,
                    admin: envoy_admin,
                    xds: Vec::new(),
                    delta: false,
                    files: Some(dir),
                };
                print!("{}", b.yaml());
                return Ok(());
            }
            let xds: Vec<SocketAddr> = xds_addrs(&client)
                .await?
                .into_iter()
                .map(|(_, a, _)| a)
                .collect();
            if xds.is_empty() {
                bail!("no live node announces an xDS address (are the nodes this version?)");
            }
            let b = Bootstrap {
                node_id: node,
                listen,
                admin: envoy_admin,
                xds,
                delta,
                files: None,
            };
            print!("{}", b.yaml());
            Ok(())
        }
        ProxyCmd::Status => {
            let mut nodes = Vec::new();
            for (name, xds, admin_addr) in xds_addrs(&client).await? {
                let one = match admin_addr {
                    Some(a) => match Client::new(&a) {
                        Ok(c) => c.get("/proxy/status").await,
                        Err(e) => Err(e),
                    },
                    None => Err(anyhow::anyhow!("no admin address announced")),
                };
                nodes.push(match one {
                    Ok(v) => v,
                    Err(e) => json!({"node": name, "xds_addr": xds.to_string(), "error": format!("{e:#}")}),
                });
            }
            if json_out {
                println!("{}", json!({ "nodes": nodes }));
            } else {
                print!("{}", render_status(&nodes));
                for n in &nodes {
                    for x in n["recent_nacks"].as_array().cloned().unwrap_or_default() {
                        println!(
                            "NACK on {}: envoy {} rejected {} version {}: {}",
                            n["node"].as_str().unwrap_or("?"),
                            x["node"].as_str().unwrap_or("?"),
                            x["type"].as_str().unwrap_or("?"),
                            x["version"].as_str().unwrap_or("?"),
                            x["message"].as_str().unwrap_or("?")
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
