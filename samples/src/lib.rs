//! # samples: runnable examples of the Draft actor runtime
//!
//! Each sample is a function here (so a test can run it and check what it shows) and an example
//! binary under `examples/` that prints what happens:
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

pub mod pingpong;
pub mod saga;
pub mod tree;

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runtime::{ChildStatus, Node};

/// A bank account actor: its balance is its state, so a crash loses it (the supervisor restarts
/// it from its start arguments, as OTP does).
#[derive(Clone)]
pub struct Account;

/// Messages of [`Account`].
pub enum AccountMsg {
    /// Add money (negative to withdraw); panics when the balance would go below zero.
    Deposit(i64),
    /// The balance.
    Balance(RpcReplyPort<i64>),
}

impl ractor::Message for AccountMsg {}

impl Actor for Account {
    type Msg = AccountMsg;
    type State = i64;
    type Arguments = i64;

    async fn pre_start(
        &self,
        _: ActorRef<AccountMsg>,
        opening: i64,
    ) -> Result<i64, ActorProcessingErr> {
        Ok(opening)
    }

    async fn handle(
        &self,
        _: ActorRef<AccountMsg>,
        msg: AccountMsg,
        balance: &mut i64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Deposit(n) => {
                if *balance + n < 0 {
                    panic!("overdraft: balance {balance}, withdrawal {}", -n);
                }
                *balance += n;
            }
            AccountMsg::Balance(reply) => {
                let _ = reply.send(*balance);
            }
        }
        Ok(())
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
        let account = node.spawn("account", Account, 100).await?;
        account.cast(AccountMsg::Deposit(50))?;
        account.cast(AccountMsg::Deposit(25))?;
        let t = Duration::from_secs(2);
        let before_crash = node.call(&account, AccountMsg::Balance, t).await?;

        // An overdraft panics the actor; its supervisor starts a fresh one under the same name.
        account.cast(AccountMsg::Deposit(-1_000))?;
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
        let account = node.lookup::<AccountMsg>("account")?;
        let after_restart = node.call(&account, AccountMsg::Balance, t).await?;
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
pub enum GreeterMsg {
    /// New configuration (the greeting), pushed from KV.
    Configure(Option<String>),
    /// Greet someone with the current greeting.
    Greet(String, RpcReplyPort<String>),
}

impl ractor::Message for GreeterMsg {}

/// A service whose greeting is its configuration, kept in KV under `config/greeter`.
#[derive(Clone)]
pub struct Greeter {
    kv: registry::kv::Kv,
}

/// The KV key the greeter reads.
pub const GREETER_CONFIG: &str = "config/greeter";

impl Actor for Greeter {
    type Msg = GreeterMsg;
    type State = (String, tokio::task::JoinHandle<()>);
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<GreeterMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // Read the config at start, then forward each change to ourselves as a message.
        let mut watcher =
            registry::kv::ConfigWatcher::start(self.kv.clone(), GREETER_CONFIG).await?;
        let greeting = watcher.current().unwrap_or_else(|| "Hello".into());
        let forward = tokio::spawn(async move {
            while let Some(change) = watcher.changed().await {
                if myself.cast(GreeterMsg::Configure(change)).is_err() {
                    break;
                }
            }
        });
        Ok((greeting, forward))
    }

    async fn post_stop(
        &self,
        _: ActorRef<GreeterMsg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.1.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<GreeterMsg>,
        msg: GreeterMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GreeterMsg::Configure(greeting) => {
                state.0 = greeting.unwrap_or_else(|| "Hello".into());
            }
            GreeterMsg::Greet(who, reply) => {
                let _ = reply.send(format!("{}, {who}!", state.0));
            }
        }
        Ok(())
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
        let greeter = node
            .spawn("greeter", Greeter { kv: kv.clone() }, ())
            .await?;
        let t = Duration::from_secs(2);
        let greet = || node.call(&greeter, |p| GreeterMsg::Greet("Ada".into(), p), t);
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
