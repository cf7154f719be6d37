//! `dctl routes ...`: the proxy route table (stored in the KV store under `routes/<name>`).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use proxy_ctl::{GrpcMatch, HeaderMatch, PathMatch, Route, RouteMatch};
use serde_json::Value;

use crate::client::{encode, Client};

/// Route table commands (parsed once per run: the size of `Add` does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RoutesCmd {
    /// Add a route (refused if the name is taken or the route is invalid; nothing half-written).
    Add {
        /// Route name (unique).
        name: String,
        /// Match paths starting with this.
        #[arg(long, conflicts_with_all = ["exact", "regex", "grpc_service"])]
        prefix: Option<String>,
        /// Match exactly this path.
        #[arg(long, conflicts_with_all = ["regex", "grpc_service"])]
        exact: Option<String>,
        /// Match paths against this regular expression (RE2 syntax, whole path).
        #[arg(long, conflicts_with = "grpc_service")]
        regex: Option<String>,
        /// Match gRPC requests to this service (e.g. `helloworld.Greeter`).
        #[arg(long)]
        grpc_service: Option<String>,
        /// ... and this method.
        #[arg(long, requires = "grpc_service")]
        grpc_method: Option<String>,
        /// Match this Host / :authority.
        #[arg(long)]
        host: Option<String>,
        /// Require a header with an exact value (repeatable).
        #[arg(long = "header", value_name = "K=V")]
        headers: Vec<String>,
        /// The registry service that gets the traffic.
        #[arg(long)]
        service: String,
        /// Weighted split (repeatable): `SERVICE=WEIGHT`; the route's service gets what is left
        /// of 100 unless given a weight too.
        #[arg(long = "weight", value_name = "S=W")]
        weights: Vec<String>,
        /// HTTP/2 to the upstream instances.
        #[arg(long)]
        http2: bool,
        /// Upstream timeout in milliseconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Retries on connect failure, reset or 5xx.
        #[arg(long)]
        retries: Option<u32>,
    },
    /// List the routes.
    Ls,
    /// Remove a route.
    Rm {
        /// Route name.
        name: String,
    },
}

/// Build the route `dctl routes add` describes.
fn route_of(cmd: RoutesCmd) -> Result<Route> {
    let RoutesCmd::Add {
        name,
        prefix,
        exact,
        regex,
        grpc_service,
        grpc_method,
        host,
        headers,
        service,
        weights,
        http2,
        timeout,
        retries,
    } = cmd
    else {
        bail!("not an add command");
    };
    let path = match (prefix, exact, regex) {
        (Some(p), _, _) => Some(PathMatch::Prefix(p)),
        (_, Some(e), _) => Some(PathMatch::Exact(e)),
        (_, _, Some(r)) => Some(PathMatch::Regex(r)),
        _ => None,
    };
    let mut header_matches = Vec::new();
    for h in headers {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| anyhow!("--header '{h}' must be NAME=VALUE"))?;
        header_matches.push(HeaderMatch {
            name: k.to_string(),
            value: v.to_string(),
        });
    }
    let mut split = BTreeMap::new();
    for w in weights {
        let (s, n) = w
            .split_once('=')
            .ok_or_else(|| anyhow!("--weight '{w}' must be SERVICE=WEIGHT"))?;
        let n: u32 = n
            .parse()
            .map_err(|_| anyhow!("--weight '{w}': the weight must be a whole number"))?;
        if split.insert(s.to_string(), n).is_some() {
            bail!("--weight: service '{s}' is given twice");
        }
    }
    if !split.is_empty() && !split.contains_key(&service) {
        let others: u64 = split.values().map(|w| u64::from(*w)).sum();
        split.insert(service.clone(), 100u64.saturating_sub(others) as u32);
    }
    let route = Route {
        name,
        matcher: RouteMatch {
            path,
            host,
            headers: header_matches,
            grpc: grpc_service.map(|service| GrpcMatch {
                service,
                method: grpc_method,
            }),
        },
        service,
        weights: split,
        http2,
        timeout_ms: timeout,
        retries,
    };
    route.validate()?;
    Ok(route)
}

fn describe_match(r: &Value) -> String {
    let m = &r["match"];
    let mut parts = Vec::new();
    if let Some(p) = m["path"].as_object() {
        for (k, v) in p {
            parts.push(format!("{k} {}", v.as_str().unwrap_or("?")));
        }
    }
    if let Some(g) = m["grpc"].as_object() {
        let method = g.get("method").and_then(Value::as_str).unwrap_or("*");
        parts.push(format!(
            "grpc {}/{method}",
            g.get("service").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    if let Some(h) = m["host"].as_str() {
        parts.push(format!("host {h}"));
    }
    for h in m["headers"].as_array().cloned().unwrap_or_default() {
        parts.push(format!(
            "header {}={}",
            h["name"].as_str().unwrap_or("?"),
            h["value"].as_str().unwrap_or("?")
        ));
    }
    parts.join(", ")
}

fn describe_target(r: &Value) -> String {
    match r["weights"].as_object() {
        Some(w) if !w.is_empty() => w
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => r["service"].as_str().unwrap_or("?").to_string(),
    }
}

pub async fn run(admin: &str, json_out: bool, cmd: RoutesCmd) -> Result<()> {
    let client = Client::new(admin)?;
    match cmd {
        RoutesCmd::Ls => {
            let out = client.get("/proxy/routes").await?;
            if json_out {
                println!("{out}");
                return Ok(());
            }
            println!("{:<20} {:<40} TARGET", "NAME", "MATCH");
            for r in out["routes"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<20} {:<40} {}",
                    r["name"].as_str().unwrap_or("?"),
                    describe_match(&r),
                    describe_target(&r)
                );
            }
            for bad in out["invalid"].as_array().cloned().unwrap_or_default() {
                eprintln!(
                    "warning: ignored entry {}: {}",
                    bad[0].as_str().unwrap_or("?"),
                    bad[1].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        RoutesCmd::Rm { name } => {
            client
                .delete(&format!("/proxy/routes/{}", encode(&name)))
                .await?;
            if json_out {
                println!("{}", serde_json::json!({ "removed": name }));
            } else {
                println!("removed route {name}");
            }
            Ok(())
        }
        add @ RoutesCmd::Add { .. } => {
            let route = route_of(add)?;
            let body = serde_json::to_string(&route)?;
            let out = client
                .post("/proxy/routes", body, Duration::from_secs(15))
                .await?;
            if json_out {
                println!("{out}");
            } else {
                println!(
                    "added route {}: {} -> {}",
                    route.name,
                    describe_match(&out),
                    describe_target(&out)
                );
            }
            Ok(())
        }
    }
}
