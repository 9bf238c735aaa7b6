//! Payment intents. An intent is the fold of its own event log, like an order: every change is
//! an event appended with an expected version, so two writers (a client's hint and the watcher,
//! two watchers) can't both apply one. The `decide_*` methods turn what happened on the chain, or
//! on the clock, into the events it causes; they touch nothing.
//!
//! States: `awaiting_payment` -> (a transfer seen, not yet final) `confirming` -> (final, short)
//! `partially_paid` -> (enough) `paid`; at expiry `expired` (nothing) or `underpaid`; money
//! after that is `paid_late`; any money the café must give back makes the intent `refund_due`
//! until the refunds are recorded (`refunded`). A cancelled order closes its intent (`cancelled`).

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::amount::Quote;
use crate::chains::AssetKind;

/// What was agreed when the intent was made. Never changes afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub intent_id: String,
    pub order_id: String,
    pub customer_id: String,
    /// The chain's configured name and id, and the asset, as configured when the intent was made.
    pub chain: String,
    pub chain_id: u64,
    pub asset: String,
    pub asset_kind: AssetKind,
    pub decimals: u8,
    pub amount_cents: u64,
    /// In the asset's base units.
    pub amount_due: U256,
    /// The native coin's price the amount was computed at (none for stablecoins).
    pub quote: Option<Quote>,
    pub deposit_address: Address,
    pub derivation_index: u64,
    pub payment_uri: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub monitor_until_ms: i64,
    /// The chain's latest block when the intent was made: transfers in or before it are not
    /// payments for this intent.
    pub created_block: u64,
}

/// One transfer, identified across every intent by chain, transaction and log. A native-coin
/// transfer has no log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferKey {
    pub chain_id: u64,
    pub tx_hash: B256,
    pub log_index: Option<u64>,
}

impl std::fmt::Display for TransferKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.log_index {
            Some(i) => write!(f, "{}:{}:{i}", self.chain_id, self.tx_hash),
            None => write!(f, "{}:{}:value", self.chain_id, self.tx_hash),
        }
    }
}

/// Money that reached a deposit address, as read from the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: TransferKey,
    pub from: Address,
    pub to: Address,
    pub amount: U256,
    pub block_number: u64,
    pub block_hash: B256,
    /// The block's timestamp: whether the money was on time is judged by when it was mined, not
    /// by when anyone noticed.
    pub block_time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// Nothing arrived before expiry.
    Expired,
    /// Some, but not enough, arrived before expiry.
    Underpaid,
    /// The order was cancelled before it was paid.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// More than the amount due arrived.
    Excess,
    /// What arrived before a failed intent's end.
    Underpaid,
    /// Money that arrived after the intent ended.
    Late,
    /// A paid order was cancelled before the kitchen started it.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase")]
pub enum IntentEvent {
    IntentCreated {
        terms: Terms,
    },
    /// Seen on the chain, not yet final: the intent is confirming.
    TransferSeen {
        transfer: Transfer,
    },
    /// A seen transfer whose block left the canonical chain before it was final.
    TransferDropped {
        key: TransferKey,
    },
    /// Final, checked, and recorded as credited to this intent alone.
    TransferCredited {
        transfer: Transfer,
    },
    PaymentConfirmed {
        received: U256,
    },
    PaymentFailed {
        reason: FailReason,
        received: U256,
    },
    RefundDue {
        amount: U256,
        reason: RefundReason,
    },
    RefundAddressGiven {
        address: Address,
    },
    Refunded {
        tx_hash: B256,
        to: Address,
        amount: U256,
    },
}

impl IntentEvent {
    pub fn name(&self) -> &'static str {
        match self {
            IntentEvent::IntentCreated { .. } => "IntentCreated",
            IntentEvent::TransferSeen { .. } => "TransferSeen",
            IntentEvent::TransferDropped { .. } => "TransferDropped",
            IntentEvent::TransferCredited { .. } => "TransferCredited",
            IntentEvent::PaymentConfirmed { .. } => "PaymentConfirmed",
            IntentEvent::PaymentFailed { .. } => "PaymentFailed",
            IntentEvent::RefundDue { .. } => "RefundDue",
            IntentEvent::RefundAddressGiven { .. } => "RefundAddressGiven",
            IntentEvent::Refunded { .. } => "Refunded",
        }
    }

    /// How a payment ended, for the metrics: `confirmed`, why it failed (`expired`, `underpaid`,
    /// `cancelled`), or `refunded`; `None` for the steps between.
    pub fn outcome(&self) -> Option<&'static str> {
        match self {
            IntentEvent::PaymentConfirmed { .. } => Some("confirmed"),
            IntentEvent::PaymentFailed { reason: FailReason::Expired, .. } => Some("expired"),
            IntentEvent::PaymentFailed { reason: FailReason::Underpaid, .. } => Some("underpaid"),
            IntentEvent::PaymentFailed { reason: FailReason::Cancelled, .. } => Some("cancelled"),
            IntentEvent::Refunded { .. } => Some("refunded"),
            _ => None,
        }
    }
}

/// An event in an intent's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredIntentEvent {
    pub event_id: String,
    pub intent_id: String,
    /// The order the intent pays for (the order consumer reads it off the payments stream).
    pub order_id: String,
    /// 1 for `IntentCreated`, then one more per event.
    pub version: u64,
    pub occurred_at_ms: i64,
    /// A user id, or `system` (the watcher, the saga).
    pub actor: String,
    pub correlation_id: Option<String>,
    /// The W3C trace context of the work that made this event (see the order events').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub event: IntentEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    AwaitingPayment,
    PartiallyPaid,
    Confirming,
    Paid,
    Expired,
    Underpaid,
    PaidLate,
    Cancelled,
    RefundDue,
    Refunded,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::AwaitingPayment => "awaiting_payment",
            IntentStatus::PartiallyPaid => "partially_paid",
            IntentStatus::Confirming => "confirming",
            IntentStatus::Paid => "paid",
            IntentStatus::Expired => "expired",
            IntentStatus::Underpaid => "underpaid",
            IntentStatus::PaidLate => "paid_late",
            IntentStatus::Cancelled => "cancelled",
            IntentStatus::RefundDue => "refund_due",
            IntentStatus::Refunded => "refunded",
        }
    }
}

/// How a closed intent's payment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Paid,
    Failed(FailReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub tx_hash: B256,
    pub to: Address,
    pub amount: U256,
}

/// The current intent: the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub terms: Terms,
    pub version: u64,
    pub status: IntentStatus,
    pub outcome: Option<Outcome>,
    /// Seen, not yet final.
    pub pending: Vec<Transfer>,
    pub credited: Vec<Transfer>,
    /// The sum of credited transfers.
    pub received: U256,
    /// Credited after the intent ended.
    pub received_late: U256,
    pub refund_address: Option<Address>,
    pub refund_due: U256,
    pub refunds: Vec<Refund>,
    pub updated_at_ms: i64,
    /// The trace the intent was made in (its order's): later events of the intent continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Why a decision makes no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("this transfer is for chain {got}, the intent is on chain {expected}")]
    WrongChain { got: u64, expected: u64 },
    #[error("this transfer went to {got}, not to the intent's deposit address")]
    WrongRecipient { got: Address },
    #[error("the intent's payment has already ended ({0})")]
    Closed(&'static str),
    #[error("no refund is due")]
    NoRefundDue,
    #[error("the refund must go to the address the customer gave")]
    RefundAddressMismatch,
    #[error("give a refund address first")]
    NoRefundAddress,
}

impl Intent {
    pub fn from_events(events: &[StoredIntentEvent]) -> Option<Intent> {
        let (first, rest) = events.split_first()?;
        let IntentEvent::IntentCreated { terms } = &first.event else { return None };
        let mut intent = Intent {
            terms: terms.clone(),
            version: first.version,
            status: IntentStatus::AwaitingPayment,
            outcome: None,
            pending: Vec::new(),
            credited: Vec::new(),
            received: U256::ZERO,
            received_late: U256::ZERO,
            refund_address: None,
            refund_due: U256::ZERO,
            refunds: Vec::new(),
            updated_at_ms: first.occurred_at_ms,
            traceparent: first.traceparent.clone(),
        };
        for e in rest {
            intent.apply(e);
        }
        Some(intent)
    }

    pub fn apply(&mut self, e: &StoredIntentEvent) {
        self.version = e.version;
        self.updated_at_ms = e.occurred_at_ms;
        match &e.event {
            IntentEvent::IntentCreated { .. } => {}
            IntentEvent::TransferSeen { transfer } => {
                if !self.pending.iter().any(|t| t.key == transfer.key) {
                    self.pending.push(transfer.clone());
                }
            }
            IntentEvent::TransferDropped { key } => self.pending.retain(|t| t.key != *key),
            IntentEvent::TransferCredited { transfer } => {
                self.pending.retain(|t| t.key != transfer.key);
                self.received = self.received.saturating_add(transfer.amount);
                if self.outcome.is_some() {
                    self.received_late = self.received_late.saturating_add(transfer.amount);
                }
                self.credited.push(transfer.clone());
            }
            IntentEvent::PaymentConfirmed { .. } => self.outcome = Some(Outcome::Paid),
            IntentEvent::PaymentFailed { reason, .. } => self.outcome = Some(Outcome::Failed(*reason)),
            IntentEvent::RefundDue { amount, .. } => self.refund_due = self.refund_due.saturating_add(*amount),
            IntentEvent::RefundAddressGiven { address } => self.refund_address = Some(*address),
            IntentEvent::Refunded { tx_hash, to, amount } => self.refunds.push(Refund { tx_hash: *tx_hash, to: *to, amount: *amount }),
        }
        self.status = self.derive_status();
    }

    pub fn refunded(&self) -> U256 {
        self.refunds.iter().fold(U256::ZERO, |sum, r| sum.saturating_add(r.amount))
    }

    /// What the café still owes back.
    pub fn refund_outstanding(&self) -> U256 {
        self.refund_due.saturating_sub(self.refunded())
    }

    fn derive_status(&self) -> IntentStatus {
        if !self.refund_due.is_zero() {
            return if self.refund_outstanding().is_zero() { IntentStatus::Refunded } else { IntentStatus::RefundDue };
        }
        match self.outcome {
            Some(_) if !self.received_late.is_zero() => IntentStatus::PaidLate,
            Some(Outcome::Paid) => IntentStatus::Paid,
            Some(Outcome::Failed(FailReason::Expired)) => IntentStatus::Expired,
            Some(Outcome::Failed(FailReason::Underpaid)) => IntentStatus::Underpaid,
            Some(Outcome::Failed(FailReason::Cancelled)) => IntentStatus::Cancelled,
            None if !self.pending.is_empty() => IntentStatus::Confirming,
            None if !self.received.is_zero() => IntentStatus::PartiallyPaid,
            None => IntentStatus::AwaitingPayment,
        }
    }

    /// Still taking payments for the order.
    pub fn is_open(&self) -> bool {
        self.outcome.is_none()
    }

    /// Still watched on the chain: open, or ended but inside `monitor_until` (late money).
    pub fn is_monitored(&self, now_ms: i64) -> bool {
        self.is_open() || now_ms < self.terms.monitor_until_ms
    }

    pub fn has_credited(&self, key: &TransferKey) -> bool {
        self.credited.iter().any(|t| t.key == *key)
    }

    fn check_transfer(&self, t: &Transfer) -> Result<(), IntentError> {
        if t.key.chain_id != self.terms.chain_id {
            return Err(IntentError::WrongChain { got: t.key.chain_id, expected: self.terms.chain_id });
        }
        if t.to != self.terms.deposit_address {
            return Err(IntentError::WrongRecipient { got: t.to });
        }
        Ok(())
    }

    /// A transfer seen on the chain but not yet final: the intent is confirming. Nothing if it
    /// is already pending or credited.
    pub fn decide_seen(&self, t: &Transfer) -> Result<Vec<IntentEvent>, IntentError> {
        self.check_transfer(t)?;
        if self.has_credited(&t.key) || self.pending.iter().any(|p| p.key == t.key) {
            return Ok(vec![]);
        }
        Ok(vec![IntentEvent::TransferSeen { transfer: t.clone() }])
    }

    /// A pending transfer whose block is no longer canonical.
    pub fn decide_dropped(&self, key: &TransferKey) -> Vec<IntentEvent> {
        if self.pending.iter().any(|p| p.key == *key) { vec![IntentEvent::TransferDropped { key: *key }] } else { vec![] }
    }

    /// A final, verified transfer (already claimed for this intent alone in the store): credit it,
    /// then settle. Money mined by the expiry pays the order; anything after the intent ended,
    /// or more than was asked, is owed back.
    pub fn decide_credit(&self, t: &Transfer) -> Result<Vec<IntentEvent>, IntentError> {
        self.check_transfer(t)?;
        if self.has_credited(&t.key) {
            return Ok(vec![]);
        }
        let mut events = vec![IntentEvent::TransferCredited { transfer: t.clone() }];
        let received = self.received.saturating_add(t.amount);
        let due = self.terms.amount_due;
        // Only money mined by the deadline pays the order: a late top-up never completes an
        // on-time part payment.
        let on_time = |x: &Transfer| x.block_time_ms <= self.terms.expires_at_ms;
        let paid_on_time = self.credited.iter().filter(|x| on_time(x)).fold(U256::ZERO, |sum, x| sum.saturating_add(x.amount));
        match self.outcome {
            None if on_time(t) && paid_on_time.saturating_add(t.amount) >= due => {
                events.push(IntentEvent::PaymentConfirmed { received });
                if received > due {
                    events.push(IntentEvent::RefundDue { amount: received - due, reason: RefundReason::Excess });
                }
            }
            // Too little so far, or too late: it waits for the expiry, which settles it.
            None => {}
            Some(Outcome::Paid) => events.push(IntentEvent::RefundDue { amount: t.amount, reason: RefundReason::Excess }),
            Some(Outcome::Failed(_)) => events.push(IntentEvent::RefundDue { amount: t.amount, reason: RefundReason::Late }),
        }
        Ok(events)
    }

    /// The clock passed the expiry and the chain's final block is past it too (so everything
    /// mined in time has been seen and is final). Nothing while a transfer mined in time is still
    /// confirming (one mined after the deadline can't save the intent, so it doesn't hold it open).
    pub fn decide_expiry(&self, now_ms: i64, final_block_time_ms: i64) -> Vec<IntentEvent> {
        let deadline = self.terms.expires_at_ms;
        let confirming_in_time = self.pending.iter().any(|p| p.block_time_ms <= deadline);
        if !self.is_open() || now_ms < deadline || final_block_time_ms < deadline || confirming_in_time {
            return vec![];
        }
        if self.received.is_zero() {
            return vec![IntentEvent::PaymentFailed { reason: FailReason::Expired, received: U256::ZERO }];
        }
        // Credited in time but short (a late top-up past the deadline counts as late).
        vec![
            IntentEvent::PaymentFailed { reason: FailReason::Underpaid, received: self.received },
            IntentEvent::RefundDue { amount: self.received, reason: RefundReason::Underpaid },
        ]
    }

    /// The order was cancelled: close an open intent and owe back what arrived; a paid one owes
    /// back everything (once).
    pub fn decide_cancel(&self) -> Result<Vec<IntentEvent>, IntentError> {
        match self.outcome {
            Some(Outcome::Paid) if self.refund_due < self.received => {
                Ok(vec![IntentEvent::RefundDue { amount: self.received - self.refund_due, reason: RefundReason::Cancelled }])
            }
            Some(_) => Ok(vec![]),
            None => {
                let mut events = vec![IntentEvent::PaymentFailed { reason: FailReason::Cancelled, received: self.received }];
                if !self.received.is_zero() {
                    events.push(IntentEvent::RefundDue { amount: self.received, reason: RefundReason::Underpaid });
                }
                Ok(events)
            }
        }
    }

    /// The customer names where their refund goes. Refunds never go to a transfer's sender on
    /// their own: an exchange withdrawal's sender is the exchange's hot wallet.
    pub fn decide_refund_address(&self, address: Address) -> Result<Vec<IntentEvent>, IntentError> {
        if address == Address::ZERO || address == self.terms.deposit_address {
            return Err(IntentError::RefundAddressMismatch);
        }
        if self.refund_address == Some(address) {
            return Ok(vec![]);
        }
        // Once money is owed to a given address, it stays: a manager may be sending the refund
        // right now, and a switch would make that transfer count for nothing.
        if !self.refunds.is_empty() || (self.refund_address.is_some() && !self.refund_outstanding().is_zero()) {
            return Err(IntentError::Closed("the refund address is fixed while a refund is owed to it"));
        }
        Ok(vec![IntentEvent::RefundAddressGiven { address }])
    }

    /// A refund verified on the chain (a final transfer of the intent's asset to the refund
    /// address; claimed in the store like a payment).
    pub fn decide_refund(&self, t: &Transfer) -> Result<Vec<IntentEvent>, IntentError> {
        if t.key.chain_id != self.terms.chain_id {
            return Err(IntentError::WrongChain { got: t.key.chain_id, expected: self.terms.chain_id });
        }
        let to = self.refund_address.ok_or(IntentError::NoRefundAddress)?;
        if t.to != to {
            return Err(IntentError::RefundAddressMismatch);
        }
        if self.refunds.iter().any(|r| r.tx_hash == t.key.tx_hash) {
            return Ok(vec![]);
        }
        if self.refund_outstanding().is_zero() {
            return Err(IntentError::NoRefundDue);
        }
        Ok(vec![IntentEvent::Refunded { tx_hash: t.key.tx_hash, to, amount: t.amount }])
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::address;

    use super::*;

    const DEPOSIT: Address = address!("0x00000000000000000000000000000000000000d0");

    fn terms() -> Terms {
        Terms {
            intent_id: "pi1".into(),
            order_id: "o1".into(),
            customer_id: "c1".into(),
            chain: "polygon".into(),
            chain_id: 137,
            asset: "USDC".into(),
            asset_kind: AssetKind::Erc20(address!("0x00000000000000000000000000000000000000c0")),
            decimals: 6,
            amount_cents: 450,
            amount_due: U256::from(4_500_000u64),
            quote: None,
            deposit_address: DEPOSIT,
            derivation_index: 0,
            payment_uri: String::new(),
            created_at_ms: 0,
            expires_at_ms: 900_000,
            monitor_until_ms: 86_400_000,
            created_block: 10,
        }
    }

    fn transfer(n: u8, amount: u64, at_ms: i64) -> Transfer {
        Transfer {
            key: TransferKey { chain_id: 137, tx_hash: B256::repeat_byte(n), log_index: Some(0) },
            from: address!("0x00000000000000000000000000000000000000f0"),
            to: DEPOSIT,
            amount: U256::from(amount),
            block_number: 11,
            block_hash: B256::repeat_byte(0xbb),
            block_time_ms: at_ms,
        }
    }

    struct Log(Vec<StoredIntentEvent>);

    impl Log {
        fn new() -> Log {
            Log(vec![])
        }
        fn push(&mut self, events: Vec<IntentEvent>) -> Intent {
            if self.0.is_empty() {
                self.0.push(StoredIntentEvent {
                    event_id: "e0".into(),
                    intent_id: "pi1".into(),
                    order_id: "o1".into(),
                    version: 1,
                    occurred_at_ms: 0,
                    actor: "system".into(),
                    correlation_id: None,
                    traceparent: None,
                    event: IntentEvent::IntentCreated { terms: terms() },
                });
            }
            for event in events {
                let version = self.0.len() as u64 + 1;
                self.0.push(StoredIntentEvent {
                    event_id: format!("e{version}"),
                    intent_id: "pi1".into(),
                    order_id: "o1".into(),
                    version,
                    occurred_at_ms: 0,
                    actor: "system".into(),
                    correlation_id: None,
                    traceparent: None,
                    event,
                });
            }
            Intent::from_events(&self.0).expect("intent")
        }
    }

    #[test]
    fn exact_payment_confirms_through_confirming() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        assert_eq!(i.status, IntentStatus::AwaitingPayment);
        let t = transfer(1, 4_500_000, 1_000);
        let i = log.push(i.decide_seen(&t).expect("seen"));
        assert_eq!(i.status, IntentStatus::Confirming);
        assert_eq!(i.decide_seen(&t), Ok(vec![]), "seen twice is one effect");
        let i = log.push(i.decide_credit(&t).expect("credit"));
        assert_eq!((i.status, i.outcome), (IntentStatus::Paid, Some(Outcome::Paid)));
        assert!(i.pending.is_empty());
        assert_eq!(i.decide_credit(&t), Ok(vec![]), "credited twice is one effect");
    }

    #[test]
    fn partial_then_top_up_confirms_and_overpayment_owes_the_excess() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_credit(&transfer(1, 1_000_000, 1_000)).expect("credit"));
        assert_eq!(i.status, IntentStatus::PartiallyPaid);
        let i = log.push(i.decide_credit(&transfer(2, 4_000_000, 2_000)).expect("credit"));
        assert_eq!(i.outcome, Some(Outcome::Paid));
        assert_eq!(i.status, IntentStatus::RefundDue);
        assert_eq!(i.refund_outstanding(), U256::from(500_000u64));
    }

    #[test]
    fn expiry_waits_for_the_chain_and_for_confirming_transfers() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        assert_eq!(i.decide_expiry(899_999, 1_000_000), vec![], "not yet");
        assert_eq!(i.decide_expiry(1_000_000, 899_000), vec![], "the final block is older than the deadline");
        let t = transfer(1, 4_500_000, 890_000);
        let seen = log.push(i.decide_seen(&t).expect("seen"));
        assert_eq!(seen.decide_expiry(1_000_000, 1_000_000), vec![], "a transfer is confirming");
        // Mined before the deadline, final after it: on time.
        let paid = log.push(seen.decide_credit(&t).expect("credit"));
        assert_eq!(paid.status, IntentStatus::Paid);
    }

    #[test]
    fn nothing_by_expiry_fails_and_late_money_is_owed_back() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_expiry(900_000, 900_000));
        assert_eq!((i.status, i.outcome), (IntentStatus::Expired, Some(Outcome::Failed(FailReason::Expired))));
        let late = transfer(1, 4_500_000, 1_000_000);
        let mut log2 = Log(log.0.clone());
        let after = log2.push(i.decide_credit(&late).expect("credit"));
        assert_eq!(after.status, IntentStatus::RefundDue);
        assert_eq!(after.received_late, U256::from(4_500_000u64));
        assert_eq!(after.decide_refund(&late), Err(IntentError::NoRefundAddress));
        let refund_to = address!("0x00000000000000000000000000000000000000e0");
        let with_address = log2.push(after.decide_refund_address(refund_to).expect("address"));
        let mut refund = transfer(9, 4_500_000, 2_000_000);
        assert_eq!(with_address.decide_refund(&refund), Err(IntentError::RefundAddressMismatch));
        refund.to = refund_to;
        let done = log2.push(with_address.decide_refund(&refund).expect("refund"));
        assert_eq!(done.status, IntentStatus::Refunded);
        // A payment that arrives after the deadline stays late even if the intent is still open.
        let open = Log::new().push(vec![]);
        let events = open.decide_credit(&late).expect("credit");
        assert_eq!(events.len(), 1, "credited, not confirmed: {events:?}");
    }

    #[test]
    fn late_money_never_completes_an_on_time_part_payment() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let late = log.push(i.decide_credit(&transfer(1, 4_000_000, 1_000_000)).expect("credit"));
        assert!(late.is_open());
        let events = late.decide_credit(&transfer(2, 500_000, 1_000)).expect("credit");
        assert_eq!(events.len(), 1, "the on-time part alone is short: {events:?}");
        // A transfer mined after the deadline and still confirming doesn't hold the expiry off.
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_seen(&transfer(3, 1, 950_000)).expect("seen"));
        assert!(!i.decide_expiry(1_000_000, 1_000_000).is_empty());
    }

    #[test]
    fn the_refund_address_is_fixed_while_a_refund_is_owed_to_it() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_expiry(900_000, 900_000));
        let i = log.push(i.decide_credit(&transfer(1, 5, 1_000_000)).expect("late"));
        let first = address!("0x00000000000000000000000000000000000000e1");
        let i = log.push(i.decide_refund_address(first).expect("address"));
        assert!(matches!(i.decide_refund_address(address!("0x00000000000000000000000000000000000000e2")), Err(IntentError::Closed(_))));
    }

    #[test]
    fn short_at_expiry_is_underpaid_with_a_refund_due() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_credit(&transfer(1, 4_000_000, 1_000)).expect("credit"));
        let i = log.push(i.decide_expiry(900_000, 900_000));
        assert_eq!(i.outcome, Some(Outcome::Failed(FailReason::Underpaid)));
        assert_eq!((i.status, i.refund_outstanding()), (IntentStatus::RefundDue, U256::from(4_000_000u64)));
    }

    #[test]
    fn a_dropped_transfer_is_no_longer_confirming() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let t = transfer(1, 4_500_000, 1_000);
        let i = log.push(i.decide_seen(&t).expect("seen"));
        let i = log.push(i.decide_dropped(&t.key));
        assert_eq!(i.status, IntentStatus::AwaitingPayment);
        assert_eq!(i.decide_dropped(&t.key), vec![]);
    }

    #[test]
    fn transfers_elsewhere_are_refused() {
        let i = Log::new().push(vec![]);
        let mut wrong_chain = transfer(1, 4_500_000, 1_000);
        wrong_chain.key.chain_id = 1;
        assert_eq!(i.decide_credit(&wrong_chain), Err(IntentError::WrongChain { got: 1, expected: 137 }));
        let mut wrong_to = transfer(1, 4_500_000, 1_000);
        wrong_to.to = Address::ZERO;
        assert!(matches!(i.decide_credit(&wrong_to), Err(IntentError::WrongRecipient { .. })));
    }

    #[test]
    fn cancelling_closes_and_owes_back_what_arrived() {
        let mut log = Log::new();
        let i = log.push(vec![]);
        let i = log.push(i.decide_credit(&transfer(1, 1_000, 1_000)).expect("credit"));
        let i = log.push(i.decide_cancel().expect("cancel"));
        assert_eq!(i.outcome, Some(Outcome::Failed(FailReason::Cancelled)));
        assert_eq!(i.status, IntentStatus::RefundDue);
        assert_eq!(i.decide_cancel(), Ok(vec![]));
    }

    #[test]
    fn events_serialize_with_their_type_and_amounts_as_strings() {
        let e = IntentEvent::RefundDue { amount: U256::from(5u8), reason: RefundReason::Excess };
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["type"], "RefundDue");
        assert_eq!(serde_json::from_value::<IntentEvent>(json).expect("back"), e);
    }
}
