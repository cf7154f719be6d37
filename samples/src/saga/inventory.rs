//! The inventory actor: stock reservations, idempotent per order.

use std::collections::BTreeMap;

use chassis::{Ctx, Protocol, TypedActor};
use serde::{Deserialize, Serialize};

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
