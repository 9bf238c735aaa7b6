//! The analytics read model (CQRS): what each order contributes to the café's figures, folded
//! from the order's events, and the reports computed from those facts. Pure: a store keeps one
//! [`OrderFacts`] per order, apart from the write side, and replaying every order's events
//! through [`OrderFacts::apply`] rebuilds exactly the same facts, so the same reports.
//!
//! Times are the events' own (`occurred_at_ms`), never the projection's clock: a late or replayed
//! event lands in the hour it happened. Buckets are UTC hours and days.

use serde::{Deserialize, Serialize};

use crate::order::{OrderEvent, StoredEvent};

/// What one order contributes to the figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub order_id: String,
    /// The last event folded in: an event at or below it (a redelivery) changes nothing.
    pub version: u64,
    pub placed_at_ms: i64,
    pub total_cents: u64,
    pub items: Vec<ItemCount>,
    /// Paid in crypto (so it can fail its payment).
    pub crypto: bool,
    pub paid: bool,
    pub started_at_ms: Option<i64>,
    pub ready_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub cancelled_at_ms: Option<i64>,
    /// Cancelled by the system while it waited for its crypto payment: the payment failed.
    pub payment_failed: bool,
    pub refunded: bool,
}

/// How many of one menu item an order holds (every size and modifier together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCount {
    pub item_id: String,
    pub name: String,
    pub quantity: u32,
}

/// Why an event could not be folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldError {
    /// The order's `OrderPlaced` has not been folded in yet (it is late, or was missed): the
    /// event should come again later, or the model be rebuilt.
    NotPlacedYet,
    /// The event is more than one version past the facts: one between was missed (a message
    /// dead-lettered). Folding the order's whole log mends it.
    Gap { have: u64, got: u64 },
}

impl OrderFacts {
    /// `facts` with `event` folded in; `Ok(None)` when the event changes nothing (a redelivery,
    /// an event of no interest).
    pub fn apply(facts: Option<&OrderFacts>, event: &StoredEvent) -> Result<Option<OrderFacts>, FoldError> {
        let at = event.occurred_at_ms;
        let Some(facts) = facts else {
            let OrderEvent::OrderPlaced { order, .. } = &event.event else { return Err(FoldError::NotPlacedYet) };
            let mut items: Vec<ItemCount> = Vec::new();
            for line in &order.lines {
                match items.iter_mut().find(|i| i.item_id == line.item_id) {
                    Some(item) => item.quantity += line.quantity,
                    None => items.push(ItemCount { item_id: line.item_id.clone(), name: line.name.clone(), quantity: line.quantity }),
                }
            }
            return Ok(Some(OrderFacts {
                order_id: event.order_id.clone(),
                version: event.version,
                placed_at_ms: at,
                total_cents: order.total_cents.0,
                items,
                crypto: order.payment_method.crypto().is_some(),
                paid: false,
                started_at_ms: None,
                ready_at_ms: None,
                completed_at_ms: None,
                cancelled_at_ms: None,
                payment_failed: false,
                refunded: false,
            }));
        };
        if event.version <= facts.version {
            return Ok(None);
        }
        if event.version > facts.version + 1 {
            return Err(FoldError::Gap { have: facts.version, got: event.version });
        }
        let mut next = facts.clone();
        next.version = event.version;
        match &event.event {
            OrderEvent::PreparationStarted => next.started_at_ms = Some(at),
            OrderEvent::OrderReady => next.ready_at_ms = Some(at),
            OrderEvent::OrderCompleted => next.completed_at_ms = Some(at),
            OrderEvent::OrderPaid { .. } => next.paid = true,
            OrderEvent::OrderRefunded => next.refunded = true,
            OrderEvent::OrderCancelled { .. } => {
                next.cancelled_at_ms = Some(at);
                next.payment_failed = facts.crypto && !facts.paid && event.actor == crate::Actor::System.id();
            }
            OrderEvent::OrderPlaced { .. }
            | OrderEvent::OrderConfirmed
            | OrderEvent::PaymentRequested { .. }
            | OrderEvent::TicketRouted { .. }
            | OrderEvent::PartStarted { .. }
            | OrderEvent::PartReady { .. } => {}
        }
        Ok(Some(next))
    }

    /// The facts of one order's whole log, oldest first (a rebuild, or mending a gap).
    pub fn fold(log: &[StoredEvent]) -> Result<OrderFacts, FoldError> {
        let mut facts: Option<OrderFacts> = None;
        for event in log {
            if let Some(next) = OrderFacts::apply(facts.as_ref(), event)? {
                facts = Some(next);
            }
        }
        facts.ok_or(FoldError::NotPlacedYet)
    }

    /// Still counts as a sale: neither cancelled nor refunded.
    pub fn is_sale(&self) -> bool {
        self.cancelled_at_ms.is_none() && !self.refunded
    }
}

/// A report's bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
}

/// Sales placed in one bucket: every order placed, and the ones that stayed sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesBucket {
    pub start_ms: i64,
    pub orders: u64,
    pub sales: u64,
    pub revenue_cents: u64,
}

/// Sales by `bucket` of the orders placed in `[from_ms, to_ms)`, oldest first; empty buckets are
/// left out.
pub fn sales(facts: &[OrderFacts], from_ms: i64, to_ms: i64, bucket: Bucket) -> Vec<SalesBucket> {
    let mut buckets: std::collections::BTreeMap<i64, SalesBucket> = std::collections::BTreeMap::new();
    for f in facts.iter().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms)) {
        let start_ms = f.placed_at_ms - f.placed_at_ms.rem_euclid(bucket.millis());
        let b = buckets.entry(start_ms).or_insert(SalesBucket { start_ms, orders: 0, sales: 0, revenue_cents: 0 });
        b.orders += 1;
        if f.is_sale() {
            b.sales += 1;
            b.revenue_cents += f.total_cents;
        }
    }
    buckets.into_values().collect()
}

/// How often an item sold in `[from_ms, to_ms)`: cups, and orders holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemPopularity {
    pub item_id: String,
    pub name: String,
    pub quantity: u64,
    pub orders: u64,
}

/// Items by quantity sold (then by id), counting only orders that stayed sales.
pub fn popularity(facts: &[OrderFacts], from_ms: i64, to_ms: i64) -> Vec<ItemPopularity> {
    let mut items: std::collections::BTreeMap<&str, ItemPopularity> = std::collections::BTreeMap::new();
    for f in facts.iter().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms) && f.is_sale()) {
        for i in &f.items {
            let p = items.entry(&i.item_id).or_insert_with(|| ItemPopularity { item_id: i.item_id.clone(), name: i.name.clone(), quantity: 0, orders: 0 });
            p.quantity += u64::from(i.quantity);
            p.orders += 1;
        }
    }
    let mut out: Vec<ItemPopularity> = items.into_values().collect();
    out.sort_by(|a, b| b.quantity.cmp(&a.quantity).then_with(|| a.item_id.cmp(&b.item_id)));
    out
}

/// Preparation (started to ready) and wait (placed to ready) of the orders placed in the range
/// that became ready; averages in whole milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Times {
    pub ready_orders: u64,
    pub average_preparation_ms: Option<i64>,
    pub average_wait_ms: Option<i64>,
}

pub fn times(facts: &[OrderFacts], from_ms: i64, to_ms: i64) -> Times {
    let (mut ready, mut prep, mut prepared, mut wait) = (0u64, 0i64, 0i64, 0i64);
    for f in facts.iter().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms)) {
        let Some(ready_at) = f.ready_at_ms else { continue };
        ready += 1;
        wait += ready_at - f.placed_at_ms;
        if let Some(started) = f.started_at_ms {
            prepared += 1;
            prep += ready_at - started;
        }
    }
    let average = |sum: i64, n: i64| (n > 0).then(|| sum / n);
    Times { ready_orders: ready, average_preparation_ms: average(prep, prepared), average_wait_ms: average(wait, ready as i64) }
}

/// Cancellations among the orders placed in the range, and payment failures among its crypto
/// orders, as counts and rates (0 to 1; `None` without any order to divide by).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    pub orders: u64,
    pub cancelled: u64,
    pub cancellation_rate: Option<f64>,
    pub crypto_orders: u64,
    pub payment_failures: u64,
    pub payment_failure_rate: Option<f64>,
}

pub fn rates(facts: &[OrderFacts], from_ms: i64, to_ms: i64) -> Rates {
    let in_range: Vec<&OrderFacts> = facts.iter().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms)).collect();
    let orders = in_range.len() as u64;
    let cancelled = in_range.iter().filter(|f| f.cancelled_at_ms.is_some()).count() as u64;
    let crypto_orders = in_range.iter().filter(|f| f.crypto).count() as u64;
    let payment_failures = in_range.iter().filter(|f| f.payment_failed).count() as u64;
    let rate = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
    Rates {
        orders,
        cancelled,
        cancellation_rate: rate(cancelled, orders),
        crypto_orders,
        payment_failures,
        payment_failure_rate: rate(payment_failures, crypto_orders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Cents;
    use crate::order::{CryptoMethod, PaymentMethod, PricedLine, PricedOrder};

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_795_000_000_000 - 1_795_000_000_000 % (24 * HOUR);

    fn line(item: &str, quantity: u32, cents: u64) -> PricedLine {
        PricedLine {
            item_id: item.into(),
            name: item.to_uppercase(),
            size: "medium".into(),
            modifiers: vec![],
            quantity,
            unit_price_cents: Cents(cents),
            line_total_cents: Cents(cents * u64::from(quantity)),
        }
    }

    fn event(order: &str, version: u64, at: i64, actor: &str, event: OrderEvent) -> StoredEvent {
        StoredEvent {
            event_id: format!("{order}-{version}"),
            order_id: order.into(),
            version,
            occurred_at_ms: at,
            actor: actor.into(),
            correlation_id: None,
            traceparent: None,
            event,
        }
    }

    fn placed(order: &str, at: i64, lines: Vec<PricedLine>, crypto: bool) -> StoredEvent {
        let total = lines.iter().map(|l| l.line_total_cents.0).sum();
        let payment_method =
            if crypto { PaymentMethod::Crypto(CryptoMethod { chain: "polygon".into(), asset: "USDC".into() }) } else { PaymentMethod::PayAtCounter };
        let order_body = PricedOrder { lines, total_cents: Cents(total), note: None, payment_method };
        event(order, 1, at, "u1", OrderEvent::OrderPlaced { customer_id: "u1".into(), order: order_body })
    }

    /// Folds a stream in order, as a consumer would.
    fn fold(stream: &[StoredEvent]) -> Vec<OrderFacts> {
        let mut facts: std::collections::BTreeMap<String, OrderFacts> = std::collections::BTreeMap::new();
        for e in stream {
            if let Ok(Some(next)) = OrderFacts::apply(facts.get(&e.order_id), e) {
                facts.insert(e.order_id.clone(), next);
            }
        }
        facts.into_values().collect()
    }

    fn day_of_orders() -> Vec<StoredEvent> {
        vec![
            // a: two lattes and an espresso at 08:10, made and collected.
            placed("a", T0 + 8 * HOUR + 600_000, vec![line("latte", 2, 450), line("espresso", 1, 300), line("latte", 1, 450)], false),
            event("a", 2, T0 + 8 * HOUR + 601_000, "system", OrderEvent::OrderConfirmed),
            event("a", 3, T0 + 8 * HOUR + 660_000, "b1", OrderEvent::PreparationStarted),
            event("a", 4, T0 + 8 * HOUR + 840_000, "b1", OrderEvent::OrderReady),
            event("a", 5, T0 + 8 * HOUR + 900_000, "u1", OrderEvent::OrderCompleted),
            // b: an espresso at 08:30, cancelled by its customer.
            placed("b", T0 + 8 * HOUR + 1_800_000, vec![line("espresso", 1, 300)], false),
            event("b", 2, T0 + 8 * HOUR + 1_860_000, "u1", OrderEvent::OrderCancelled { reason: None }),
            // c: a crypto latte at 09:05 whose payment never came.
            placed("c", T0 + 9 * HOUR + 300_000, vec![line("latte", 1, 450)], true),
            event("c", 2, T0 + 9 * HOUR + 301_000, "system", OrderEvent::PaymentRequested { intent_id: "pi_c".into() }),
            event("c", 3, T0 + 9 * HOUR + 1_200_000, "system", OrderEvent::OrderCancelled { reason: Some("payment: nothing arrived".into()) }),
            // d: a paid crypto mocha at 09:20, ready without a recorded start.
            placed("d", T0 + 9 * HOUR + 1_200_000, vec![line("mocha", 1, 520)], true),
            event("d", 2, T0 + 9 * HOUR + 1_201_000, "system", OrderEvent::PaymentRequested { intent_id: "pi_d".into() }),
            event("d", 3, T0 + 9 * HOUR + 1_260_000, "system", OrderEvent::OrderPaid { intent_id: "pi_d".into() }),
            event("d", 4, T0 + 9 * HOUR + 1_261_000, "system", OrderEvent::OrderConfirmed),
            event("d", 5, T0 + 9 * HOUR + 1_500_000, "b1", OrderEvent::OrderReady),
        ]
    }

    #[test]
    fn redeliveries_change_nothing_and_a_late_placement_waits() {
        let stream = day_of_orders();
        let once = fold(&stream);
        // Every event twice, each right after itself (at-least-once delivery, in order per order).
        let twice: Vec<StoredEvent> = stream.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        assert_eq!(fold(&twice), once);
        // Interleaving orders differently (the stream keeps only each order's own order) too.
        let mut by_order = stream.clone();
        by_order.sort_by(|x, y| y.order_id.cmp(&x.order_id).then(x.version.cmp(&y.version)));
        assert_eq!(fold(&by_order), once);
        assert_eq!(OrderFacts::apply(None, &stream[1]), Err(FoldError::NotPlacedYet));
        // A missed event is a gap, never silently skipped.
        let placed_a = OrderFacts::apply(None, &stream[0]).expect("placed").expect("facts");
        assert_eq!(OrderFacts::apply(Some(&placed_a), &stream[2]), Err(FoldError::Gap { have: 1, got: 3 }));
        assert_eq!(OrderFacts::fold(&stream[..5]).expect("a's log"), once[0]);
        assert_eq!(OrderFacts::fold(&stream[1..5]), Err(FoldError::NotPlacedYet));
        let a = &once[0];
        assert_eq!((a.version, a.total_cents, a.items.len()), (5, 1650, 2));
        assert_eq!(a.items[0], ItemCount { item_id: "latte".into(), name: "LATTE".into(), quantity: 3 });
    }

    #[test]
    fn only_a_system_cancellation_of_an_unpaid_crypto_order_is_a_payment_failure() {
        let facts = fold(&day_of_orders());
        let by_id = |id: &str| facts.iter().find(|f| f.order_id == id).cloned().expect("facts");
        assert!(by_id("c").payment_failed && !by_id("c").is_sale());
        assert!(!by_id("b").payment_failed && !by_id("b").is_sale(), "the customer cancelled b");
        assert!(by_id("d").paid && !by_id("d").payment_failed && by_id("d").is_sale());
    }

    #[test]
    fn reports_answer_from_the_facts_alone() {
        let facts = fold(&day_of_orders());
        let day = (T0, T0 + 24 * HOUR);
        assert_eq!(
            sales(&facts, day.0, day.1, Bucket::Hour),
            [
                SalesBucket { start_ms: T0 + 8 * HOUR, orders: 2, sales: 1, revenue_cents: 1650 },
                SalesBucket { start_ms: T0 + 9 * HOUR, orders: 2, sales: 1, revenue_cents: 520 },
            ]
        );
        assert_eq!(sales(&facts, day.0, day.1, Bucket::Day), [SalesBucket { start_ms: T0, orders: 4, sales: 2, revenue_cents: 2170 }]);
        assert_eq!(sales(&facts, T0 + 9 * HOUR, day.1, Bucket::Day).len(), 1, "the range is by placement time");
        let items: Vec<(String, u64, u64)> = popularity(&facts, day.0, day.1).into_iter().map(|p| (p.item_id, p.quantity, p.orders)).collect();
        assert_eq!(items, [("latte".into(), 3, 1), ("espresso".into(), 1, 1), ("mocha".into(), 1, 1)]);
        assert_eq!(
            times(&facts, day.0, day.1),
            Times { ready_orders: 2, average_preparation_ms: Some(180_000), average_wait_ms: Some((240_000 + 300_000) / 2) }
        );
        let r = rates(&facts, day.0, day.1);
        assert_eq!((r.orders, r.cancelled, r.crypto_orders, r.payment_failures), (4, 2, 2, 1));
        assert_eq!((r.cancellation_rate, r.payment_failure_rate), (Some(0.5), Some(0.5)));
        let empty = rates(&facts, 0, 1);
        assert_eq!((empty.orders, empty.cancellation_rate), (0, None));
    }
}
