//! In-memory adapters for every port: for app tests and examples, never for production. They keep
//! the same contracts as the real adapters (conflicts, atomic appends, ordering, paging).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use gocoffee_core::{KitchenTicket, MenuItem, Order, StoredEvent};

use crate::ports::*;

#[derive(Default)]
struct State {
    users: Vec<UserRecord>,
    refresh: HashMap<String, RefreshTokenRecord>,
    menu: Option<Vec<MenuItem>>,
    orders: BTreeMap<String, Order>,
    events: HashMap<String, Vec<StoredEvent>>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    processed: HashSet<(String, String)>,
    outbox: Vec<StoredEvent>,
    published: Vec<StoredEvent>,
    uploads: HashSet<String>,
    rates: HashMap<String, i64>,
}

/// One store holding every kind of state, like the single SQLite database or DynamoDB table.
#[derive(Default)]
pub struct MemoryStore {
    state: RefCell<State>,
    /// When set, every call fails as an unreachable store would.
    pub fail: std::cell::Cell<bool>,
}

impl MemoryStore {
    fn check(&self) -> StoreResult<()> {
        if self.fail.get() { Err(StoreError::Unavailable("memory store set to fail".into())) } else { Ok(()) }
    }

    /// Events relayed to the stream so far, in order.
    pub fn published(&self) -> Vec<StoredEvent> {
        self.state.borrow().published.clone()
    }

    fn with_menu<T>(&self, f: impl FnOnce(&mut Vec<MenuItem>) -> T) -> T {
        let mut s = self.state.borrow_mut();
        let menu = s.menu.get_or_insert_with(gocoffee_core::menu::default_menu);
        f(menu)
    }
}

#[async_trait(?Send)]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        if s.users.iter().any(|u| u.email == user.email || u.id == user.id) {
            return Err(StoreError::Conflict);
        }
        s.users.push(user.clone());
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        self.check()?;
        Ok(self.state.borrow().users.iter().find(|u| u.email == email).cloned())
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.check()?;
        Ok(self.state.borrow().users.iter().find(|u| u.id == id).cloned())
    }

    async fn save_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()> {
        self.check()?;
        self.state.borrow_mut().refresh.insert(token.token_hash.clone(), token.clone());
        Ok(())
    }

    async fn take_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.check()?;
        Ok(self.state.borrow_mut().refresh.remove(token_hash))
    }
}

#[async_trait(?Send)]
impl MenuStore for MemoryStore {
    async fn menu(&self) -> StoreResult<Vec<MenuItem>> {
        self.check()?;
        Ok(self.with_menu(|m| m.clone()))
    }

    async fn menu_item(&self, id: &str) -> StoreResult<Option<MenuItem>> {
        self.check()?;
        Ok(self.with_menu(|m| m.iter().find(|i| i.id == id).cloned()))
    }

    async fn insert_menu_item(&self, item: &MenuItem) -> StoreResult<()> {
        self.check()?;
        self.with_menu(|m| {
            if m.iter().any(|i| i.id == item.id) {
                return Err(StoreError::Conflict);
            }
            m.push(item.clone());
            Ok(())
        })
    }

    async fn replace_menu_item(&self, item: &MenuItem, expected_version: u64) -> StoreResult<bool> {
        self.check()?;
        self.with_menu(|m| match m.iter_mut().find(|i| i.id == item.id) {
            Some(slot) if slot.version != expected_version => Err(StoreError::Conflict),
            Some(slot) => {
                *slot = item.clone();
                Ok(true)
            }
            None => Ok(false),
        })
    }

    async fn claim_upload(&self, key: &str, _at_ms: i64) -> StoreResult<()> {
        self.check()?;
        if self.state.borrow_mut().uploads.insert(key.to_owned()) { Ok(()) } else { Err(StoreError::Conflict) }
    }

    async fn release_upload(&self, key: &str) -> StoreResult<()> {
        self.check()?;
        self.state.borrow_mut().uploads.remove(key);
        Ok(())
    }
}

#[async_trait(?Send)]
impl OrderStore for MemoryStore {
    async fn create_order(&self, order: &Order, placed: &StoredEvent, idempotency: Option<&IdempotencyRecord>) -> StoreResult<()> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        if s.orders.contains_key(&order.id) {
            return Err(StoreError::Conflict);
        }
        if let Some(rec) = idempotency {
            let k = (rec.owner.clone(), rec.key.clone());
            if s.idempotency.get(&k).is_some_and(|r| r.expires_at_ms > placed.occurred_at_ms) {
                return Err(StoreError::Conflict);
            }
            s.idempotency.insert(k, rec.clone());
        }
        s.orders.insert(order.id.clone(), order.clone());
        s.events.insert(order.id.clone(), vec![placed.clone()]);
        s.outbox.push(placed.clone());
        Ok(())
    }

    async fn append(&self, order: &Order, events: &[StoredEvent], expected_version: u64, processed: Option<(&str, &str)>) -> StoreResult<()> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        let current = s.orders.get(&order.id).map(|o| o.version);
        if current != Some(expected_version) {
            return Err(StoreError::Conflict);
        }
        if let Some((consumer, event_id)) = processed
            && !s.processed.insert((consumer.into(), event_id.into()))
        {
            return Err(StoreError::Conflict);
        }
        s.orders.insert(order.id.clone(), order.clone());
        s.events.entry(order.id.clone()).or_default().extend(events.iter().cloned());
        s.outbox.extend(events.iter().cloned());
        Ok(())
    }

    async fn order(&self, id: &str) -> StoreResult<Option<Order>> {
        self.check()?;
        Ok(self.state.borrow().orders.get(id).cloned())
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<StoredEvent>> {
        self.check()?;
        Ok(self.state.borrow().events.get(id).cloned().unwrap_or_default())
    }

    async fn orders(&self, q: &OrderQuery) -> StoreResult<Page<Order>> {
        self.check()?;
        let s = self.state.borrow();
        let mut items: Vec<Order> = s
            .orders
            .values()
            .filter(|o| q.customer_id.as_ref().is_none_or(|c| *c == o.customer_id))
            .filter(|o| q.status.is_none_or(|st| st == o.status))
            .filter(|o| q.after.as_ref().is_none_or(|(t, id)| (o.placed_at_ms, &o.id) < (*t, id)))
            .cloned()
            .collect();
        items.sort_by(|a, b| (b.placed_at_ms, &b.id).cmp(&(a.placed_at_ms, &a.id)));
        Ok(Page::from_overfetch(items, q.limit, |o| (o.placed_at_ms, o.id.clone())))
    }

    async fn kitchen_queue(&self, limit: usize, after: Option<(i64, String)>) -> StoreResult<Page<KitchenTicket>> {
        self.check()?;
        let s = self.state.borrow();
        let mut items: Vec<KitchenTicket> = s
            .orders
            .values()
            .filter_map(KitchenTicket::for_order)
            .filter(|t| after.as_ref().is_none_or(|(at, id)| (t.placed_at_ms, &t.order_id) > (*at, id)))
            .collect();
        items.sort_by(|a, b| (a.placed_at_ms, &a.order_id).cmp(&(b.placed_at_ms, &b.order_id)));
        Ok(Page::from_overfetch(items, limit, |t| (t.placed_at_ms, t.order_id.clone())))
    }

    async fn idempotency_record(&self, owner: &str, key: &str, now_ms: i64) -> StoreResult<Option<IdempotencyRecord>> {
        self.check()?;
        Ok(self.state.borrow().idempotency.get(&(owner.into(), key.into())).filter(|r| r.expires_at_ms > now_ms).cloned())
    }

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool> {
        self.check()?;
        Ok(self.state.borrow().processed.contains(&(consumer.into(), event_id.into())))
    }

    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()> {
        self.check()?;
        self.state.borrow_mut().processed.insert((consumer.into(), event_id.into()));
        Ok(())
    }

    async fn republish(&self, event: &StoredEvent) -> StoreResult<()> {
        self.check()?;
        self.state.borrow_mut().outbox.push(event.clone());
        Ok(())
    }
}

#[async_trait(?Send)]
impl EventRelay for MemoryStore {
    async fn relay(&self) -> StoreResult<usize> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        let pending = std::mem::take(&mut s.outbox);
        let n = pending.len();
        s.published.extend(pending);
        Ok(n)
    }
}

#[async_trait(?Send)]
impl RateLimiter for MemoryStore {
    async fn admit(&self, key: &str, limit: &RateLimit, now_ms: i64) -> StoreResult<Admission> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        match limit.step(s.rates.get(key).copied(), now_ms) {
            Ok(tat) => {
                s.rates.insert(key.to_owned(), tat);
                Ok(Admission::Admitted)
            }
            Err(retry_after_ms) => Ok(Admission::Refused { retry_after_ms }),
        }
    }

    async fn forget_idle(&self, now_ms: i64) -> StoreResult<u64> {
        self.check()?;
        let mut s = self.state.borrow_mut();
        let before = s.rates.len();
        s.rates.retain(|_, tat| *tat >= now_ms);
        Ok((before - s.rates.len()) as u64)
    }
}

/// A clock that only moves when told.
pub struct ManualClock(pub std::cell::Cell<i64>);

impl ManualClock {
    pub fn new(ms: i64) -> Self {
        ManualClock(std::cell::Cell::new(ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

/// A kitchen queue that keeps what was sent, in order.
#[derive(Default)]
pub struct MemoryKitchenQueue(pub RefCell<Vec<StoredEvent>>);

#[async_trait(?Send)]
impl KitchenQueue for MemoryKitchenQueue {
    async fn send(&self, placed: &StoredEvent) -> StoreResult<()> {
        self.0.borrow_mut().push(placed.clone());
        Ok(())
    }
}

/// Picture bytes by key, with their content type.
#[derive(Default)]
pub struct MemoryImageBlobs(pub RefCell<HashMap<String, (String, Vec<u8>)>>);

#[async_trait(?Send)]
impl ImageBlobs for MemoryImageBlobs {
    async fn put_image(&self, key: &str, content_type: &str, bytes: &[u8]) -> StoreResult<()> {
        self.0.borrow_mut().insert(key.into(), (content_type.into(), bytes.to_vec()));
        Ok(())
    }

    async fn image(&self, key: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        Ok(self.0.borrow().get(key).cloned())
    }

    async fn delete_image(&self, key: &str) -> StoreResult<()> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
}

/// Orders and events for adapter tests: every store adapter is tested with the same fixtures.
pub mod fixtures {
    use gocoffee_core::{Cents, Order, OrderEvent, PaymentMethod, PricedOrder, StoredEvent};

    /// A pay-at-counter order `id` placed by `customer` at `at` ms, and its `OrderPlaced`.
    pub fn placed(id: &str, customer: &str, at: i64) -> (Order, StoredEvent) {
        let priced = PricedOrder { lines: vec![], total_cents: Cents(450), note: None, payment_method: PaymentMethod::PayAtCounter };
        let event = StoredEvent {
            event_id: format!("{id}-1"),
            order_id: id.into(),
            version: 1,
            occurred_at_ms: at,
            actor: customer.into(),
            correlation_id: None,
            traceparent: None,
            event: OrderEvent::OrderPlaced { customer_id: customer.into(), order: priced.clone() },
        };
        (Order::open(id, customer, &priced, at), event)
    }

    /// `order` after `event` at `at` ms, and that event as stored.
    pub fn next(order: &Order, event: OrderEvent, at: i64) -> (Order, StoredEvent) {
        let e = StoredEvent {
            event_id: format!("{}-{}", order.id, order.version + 1),
            order_id: order.id.clone(),
            version: order.version + 1,
            occurred_at_ms: at,
            actor: "system".into(),
            correlation_id: None,
            traceparent: None,
            event,
        };
        let mut o = order.clone();
        o.apply(&e);
        (o, e)
    }
}

/// The analytics read model in memory.
#[derive(Default)]
pub struct MemoryAnalytics(pub RefCell<BTreeMap<String, gocoffee_core::analytics::OrderFacts>>);

#[async_trait(?Send)]
impl crate::analytics::AnalyticsStore for MemoryAnalytics {
    async fn facts(&self, order_id: &str) -> StoreResult<Option<gocoffee_core::analytics::OrderFacts>> {
        Ok(self.0.borrow().get(order_id).cloned())
    }

    async fn save(&self, facts: &gocoffee_core::analytics::OrderFacts) -> StoreResult<bool> {
        let mut all = self.0.borrow_mut();
        if all.get(&facts.order_id).is_some_and(|f| f.version > facts.version) {
            return Ok(false);
        }
        all.insert(facts.order_id.clone(), facts.clone());
        Ok(true)
    }

    async fn placed_between(&self, from_ms: i64, to_ms: i64, limit: usize) -> StoreResult<Vec<gocoffee_core::analytics::OrderFacts>> {
        Ok(self.0.borrow().values().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms)).take(limit).cloned().collect())
    }

    /// Two orders a batch, so the tests see a rebuild clear in several.
    async fn clear_batch(&self) -> StoreResult<bool> {
        let mut all = self.0.borrow_mut();
        let batch: Vec<String> = all.keys().take(2).cloned().collect();
        for id in batch {
            all.remove(&id);
        }
        Ok(all.is_empty())
    }
}

/// One message in [`MemoryLiveFeed`].
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub seq: u64,
    pub channel: String,
    pub event_id: String,
    pub at_ms: i64,
    pub message: String,
}

/// The live feed in memory.
#[derive(Default)]
pub struct MemoryLiveFeed(pub RefCell<Vec<FeedRow>>);

#[async_trait(?Send)]
impl crate::live::LiveFeed for MemoryLiveFeed {
    async fn append(&self, messages: &[gocoffee_core::live::Envelope], now_ms: i64, forget_before_ms: i64) -> StoreResult<()> {
        let mut feed = self.0.borrow_mut();
        let mut head = feed.last().map_or(0, |e| e.seq);
        feed.retain(|e| e.at_ms >= forget_before_ms);
        for m in messages {
            if feed.iter().any(|e| e.channel == m.channel && e.event_id == m.event_id) {
                continue;
            }
            head += 1;
            let message = serde_json::to_string(m).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            feed.push(FeedRow { seq: head, channel: m.channel.clone(), event_id: m.event_id.clone(), at_ms: now_ms, message });
        }
        Ok(())
    }

    async fn read(&self, channels: &[String], after: u64, limit: usize) -> StoreResult<Vec<crate::live::FeedEntry>> {
        let feed = self.0.borrow();
        let entries = feed.iter().filter(|e| e.seq > after && channels.contains(&e.channel)).take(limit);
        Ok(entries.map(|e| crate::live::FeedEntry { seq: e.seq, message: e.message.clone() }).collect())
    }

    async fn head(&self) -> StoreResult<u64> {
        Ok(self.0.borrow().last().map_or(0, |e| e.seq))
    }
}

/// Open WebSocket connections in memory: the connections, and `(channel, connection id)` pairs.
#[derive(Default)]
pub struct MemoryConnections {
    pub connections: RefCell<BTreeMap<String, crate::live::sockets::Connection>>,
    pub subscriptions: RefCell<std::collections::BTreeSet<(String, String)>>,
}

#[async_trait(?Send)]
impl crate::live::sockets::ConnectionStore for MemoryConnections {
    async fn save_connection(&self, connection: &crate::live::sockets::Connection) -> StoreResult<()> {
        self.connections.borrow_mut().insert(connection.id.clone(), connection.clone());
        Ok(())
    }

    async fn connection(&self, id: &str, now_ms: i64) -> StoreResult<Option<crate::live::sockets::Connection>> {
        Ok(self.connections.borrow().get(id).filter(|c| c.expires_at_ms > now_ms).cloned())
    }

    async fn subscribe(&self, connection: &crate::live::sockets::Connection, channel: &str, limit: usize) -> StoreResult<bool> {
        let mut subscriptions = self.subscriptions.borrow_mut();
        let key = (channel.to_owned(), connection.id.clone());
        if subscriptions.contains(&key) {
            return Ok(true);
        }
        if subscriptions.iter().filter(|(_, c)| *c == connection.id).count() >= limit {
            return Ok(false);
        }
        subscriptions.insert(key);
        Ok(true)
    }

    async fn unsubscribe(&self, connection_id: &str, channel: &str) -> StoreResult<()> {
        self.subscriptions.borrow_mut().remove(&(channel.to_owned(), connection_id.to_owned()));
        Ok(())
    }

    async fn subscribers(&self, channel: &str, now_ms: i64) -> StoreResult<Vec<String>> {
        let connections = self.connections.borrow();
        let open = |id: &String| connections.get(id).is_some_and(|c| c.expires_at_ms > now_ms);
        Ok(self.subscriptions.borrow().iter().filter(|(ch, id)| ch == channel && open(id)).map(|(_, id)| id.clone()).collect())
    }

    async fn forget(&self, connection_id: &str) -> StoreResult<()> {
        self.connections.borrow_mut().remove(connection_id);
        self.subscriptions.borrow_mut().retain(|(_, id)| id != connection_id);
        Ok(())
    }
}

/// A pusher that keeps what it pushed, per connection, and answers `Gone` for the ids in `gone`.
#[derive(Default)]
pub struct RecordingPusher {
    pub pushed: RefCell<Vec<(String, serde_json::Value)>>,
    pub gone: RefCell<HashSet<String>>,
}

#[async_trait(?Send)]
impl crate::live::sockets::Pusher for RecordingPusher {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), crate::live::sockets::PushError> {
        if self.gone.borrow().contains(connection_id) {
            return Err(crate::live::sockets::PushError::Gone);
        }
        let message = serde_json::from_slice(message).map_err(|e| crate::live::sockets::PushError::Unavailable(e.to_string()))?;
        self.pushed.borrow_mut().push((connection_id.to_owned(), message));
        Ok(())
    }
}

/// The kitchen's state and log in memory.
#[derive(Default)]
pub struct MemoryKitchen(pub RefCell<Option<(gocoffee_core::kitchen::Kitchen, Vec<gocoffee_core::kitchen::KitchenRecord>)>>);

#[async_trait(?Send)]
impl KitchenStore for MemoryKitchen {
    async fn kitchen(&self) -> StoreResult<gocoffee_core::kitchen::Kitchen> {
        Ok(self.0.borrow().as_ref().map_or_else(gocoffee_core::kitchen::Kitchen::initial, |(k, _)| k.clone()))
    }

    async fn append_kitchen(
        &self,
        state: &gocoffee_core::kitchen::Kitchen,
        records: &[gocoffee_core::kitchen::KitchenRecord],
        expected_version: u64,
    ) -> StoreResult<()> {
        let mut stored = self.0.borrow_mut();
        if stored.as_ref().map_or(0, |(k, _)| k.version) != expected_version {
            return Err(StoreError::Conflict);
        }
        let mut log = stored.take().map(|(_, log)| log).unwrap_or_default();
        log.extend_from_slice(records);
        *stored = Some((state.clone(), log));
        Ok(())
    }

    async fn kitchen_log(&self, after: u64, limit: usize) -> StoreResult<Vec<gocoffee_core::kitchen::KitchenRecord>> {
        let stored = self.0.borrow();
        Ok(stored.as_ref().map(|(_, log)| log.iter().filter(|r| r.version > after).take(limit).cloned().collect()).unwrap_or_default())
    }
}
