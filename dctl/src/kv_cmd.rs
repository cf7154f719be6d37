//! `dctl kv ...`: the KV store's client commands (its node flags are `chassis::KvFlags`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;

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
        /// Start from this revision; `0` or `beginning`: from the oldest revision still kept
        /// (saying so when older ones were compacted). Default: only changes from now on.
        #[arg(long)]
        from: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Raft status: leader, voters, learners, term, commit index.
    Status,
    /// The store's members (id, role, state, match index, lag); or add / remove / promote one.
    Members {
        #[command(subcommand)]
        action: Option<MembersCmd>,
    },
    /// Take the lock NAME (key `locks/NAME`, attached to a lease this command keeps alive),
    /// waiting while someone else holds it. Prints the key and lease, then holds the lock until
    /// Ctrl-C (or SIGTERM), or, given `-- COMMAND...`, while the command runs (its exit code
    /// becomes dctl's); then releases it. If this process dies, the lock ends after the TTL.
    Lock {
        /// The lock's name.
        name: String,
        /// Lease time to live in seconds (renewed every third of it while held).
        #[arg(long, default_value_t = 10)]
        ttl: u64,
        /// The command to run while holding the lock (after `--`); it gets DCTL_LOCK_KEY and
        /// DCTL_LOCK_LEASE in its environment.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCmd {
    /// Add a live node of this cluster: as a learner, then as a voter once caught up.
    Add {
        node: String,
        /// Stop at learner (a non-voting replica).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a voter or learner (refused when the voters left would have no live majority).
    Remove { node: String },
    /// Make a caught-up learner a voter (refused when that would lose the quorum).
    Promote { node: String },
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
                println!("store: {}", out["store"].as_str().unwrap_or("none"));
                println!("etcd_addr: {}", out["etcd_addr"].as_str().unwrap_or("none"));
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
        KvCmd::Members { action } => members(&client, as_json, action).await?,
        KvCmd::Watch {
            prefix,
            from,
            count,
        } => watch(admin, as_json, &prefix, from, count).await?,
        KvCmd::Lock { name, ttl, command } => {
            let code = lock(&client, as_json, &name, ttl, &command).await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
    }
    Ok(())
}

/// `dctl kv members [add|remove|promote]`.
async fn members(client: &Client, as_json: bool, action: Option<MembersCmd>) -> Result<()> {
    let out = match &action {
        None => client.get("/kv/members").await?,
        Some(MembersCmd::Add { node, learner }) => {
            client
                .post(
                    "/kv/members/add",
                    json!({"name": node, "learner": learner}).to_string(),
                    WRITE_TIMEOUT,
                )
                .await?
        }
        Some(MembersCmd::Remove { node }) => {
            client
                .post(
                    "/kv/members/remove",
                    json!({ "name": node }).to_string(),
                    WRITE_TIMEOUT,
                )
                .await?
        }
        Some(MembersCmd::Promote { node }) => {
            client
                .post(
                    "/kv/members/promote",
                    json!({ "name": node }).to_string(),
                    WRITE_TIMEOUT,
                )
                .await?
        }
    };
    if as_json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "{:<16} {:<20} {:<8} {:<7} {:>11} {:>6}",
        "NAME", "ID", "ROLE", "STATE", "MATCH", "LAG"
    );
    let opt = |v: &Value| v.as_u64().map(|x| x.to_string()).unwrap_or("-".into());
    for m in out["members"].as_array().cloned().unwrap_or_default() {
        let role = match (m["role"].as_str(), m["leader"] == true) {
            (Some(r), true) => format!("{r}*"),
            (Some(r), false) => r.to_string(),
            (None, _) => "?".into(),
        };
        println!(
            "{:<16} {:<20} {:<8} {:<7} {:>11} {:>6}",
            m["name"].as_str().unwrap_or("?"),
            m["id"],
            role,
            m["state"].as_str().unwrap_or("?"),
            opt(&m["match_index"]),
            opt(&m["lag"]),
        );
    }
    Ok(())
}

/// Renew a lease; an error once it is gone.
async fn keep_alive(client: &Client, lease: u64) -> Result<()> {
    client
        .post(
            "/kv/lease/keepalive",
            json!({ "id": lease }).to_string(),
            WRITE_TIMEOUT,
        )
        .await
        .map(|_| ())
}

/// End a lease (and with it the lock's key).
async fn revoke(client: &Client, lease: u64) -> Result<()> {
    client
        .post(
            "/kv/lease/revoke",
            json!({ "id": lease }).to_string(),
            WRITE_TIMEOUT,
        )
        .await
        .map(|_| ())
}

/// Why the hold ended.
enum Held {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// The command exited with this code.
    Command(i32),
}

/// `dctl kv lock`: acquire, hold (until a signal or the command's exit), release. Answers the
/// exit code to end with.
async fn lock(
    client: &Client,
    as_json: bool,
    name: &str,
    ttl: u64,
    command: &[String],
) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    if name.is_empty() {
        bail!("the lock name is empty");
    }
    if ttl == 0 || ttl > registry::kv::MAX_TTL_SECS {
        bail!("--ttl must be 1 to {} seconds", registry::kv::MAX_TTL_SECS);
    }
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let key = format!("locks/{name}");
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let owner = format!("dctl pid {} on {host}", std::process::id());
    let granted = client
        .post(
            "/kv/lease/grant",
            json!({ "ttl_secs": ttl }).to_string(),
            WRITE_TIMEOUT,
        )
        .await?;
    let lease = granted["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("the node granted no lease id: {granted}"))?;
    let renew = Duration::from_millis(ttl * 1000 / 3).max(Duration::from_millis(200));

    // Acquire: create the key if absent; while someone holds it, keep our lease alive and retry.
    let body =
        json!({"key": key, "expect_value": null, "value": owner, "lease": lease}).to_string();
    loop {
        let (code, answer) = client
            .post_status("/kv/cas", body.clone(), WRITE_TIMEOUT)
            .await?;
        match code {
            200 => break,
            409 => {}
            _ => {
                let _ = revoke(client, lease).await;
                bail!(
                    "{}",
                    answer["error"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("HTTP {code}"))
                );
            }
        }
        if let Err(e) = keep_alive(client, lease).await {
            bail!("lost the lease while waiting for the lock {key}: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(renew.min(Duration::from_millis(500))) => {}
            _ = sigint.recv() => {
                let _ = revoke(client, lease).await;
                bail!("interrupted while waiting for the lock {key}");
            }
            _ = sigterm.recv() => {
                let _ = revoke(client, lease).await;
                bail!("terminated while waiting for the lock {key}");
            }
        }
    }
    if as_json {
        println!("{}", json!({"key": key, "lease": lease, "owner": owner}));
    } else {
        println!("locked {key} (lease {lease}, owner {owner})");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    // Hold.
    let mut child = match command.split_first() {
        None => None,
        Some((prog, args)) => match tokio::process::Command::new(prog)
            .args(args)
            .env("DCTL_LOCK_KEY", &key)
            .env("DCTL_LOCK_LEASE", lease.to_string())
            .spawn()
        {
            Ok(c) => Some(c),
            Err(e) => {
                let _ = revoke(client, lease).await;
                bail!("cannot run {prog}: {e}");
            }
        },
    };
    let mut tick = tokio::time::interval(renew);
    tick.tick().await;
    let held = loop {
        let exited = async {
            match child.as_mut() {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = keep_alive(client, lease).await {
                    if let Some(c) = child.as_mut() {
                        let _ = c.kill().await;
                    }
                    bail!("lost the lock {key} (its lease could not be renewed): {e:#}");
                }
            }
            st = exited => {
                let st = st.context("waiting for the command")?;
                // Killed by a signal: the shell convention 128 + signal.
                use std::os::unix::process::ExitStatusExt as _;
                let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
                break Held::Command(code);
            }
            _ = sigint.recv() => break Held::Signal,
            _ = sigterm.recv() => break Held::Signal,
        }
    };
    if let (Held::Signal, Some(c)) = (&held, child.as_mut()) {
        let _ = c.kill().await;
    }

    // Release.
    revoke(client, lease).await.with_context(|| {
        format!("releasing the lock {key} (it ends when lease {lease} expires)")
    })?;
    if !as_json {
        println!("released {key}");
    }
    Ok(match held {
        Held::Signal => 0,
        Held::Command(code) => code,
    })
}

async fn watch(
    admin: &str,
    as_json: bool,
    prefix: &str,
    from: Option<String>,
    count: Option<usize>,
) -> Result<()> {
    if let Some(f) = &from {
        if f != "beginning" && f.parse::<u64>().is_err() {
            bail!("--from takes a revision number, 0 or 'beginning' (got '{f}')");
        }
    }
    let mut path = format!("/kv/watch?prefix={}", q(prefix));
    if let Some(f) = from {
        path.push_str(&format!("&from={f}"));
    }
    let client = Client::new(admin)?;
    let admin = client.admin();
    let mut resp = client.open(client.request(Method::GET, &path)).await?;
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
            if let Some(n) = v.get("compacted_before").and_then(Value::as_u64) {
                eprintln!("note: revisions before {n} were compacted; replaying from revision {n}");
                continue;
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
