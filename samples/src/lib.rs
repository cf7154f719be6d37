//! # samples: runnable examples of the Draft actor runtime
//!
//! The binaries under `src/bin/` are services on the chassis, each run as processes by a test;
//! the two in-process samples are functions here (so a test can run them) with an example under
//! `examples/`. Every sample's actors speak typed messages the chassis's way
//! ([`chassis::Protocol`], [`chassis::TypedActor`], [`chassis::Remote`]):
//!
//! * [`supervised_bank`]: a typed actor supervised by a node; a crash is restarted by its
//!   supervisor, and the tree shows the restart. `cargo run -p samples --example supervised_bank`
//! * [`pingpong`] (binary `ping-pong`): two nodes, typed call/tell across them with typed
//!   errors, a remote spawn, a `DOWN` when the other node is killed.
//! * [`tree`] (binary `supervised-tree`): a one_for_all pool and a rest_for_one pipeline; a
//!   crash restarts what the strategy says, as `dctl tree` shows.
//! * [`saga`] (binary `orders-saga`): an event log on a durable channel, a read model rebuilt
//!   from offset 0, a saga orders -> payments -> inventory with compensation that survives a
//!   `kill -9` of its node.
//! * [`live_config`]: a service actor that reads its configuration from the KV store and applies
//!   every change live (Draft's Chassis / Go Micro's Config). `cargo run -p samples --example
//!   live_config`

#![warn(missing_docs)]

pub mod pingpong;
pub mod saga;
pub mod tree;

use std::time::Duration;

use ractor::ActorProcessingErr;
use runtime::{ChildStatus, Node};

/// A bank account actor: its balance is its state, so a crash loses it (the supervisor restarts
/// it from its start arguments, as OTP does).
#[derive(Clone)]
pub struct Account;

/// Messages of [`Account`] (a [`chassis::Protocol`]: the same from this node or another).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum AccountMsg {
    /// Add money (negative to withdraw); panics when the balance would go below zero.
    Deposit(i64),
    /// The balance.
    Balance,
}

impl chassis::Protocol for AccountMsg {
    type Reply = i64;
    type Error = String;
}

impl chassis::TypedActor for Account {
    type Msg = AccountMsg;
    type State = i64;
    type Args = i64;

    async fn init(&self, _: &chassis::Ctx, opening: i64) -> Result<i64, ActorProcessingErr> {
        Ok(opening)
    }

    async fn handle(
        &self,
        _: &chassis::Ctx,
        msg: AccountMsg,
        balance: &mut i64,
    ) -> Result<i64, String> {
        match msg {
            AccountMsg::Deposit(n) => {
                if *balance + n < 0 {
                    panic!("overdraft: balance {balance}, withdrawal {}", -n);
                }
                *balance += n;
            }
            AccountMsg::Balance => {}
        }
        Ok(*balance)
    }
}

/// What [`supervised_bank`] observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankReport {
    /// Balance after two deposits.
    pub before_crash: i64,
    /// Balance after the overdraft crashed the account and it was restarted.
    pub after_restart: i64,
    /// Restarts the tree shows for the account.
    pub restarts: u32,
    /// The tree, drawn for people.
    pub tree: String,
}

/// Run the supervised-bank sample on a node of its own (no admin server).
pub async fn supervised_bank() -> anyhow::Result<BankReport> {
    let node = Node::builder()
        .name("sample-bank")
        .without_admin()
        .start()
        .await?;
    let result = async {
        chassis::spawn(&node, "account", Account, 100).await?;
        let account = chassis::Remote::<AccountMsg>::new(&node, "account");
        account.tell(&AccountMsg::Deposit(50)).await?;
        account.tell(&AccountMsg::Deposit(25)).await?;
        let before_crash = account.call(&AccountMsg::Balance).await?;

        // An overdraft panics the actor; its supervisor starts a fresh one under the same name.
        account.tell(&AccountMsg::Deposit(-1_000)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let restarts = loop {
            let tree = node.tree().await?;
            if let Some(a) = tree.find("account") {
                if a.restarts >= 1 && a.status == ChildStatus::Running {
                    break a.restarts;
                }
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no restart seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let after_restart = account.call(&AccountMsg::Balance).await?;
        let tree = node.tree().await?;
        Ok(BankReport {
            before_crash,
            after_restart,
            restarts,
            tree: draw(&tree, 0),
        })
    }
    .await;
    node.shutdown().await;
    result
}

fn draw(t: &runtime::TreeSnapshot, depth: usize) -> String {
    let mut out = format!(
        "{}{} ({:?}, {:?}, restarts {})\n",
        "  ".repeat(depth),
        t.name,
        t.kind,
        t.status,
        t.restarts
    );
    for c in &t.children {
        out.push_str(&draw(c, depth + 1));
    }
    out
}

/// Messages of the [`Greeter`] service.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum GreeterMsg {
    /// New configuration (the greeting), pushed from KV.
    Configure(Option<String>),
    /// Greet someone with the current greeting.
    Greet(String),
}

impl chassis::Protocol for GreeterMsg {
    type Reply = String;
    type Error = String;
}

/// A service whose greeting is its configuration, kept in KV under `config/greeter`.
#[derive(Clone)]
pub struct Greeter {
    kv: registry::kv::Kv,
}

/// The KV key the greeter reads.
pub const GREETER_CONFIG: &str = "config/greeter";

impl chassis::TypedActor for Greeter {
    type Msg = GreeterMsg;
    type State = (String, tokio::task::JoinHandle<()>);
    type Args = ();

    async fn init(&self, ctx: &chassis::Ctx, _: ()) -> Result<Self::State, ActorProcessingErr> {
        // Read the config at start, then forward each change to ourselves as a message.
        let mut watcher =
            registry::kv::ConfigWatcher::start(self.kv.clone(), GREETER_CONFIG).await?;
        let greeting = watcher.current().unwrap_or_else(|| "Hello".into());
        let me = ctx.remote::<GreeterMsg>("greeter");
        let forward = tokio::spawn(async move {
            while let Some(change) = watcher.changed().await {
                if me.tell(&GreeterMsg::Configure(change)).await.is_err() {
                    break;
                }
            }
        });
        Ok((greeting, forward))
    }

    async fn on_stop(
        &self,
        _: &chassis::Ctx,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.1.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: &chassis::Ctx,
        msg: GreeterMsg,
        state: &mut Self::State,
    ) -> Result<String, String> {
        Ok(match msg {
            GreeterMsg::Configure(greeting) => {
                state.0 = greeting.unwrap_or_else(|| "Hello".into());
                state.0.clone()
            }
            GreeterMsg::Greet(who) => format!("{}, {who}!", state.0),
        })
    }
}

/// What [`live_config`] observed: the greeting before and after the config changed in KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// Answer with the first configuration.
    pub before: String,
    /// Answer after `config/greeter` was changed in KV (no restart).
    pub after: String,
    /// Answer after the key was deleted (the built-in default).
    pub deleted: String,
}

/// Run the live-config sample: a single-node KV in `data_dir`, a greeter, and two config changes.
pub async fn live_config(data_dir: &std::path::Path) -> anyhow::Result<ConfigReport> {
    let node = Node::builder()
        .name("sample-config")
        .without_admin()
        .data_dir(data_dir)
        .start()
        .await?;
    let result = async {
        let kv = registry::kv::start(&node, registry::kv::KvConfig::default()).await?;
        kv.put(GREETER_CONFIG, "Bonjour").await?;
        chassis::spawn(&node, "greeter", Greeter { kv: kv.clone() }, ()).await?;
        let greeter = chassis::Remote::<GreeterMsg>::new(&node, "greeter");
        let ada = GreeterMsg::Greet("Ada".into());
        let greet = || greeter.call(&ada);
        let before = greet().await?;

        kv.put(GREETER_CONFIG, "Hola").await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let after = loop {
            let answer = greet().await?;
            if answer.starts_with("Hola") {
                break answer;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "change never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        kv.delete(GREETER_CONFIG).await?;
        let deleted = loop {
            let answer = greet().await?;
            if answer.starts_with("Hello") {
                break answer;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "deletion never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(ConfigReport {
            before,
            after,
            deleted,
        })
    }
    .await;
    node.shutdown().await;
    result
}
