//! `dctl up`: a local cluster of node processes on loopback, until Ctrl-C.

use std::{
    net::{TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use clap::Args;

use crate::client::Client;

/// The arguments of `dctl up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of node processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Cluster secret shared by the nodes (default: `<data-dir>/cookie`, generated with mode 0600
    /// on the first run).
    #[arg(long, env = "DCTL_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Where the nodes keep their data and logs (default `.dctl/up`).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

struct Proc {
    name: String,
    admin: String,
    gossip: String,
    child: Child,
    log: PathBuf,
}

/// The file in `dctl up`'s data directory that tells `dctl run` where the cluster is
/// (`{"nodes":[{"name","admin","gossip"}],"cookie_file"}`), removed when it stops.
pub const STATE_FILE: &str = "cluster.json";

fn free_tcp() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn terminate(procs: &mut [Proc]) {
    for p in procs.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in procs.iter_mut() {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Nodes that see all `n` members alive and connected.
async fn converged(procs: &[Proc], n: usize) -> usize {
    let mut ready = 0;
    for p in procs {
        let Ok(client) = Client::new(&p.admin) else {
            continue;
        };
        if let Ok(members) = client.members().await {
            let up = members
                .iter()
                .filter(|m| m.state == runtime::MemberState::Alive && m.connected && m.lane)
                .count();
            if up == n {
                ready += 1;
            }
        }
    }
    ready
}

pub async fn run(admin: &str, args: UpArgs) -> Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the dctl executable")?;
    let dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(".dctl").join("up"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // One secret for every node it starts: the one given, or the one kept in the data directory.
    let (cookie, cookie_file) = match args.cookie {
        Some(c) => (c, None),
        None => {
            let stored = runtime::secret::load_or_create_cookie(&dir)?;
            let path = stored.path.canonicalize().unwrap_or(stored.path);
            (stored.cookie, Some(path))
        }
    };
    let mut procs: Vec<Proc> = Vec::new();
    let mut seed: Option<String> = None;
    for i in 1..=args.nodes {
        let name = format!("node{i}");
        let admin_addr = if i == 1 {
            admin.to_string()
        } else {
            format!("127.0.0.1:{}", free_tcp()?)
        };
        let gossip = format!("127.0.0.1:{}", free_udp()?);
        let listen = format!("127.0.0.1:{}", free_tcp()?);
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.args(["--admin", &admin_addr, "node", "start", "--name", &name])
            .args(["--listen", &listen, "--gossip", &gossip])
            .arg("--data-dir")
            .arg(dir.join(&name))
            .env("DCTL_COOKIE", &cookie)
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(s) = &seed {
            cmd.args(["--seed", s]);
        }
        // One KV store: node1 bootstraps it once the first three nodes (or all, when fewer)
        // are up; the others join, and the leader promotes voters up to three.
        cmd.args(["--kv-bootstrap-expect", &args.nodes.min(3).to_string()]);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        seed.get_or_insert(gossip.clone());
        procs.push(Proc {
            name,
            admin: admin_addr,
            gossip,
            child,
            log,
        });
    }

    let n = args.nodes;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shown = usize::MAX;
    loop {
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_string();
                let name = p.name.clone();
                terminate(&mut procs);
                return Err(anyhow!("{name} exited ({status}): {last}"));
            }
        }
        let ready = converged(&procs, n).await;
        if ready != shown {
            eprintln!("waiting for the cluster: {ready}/{n} nodes see all {n} nodes");
            shown = ready;
        }
        if ready == n {
            break;
        }
        if Instant::now() > deadline {
            terminate(&mut procs);
            bail!(
                "the nodes did not converge within 60 s; see the logs in {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A sample service, spawned from node1 onto the last node to show remote spawn at work.
    let client = Client::new(&procs[0].admin)?;
    let target = procs[n - 1].name.clone();
    let body = serde_json::json!({"factory": "echo", "name": "sample-echo", "on": target});
    if let Err(e) = client
        .post("/api/spawn", body.to_string(), Duration::from_secs(30))
        .await
    {
        terminate(&mut procs);
        return Err(e.context("cannot start the sample service"));
    }

    let mut ingress = match crate::up_proxy::start(&dir, &procs[0].admin).await {
        Ok(i) => i,
        Err(e) => {
            terminate(&mut procs);
            return Err(e);
        }
    };
    // Where `dctl run` finds this cluster: the nodes' addresses and the secret's file.
    let state = serde_json::json!({
        "nodes": procs.iter().map(|p| serde_json::json!({"name": p.name, "admin": p.admin, "gossip": p.gossip})).collect::<Vec<_>>(),
        "cookie_file": cookie_file,
    });
    let state_file = dir.join(STATE_FILE);
    if let Err(e) = std::fs::write(&state_file, state.to_string()) {
        terminate(&mut procs);
        return Err(anyhow!("cannot write {}: {e}", state_file.display()));
    }

    println!("Draft cluster is up: {n} nodes (logs in {})", dir.display());
    for p in &procs {
        println!(
            "  {:<8} admin http://{}/   (tree page in a browser)",
            p.name, p.admin
        );
    }
    println!("  sample service: sample-echo (echo) on {target}");
    for line in &ingress.lines {
        println!("{line}");
    }
    println!(
        "  on every node: service registry, KV store (one store, up to 3 Raft voters: `dctl kv members`), CloudEvents broker"
    );
    println!("  metrics: http://{}/metrics", procs[0].admin);
    // The binary that is running now: after `cargo run` there is no `dctl` on PATH, so the
    // lines below name this one (every line runs as printed, from any directory).
    let dctl = std::env::current_exe()
        .map(|p| shell_quote(&p.to_string_lossy()))
        .unwrap_or_else(|_| "dctl".to_string());
    let a = &procs[0].admin;
    let d = format!("{dctl} --admin {a}");
    println!("try (or `cargo install --path dctl` and call it as `dctl`):");
    println!("  {d} cluster status");
    println!("  {d} tree --all");
    println!("  {d} send sample-echo '{{\"hello\":\"world\"}}' --call");
    println!("  {d} kv put greeting hello && {d} kv get greeting");
    println!("  {d} svc register web --addr 127.0.0.1:8080 && {d} svc ls");
    println!("  {d} routes ls && {d} proxy status");
    println!(
        "  {d} events durable demo && {d} events produce demo --type t --source s --data '{{}}' && {d} events consume demo --from beginning --count 1"
    );
    println!("Ctrl-C stops every node.");
    runtime::wait_for_signal().await;
    eprintln!("stopping {n} nodes...");
    ingress.stop();
    let _ = std::fs::remove_file(&state_file);
    terminate(&mut procs);
    Ok(())
}

/// `s` quoted for a POSIX shell when it holds anything but safe path characters.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
