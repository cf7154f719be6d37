//! `dctl keys`: the gossip keyring, cluster-wide (Serf's `keys` command).

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print a new random gossip key (32 bytes, base64); talks to no node.
    Generate,
    /// Every live node's keys, primary first.
    List,
    /// Add a key on every live node (it then opens datagrams sealed with it).
    Install {
        /// The key (base64).
        key: String,
    },
    /// Make an installed key the one every live node seals with.
    Use {
        /// The key (base64).
        key: String,
    },
    /// Remove a key (not the primary one) from every live node.
    Remove {
        /// The key (base64).
        key: String,
    },
}

pub async fn run(admin: &str, json_out: bool, cmd: KeysCmd) -> Result<()> {
    let (op, key) = match cmd {
        KeysCmd::Generate => {
            println!("{}", runtime::keyring::generate_key()?);
            return Ok(());
        }
        KeysCmd::List => {
            let out = Client::new(admin)?.get("/keys").await?;
            print_nodes(&out, json_out, None);
            return Ok(());
        }
        KeysCmd::Install { key } => ("install", key),
        KeysCmd::Use { key } => ("use", key),
        KeysCmd::Remove { key } => ("remove", key),
    };
    let body = json!({ "key": key }).to_string();
    let out = Client::new(admin)?
        .post(&format!("/keys/{op}"), body, Duration::from_secs(30))
        .await?;
    print_nodes(&out, json_out, Some(op));
    Ok(())
}

fn print_nodes(out: &Value, json_out: bool, op: Option<&str>) {
    if json_out {
        println!("{out}");
        return;
    }
    for n in out["nodes"].as_array().into_iter().flatten() {
        let name = n["node"].as_str().unwrap_or("?");
        let keys: Vec<&str> = n["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match op {
            None => println!("{name}\t{}", keys.join(" ")),
            Some(op) => {
                let did = if n["changed"] == true {
                    op
                } else {
                    "unchanged"
                };
                println!("{name}\t{did}\t{} key(s)", keys.len());
            }
        }
    }
}
