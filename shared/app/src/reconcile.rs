//! The reconciler's order side: nothing waits forever. A message whose handling failed may never
//! come back (Spin's Redis trigger never redelivers; a Kinesis batch that exhausts its retries
//! leaves only its metadata in the dead-letter queue), so on a schedule the reconciler relays the
//! outbox and re-publishes the latest event of every order stuck in `pending` past a deadline
//! ([`STUCK_AFTER_MS`] by default): the consumers handle it again, and since each records the event ids it
//! handled, one that already did ignores it.
//!
//! A crypto order waiting for its payment is not stuck while its intent is open; the payment
//! service decides about those ([`Reconciled::awaiting_payment`]).

use gocoffee_core::{Order, OrderStatus};

use crate::Services;
use crate::ports::{OrderQuery, StoreResult};

/// How long a pending order may go without a change before it is re-driven, by default (the
/// `reconcile_after_seconds` variable): far longer than a healthy consumer takes, short enough
/// that a customer waiting at the counter barely notices.
pub const STUCK_AFTER_MS: i64 = 60_000;
/// Orders placed longer ago than this are left to an operator (counted, logged): a message
/// that has failed for a day needs a person, not another retry every minute.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
/// Pending orders looked at per pass, newest first.
pub const MAX_PER_PASS: usize = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Orders whose latest event was published again.
    pub republished: Vec<String>,
    /// Crypto orders whose payment was requested and not yet settled, unchanged past the
    /// deadline: for the payment service to look at (its intent may be missing, or its
    /// outcome unpublished).
    pub awaiting_payment: Vec<Order>,
    /// Stuck past [`GIVE_UP_AFTER_MS`]: left to an operator.
    pub abandoned: usize,
}

/// One pass over the pending orders (newest first), at `now_ms`: those unchanged for
/// `stuck_after_ms` are re-driven.
pub async fn reconcile_orders(svc: &Services<'_>, now_ms: i64, stuck_after_ms: i64) -> StoreResult<Reconciled> {
    let mut out = Reconciled::default();
    // Housekeeping on the same schedule: rate-limit keys past their arrival time mean nothing.
    if let Some(limiter) = svc.limiter {
        match limiter.forget_idle(now_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(forgotten = n, "idle rate-limit keys forgotten"),
            Err(e) => tracing::warn!(error = %e, "forgetting idle rate-limit keys failed; the next pass tries again"),
        }
    }
    let mut after = None;
    let mut seen = 0;
    loop {
        let query = OrderQuery { customer_id: None, status: Some(OrderStatus::Pending), limit: 100, after: after.take() };
        let page = svc.orders.orders(&query).await?;
        for order in page.items {
            seen += 1;
            if now_ms - order.updated_at_ms < stuck_after_ms {
                continue;
            }
            if now_ms - order.placed_at_ms > GIVE_UP_AFTER_MS {
                out.abandoned += 1;
                tracing::error!(order_id = %order.id, placed_at_ms = order.placed_at_ms, "order pending for over a day; not re-driven again: look at the dead letters");
                continue;
            }
            if order.payment_intent.is_some() && !order.paid {
                out.awaiting_payment.push(order);
                continue;
            }
            let Some(latest) = svc.orders.events(&order.id).await?.pop() else { continue };
            svc.orders.republish(&latest).await?;
            tracing::warn!(order_id = %order.id, event = latest.event.name(), version = latest.version, "stuck order re-driven: its latest event is published again");
            out.republished.push(order.id);
        }
        match page.next {
            Some(next) if seen < MAX_PER_PASS => after = Some(next),
            _ => return Ok(out),
        }
    }
}
