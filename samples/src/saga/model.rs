//! The orders as folded from the log (pure): their states, the order command, the fold both
//! the saga and the read model use, the saga's next step, and how an event is made.

use std::collections::BTreeMap;

use broker::CloudEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
