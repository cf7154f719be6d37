//! The `supervised-tree` sample's actors (the binary is `src/bin/supervised-tree.rs`): a
//! database pool under a `one_for_all` supervisor (a connection that crashes takes its siblings
//! down with it: they share a session) and a pipeline under `rest_for_one` (a stage that
//! crashes restarts itself and the stages after it, which depend on it).

use chassis::{ChildSpec, Ctx, Node, Protocol, Strategy, SupervisorSpec, TypedActor};
use serde::{Deserialize, Serialize};

/// What every stage and connection takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StageMsg {
    /// Process an item: `ingest` passes it to `transform`, which passes it to `store`; the
    /// answer is the item as stored and how many `store` holds.
    Item(String),
    /// Panic (to see the supervisor at work).
    Crash,
}

impl Protocol for StageMsg {
    type Reply = String;
    type Error = String;
}

/// One stage of the pipeline, or one pool connection.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The next stage's name (none for `store` and the connections).
    pub next: Option<String>,
    /// What this stage does to an item (prefix).
    pub tag: &'static str,
}

impl TypedActor for Stage {
    type Msg = StageMsg;
    type State = u64;
    type Args = ();

    async fn init(&self, _: &Ctx, _: ()) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(&self, ctx: &Ctx, msg: StageMsg, held: &mut u64) -> Result<String, String> {
        match msg {
            StageMsg::Crash => panic!("asked to crash"),
            StageMsg::Item(item) => {
                let item = format!("{}({item})", self.tag);
                match &self.next {
                    Some(next) => ctx
                        .remote::<StageMsg>(next)
                        .call(&StageMsg::Item(item))
                        .await
                        .map_err(|e| e.to_string()),
                    None => {
                        *held += 1;
                        Ok(format!("{item} #{held}"))
                    }
                }
            }
        }
    }
}

/// The pool: `db-conn-1..=n` under `db-pool` (one_for_all).
pub fn pool(node: &Node, n: usize) -> ChildSpec {
    let mut spec = SupervisorSpec::new(Strategy::OneForAll);
    for i in 1..=n {
        let name = format!("db-conn-{i}");
        spec = spec.child(chassis::worker(
            node,
            &name,
            Stage {
                next: None,
                tag: "db",
            },
            (),
        ));
    }
    ChildSpec::supervisor("db-pool", Some("db-pool".into()), spec)
}

/// The pipeline: `ingest` -> `transform` -> `store` under `pipeline` (rest_for_one).
pub fn pipeline(node: &Node) -> ChildSpec {
    let stage = |name: &str, next: Option<&str>, tag| {
        chassis::worker(
            node,
            name,
            Stage {
                next: next.map(str::to_string),
                tag,
            },
            (),
        )
    };
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .child(stage("ingest", Some("transform"), "in"))
        .child(stage("transform", Some("store"), "tr"))
        .child(stage("store", None, "st"));
    ChildSpec::supervisor("pipeline", Some("pipeline".into()), spec)
}
