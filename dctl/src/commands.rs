//! What each command does.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use crate::{
    cli::{Cli, ClusterCmd, Command, NodeArgs, NodeCmd},
    client::{encode, Client},
    render,
};

/// `POST /api/actors/NAME/ACTION` (restart, kill) and say where it was done.
async fn act(admin: &str, json: bool, name: &str, action: &str, done: &str) -> Result<()> {
    let client = Client::new(admin)?;
    let out = client
        .post(
            &format!("/api/actors/{}/{action}", encode(name)),
            String::new(),
            Duration::from_secs(30),
        )
        .await?;
    if json {
        println!("{out}");
    } else {
        let node = out.get("node").and_then(Value::as_str).unwrap_or("?");
        println!("{done} {name} on {node}");
    }
    Ok(())
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Node(NodeCmd::Start(args)) => node_start(&cli.admin, *args).await,
        Command::Up(args) => up(&cli.admin, args).await,
        Command::Spawn {
            factory,
            name,
            on,
            args,
        } => {
            let args: Value = serde_json::from_str(&args)
                .map_err(|e| anyhow!("--args is not valid JSON: {e}"))?;
            let client = Client::new(&cli.admin)?;
            let body = json!({ "factory": factory, "name": name, "on": on, "args": args });
            let out = client
                .post("/api/spawn", body.to_string(), Duration::from_secs(30))
                .await?;
            if cli.json {
                println!("{out}");
            } else {
                let id = out.get("actor_id").and_then(Value::as_str).unwrap_or("?");
                let node = out.get("node").and_then(Value::as_str).unwrap_or("?");
                println!("spawned {name} ({factory}) as {id} on {node}");
            }
            Ok(())
        }
        Command::Send {
            name,
            payload,
            call,
            timeout,
        } => {
            let value: Value = serde_json::from_str(&payload)
                .map_err(|e| anyhow!("message is not valid JSON: {e}"))?;
            let client = Client::new(&cli.admin)?;
            let body = value.to_string();
            if call {
                let path = format!("/api/actors/{}/call?timeout_ms={timeout}", encode(&name));
                let http_timeout = Duration::from_millis(timeout) + Duration::from_secs(5);
                let reply = client.post(&path, body, http_timeout).await?;
                println!("{reply}");
            } else {
                let path = format!("/api/actors/{}/tell", encode(&name));
                client.post(&path, body, Duration::from_secs(30)).await?;
                if cli.json {
                    println!("{}", json!({ "sent": true }));
                }
            }
            Ok(())
        }
        Command::Stop { name } => {
            let client = Client::new(&cli.admin)?;
            let out = client
                .delete(&format!("/api/actors/{}", encode(&name)))
                .await?;
            if cli.json {
                println!("{out}");
            } else {
                let node = out.get("node").and_then(Value::as_str).unwrap_or("?");
                println!("stopped {name} on {node}");
            }
            Ok(())
        }
        Command::Tree { all, stats } => {
            let client = Client::new(&cli.admin)?;
            let out = client.get(if all { "/tree/all" } else { "/tree" }).await?;
            if cli.json {
                if all {
                    println!("{out}");
                } else {
                    println!("{}", out["tree"]);
                }
                return Ok(());
            }
            let entries = if all {
                out["nodes"].as_array().cloned().unwrap_or_default()
            } else {
                vec![out]
            };
            for entry in entries {
                print!("node {}", entry["node"].as_str().unwrap_or("?"));
                if stats && entry["totals"].is_object() {
                    print!(" ({})", render::totals(&entry["totals"]));
                }
                println!();
                print!("{}", render::tree_with(&entry["tree"], stats));
            }
            Ok(())
        }
        Command::Top(args) => crate::top_cmd::run(&cli.admin, args).await,
        Command::Restart { name } => act(&cli.admin, cli.json, &name, "restart", "restarted").await,
        Command::Kill { name } => act(&cli.admin, cli.json, &name, "kill", "killed").await,
        Command::New { name, path } => {
            let dir = crate::new_cmd::run(&name, path.as_deref())?;
            println!(
                "created the service {name} in {} (run it in the local cluster: dctl up, then dctl run {})",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Run(args) => crate::run_cmd::run(args).await,
        Command::Kv(cmd) => crate::kv_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Keys(cmd) => crate::keys_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Routes(cmd) => crate::routes_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Proxy(cmd) => crate::proxy_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Svc(cmd) => crate::svc_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Events(cmd) => crate::events_cmd::run(&cli.admin, cli.json, cmd).await,
        Command::Cluster(ClusterCmd::Status) => {
            let client = Client::new(&cli.admin)?;
            let mut out = client.get("/cluster").await?;
            if cli.json {
                // The answering node's etcd API address (null when its KV store is off).
                let etcd = match client.get("/kv/status").await {
                    Ok(s) => s["etcd_addr"].clone(),
                    Err(_) => serde_json::Value::Null,
                };
                out["etcd_addr"] = etcd;
                println!("{out}");
            } else {
                print!("{}", render::members(&out["nodes"]));
            }
            Ok(())
        }
    }
}

async fn node_start(admin: &str, args: NodeArgs) -> Result<()> {
    let defaults = chassis::Defaults::dctl();
    let builder = args.builder(admin, &defaults);
    let node = builder.start().await.context("cannot start the node")?;
    if args.diagnostics {
        node.enable_diagnostics();
    }
    if let Err(e) = crate::services::start(&node, &args).await {
        node.shutdown().await;
        return Err(e.context("cannot start the node's services"));
    }
    node.services_started();
    if let Some(addr) = node.admin_addr() {
        println!("node {} running; admin API http://{addr}/", node.name());
    }
    if let Some(file) = &node.config().cookie_file {
        println!(
            "cluster secret: {} (join another node with: dctl node start --cookie \"$(cat {})\" --seed {})",
            file.display(),
            file.display(),
            args.gossip.as_deref().unwrap_or(&defaults.gossip)
        );
    }
    node.run_until_signal().await?;
    Ok(())
}

async fn up(admin: &str, args: crate::up::UpArgs) -> Result<()> {
    crate::up::run(admin, args).await
}
