//! The payments actor: charges and refunds, idempotent per order.

use std::collections::BTreeMap;

use chassis::{Ctx, Protocol, TypedActor};
use serde::{Deserialize, Serialize};

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
