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

mod coordinator;
mod inventory;
mod log;
mod model;
mod payments;
mod read_model;

pub use coordinator::{Saga, SagaMsg, SagaState};
pub use inventory::{Inventory, InventoryError, InventoryMsg};
pub use model::{event, fold, next_step, Order, Orders, PlaceOrder, Status, Step};
pub use payments::{LedgerEntry, PaymentError, PaymentMsg, PaymentReply, Payments, PAYMENT_LIMIT};
pub use read_model::{ReadModel, ReadMsg};

/// The event log's channel.
pub const CHANNEL: &str = "orders";
