//! `ping-pong`: two nodes, typed call and tell across them, a remote spawn, and a `DOWN` seen
//! when the other node is killed.
//!
//! ```sh
//! ping-pong --name b --cookie demo                       # prints its gossip address
//! ping-pong --name a --cookie demo --seed <b's gossip> --ping b
//! kill -9 <b's pid>                                      # a prints: DOWN pong-b: ...
//! ```
//!
//! Every node runs the service `ping-pong` with one actor, `pong-<node>`, and the factory
//! `ponger` (so `dctl spawn ponger --name X --on NODE` works too). With `--ping NODE`, the node
//! talks to `pong-NODE` and then watches it.

use chassis::{Ctx, Down, Service, ServiceArgs, TypedActor};
use clap::Parser;
use samples::pingpong::{PingMsg, PongError, Ponger};

#[derive(Parser)]
struct Cli {
    /// Talk to `pong-NODE` on this node, then watch it.
    #[arg(long)]
    ping: Option<String>,
    #[command(flatten)]
    service: ServiceArgs,
}

/// Monitors the other node's pong actor and prints the `DOWN`.
#[derive(Clone)]
struct Watcher;

impl TypedActor for Watcher {
    type Msg = PingMsg;
    type State = ();
    type Args = String;

    async fn init(&self, ctx: &Ctx, target: String) -> Result<(), ractor::ActorProcessingErr> {
        ctx.monitor(&target).await?;
        println!("watching {target}");
        Ok(())
    }

    async fn handle(&self, _: &Ctx, _: PingMsg, _: &mut ()) -> Result<u64, PongError> {
        Err(PongError::Refused("the watcher only watches".into()))
    }

    async fn on_down(
        &self,
        _: &Ctx,
        down: Down,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        println!("DOWN {}: {}", down.name, down.reason);
        Ok(())
    }
}

async fn ping(ctx: chassis::ServiceCtx, other: String) -> anyhow::Result<()> {
    let target = format!("pong-{other}");
    let pong = ctx.remote::<PingMsg>(&target);
    // Wait (bounded) until the other node's actor is reachable.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let first = loop {
        match pong.call(&PingMsg::Ping(1)).await {
            Ok(n) => break n,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("{target} not reachable yet: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!("{target} never answered: {e}"),
        }
    };
    println!("call {target} Ping(1) -> {first}");
    for _ in 0..3 {
        pong.tell(&PingMsg::Note(format!("from {}", ctx.node().name())))
            .await?;
    }
    let notes = pong.call(&PingMsg::Notes).await?;
    println!("tell {target} Note x3 -> {target} has {notes} notes");
    match pong.call(&PingMsg::Ping(0)).await {
        Err(e) => println!(
            "call {target} Ping(0) -> error: {}",
            e.actor_error()
                .map(|e| format!("{e:?}"))
                .unwrap_or_else(|| e.to_string())
        ),
        Ok(n) => anyhow::bail!("Ping(0) answered {n}"),
    }
    let spawned = format!("spawned-on-{other}");
    ctx.node()
        .spawn_on(&other, "ponger", &spawned, serde_json::json!(100))
        .await?;
    let n = ctx
        .remote::<PingMsg>(&spawned)
        .call(&PingMsg::Ping(1))
        .await?;
    println!("remote spawn {spawned} on {other} -> Ping(1) -> {n}");
    chassis::spawn(ctx.node(), "watcher", Watcher, target).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    chassis::init_tracing();
    let ping_target = cli.ping.clone();
    let mut svc = Service::builder("ping-pong")
        .child(|ctx| {
            chassis::worker(
                ctx.node(),
                &format!("pong-{}", ctx.node().name()),
                Ponger,
                0,
            )
        })
        .factory("ponger", |ctx| chassis::factory(ctx.node(), Ponger));
    if let Some(other) = ping_target {
        svc = svc.task(move |ctx| async move {
            if let Err(e) = ping(ctx, other).await {
                println!("ping failed: {e:#}");
            }
        });
    }
    match svc.run_with(cli.service).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
