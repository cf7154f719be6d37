//! `orders-saga`: an orders service on an event log (a durable channel), a read model rebuilt
//! from offset 0, and a saga over payments and inventory that survives `kill -9` of its node.
//!
//! ```sh
//! orders-saga --part home --name home --http 127.0.0.1:8080           # log, payments, inventory, read model
//! orders-saga --part saga --name saga --seed <home's gossip address>  # the saga
//! curl -X POST 127.0.0.1:8080/orders -d '{"id":"o1","item":"widget","qty":1,"amount":10}' -H 'content-type: application/json'
//! curl 127.0.0.1:8080/orders                                          # the read model
//! curl 127.0.0.1:8080/ledger                                          # payments, per order
//! ```

use std::{collections::BTreeMap, time::Duration};

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use chassis::{Service, ServiceArgs, ServiceCtx};
use clap::{Parser, ValueEnum};
use samples::saga::{
    event, Inventory, Orders, PaymentMsg, PaymentReply, Payments, PlaceOrder, ReadModel, ReadMsg,
    Saga, CHANNEL,
};
use serde_json::json;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    /// The event log's home, payments, inventory, the read model and the HTTP API.
    Home,
    /// The saga coordinator.
    Saga,
}

#[derive(Parser)]
struct Cli {
    /// What this node runs.
    #[arg(long = "part", value_enum)]
    role: Role,
    /// Pause before each saga step, in ms (to watch it, or to kill it mid-way).
    #[arg(long, default_value_t = 0)]
    step_delay_ms: u64,
    /// Initial stock, ITEM=N (repeatable).
    #[arg(long = "stock", default_value = "widget=4")]
    stock: Vec<String>,
    #[command(flatten)]
    service: ServiceArgs,
}

type ApiError = (StatusCode, String);

async fn read_model(ctx: &ServiceCtx) -> Result<Orders, ApiError> {
    ctx.remote::<ReadMsg>("read-model")
        .call(&ReadMsg::Get)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

async fn place(
    State(ctx): State<ServiceCtx>,
    Json(cmd): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    cmd.validate().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    if read_model(&ctx).await?.orders.contains_key(&cmd.id) {
        return Err((StatusCode::CONFLICT, format!("order {} exists", cmd.id)));
    }
    let ev = event("order.placed", json!({"order": cmd.id, "command": cmd}))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let offset = ctx
        .broker()
        .produce(CHANNEL, ev)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"order": cmd.id, "offset": offset})),
    ))
}

async fn orders(State(ctx): State<ServiceCtx>) -> Result<Json<Orders>, ApiError> {
    read_model(&ctx).await.map(Json)
}

async fn ledger(State(ctx): State<ServiceCtx>) -> Result<Json<serde_json::Value>, ApiError> {
    match ctx
        .remote::<PaymentMsg>("payments")
        .call(&PaymentMsg::Ledger)
        .await
    {
        Ok(PaymentReply::Ledger(l)) => Ok(Json(json!(l))),
        Ok(other) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

fn parse_stock(items: &[String]) -> Result<BTreeMap<String, u32>, String> {
    items
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| format!("--stock '{s}' is not ITEM=N"))?;
            let n = v
                .parse()
                .map_err(|_| format!("--stock '{s}': '{v}' is not a number"))?;
            Ok((k.to_string(), n))
        })
        .collect()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    chassis::init_tracing();
    let stock = match parse_stock(&cli.stock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let delay = Duration::from_millis(cli.step_delay_ms);
    let svc = match cli.role {
        Role::Home => Service::builder("orders")
            .child(|ctx| chassis::worker(ctx.node(), "payments", Payments, ()))
            .child(move |ctx| chassis::worker(ctx.node(), "inventory", Inventory, stock.clone()))
            .child(|ctx| chassis::worker(ctx.node(), "read-model", ReadModel, ctx.broker().clone()))
            .http(|ctx| {
                Router::new()
                    .route("/orders", get(orders).post(place))
                    .route("/ledger", get(ledger))
                    .with_state(ctx.clone())
            }),
        Role::Saga => Service::builder("orders-saga").child(move |ctx| {
            chassis::worker(
                ctx.node(),
                "saga",
                Saga { step_delay: delay },
                ctx.broker().clone(),
            )
        }),
    };
    match svc.run_with(cli.service).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
