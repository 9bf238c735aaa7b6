//! The order consumer: reacts to events on the orders stream. Delivery is at least once, so
//! every effect is recorded with the event id in the same write, and a redelivered event is a
//! no-op.

use gocoffee_core::{Actor, Command, OrderEvent, OrderStatus, PaymentMethod, StoredEvent};

use crate::Services;
use crate::ports::StoreError;

/// This consumer's name in the processed-events ledger.
pub const ORDER_CONSUMER: &str = "order-consumer";
const APPEND_ATTEMPTS: usize = 5;

/// Why a message was not handled. The one mapping from failures to retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// The message can never succeed (not an event we understand): retrying is pointless, so it
    /// goes to the dead letters.
    #[error("poison message: {0}")]
    Poison(String),
    /// A dependency failed or the order isn't visible yet; a later attempt may succeed.
    #[error("retryable: {0}")]
    Retryable(String),
}

impl ConsumerError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumerError::Retryable(_))
    }
}

impl From<StoreError> for ConsumerError {
    fn from(e: StoreError) -> Self {
        ConsumerError::Retryable(e.to_string())
    }
}

fn order_event(payload: &[u8]) -> Result<StoredEvent, ConsumerError> {
    serde_json::from_slice(payload).map_err(|e| ConsumerError::Poison(format!("not an order event: {e}")))
}

/// Handles one message from the orders stream. A placed order goes to the kitchen's queue when
/// the platform has one, or is accepted for the kitchen right here when it doesn't.
pub async fn handle_order_event(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(payload)?;
    let outcome = match (&event.event, svc.kitchen) {
        (OrderEvent::OrderPlaced { .. }, Some(queue)) => queue.send(&event).await.map_err(ConsumerError::from),
        (OrderEvent::OrderPlaced { .. }, None) => confirm(svc, &event).await,
        // Other events are for read models and notifications, which later consumers own.
        _ => Ok(()),
    };
    log_outcome(&event, &outcome);
    outcome
}

/// Handles one message from the kitchen's queue: a placed order the kitchen accepts.
pub async fn handle_kitchen_ticket(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(payload)?;
    let outcome = match &event.event {
        OrderEvent::OrderPlaced { .. } => confirm(svc, &event).await,
        other => Err(ConsumerError::Poison(format!("the kitchen queue carries placed orders, not {}", other.name()))),
    };
    log_outcome(&event, &outcome);
    outcome
}

fn log_outcome(event: &StoredEvent, outcome: &Result<(), ConsumerError>) {
    match outcome {
        Ok(()) => {
            tracing::info!(event_id = %event.event_id, order_id = %event.order_id, event = event.event.name(), correlation_id = event.correlation_id.as_deref().unwrap_or_default(), "event handled")
        }
        Err(e) => tracing::warn!(event_id = %event.event_id, order_id = %event.order_id, error = %e, "event failed"),
    }
}

/// `OrderPlaced` -> the order is confirmed (pay at counter needs no payment step) and lands on
/// the kitchen board, recorded together with the event id.
async fn confirm(svc: &Services<'_>, placed: &StoredEvent) -> Result<(), ConsumerError> {
    if svc.orders.is_processed(ORDER_CONSUMER, &placed.event_id).await? {
        return Ok(());
    }
    for _ in 0..APPEND_ATTEMPTS {
        let Some(order) = svc.orders.order(&placed.order_id).await? else {
            return Err(ConsumerError::Retryable(format!("order {} is not visible yet", placed.order_id)));
        };
        if order.status != OrderStatus::Pending || order.payment_method != PaymentMethod::PayAtCounter {
            // Already moved on (cancelled, or confirmed by an earlier delivery): nothing to do.
            svc.orders.mark_processed(ORDER_CONSUMER, &placed.event_id).await?;
            return Ok(());
        }
        let event = order.decide(Command::Confirm, &Actor::System, None).map_err(|e| ConsumerError::Poison(e.to_string()))?;
        let now = svc.clock.now_ms();
        let confirmed = StoredEvent {
            event_id: svc.new_id(),
            order_id: order.id.clone(),
            version: order.version + 1,
            occurred_at_ms: now,
            actor: Actor::System.id().to_owned(),
            correlation_id: placed.correlation_id.clone(),
            event,
        };
        let mut next = order.clone();
        next.apply(&confirmed);
        match svc.orders.append(&next, std::slice::from_ref(&confirmed), order.version, Some((ORDER_CONSUMER, &placed.event_id))).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ConsumerError::Retryable(format!("order {} kept changing", placed.order_id)))
}
