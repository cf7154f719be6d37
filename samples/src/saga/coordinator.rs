//! The saga coordinator: orders -> payments -> inventory, compensating with a refund when
//! the reservation fails (see the `saga` module docs).

use std::time::Duration;

use broker::CloudEvent;
use chassis::{CallError, Ctx, Protocol, TypedActor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    inventory::{InventoryError, InventoryMsg},
    log::{durable, follow},
    model::{event, fold, next_step, Order, Orders, Step},
    payments::{PaymentError, PaymentMsg},
    CHANNEL,
};

/// What the saga actor takes: the log's events, forwarded to itself by its subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SagaMsg {
    /// An event of the log at this offset (CloudEvent JSON).
    Logged(u64, String),
    /// The saga's view of the orders.
    Orders,
}

impl Protocol for SagaMsg {
    type Reply = Orders;
    type Error = String;
}

/// The saga coordinator (see the module docs).
#[derive(Debug, Clone)]
pub struct Saga {
    /// Pause before each step (to let a test kill the node mid-way).
    pub step_delay: Duration,
}

/// The saga's state.
pub struct SagaState {
    model: Orders,
    /// The offset of this incarnation's marker: events before it are history.
    marker: u64,
    caught_up: bool,
    broker: broker::Broker,
    forward: tokio::task::JoinHandle<()>,
}

impl Saga {
    async fn step(
        &self,
        ctx: &Ctx,
        st: &SagaState,
        order: &Order,
        step: Step,
    ) -> Result<(), String> {
        tokio::time::sleep(self.step_delay).await;
        let id = order.id.clone();
        let data = |extra: Value| {
            let mut d = json!({"order": id});
            if let (Some(d), Some(e)) = (d.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
            d
        };
        let ty = match step {
            Step::Charge => {
                let msg = PaymentMsg::Charge {
                    order: id.clone(),
                    amount: order.amount,
                };
                let r = retry(&ctx.remote::<PaymentMsg>("payments"), &msg).await;
                match r {
                    Ok(_) => "payment.charged",
                    Err(CallError::Actor {
                        error: PaymentError::Declined(_),
                        ..
                    }) => "payment.declined",
                    Err(e) => return Err(e.to_string()),
                }
            }
            Step::Reserve => {
                let msg = InventoryMsg::Reserve {
                    order: id.clone(),
                    item: order.item.clone(),
                    qty: order.qty,
                };
                let r = retry(&ctx.remote::<InventoryMsg>("inventory"), &msg).await;
                match r {
                    Ok(_) => "inventory.reserved",
                    Err(CallError::Actor {
                        error: InventoryError::OutOfStock { .. },
                        ..
                    }) => "inventory.out_of_stock",
                    Err(e) => return Err(e.to_string()),
                }
            }
            Step::Refund => {
                retry(
                    &ctx.remote::<PaymentMsg>("payments"),
                    &PaymentMsg::Refund { order: id.clone() },
                )
                .await
                .map_err(|e| e.to_string())?;
                "payment.refunded"
            }
            Step::Complete => "order.completed",
            Step::Cancel => "order.cancelled",
        };
        let ev = event(ty, data(json!({})))?;
        st.broker
            .produce(CHANNEL, ev)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(order = %id, event = ty, "saga step done");
        Ok(())
    }
}

/// Retry a call while the runtime cannot deliver it (a node restarting), at most 50 times
/// 100 ms apart; the actor's own errors are returned at once.
async fn retry<P: Protocol>(
    remote: &chassis::Remote<P>,
    msg: &P,
) -> Result<chassis::ReplyOf<P>, CallError<chassis::ErrorOf<P>>> {
    let mut attempts = 0;
    loop {
        match remote.call(msg).await {
            Err(CallError::Runtime(e)) if attempts < 50 => {
                attempts += 1;
                tracing::warn!("saga: call failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

impl TypedActor for Saga {
    type Msg = SagaMsg;
    type State = SagaState;
    type Args = broker::Broker;

    async fn init(
        &self,
        ctx: &Ctx,
        broker: broker::Broker,
    ) -> Result<SagaState, ractor::ActorProcessingErr> {
        durable(&broker).await?;
        // The marker splits history (fold only) from what comes after (act on).
        let marker_ev = CloudEvent::builder("/orders-saga", "saga.started")
            .id(broker::fresh_id())
            .data(json!({"node": ctx.node().name()}))
            .build()?;
        let marker = broker
            .produce(CHANNEL, marker_ev)
            .await?
            .ok_or("the orders channel is not durable")?;
        let forward = follow(ctx, &broker, SagaMsg::Logged).await?;
        tracing::info!(marker, "saga started; replaying the log");
        Ok(SagaState {
            model: Orders::default(),
            marker,
            caught_up: false,
            broker,
            forward,
        })
    }

    async fn handle(&self, ctx: &Ctx, msg: SagaMsg, st: &mut SagaState) -> Result<Orders, String> {
        let (offset, json) = match msg {
            SagaMsg::Orders => return Ok(st.model.clone()),
            SagaMsg::Logged(o, j) => (o, j),
        };
        let ev = CloudEvent::from_json(&json).map_err(|e| e.to_string())?;
        let data = ev.data().unwrap_or(Value::Null);
        if let Err(e) = fold(&mut st.model, Some(offset), &ev.ty(), &data) {
            tracing::warn!(offset, "saga: {e}");
        }
        if offset < st.marker {
            return Ok(st.model.clone());
        }
        // Which orders to move on: all unfinished ones at the marker, then the event's own.
        let todo: Vec<Order> = if !st.caught_up {
            st.caught_up = true;
            st.model
                .orders
                .values()
                .filter(|o| next_step(o.status).is_some())
                .cloned()
                .collect()
        } else {
            let id = data["order"].as_str().unwrap_or_default();
            st.model.orders.get(id).into_iter().cloned().collect()
        };
        for order in todo {
            if let Some(step) = next_step(order.status) {
                // A failed step crashes the saga: its supervisor restarts it, and it carries on
                // from the log.
                if let Err(e) = self.step(ctx, st, &order, step).await {
                    panic!("saga step {step:?} of order {} failed: {e}", order.id);
                }
            }
        }
        Ok(st.model.clone())
    }

    async fn on_stop(&self, _: &Ctx, st: &mut SagaState) -> Result<(), ractor::ActorProcessingErr> {
        st.forward.abort();
        Ok(())
    }
}
