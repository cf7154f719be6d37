//! The `orders-saga` sample (CQRS, event sourcing and a saga; the binary is
//! `src/bin/orders-saga.rs`).
//!
//! * **Event log**: the durable broker channel [`CHANNEL`] (fsynced on its home node before a
//!   produce is acknowledged). Every fact is an event there: `order.placed`, `payment.charged`,
//!   `payment.declined`, `inventory.reserved`, `inventory.out_of_stock`, `payment.refunded`,
//!   `order.completed`, `order.cancelled` (and the saga's own `saga.started` markers).
//! * **Command side**: `POST /orders` validates and appends `order.placed`.
//! * **Query side**: a read model folded from the log, rebuilt from offset 0 at every start
//!   ([`fold`], the same pure function the saga uses).
//! * **Saga** ([`Saga`]): orders -> payments -> inventory, compensating (refund) when the
//!   reservation fails. Its state is the log: on start it appends a `saga.started` marker, folds
//!   everything before the marker, then takes the next step of every unfinished order, and from
//!   then on one step per new event. Steps call [`Payments`] and [`Inventory`], which are
//!   idempotent per order, so a step repeated after a crash (done, but its event not yet
//!   appended) has its effect once; each step's event is appended once, since the saga acts
//!   only on events it has not seen acted upon.

use std::{collections::BTreeMap, time::Duration};

use broker::{CloudEvent, ConsumeOptions, Delivery, StartAt};
use chassis::{CallError, Ctx, Protocol, TypedActor};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The event log's channel.
pub const CHANNEL: &str = "orders";

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed, not charged yet.
    Placed,
    /// Paid, not reserved yet.
    Charged,
    /// The payment was declined.
    Declined,
    /// Paid and reserved.
    Reserved,
    /// Paid, but there was no stock: to be refunded.
    OutOfStock,
    /// Refunded after a failed reservation.
    Refunded,
    /// Done.
    Completed,
    /// Given up (declined, or refunded).
    Cancelled,
}

/// One order, as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: String,
    /// What is bought.
    pub item: String,
    /// How many.
    pub qty: u32,
    /// What it costs.
    pub amount: u64,
    /// Where it is.
    pub status: Status,
}

/// A placed order, as `POST /orders` takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Order id (letters, digits, `-`).
    pub id: String,
    /// Item.
    pub item: String,
    /// Quantity (> 0).
    pub qty: u32,
    /// Amount (> 0).
    pub amount: u64,
}

impl PlaceOrder {
    /// Check a command before it becomes an event.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "order id '{}' must be letters, digits, '-'",
                self.id
            ));
        }
        if self.qty == 0 || self.amount == 0 {
            return Err("qty and amount must be > 0".into());
        }
        Ok(())
    }
}

/// The read model: every order by id, and the last offset folded in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// Orders by id.
    pub orders: BTreeMap<String, Order>,
    /// The last log offset applied.
    pub offset: Option<u64>,
}

/// Apply one event to the model (pure). Events about unknown orders, or that do not follow
/// from the order's status, are ignored (and named in the `Err`), so a model never goes
/// backwards.
pub fn fold(model: &mut Orders, offset: Option<u64>, ty: &str, data: &Value) -> Result<(), String> {
    if offset.is_some() {
        model.offset = offset;
    }
    let id = data["order"].as_str().unwrap_or_default().to_string();
    if ty == "order.placed" {
        let placed: PlaceOrder = serde_json::from_value(data["command"].clone())
            .map_err(|e| format!("bad order.placed: {e}"))?;
        if model.orders.contains_key(&placed.id) {
            return Err(format!("order {} placed twice", placed.id));
        }
        model.orders.insert(
            placed.id.clone(),
            Order {
                id: placed.id,
                item: placed.item,
                qty: placed.qty,
                amount: placed.amount,
                status: Status::Placed,
            },
        );
        return Ok(());
    }
    let Some(order) = model.orders.get_mut(&id) else {
        return if ty.starts_with("saga.") {
            Ok(())
        } else {
            Err(format!("{ty} for unknown order '{id}'"))
        };
    };
    use Status::*;
    let next = match (order.status, ty) {
        (Placed, "payment.charged") => Charged,
        (Placed, "payment.declined") => Declined,
        (Charged, "inventory.reserved") => Reserved,
        (Charged, "inventory.out_of_stock") => OutOfStock,
        (OutOfStock, "payment.refunded") => Refunded,
        (Reserved, "order.completed") => Completed,
        (Declined | Refunded, "order.cancelled") => Cancelled,
        (s, t) => return Err(format!("{t} does not follow {s:?} for order {id}")),
    };
    order.status = next;
    Ok(())
}

/// The saga's next step for an order in this status (pure).
pub fn next_step(status: Status) -> Option<Step> {
    match status {
        Status::Placed => Some(Step::Charge),
        Status::Charged => Some(Step::Reserve),
        Status::Reserved => Some(Step::Complete),
        Status::OutOfStock => Some(Step::Refund),
        Status::Declined | Status::Refunded => Some(Step::Cancel),
        Status::Completed | Status::Cancelled => None,
    }
}

/// A step of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Charge the payment.
    Charge,
    /// Reserve the stock.
    Reserve,
    /// Mark it completed.
    Complete,
    /// Refund the payment (compensation).
    Refund,
    /// Mark it cancelled.
    Cancel,
}

/// An event for the log, with a deterministic id (`<order>:<type>`).
pub fn event(ty: &str, data: Value) -> Result<CloudEvent, String> {
    let id = format!("{}:{ty}", data["order"].as_str().unwrap_or("saga"));
    CloudEvent::builder("/orders-saga", ty)
        .id(id)
        .data(data)
        .build()
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Payments and inventory: idempotent per order.

/// What the payments actor takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PaymentMsg {
    /// Charge an order once (again: the same answer, no second charge).
    Charge {
        /// Order id.
        order: String,
        /// Amount.
        amount: u64,
    },
    /// Refund an order's charge once.
    Refund {
        /// Order id.
        order: String,
    },
    /// The ledger.
    Ledger,
}

/// One order's entry in the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Amount charged (0: never).
    pub charged: u64,
    /// Charges actually applied (must be at most 1).
    pub charges_applied: u32,
    /// Refunds actually applied (must be at most 1).
    pub refunds_applied: u32,
    /// Requests answered from the ledger without applying anything (retries).
    pub repeats: u32,
}

/// Payments' answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentReply {
    /// Done (or had been done).
    Done,
    /// The ledger.
    Ledger(BTreeMap<String, LedgerEntry>),
}

/// Payments' errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PaymentError {
    /// Over the limit.
    #[error("declined: {0} is over the limit")]
    Declined(u64),
    /// Nothing to refund.
    #[error("nothing was charged")]
    NotCharged,
}

impl Protocol for PaymentMsg {
    type Reply = PaymentReply;
    type Error = PaymentError;
}

/// Payments above this are declined.
pub const PAYMENT_LIMIT: u64 = 1000;

/// The payments service: an in-memory ledger.
#[derive(Debug, Clone)]
pub struct Payments;

impl TypedActor for Payments {
    type Msg = PaymentMsg;
    type State = BTreeMap<String, LedgerEntry>;
    type Args = ();

    async fn init(&self, _: &Ctx, _: ()) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(BTreeMap::new())
    }

    async fn handle(
        &self,
        _: &Ctx,
        msg: PaymentMsg,
        ledger: &mut Self::State,
    ) -> Result<PaymentReply, PaymentError> {
        match msg {
            PaymentMsg::Charge { order, amount } => {
                if amount > PAYMENT_LIMIT {
                    return Err(PaymentError::Declined(amount));
                }
                let e = ledger.entry(order).or_default();
                if e.charges_applied == 0 {
                    e.charges_applied = 1;
                    e.charged = amount;
                } else {
                    e.repeats += 1;
                }
                Ok(PaymentReply::Done)
            }
            PaymentMsg::Refund { order } => {
                let e = ledger.get_mut(&order).ok_or(PaymentError::NotCharged)?;
                if e.refunds_applied == 0 {
                    e.refunds_applied = 1;
                } else {
                    e.repeats += 1;
                }
                Ok(PaymentReply::Done)
            }
            PaymentMsg::Ledger => Ok(PaymentReply::Ledger(ledger.clone())),
        }
    }
}

/// What the inventory actor takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InventoryMsg {
    /// Reserve stock for an order once.
    Reserve {
        /// Order id.
        order: String,
        /// Item.
        item: String,
        /// Quantity.
        qty: u32,
    },
}

/// Inventory's errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InventoryError {
    /// Not enough left.
    #[error("out of stock: {left} {item} left")]
    OutOfStock {
        /// The item.
        item: String,
        /// How many are left.
        left: u32,
    },
}

impl Protocol for InventoryMsg {
    type Reply = u32;
    type Error = InventoryError;
}

/// The inventory: stock per item, reservations per order.
#[derive(Debug, Clone)]
pub struct Inventory;

impl TypedActor for Inventory {
    type Msg = InventoryMsg;
    type State = (BTreeMap<String, u32>, BTreeMap<String, u32>);
    type Args = BTreeMap<String, u32>;

    async fn init(
        &self,
        _: &Ctx,
        stock: Self::Args,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok((stock, BTreeMap::new()))
    }

    async fn handle(
        &self,
        _: &Ctx,
        msg: InventoryMsg,
        (stock, reserved): &mut Self::State,
    ) -> Result<u32, InventoryError> {
        let InventoryMsg::Reserve { order, item, qty } = msg;
        if let Some(q) = reserved.get(&order) {
            return Ok(*q);
        }
        let left = stock.get(&item).copied().unwrap_or(0);
        if left < qty {
            return Err(InventoryError::OutOfStock { item, left });
        }
        stock.insert(item, left - qty);
        reserved.insert(order, qty);
        Ok(qty)
    }
}

// ---------------------------------------------------------------------------------------------
// The saga.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(id: &str) -> Value {
        json!({"order": id, "command": {"id": id, "item": "widget", "qty": 1, "amount": 10}})
    }

    #[test]
    fn the_happy_path_and_the_compensation_fold_to_their_ends() {
        let mut m = Orders::default();
        for (o, ty) in [
            (0, "order.placed"),
            (1, "payment.charged"),
            (2, "inventory.reserved"),
            (3, "order.completed"),
        ] {
            let data = if ty == "order.placed" {
                placed("a")
            } else {
                json!({"order": "a"})
            };
            fold(&mut m, Some(o), ty, &data).unwrap();
        }
        assert_eq!(m.orders["a"].status, Status::Completed);
        assert_eq!(m.offset, Some(3));
        fold(&mut m, None, "order.placed", &placed("b")).unwrap();
        for ty in [
            "payment.charged",
            "inventory.out_of_stock",
            "payment.refunded",
            "order.cancelled",
        ] {
            assert!(next_step(m.orders["b"].status).is_some());
            fold(&mut m, None, ty, &json!({"order": "b"})).unwrap();
        }
        assert_eq!(m.orders["b"].status, Status::Cancelled);
        assert_eq!(next_step(Status::Cancelled), None);
    }

    #[test]
    fn events_out_of_order_or_repeated_are_ignored_and_named() {
        let mut m = Orders::default();
        fold(&mut m, None, "order.placed", &placed("a")).unwrap();
        let err = fold(&mut m, None, "order.completed", &json!({"order": "a"})).unwrap_err();
        assert_eq!(err, "order.completed does not follow Placed for order a");
        assert_eq!(m.orders["a"].status, Status::Placed);
        assert!(fold(&mut m, None, "order.placed", &placed("a"))
            .unwrap_err()
            .contains("placed twice"));
        assert!(fold(&mut m, None, "payment.charged", &json!({"order": "zz"})).is_err());
        fold(&mut m, None, "saga.started", &json!({"node": "n"})).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The query side.

/// Subscribe to the log from offset 0 and tell each event, once and in order, to this actor
/// as `wrap(offset, json)`.
///
/// Workaround: a consumer on another node than the channel's home can miss events produced
/// between the end of its replay and the moment its interest reaches the home (until a later
/// event shows the gap). So when no event came for [`IDLE_RESUBSCRIBE`], the follower
/// subscribes again from the next offset: the replay brings whatever was missed, and offsets
/// already seen are skipped.
async fn follow<P: Protocol + Sync>(
    ctx: &Ctx,
    broker: &broker::Broker,
    wrap: fn(u64, String) -> P,
) -> Result<tokio::task::JoinHandle<()>, ractor::ActorProcessingErr> {
    let name = ctx
        .myself()
        .get_name()
        .ok_or("a log follower must be named")?;
    let me = ctx.remote::<P>(&name);
    let broker = broker.clone();
    let mut sub = broker
        .consume(CHANNEL, ConsumeOptions::default().from(StartAt::Beginning))
        .await?;
    Ok(tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            match tokio::time::timeout(IDLE_RESUBSCRIBE, sub.next()).await {
                Ok(Some(Delivery::Event {
                    event,
                    offset: Some(o),
                })) if o >= next => {
                    next = o + 1;
                    if me
                        .tell(&wrap(o, event.as_json().to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Ok(Some(Delivery::Closed(why))) => {
                    tracing::warn!("the log subscription ended: {why}")
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {}
            }
            match broker
                .consume(
                    CHANNEL,
                    ConsumeOptions::default().from(StartAt::Offset(next)),
                )
                .await
            {
                Ok(s) => sub = s,
                Err(e) => {
                    tracing::warn!("cannot subscribe to the log again: {e}");
                    tokio::time::sleep(IDLE_RESUBSCRIBE).await;
                }
            }
        }
    }))
}

/// See [`follow`].
const IDLE_RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Wait (at most 30 s) until this node knows the log's channel as durable.
async fn durable(broker: &broker::Broker) -> Result<(), ractor::ActorProcessingErr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broker.durable_home(CHANNEL).is_none() {
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("channel '{CHANNEL}' is not durable (is the home node up?)").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What the read model takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadMsg {
    /// An event of the log.
    Logged(u64, String),
    /// The model.
    Get,
}

impl Protocol for ReadMsg {
    type Reply = Orders;
    type Error = String;
}

/// The query side: the orders folded from the log, from offset 0 at every start. Declares the
/// log's channel durable on this node (its home) first.
#[derive(Debug, Clone)]
pub struct ReadModel;

impl TypedActor for ReadModel {
    type Msg = ReadMsg;
    type State = (Orders, tokio::task::JoinHandle<()>);
    type Args = broker::Broker;

    async fn init(
        &self,
        ctx: &Ctx,
        broker: broker::Broker,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        broker.declare_durable(CHANNEL).await?;
        let task = follow(ctx, &broker, ReadMsg::Logged).await?;
        Ok((Orders::default(), task))
    }

    async fn handle(
        &self,
        _: &Ctx,
        msg: ReadMsg,
        (model, _): &mut Self::State,
    ) -> Result<Orders, String> {
        if let ReadMsg::Logged(offset, json) = msg {
            let ev = CloudEvent::from_json(&json).map_err(|e| e.to_string())?;
            if let Err(e) = fold(
                model,
                Some(offset),
                &ev.ty(),
                &ev.data().unwrap_or(Value::Null),
            ) {
                tracing::warn!(offset, "read model: {e}");
            }
        }
        Ok(model.clone())
    }

    async fn on_stop(
        &self,
        _: &Ctx,
        (_, task): &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}
