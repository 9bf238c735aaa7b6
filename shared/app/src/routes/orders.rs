//! Orders and the kitchen: placing (idempotently), reading, and every status change, each an
//! event appended with an expected version.

use gocoffee_core::{Actor, Command, DomainError, Order, OrderEvent, OrderPart, OrderRequest, OrderStatus, Role, StoredEvent};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::hex;
use crate::http::{ApiError, Response, encode_cursor, json, page_cursor, page_limit, parse_json, parse_optional_json, query_param, rfc3339};
use crate::ports::{IdempotencyRecord, OrderQuery, StoreError};
use crate::{Caller, Ctx};

const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How often a status change is retried when another writer changed the order first.
const APPEND_ATTEMPTS: usize = 3;

#[derive(Serialize)]
pub(crate) struct OrderView<'a> {
    id: &'a str,
    customer_id: &'a str,
    status: OrderStatus,
    lines: &'a [gocoffee_core::PricedLine],
    total_cents: gocoffee_core::Cents,
    currency: &'static str,
    note: Option<&'a str>,
    payment_method: &'a gocoffee_core::PaymentMethod,
    placed_at: String,
    updated_at: String,
    version: u64,
    /// Each station's share, once the kitchen has the order.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    parts: Vec<PartView<'a>>,
    /// When the kitchen expects it ready, while it is on the board and can say.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_ready_at: Option<String>,
    links: Links,
}

#[derive(Serialize)]
pub(crate) struct PartView<'a> {
    station: &'a str,
    lines: &'a [usize],
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready_at: Option<String>,
}

pub(crate) fn part_view(p: &OrderPart) -> PartView<'_> {
    PartView { station: &p.station, lines: &p.lines, status: p.status(), started_at: p.started_at_ms.map(rfc3339), ready_at: p.ready_at_ms.map(rfc3339) }
}

#[derive(Serialize)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    this: String,
    events: String,
    /// A crypto order's payment intent: how much to send where, and its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<String>,
}

fn order_location(id: &str) -> String {
    format!("/api/v1/orders/{id}")
}

pub(crate) fn view(o: &Order, estimated_ready_at_ms: Option<i64>) -> OrderView<'_> {
    OrderView {
        id: &o.id,
        customer_id: &o.customer_id,
        status: o.status,
        lines: &o.lines,
        total_cents: o.total_cents,
        currency: "USD",
        note: o.note.as_deref(),
        payment_method: &o.payment_method,
        placed_at: rfc3339(o.placed_at_ms),
        updated_at: rfc3339(o.updated_at_ms),
        version: o.version,
        parts: o.parts.iter().map(part_view).collect(),
        estimated_ready_at: estimated_ready_at_ms.map(rfc3339),
        links: Links {
            this: order_location(&o.id),
            events: format!("{}/events", order_location(&o.id)),
            payment: o.payment_intent.as_ref().map(|id| format!("/api/v1/payments/{id}")),
        },
    }
}

pub(crate) fn actor(caller: &Caller) -> Actor {
    Actor::User { id: caller.user_id.clone(), role: caller.role }
}

fn idempotency_key(ctx: &Ctx<'_>) -> Result<Option<String>, ApiError> {
    let Some(v) = ctx.req.headers().get("idempotency-key") else { return Ok(None) };
    match v.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k.to_owned())),
        _ => Err(ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")),
    }
}

fn replay(record: IdempotencyRecord, request_hash: &str) -> Result<Response, ApiError> {
    if record.request_hash != request_hash {
        return Err(ApiError::unprocessable("idempotency_key_reused", "this Idempotency-Key was used with a different request"));
    }
    let mut r = http::Response::new(record.body.into_bytes());
    *r.status_mut() = StatusCode::from_u16(record.status).unwrap_or(StatusCode::ACCEPTED);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(v) = record.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn place(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let svc = ctx.svc;
    let caller = ctx.caller()?;
    let key = idempotency_key(ctx)?;
    let request_hash = hex(&Sha256::digest(ctx.req.body()));
    if let Some(key) = &key
        && let Some(record) = svc.orders.idempotency_record(&caller.user_id, key, ctx.now_ms).await?
    {
        return replay(record, &request_hash);
    }
    let request: OrderRequest = parse_json(ctx.req)?;
    if let Some(c) = request.payment_method.crypto()
        && !svc.config.accepts_crypto(&c.chain, &c.asset)
    {
        return Err(ApiError::unprocessable("payment_method_not_accepted", format!("{} on {} is not a payment method this café takes", c.asset, c.chain)));
    }
    let menu = gocoffee_core::Menu { items: crate::kitchen::menu_now(ctx).await? };
    let priced = request.price(&menu)?;
    let order_id = svc.new_id();
    let order = Order::open(&order_id, &caller.user_id, &priced, ctx.now_ms);
    let placed = StoredEvent {
        event_id: svc.new_id(),
        order_id: order_id.clone(),
        version: 1,
        occurred_at_ms: ctx.now_ms,
        actor: caller.user_id.clone(),
        correlation_id: Some(ctx.request_id.clone()),
        traceparent: Some(ctx.trace.header()),
        event: OrderEvent::OrderPlaced { customer_id: caller.user_id.clone(), order: priced },
    };
    let body = serde_json::to_string(&view(&order, None)).map_err(|_| ApiError::unavailable())?;
    let location = order_location(&order_id);
    let record = key.as_ref().map(|key| IdempotencyRecord {
        owner: caller.user_id.clone(),
        key: key.clone(),
        request_hash: request_hash.clone(),
        status: StatusCode::ACCEPTED.as_u16(),
        body: body.clone(),
        location: Some(location.clone()),
        expires_at_ms: ctx.now_ms + IDEMPOTENCY_TTL_MS,
    });
    match svc.orders.create_order(&order, &placed, record.as_ref()).await {
        Ok(()) => {}
        // A concurrent request with the same key won; answer as it did.
        Err(StoreError::Conflict) if key.is_some() => {
            let key = key.as_deref().unwrap_or_default();
            return match svc.orders.idempotency_record(&caller.user_id, key, ctx.now_ms).await? {
                Some(first) => replay(first, &request_hash),
                None => Err(StoreError::Conflict.into()),
            };
        }
        Err(e) => return Err(e.into()),
    }
    crate::telemetry::order_event(&placed.event);
    tracing::info!(request_id = %ctx.request_id, order_id = %order_id, total_cents = order.total_cents.0, "order placed");
    let mut r = http::Response::new(body.into_bytes());
    *r.status_mut() = StatusCode::ACCEPTED;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// The order, if the caller may see it: its customer or staff. Anyone else gets the same 404
/// as for a missing order, so ids can't be probed.
pub(crate) async fn visible_order(ctx: &Ctx<'_>, caller: &Caller) -> Result<Order, ApiError> {
    let order = ctx.svc.orders.order(ctx.param(0)).await?;
    order.filter(|o| caller.role.is_staff() || o.customer_id == caller.user_id).ok_or_else(|| ApiError::not_found("order"))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let order = visible_order(ctx, &caller).await?;
    let estimate = if order.status.in_kitchen() { crate::kitchen::estimate_for(ctx, &order.id).await } else { None };
    Ok(json(StatusCode::OK, &view(&order, estimate)))
}

pub async fn events(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let order = visible_order(ctx, &caller).await?;
    let events = ctx.svc.orders.events(&order.id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "order_id": order.id, "version": order.version, "events": events })))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let status = match query_param(ctx.req, "status") {
        None => None,
        Some(s) => Some(OrderStatus::parse(&s).ok_or_else(|| ApiError::bad_request("invalid_status", format!("unknown status `{s}`")))?),
    };
    let customer_id = if caller.role.is_staff() { query_param(ctx.req, "customer_id") } else { Some(caller.user_id.clone()) };
    let query = OrderQuery { customer_id, status, limit: page_limit(ctx.req)?, after: page_cursor(ctx.req)? };
    let page = ctx.svc.orders.orders(&query).await?;
    let items: Vec<OrderView<'_>> = page.items.iter().map(|o| view(o, None)).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items, "next_cursor": page.next.as_ref().map(encode_cursor) })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn cancel(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let body: CancelBody = parse_optional_json(ctx.req)?;
    let reason = body.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 280) {
        return Err(ApiError::unprocessable("reason_too_long", "the reason is at most 280 characters"));
    }
    command(ctx, &caller, Command::Cancel, reason).await
}

pub async fn collect(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    command(ctx, &caller, Command::Collect, None).await
}

pub async fn refund(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    command(ctx, &caller, Command::Refund, None).await
}

/// Applies what `decide` makes of the order in the path (one or more events) as `caller`:
/// decide, append with the version read, and on a lost race read again and decide again.
pub(crate) async fn change(ctx: &Ctx<'_>, caller: &Caller, decide: impl Fn(&Order) -> Result<Vec<OrderEvent>, DomainError>) -> Result<Order, ApiError> {
    let svc = ctx.svc;
    for _ in 0..APPEND_ATTEMPTS {
        let order = visible_order(ctx, caller).await?;
        let (next, stored) = svc.record(&order, decide(&order)?, &caller.user_id, Some(ctx.request_id.clone()), &ctx.trace);
        match svc.orders.append(&next, &stored, order.version, None).await {
            Ok(()) => {
                for e in &stored {
                    crate::telemetry::order_event(&e.event);
                    tracing::info!(request_id = %ctx.request_id, order_id = %next.id, event = e.event.name(), status = %next.status, "order changed");
                }
                return Ok(next);
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// A customer's or manager's status change: one event, answered with the order after it.
async fn command(ctx: &Ctx<'_>, caller: &Caller, command: Command, reason: Option<String>) -> Result<Response, ApiError> {
    let next = change(ctx, caller, |order| Ok(vec![order.decide(command, &actor(caller), reason.clone())?])).await?;
    Ok(json(StatusCode::OK, &view(&next, None)))
}

/// The orders function: placing, reading and the customer's and manager's status changes.
pub static FUNCTION: crate::Function = crate::Function {
    name: "orders",
    routes: &[
        crate::route!(POST "/api/v1/orders" => place),
        crate::route!(GET "/api/v1/orders" => list),
        crate::route!(GET "/api/v1/orders/{id}" => get),
        crate::route!(GET "/api/v1/orders/{id}/events" => events),
        crate::route!(POST "/api/v1/orders/{id}/cancel" => cancel),
        crate::route!(POST "/api/v1/orders/{id}/collect" => collect),
        crate::route!(POST "/api/v1/orders/{id}/refund" => refund),
    ],
    publishes: true,
    images: false,
};
