//! The analytics read model's use cases (CQRS): the projector that folds the `analytics` stream
//! into a store of its own, the rebuild that replays every order's log from the write side, and
//! the reports managers read under `/api/v1/analytics`. The shell puts an [`AnalyticsContext`]
//! in [`Services::extension`].
//!
//! The write side stays the truth: when the projector finds an event it can't fold (the order's
//! placement or an event between never reached it, or the model was cleared for a rebuild) it
//! folds the order's whole log instead, so a lost message costs a read, never a wrong figure.

use async_trait::async_trait;
use gocoffee_core::Role;
use gocoffee_core::analytics::{self, Bucket, OrderFacts};
use gocoffee_core::order::StoredEvent;
use http::StatusCode;
use serde_json::json;

use crate::consumer::{ConsumerError, order_event, traced};
use crate::http::{ApiError, Response, encode_cursor, json, page_cursor, query_param, rfc3339};
use crate::ports::{OrderQuery, OrderStore, StoreResult};
use crate::{Ctx, Function, Services, route};

/// The stream (Kinesis on AWS, a channel on Spin and the host) every order event is also
/// published on, for the read model and the S3 archive.
pub const ANALYTICS_CHANNEL: &str = "analytics";
/// The projector's name in logs, metrics and dead letters.
pub const ANALYTICS_CONSUMER: &str = "analytics-consumer";
/// The most facts one report reads; a wider range is refused with 422 (narrow it).
pub const MAX_FACTS: usize = 50_000;
/// Orders a rebuild folds per request; the response's `next_cursor` continues it.
pub const REBUILD_PAGE: usize = 100;
/// How long one rebuild request spends forgetting the old model before it answers with a cursor
/// that goes on forgetting (a large model takes several requests, each well inside a function's
/// time limit).
pub const CLEAR_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// The cursor of a rebuild still forgetting the old model (an order cursor is never negative).
const CLEARING: (i64, &str) = (-1, "clearing");
/// The widest ranges a report takes: 31 days by the hour, 366 by the day.
const MAX_HOURLY_MS: i64 = 31 * 86_400_000;
const MAX_DAILY_MS: i64 = 366 * 86_400_000;

/// Where the read model keeps one [`OrderFacts`] per order, apart from the write side.
#[async_trait(?Send)]
pub trait AnalyticsStore {
    async fn facts(&self, order_id: &str) -> StoreResult<Option<OrderFacts>>;
    /// Stores `facts` unless the store holds that order at a later version (a concurrent fold got
    /// there first): the same version is written over, so a rebuild replaces what an older fold
    /// made of it. True when it wrote.
    async fn save(&self, facts: &OrderFacts) -> StoreResult<bool>;
    /// The facts of the orders placed in `[from_ms, to_ms)`, any order, at most `limit`.
    async fn placed_between(&self, from_ms: i64, to_ms: i64, limit: usize) -> StoreResult<Vec<OrderFacts>>;
    /// Forgets a batch of orders (the start of a rebuild); true once none is left.
    async fn clear_batch(&self) -> StoreResult<bool>;
}

/// What the analytics functions bring to a request or a message beyond the common services.
pub struct AnalyticsContext {
    pub store: Box<dyn AnalyticsStore>,
}

/// Folds one order event into the read model. A redelivery changes nothing; an event that
/// can't be folded onto what the model holds is mended from the order's own log.
pub async fn project(store: &dyn AnalyticsStore, orders: &dyn OrderStore, event: &StoredEvent) -> Result<(), ConsumerError> {
    let current = store.facts(&event.order_id).await?;
    let next = match OrderFacts::apply(current.as_ref(), event) {
        Ok(None) => return Ok(()),
        Ok(Some(next)) => next,
        Err(why) => {
            let log = orders.events(&event.order_id).await?;
            if !log.iter().any(|e| e.version >= event.version) {
                // Published before its own write is visible here: a later attempt reads it.
                return Err(ConsumerError::Retryable(format!("order {} has no version {} yet", event.order_id, event.version)));
            }
            tracing::info!(order_id = %event.order_id, reason = ?why, versions = log.len(), "folding the order's whole log");
            OrderFacts::fold(&log).map_err(|e| ConsumerError::Poison(format!("order {}'s log does not fold: {e:?}", event.order_id)))?
        }
    };
    store.save(&next).await?;
    Ok(())
}

/// The projector's handling of one message of the analytics stream (both shells).
pub async fn consume(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(ANALYTICS_CONSUMER, payload)?;
    let Some(ac) = svc.extension::<AnalyticsContext>() else {
        return Err(ConsumerError::Retryable("the analytics consumer runs without its store".into()));
    };
    traced(svc, ANALYTICS_CONSUMER, &event, async |_| project(ac.store.as_ref(), svc.orders, &event).await).await
}

/// One step of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// Orders folded in this step.
    pub orders: usize,
    /// Where the next step starts; `None` when every order has been folded.
    pub next: Option<(i64, String)>,
}

/// Rebuilds the read model from the write side, one step per call: `None` starts it, then each
/// step's `next` continues it. It first forgets the old model, in batches for up to
/// `clear_budget` a step ([`CLEAR_BUDGET`] over HTTP), then folds a page of orders (newest
/// first) a step: each order's whole log, saved over what the model held, so the result is what
/// the projector makes of the log with today's code. Events that arrive meanwhile are folded as usual (an order the rebuild has
/// not reached yet is mended from its log; one it has passed is newer than what it saved).
pub async fn rebuild(
    store: &dyn AnalyticsStore,
    orders: &dyn OrderStore,
    step: Option<(i64, String)>,
    limit: usize,
    clear_budget: std::time::Duration,
) -> StoreResult<Rebuilt> {
    let clearing = step.as_ref().is_none_or(|(t, id)| (*t, id.as_str()) == CLEARING);
    if clearing {
        let started = std::time::Instant::now();
        while !store.clear_batch().await? {
            if started.elapsed() >= clear_budget {
                return Ok(Rebuilt { orders: 0, next: Some((CLEARING.0, CLEARING.1.to_owned())) });
            }
        }
    }
    let after = if clearing { None } else { step };
    let page = orders.orders(&OrderQuery { limit, after, ..OrderQuery::default() }).await?;
    for order in &page.items {
        let log = orders.events(&order.id).await?;
        match OrderFacts::fold(&log) {
            Ok(facts) => {
                store.save(&facts).await?;
            }
            Err(e) => tracing::warn!(order_id = %order.id, error = ?e, "an order's log does not fold; left out"),
        }
    }
    Ok(Rebuilt { orders: page.items.len(), next: page.next })
}

/// The analytics function: the manager's reports and the administrator's rebuild.
pub static FUNCTION: Function = Function {
    name: "analytics",
    routes: &[
        route!(GET "/api/v1/analytics/sales" => sales_route),
        route!(GET "/api/v1/analytics/items" => items_route),
        route!(GET "/api/v1/analytics/times" => times_route),
        route!(GET "/api/v1/analytics/rates" => rates_route),
        route!(POST "/api/v1/analytics/rebuild" => rebuild_route),
    ],
    publishes: false,
    images: false,
};

/// `2026-11-26T08:00:00Z` (any offset) or a UTC day, `2026-11-26`.
fn instant(name: &str, raw: &str) -> Result<i64, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let text = if raw.len() == 10 { format!("{raw}T00:00:00Z") } else { raw.to_owned() };
    time::OffsetDateTime::parse(&text, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| ApiError::bad_request("invalid_time", format!("{name} is an RFC 3339 time (2026-11-26T08:00:00Z) or a day (2026-11-26)")))
}

/// The report's range `[from, to)` and bucket from the query: `to` defaults to now, `from` to a
/// day (by the hour) or a week (by the day) before it.
fn range(ctx: &Ctx<'_>) -> Result<(i64, i64, Bucket), ApiError> {
    let bucket = match query_param(ctx.req, "bucket") {
        None => Bucket::Hour,
        Some(b) => Bucket::parse(&b).ok_or_else(|| ApiError::bad_request("invalid_bucket", "bucket is hour or day"))?,
    };
    let to = query_param(ctx.req, "to").map(|t| instant("to", &t)).transpose()?.unwrap_or(ctx.now_ms);
    let default_span = if bucket == Bucket::Hour { 86_400_000 } else { 7 * 86_400_000 };
    let from = query_param(ctx.req, "from").map(|f| instant("from", &f)).transpose()?.unwrap_or(to - default_span);
    if from >= to {
        return Err(ApiError::bad_request("invalid_range", "from must be before to"));
    }
    let widest = if bucket == Bucket::Hour { MAX_HOURLY_MS } else { MAX_DAILY_MS };
    if to - from > widest {
        return Err(ApiError::bad_request("invalid_range", format!("by the {bucket:?} a report covers at most {} days", widest / 86_400_000).to_lowercase()));
    }
    Ok((from, to, bucket))
}

/// The facts of the range, or 422 when there are more than a report reads.
async fn facts(ctx: &Ctx<'_>) -> Result<(i64, i64, Bucket, Vec<OrderFacts>), ApiError> {
    ctx.require(Role::Manager)?;
    let (from, to, bucket) = range(ctx)?;
    let facts = ctx.extension::<AnalyticsContext>()?.store.placed_between(from, to, MAX_FACTS + 1).await?;
    if facts.len() > MAX_FACTS {
        return Err(ApiError::unprocessable("range_too_large", format!("more than {MAX_FACTS} orders in the range: narrow it")));
    }
    Ok((from, to, bucket, facts))
}

fn report(from: i64, to: i64, body: serde_json::Value) -> Response {
    let mut out = json!({ "from": rfc3339(from), "to": rfc3339(to) });
    if let (Some(out), Some(body)) = (out.as_object_mut(), body.as_object()) {
        out.extend(body.clone());
    }
    json(StatusCode::OK, &out)
}

/// `GET /api/v1/analytics/sales`: orders, sales and revenue by hour or day of placement.
async fn sales_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (from, to, bucket, facts) = facts(ctx).await?;
    let buckets: Vec<serde_json::Value> = analytics::sales(&facts, from, to, bucket)
        .into_iter()
        .map(|b| json!({ "start": rfc3339(b.start_ms), "orders": b.orders, "sales": b.sales, "revenue_cents": b.revenue_cents }))
        .collect();
    Ok(report(from, to, json!({ "bucket": bucket, "buckets": buckets })))
}

/// `GET /api/v1/analytics/items`: menu items by quantity sold.
async fn items_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (from, to, _, facts) = facts(ctx).await?;
    Ok(report(from, to, json!({ "items": analytics::popularity(&facts, from, to) })))
}

/// `GET /api/v1/analytics/times`: average preparation and wait of the orders that became ready.
async fn times_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (from, to, _, facts) = facts(ctx).await?;
    Ok(report(from, to, serde_json::to_value(analytics::times(&facts, from, to)).unwrap_or_default()))
}

/// `GET /api/v1/analytics/rates`: cancellation and crypto payment-failure rates.
async fn rates_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (from, to, _, facts) = facts(ctx).await?;
    Ok(report(from, to, serde_json::to_value(analytics::rates(&facts, from, to)).unwrap_or_default()))
}

/// `POST /api/v1/analytics/rebuild[?cursor=...]` (admin): one step of a rebuild; call again
/// with `next_cursor` until it is null.
async fn rebuild_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Admin)?;
    let after = page_cursor(ctx.req)?;
    let first = after.is_none();
    let done = rebuild(ctx.extension::<AnalyticsContext>()?.store.as_ref(), ctx.svc.orders, after, REBUILD_PAGE, CLEAR_BUDGET).await?;
    tracing::info!(by = %caller.user_id, first, orders = done.orders, more = done.next.is_some(), "analytics rebuilt a page");
    Ok(json(StatusCode::OK, &json!({ "orders": done.orders, "next_cursor": done.next.as_ref().map(encode_cursor) })))
}
