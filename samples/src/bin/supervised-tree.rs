//! `supervised-tree`: a service whose actors form a realistic tree: a `one_for_all` database
//! pool and a `rest_for_one` pipeline, under the service's supervisor.
//!
//! ```sh
//! supervised-tree --admin 127.0.0.1:7080 --http 127.0.0.1:8080
//! curl -X POST 127.0.0.1:8080/items/apple       # in(apple) -> tr(..) -> st(..) #1
//! curl -X POST 127.0.0.1:8080/crash/transform   # transform and store restart, ingest does not
//! dctl --admin 127.0.0.1:7080 tree              # restarts: 1 on transform and store
//! ```

use axum::{extract::Path, http::StatusCode, routing::post, Router};
use chassis::{Service, ServiceArgs};
use clap::Parser;
use samples::tree::{pipeline, pool, StageMsg};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = ServiceArgs::parse();
    chassis::init_tracing();
    let svc = Service::builder("supervised-tree")
        .child(|ctx| pool(ctx.node(), 3))
        .child(|ctx| pipeline(ctx.node()))
        .http(|ctx| {
            let (c1, c2) = (ctx.clone(), ctx.clone());
            Router::new()
                .route(
                    "/items/{item}",
                    post(move |Path(item): Path<String>| async move {
                        c1.remote::<StageMsg>("ingest")
                            .call(&StageMsg::Item(item))
                            .await
                            .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
                    }),
                )
                .route(
                    "/crash/{actor}",
                    post(move |Path(actor): Path<String>| async move {
                        c2.remote::<StageMsg>(&actor)
                            .tell(&StageMsg::Crash)
                            .await
                            .map(|()| format!("{actor} told to crash"))
                            .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))
                    }),
                )
        });
    match svc.run_with(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
