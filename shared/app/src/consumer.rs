//! The order consumer: reacts to events on the orders stream and to the payment service's
//! outcomes on the payments stream (the order's side of the payment saga). Delivery is at least
//! once, so every effect is recorded with the event id in the same write, and a redelivered
//! event is a no-op.

use gocoffee_core::{Actor, Command, Order, OrderEvent, OrderStatus, StoredEvent};
use serde::Deserialize;

use crate::ports::StoreError;
use crate::trace::TraceContext;
use crate::{Services, telemetry};

/// This consumer's name in the processed-events ledger.
pub const ORDER_CONSUMER: &str = "order-consumer";
/// The kitchen's queue consumer, in the metrics.
pub const KITCHEN_CONSUMER: &str = "kitchen";
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

/// The order event in `payload` for `consumer`; anything else is poison (and counted as such).
pub fn order_event(consumer: &'static str, payload: &[u8]) -> Result<StoredEvent, ConsumerError> {
    serde_json::from_slice(payload).map_err(|e| {
        telemetry::consumer_failed(consumer, true);
        ConsumerError::Poison(format!("not an order event: {e}"))
    })
}

/// Handles one message from the orders stream. An order ready for the kitchen (placed to pay
/// at the counter, or paid in crypto) goes to the kitchen's queue when the platform has one, or
/// is accepted for the kitchen right here when it doesn't. A placed crypto order asks the
/// payment service for its payment instead.
pub async fn handle_order_event(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(ORDER_CONSUMER, payload)?;
    let for_kitchen = match &event.event {
        OrderEvent::OrderPlaced { order, .. } => order.payment_method.crypto().is_none(),
        OrderEvent::OrderPaid { .. } => true,
        _ => false,
    };
    traced(svc, ORDER_CONSUMER, &event, async |trace| match (&event.event, svc.kitchen_queue) {
        (OrderEvent::OrderPlaced { .. }, _) if !for_kitchen => request_payment(svc, &event, trace).await,
        (_, Some(queue)) if for_kitchen => {
            // The ticket goes on in this span's trace.
            let ticket = StoredEvent { traceparent: Some(trace.header()), ..event.clone() };
            queue.send(&ticket).await.map_err(ConsumerError::from)
        }
        (_, None) if for_kitchen => confirm(svc, &event, trace).await,
        // Other events are for read models, notifications and the payment service.
        _ => Ok(()),
    })
    .await
}

/// Handles one message from the kitchen's queue: an order the kitchen accepts (placed to pay at
/// the counter, or paid).
pub async fn handle_kitchen_ticket(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(KITCHEN_CONSUMER, payload)?;
    traced(svc, KITCHEN_CONSUMER, &event, async |trace| match &event.event {
        OrderEvent::OrderPlaced { .. } | OrderEvent::OrderPaid { .. } => confirm(svc, &event, trace).await,
        other => Err(ConsumerError::Poison(format!("the kitchen queue carries placed or paid orders, not {}", other.name()))),
    })
    .await
}

/// What a consumer's log line and metrics say of the message it handles.
pub struct Handled<'a> {
    pub event_id: &'a str,
    pub order_id: &'a str,
    /// The event's type.
    pub event: &'a str,
    pub occurred_at_ms: i64,
    pub traceparent: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
}

impl<'a> From<&'a StoredEvent> for Handled<'a> {
    fn from(e: &'a StoredEvent) -> Self {
        Handled {
            event_id: &e.event_id,
            order_id: &e.order_id,
            event: e.event.name(),
            occurred_at_ms: e.occurred_at_ms,
            traceparent: e.traceparent.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
        }
    }
}

/// Runs `consumer`'s handling of a message in a span of the trace it carries (a new trace for
/// one that carries none), logs the outcome in that span, and counts it: its lag since the
/// event occurred, and its failure if it failed.
pub async fn traced(
    svc: &Services<'_>,
    consumer: &'static str,
    handled: impl Into<Handled<'_>>,
    handle: impl AsyncFnOnce(TraceContext) -> Result<(), ConsumerError>,
) -> Result<(), ConsumerError> {
    let m = handled.into();
    let trace = svc.span(m.traceparent);
    telemetry::consumed(consumer, m.occurred_at_ms, svc.clock.now_ms());
    let span = tracing::info_span!("event", consumer, trace_id = %trace.trace_id_hex(), span_id = %trace.span_id_hex());
    let outcome = tracing::Instrument::instrument(handle(trace), span.clone()).await;
    let _entered = span.enter();
    match &outcome {
        Ok(()) => {
            tracing::info!(event_id = %m.event_id, order_id = %m.order_id, event = m.event, correlation_id = m.correlation_id.unwrap_or_default(), "event handled")
        }
        Err(e) => {
            telemetry::consumer_failed(consumer, !e.is_retryable());
            tracing::warn!(event_id = %m.event_id, order_id = %m.order_id, event = m.event, error = %e, "event failed")
        }
    }
    outcome
}

/// A message from either stream the order consumer reads: a payment event names its intent,
/// an order event doesn't.
pub async fn handle_stream_message(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        intent_id: Option<String>,
    }
    match serde_json::from_slice::<Shape>(payload) {
        Ok(Shape { intent_id: Some(_) }) => handle_payment_event(svc, payload).await,
        _ => handle_order_event(svc, payload).await,
    }
}

/// What the order side reads of a payment event (the payment service's own types stay there).
#[derive(Debug, Deserialize)]
struct PaymentNotice {
    event_id: String,
    intent_id: String,
    order_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    occurred_at_ms: i64,
    #[serde(default)]
    traceparent: Option<String>,
}

/// Handles one message from the payments stream: a confirmed payment lets the order go to the
/// kitchen (`OrderPaid`, which the orders stream then carries there); a failed one cancels the
/// order with the reason, so it never reaches the kitchen. Other payment events are not the
/// order's business.
pub async fn handle_payment_event(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let notice: PaymentNotice = serde_json::from_slice(payload).map_err(|e| {
        telemetry::consumer_failed(ORDER_CONSUMER, true);
        ConsumerError::Poison(format!("not a payment event: {e}"))
    })?;
    let handled = Handled {
        event_id: &notice.event_id,
        order_id: &notice.order_id,
        event: &notice.kind,
        occurred_at_ms: notice.occurred_at_ms,
        traceparent: notice.traceparent.as_deref(),
        correlation_id: None,
    };
    traced(svc, ORDER_CONSUMER, handled, async |trace| payment_outcome(svc, &notice, &trace).await).await
}

/// The order's side of a payment's outcome.
async fn payment_outcome(svc: &Services<'_>, notice: &PaymentNotice, trace: &TraceContext) -> Result<(), ConsumerError> {
    match notice.kind.as_str() {
        "PaymentConfirmed" => change_order(svc, &notice.order_id, &notice.event_id, None, trace, |order| Ok(order.decide_paid(&notice.intent_id))).await,
        "PaymentFailed" if notice.reason.as_deref() != Some("cancelled") => {
            let why = match notice.reason.as_deref() {
                Some("underpaid") => "payment: too little arrived before the payment expired; it will be refunded",
                _ => "payment: nothing arrived before the payment expired",
            };
            change_order(svc, &notice.order_id, &notice.event_id, None, trace, |order| {
                if order.status != OrderStatus::Pending || order.payment_intent.as_deref() != Some(notice.intent_id.as_str()) {
                    return Ok(None);
                }
                order.decide(Command::Cancel, &Actor::System, Some(why.to_owned())).map(Some).map_err(|e| ConsumerError::Poison(e.to_string()))
            })
            .await
        }
        _ => Ok(()),
    }
}

/// A placed crypto order: record that its payment is requested. The event goes out on the
/// orders stream, where the payment service makes the intent.
async fn request_payment(svc: &Services<'_>, placed: &StoredEvent, trace: TraceContext) -> Result<(), ConsumerError> {
    change_order(svc, &placed.order_id, &placed.event_id, placed.correlation_id.clone(), &trace, |order| Ok(order.decide_request_payment())).await
}

/// Appends what `decide` makes of the order (if anything) as the system, in `trace`, recorded
/// with `handled_event_id` in the consumer's ledger in the same write; retried on a lost race.
async fn change_order(
    svc: &Services<'_>,
    order_id: &str,
    handled_event_id: &str,
    correlation_id: Option<String>,
    trace: &TraceContext,
    decide: impl Fn(&Order) -> Result<Option<OrderEvent>, ConsumerError>,
) -> Result<(), ConsumerError> {
    change_order_with(svc, order_id, handled_event_id, correlation_id, trace, |order| Ok(decide(order)?.into_iter().collect())).await
}

/// [`change_order`] for a decision of several events (none: nothing to do).
async fn change_order_with(
    svc: &Services<'_>,
    order_id: &str,
    handled_event_id: &str,
    correlation_id: Option<String>,
    trace: &TraceContext,
    decide: impl Fn(&Order) -> Result<Vec<OrderEvent>, ConsumerError>,
) -> Result<(), ConsumerError> {
    if svc.orders.is_processed(ORDER_CONSUMER, handled_event_id).await? {
        return Ok(());
    }
    for _ in 0..APPEND_ATTEMPTS {
        let Some(order) = svc.orders.order(order_id).await? else {
            return Err(ConsumerError::Retryable(format!("order {order_id} is not visible yet")));
        };
        let events = decide(&order)?;
        if events.is_empty() {
            svc.orders.mark_processed(ORDER_CONSUMER, handled_event_id).await?;
            return Ok(());
        }
        let (next, stored) = svc.record(&order, events, Actor::System.id(), correlation_id.clone(), trace);
        match svc.orders.append(&next, &stored, order.version, Some((ORDER_CONSUMER, handled_event_id))).await {
            Ok(()) => {
                for e in &stored {
                    telemetry::order_event(&e.event);
                }
                return Ok(());
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ConsumerError::Retryable(format!("order {order_id} kept changing")))
}

/// An order ready for the kitchen (`OrderPlaced` to pay at the counter, `OrderPaid`) is
/// confirmed and lands on the kitchen board, recorded together with the event id. An order
/// that moved on meanwhile (cancelled, confirmed by an earlier delivery) is left alone.
async fn confirm(svc: &Services<'_>, ready: &StoredEvent, trace: TraceContext) -> Result<(), ConsumerError> {
    // Confirming routes the ticket to the kitchen's stations as they are now.
    let kitchen = svc.kitchen.kitchen().await?;
    change_order_with(svc, &ready.order_id, &ready.event_id, ready.correlation_id.clone(), &trace, |order| {
        let waiting_for_payment = order.payment_method.crypto().is_some() && !order.paid;
        if order.status != OrderStatus::Pending || waiting_for_payment {
            return Ok(vec![]);
        }
        let confirmed = order.decide(Command::Confirm, &Actor::System, None).map_err(|e| ConsumerError::Poison(e.to_string()))?;
        Ok(order.with_parts(confirmed, &kitchen))
    })
    .await
}
