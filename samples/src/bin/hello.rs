//! The README's quick start: a typed actor, an HTTP route, live config from the KV store.
use axum::{extract::Path, http::StatusCode, routing::get, Router};
use chassis::{ActorProcessingErr as StartError, Ctx, LiveConfig, Protocol, Service, TypedActor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Hello(String); // the message; a call answers Reply or Error
#[rustfmt::skip]
impl Protocol for Hello { type Reply = String; type Error = String; }

#[derive(Clone, Deserialize)]
struct Config(String); // the greeting, from the KV key config/hello

#[derive(Clone)]
struct Greeter;
#[rustfmt::skip]
impl TypedActor for Greeter {
    type Msg = Hello; type State = LiveConfig<Config>; type Args = LiveConfig<Config>;
    async fn init(&self, _: &Ctx, cfg: Self::Args) -> Result<Self::State, StartError> { Ok(cfg) }
    async fn handle(&self, _: &Ctx, Hello(who): Hello, cfg: &mut Self::State) -> Result<String, String> {
        Ok(format!("{}, {who}!", cfg.get().0))
    }
}

#[tokio::main]
#[rustfmt::skip]
async fn main() -> Result<(), chassis::Error> {
    let check = |c: &Config| if c.0.is_empty() { Err("empty greeting".into()) } else { Ok(()) };
    Service::builder("hello")
        .config("config/hello", Config("Hello".into()), check)
        .child(|ctx| chassis::worker(ctx.node(), "greeter", Greeter, ctx.config().expect("set above")))
        .http(|ctx| {
            let greeter = ctx.remote::<Hello>("greeter");
            Router::new().route("/hello/{who}", get(move |Path(who): Path<String>| async move {
                greeter.call(&Hello(who)).await.map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
            }))
        })
        .run().await
}
