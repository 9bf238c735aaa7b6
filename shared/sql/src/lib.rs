//! SQL adapters for the Go Coffee ports: one database holds users, the menu, each order's event
//! log with its read models, the outbox, idempotency records and the consumers' ledger. Written
//! against [`Db`], so the same code runs on Spin's `sqlite` interface and on rusqlite, and on
//! PostgreSQL (the `postgres` driver; Spin's `postgres` interface): the statements are shared, and
//! where the dialects differ [`dialect`] has both. (`SqliteStore` is the store on either.)

pub mod analytics;
pub mod db;
pub mod dialect;
pub mod live;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rusqlite")]
pub mod rusqlite;
pub mod schema;

use async_trait::async_trait;
use gocoffee_app::outbox::{LeasedOutbox, relay_leased};
use gocoffee_app::ports::*;
use gocoffee_core::{KitchenTicket, MenuItem, Order, Role, StoredEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::db::{Db, DbError, Dialect, RowExt, Rows, Value};

/// The channel order events are published on.
pub const ORDERS_CHANNEL: &str = "orders";
/// Order events go out on the analytics channel too, after the orders one.
pub use gocoffee_app::analytics::ANALYTICS_CHANNEL;

/// Runs `f` inside a write transaction, rolling back when it fails. The write lock is taken up
/// front (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's advisory lock: [`dialect::begin`]), so two
/// writers queue instead of deadlocking on a lock upgrade, and neither sees the other half done.
pub fn transaction<T>(db: &dyn Db, f: impl FnOnce(&dyn Db) -> Result<T, DbError>) -> Result<T, DbError> {
    dialect::begin(db)?;
    match f(db) {
        Ok(v) => {
            if let Err(e) = db.execute("COMMIT", &[]) {
                let _ = db.execute("ROLLBACK", &[]);
                return Err(e);
            }
            Ok(v)
        }
        Err(e) => {
            // The original error is what matters; a failed rollback leaves nothing committed.
            let _ = db.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Constraint(_) => StoreError::Conflict,
            DbError::Other(m) => StoreError::Unavailable(m),
        }
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Other(format!("encoding a document: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::Other(format!("decoding a stored document: {e}")))
}

/// The user, menu and order stores on one SQLite database.
pub struct SqliteStore<D> {
    db: D,
}

impl<D: Db> SqliteStore<D> {
    /// Wraps `db`, creating or upgrading the schema first.
    pub fn open(db: D) -> Result<Self, DbError> {
        schema::ensure(&db)?;
        Ok(SqliteStore { db })
    }

    pub fn db(&self) -> &D {
        &self.db
    }
}

fn user(row: &Vec<Value>) -> Result<UserRecord, DbError> {
    Ok(UserRecord {
        id: row.text(0)?.to_owned(),
        email: row.text(1)?.to_owned(),
        name: row.opt_text(2)?.map(str::to_owned),
        role: Role::parse(row.text(3)?).ok_or_else(|| DbError::Other("unknown role in users".into()))?,
        password_hash: row.text(4)?.to_owned(),
        created_at_ms: row.int(5)?,
    })
}

const USER_COLUMNS: &str = "id, email, name, role, password_hash, created_at";

#[async_trait(?Send)]
impl<D: Db> UserStore for SqliteStore<D> {
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        self.db.execute(
            "INSERT INTO users (id, email, name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                u.id.as_str().into(),
                u.email.as_str().into(),
                u.name.as_deref().into(),
                u.role.as_str().into(),
                u.password_hash.as_str().into(),
                u.created_at_ms.into(),
            ],
        )?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let rows = self.db.execute(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?"), &[email.into()])?;
        Ok(rows.rows.first().map(user).transpose()?)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let rows = self.db.execute(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"), &[id.into()])?;
        Ok(rows.rows.first().map(user).transpose()?)
    }

    async fn save_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()> {
        self.db.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
            &[t.token_hash.as_str().into(), t.user_id.as_str().into(), t.expires_at_ms.into()],
        )?;
        Ok(())
    }

    async fn take_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let rows = self.db.execute("DELETE FROM refresh_tokens WHERE token_hash = ? RETURNING user_id, expires_at", &[token_hash.into()])?;
        Ok(rows
            .rows
            .first()
            .map(|r| -> Result<_, DbError> {
                Ok(RefreshTokenRecord { token_hash: token_hash.to_owned(), user_id: r.text(0)?.to_owned(), expires_at_ms: r.int(1)? })
            })
            .transpose()?)
    }
}

#[async_trait(?Send)]
impl<D: Db> MenuStore for SqliteStore<D> {
    async fn menu(&self) -> StoreResult<Vec<MenuItem>> {
        let rows = self.db.execute("SELECT doc FROM menu_items ORDER BY position, id", &[])?;
        Ok(rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, _>>()?)
    }

    async fn menu_item(&self, id: &str) -> StoreResult<Option<MenuItem>> {
        let rows = self.db.execute("SELECT doc FROM menu_items WHERE id = ?", &[id.into()])?;
        Ok(rows.rows.first().map(|r| from_json(r.text(0)?)).transpose()?)
    }

    async fn insert_menu_item(&self, item: &MenuItem) -> StoreResult<()> {
        self.db.execute(
            "INSERT INTO menu_items (id, position, doc) VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM menu_items), ?)",
            &[item.id.as_str().into(), to_json(item)?.into()],
        )?;
        Ok(())
    }

    async fn replace_menu_item(&self, item: &MenuItem, expected_version: u64) -> StoreResult<bool> {
        // Items written before versions existed have none in their document: they are at 0.
        let rows = self.db.execute(
            &format!("UPDATE menu_items SET doc = ? WHERE id = ? AND {} = ? RETURNING id", dialect::menu_doc_version(self.db.dialect())),
            &[to_json(item)?.into(), item.id.as_str().into(), Value::Integer(expected_version as i64)],
        )?;
        if !rows.rows.is_empty() {
            return Ok(true);
        }
        let exists = self.db.execute("SELECT 1 FROM menu_items WHERE id = ?", &[item.id.as_str().into()])?;
        if exists.rows.is_empty() { Ok(false) } else { Err(StoreError::Conflict) }
    }

    async fn claim_upload(&self, key: &str, at_ms: i64) -> StoreResult<()> {
        // Upload URLs live 15 minutes; a claim a day old guards nothing any more.
        self.db.execute("DELETE FROM image_uploads WHERE used_at < ?", &[Value::Integer(at_ms - 24 * 3600 * 1000)])?;
        self.db.execute("INSERT INTO image_uploads (key, used_at) VALUES (?, ?)", &[key.into(), at_ms.into()])?;
        Ok(())
    }

    async fn release_upload(&self, key: &str) -> StoreResult<()> {
        self.db.execute("DELETE FROM image_uploads WHERE key = ?", &[key.into()])?;
        Ok(())
    }
}

/// Writes the read models for `order` (its row and its kitchen ticket) and queues `event`.
fn project(db: &dyn Db, order: &Order, event: &StoredEvent) -> Result<(), DbError> {
    let doc = to_json(event)?;
    db.execute(
        "INSERT INTO order_events (order_id, version, event_id, doc) VALUES (?, ?, ?, ?)",
        &[event.order_id.as_str().into(), Value::Integer(event.version as i64), event.event_id.as_str().into(), doc.as_str().into()],
    )?;
    db.execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &[ORDERS_CHANNEL.into(), Value::Blob(doc.into_bytes())])?;
    match KitchenTicket::for_order(order) {
        Some(ticket) => db.execute(
            "INSERT INTO kitchen_tickets (order_id, placed_at, doc) VALUES (?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET doc = excluded.doc",
            &[ticket.order_id.as_str().into(), ticket.placed_at_ms.into(), to_json(&ticket)?.into()],
        )?,
        None => db.execute("DELETE FROM kitchen_tickets WHERE order_id = ?", &[order.id.as_str().into()])?,
    };
    Ok(())
}

#[async_trait(?Send)]
impl<D: Db> OrderStore for SqliteStore<D> {
    async fn create_order(&self, order: &Order, placed: &StoredEvent, idempotency: Option<&IdempotencyRecord>) -> StoreResult<()> {
        transaction(&self.db, |db| {
            if let Some(r) = idempotency {
                // An expired record for the same key no longer guards anything.
                db.execute(
                    "DELETE FROM idempotency WHERE owner = ? AND key = ? AND expires_at <= ?",
                    &[r.owner.as_str().into(), r.key.as_str().into(), placed.occurred_at_ms.into()],
                )?;
                db.execute(
                    "INSERT INTO idempotency (owner, key, request_hash, status, body, location, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    &[
                        r.owner.as_str().into(),
                        r.key.as_str().into(),
                        r.request_hash.as_str().into(),
                        Value::Integer(r.status.into()),
                        r.body.as_str().into(),
                        r.location.as_deref().into(),
                        r.expires_at_ms.into(),
                    ],
                )?;
            }
            db.execute(
                "INSERT INTO orders (id, customer_id, status, placed_at, version, doc) VALUES (?, ?, ?, ?, ?, ?)",
                &[
                    order.id.as_str().into(),
                    order.customer_id.as_str().into(),
                    order.status.as_str().into(),
                    order.placed_at_ms.into(),
                    Value::Integer(order.version as i64),
                    to_json(order)?.into(),
                ],
            )?;
            project(db, order, placed)
        })?;
        Ok(())
    }

    async fn append(&self, order: &Order, events: &[StoredEvent], expected_version: u64, processed: Option<(&str, &str)>) -> StoreResult<()> {
        transaction(&self.db, |db| {
            let updated = db.execute(
                "UPDATE orders SET status = ?, version = ?, doc = ? WHERE id = ? AND version = ? RETURNING id",
                &[
                    order.status.as_str().into(),
                    Value::Integer(order.version as i64),
                    to_json(order)?.into(),
                    order.id.as_str().into(),
                    Value::Integer(expected_version as i64),
                ],
            )?;
            if updated.rows.is_empty() {
                return Err(DbError::Constraint(format!("order {} is no longer at version {expected_version}", order.id)));
            }
            for event in events {
                project(db, order, event)?;
            }
            if let Some((consumer, event_id)) = processed {
                db.execute("INSERT INTO processed_events (consumer, event_id) VALUES (?, ?)", &[consumer.into(), event_id.into()])?;
            }
            Ok(())
        })?;
        Ok(())
    }

    async fn order(&self, id: &str) -> StoreResult<Option<Order>> {
        let rows = self.db.execute("SELECT doc FROM orders WHERE id = ?", &[id.into()])?;
        Ok(rows.rows.first().map(|r| from_json(r.text(0)?)).transpose()?)
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<StoredEvent>> {
        let rows = self.db.execute("SELECT doc FROM order_events WHERE order_id = ? ORDER BY version", &[id.into()])?;
        Ok(rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, _>>()?)
    }

    async fn orders(&self, q: &OrderQuery) -> StoreResult<Page<Order>> {
        let mut sql = String::from("SELECT doc FROM orders WHERE 1 = 1");
        let mut params: Vec<Value> = Vec::new();
        if let Some(c) = &q.customer_id {
            sql.push_str(" AND customer_id = ?");
            params.push(c.as_str().into());
        }
        if let Some(s) = q.status {
            sql.push_str(" AND status = ?");
            params.push(s.as_str().into());
        }
        if let Some((t, id)) = &q.after {
            sql.push_str(" AND (placed_at, id) < (?, ?)");
            params.extend([Value::Integer(*t), id.as_str().into()]);
        }
        sql.push_str(" ORDER BY placed_at DESC, id DESC LIMIT ?");
        params.push(Value::Integer(q.limit as i64 + 1));
        let rows = self.db.execute(&sql, &params)?;
        let items: Vec<Order> = rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, DbError>>()?;
        Ok(Page::from_overfetch(items, q.limit, |o| (o.placed_at_ms, o.id.clone())))
    }

    async fn kitchen_queue(&self, limit: usize, after: Option<(i64, String)>) -> StoreResult<Page<KitchenTicket>> {
        let (t, id) = after.unwrap_or((i64::MIN, String::new()));
        let rows = self.db.execute(
            "SELECT doc FROM kitchen_tickets WHERE (placed_at, order_id) > (?, ?) ORDER BY placed_at, order_id LIMIT ?",
            &[Value::Integer(t), id.into(), Value::Integer(limit as i64 + 1)],
        )?;
        let items: Vec<KitchenTicket> = rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, DbError>>()?;
        Ok(Page::from_overfetch(items, limit, |t| (t.placed_at_ms, t.order_id.clone())))
    }

    async fn idempotency_record(&self, owner: &str, key: &str, now_ms: i64) -> StoreResult<Option<IdempotencyRecord>> {
        let rows = self.db.execute(
            "SELECT request_hash, status, body, location, expires_at FROM idempotency WHERE owner = ? AND key = ? AND expires_at > ?",
            &[owner.into(), key.into(), now_ms.into()],
        )?;
        let record = |r: &Vec<Value>| -> Result<IdempotencyRecord, DbError> {
            Ok(IdempotencyRecord {
                owner: owner.to_owned(),
                key: key.to_owned(),
                request_hash: r.text(0)?.to_owned(),
                status: u16::try_from(r.int(1)?).map_err(|_| DbError::Other("bad status".into()))?,
                body: r.text(2)?.to_owned(),
                location: r.opt_text(3)?.map(str::to_owned),
                expires_at_ms: r.int(4)?,
            })
        };
        Ok(rows.rows.first().map(record).transpose()?)
    }

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool> {
        let rows = self.db.execute("SELECT 1 FROM processed_events WHERE consumer = ? AND event_id = ?", &[consumer.into(), event_id.into()])?;
        Ok(!rows.rows.is_empty())
    }

    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()> {
        self.db.execute("INSERT INTO processed_events (consumer, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", &[consumer.into(), event_id.into()])?;
        Ok(())
    }

    async fn republish(&self, event: &StoredEvent) -> StoreResult<()> {
        let doc = serde_json::to_string(event).map_err(|e| StoreError::Unavailable(format!("encoding an event: {e}")))?;
        self.db.execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &[ORDERS_CHANNEL.into(), Value::Blob(doc.into_bytes())])?;
        Ok(())
    }
}

/// Where the outbox relay sends events: a Redis channel on Spin, the host's durable log locally.
pub trait Publisher {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String>;
}

/// Publishes the outbox in order, deleting each entry once the publisher took it. A crash
/// between the two publishes that entry again: consumers are idempotent. One relay at a time
/// holds the lease (a row with an expiry, taken by an atomic upsert; see
/// [`gocoffee_app::outbox`]), so each entry goes out once, in the order it was written, which for
/// one order is the order of its versions.
pub struct SqliteOutboxRelay<'a, D, P> {
    pub db: &'a D,
    pub publisher: P,
}

const RELAY_BATCH: i64 = 100;
/// How long a lease lasts without renewal: a relay that dies holding it (a crash, a request cut
/// off at its time limit) delays the outbox this long at most. The holder renews it well before
/// then while it publishes.
const LEASE_MS: i64 = 10_000;
const RENEW_AFTER: std::time::Duration = std::time::Duration::from_millis(LEASE_MS as u64 / 4);
/// Batches per lease, so one request never spends long draining a backlog.
const RELAY_ROUNDS: usize = 4;

#[async_trait(?Send)]
impl<D: Db, P: Publisher> LeasedOutbox for SqliteOutboxRelay<'_, D, P> {
    async fn is_empty(&self) -> StoreResult<bool> {
        Ok(self.db.execute("SELECT 1 FROM outbox LIMIT 1", &[])?.rows.is_empty())
    }

    async fn lease(&self, holder: &str) -> StoreResult<bool> {
        let now = SystemClock.now_ms();
        let rows = self.db.execute(
            "INSERT INTO outbox_lease (id, holder, until) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE outbox_lease.until <= ?3 OR outbox_lease.holder = excluded.holder RETURNING holder",
            &[holder.into(), Value::Integer(now + LEASE_MS), Value::Integer(now)],
        )?;
        Ok(!rows.rows.is_empty())
    }

    async fn release(&self, holder: &str) -> StoreResult<()> {
        self.db.execute("DELETE FROM outbox_lease WHERE id = 1 AND holder = ?", &[holder.into()])?;
        Ok(())
    }

    async fn publish_pending(&self, holder: &str) -> StoreResult<usize> {
        let mut sent = 0;
        // The caller has just taken the lease.
        let mut renewed = std::time::Instant::now();
        for _ in 0..RELAY_ROUNDS {
            let rows = self.db.execute("SELECT seq, channel, payload FROM outbox ORDER BY seq LIMIT ?", &[Value::Integer(RELAY_BATCH)])?;
            for row in &rows.rows {
                if renewed.elapsed() >= RENEW_AFTER {
                    // A holder that stalled past its lease stops before publishing again.
                    if !self.lease(holder).await? {
                        return Ok(sent);
                    }
                    renewed = std::time::Instant::now();
                }
                let seq = row.int(0)?;
                let channel = row.text(1)?;
                let payload = match row.get(2) {
                    Some(Value::Blob(b)) => b.as_slice(),
                    Some(Value::Text(t)) => t.as_bytes(),
                    _ => return Err(StoreError::Unavailable(format!("outbox entry {seq} has no payload"))),
                };
                // Stop at the first failure so later events never overtake an earlier one.
                self.publisher.publish(channel, payload).map_err(StoreError::Unavailable)?;
                // If this one fails the entry stays and goes out on both again: consumers are
                // idempotent.
                if channel == ORDERS_CHANNEL {
                    self.publisher.publish(ANALYTICS_CHANNEL, payload).map_err(StoreError::Unavailable)?;
                }
                self.db.execute("DELETE FROM outbox WHERE seq = ?", &[Value::Integer(seq)])?;
                sent += 1;
            }
            if (rows.rows.len() as i64) < RELAY_BATCH {
                break;
            }
        }
        Ok(sent)
    }
}

#[async_trait(?Send)]
impl<D: Db, P: Publisher> EventRelay for SqliteOutboxRelay<'_, D, P> {
    async fn relay(&self) -> StoreResult<usize> {
        relay_leased(self).await
    }
}

/// GCRA in one statement: an upsert that moves the key's arrival time only when the request is
/// admitted (the `WHERE` of `DO UPDATE`), and says so by returning a row. SQLite runs a statement
/// under the write lock, and PostgreSQL re-checks the `WHERE` on the row a racing upsert left, so
/// racing requests see each other's updates.
fn admit_sql(dialect: Dialect) -> String {
    let (now, step) = (dialect::integer(dialect, "?2"), dialect::integer(dialect, "?3"));
    let later = dialect::greatest(dialect, "rate_limits.tat", &now);
    format!(
        "INSERT INTO rate_limits (key, tat) VALUES (?1, {now} + {step}) ON CONFLICT (key) DO UPDATE SET tat = {later} + {step} WHERE {later} - {now} <= ?4 RETURNING tat"
    )
}

#[async_trait(?Send)]
impl<D: Db> KitchenStore for SqliteStore<D> {
    async fn kitchen(&self) -> StoreResult<gocoffee_core::kitchen::Kitchen> {
        let rows = self.db.execute("SELECT doc FROM kitchen_state WHERE id = 1", &[])?;
        Ok(match rows.rows.first() {
            Some(row) => from_json(row.text(0)?)?,
            None => gocoffee_core::kitchen::Kitchen::initial(),
        })
    }

    async fn append_kitchen(
        &self,
        state: &gocoffee_core::kitchen::Kitchen,
        records: &[gocoffee_core::kitchen::KitchenRecord],
        expected_version: u64,
    ) -> StoreResult<()> {
        transaction(&self.db, |db| {
            let rows = db.execute("SELECT version FROM kitchen_state WHERE id = 1", &[])?;
            let version = rows.rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
            if version != expected_version as i64 {
                return Err(DbError::Constraint("the kitchen changed".into()));
            }
            for r in records {
                db.execute(
                    "INSERT INTO kitchen_events (version, event_id, doc) VALUES (?, ?, ?)",
                    &[Value::Integer(r.version as i64), r.event_id.as_str().into(), to_json(r)?.into()],
                )?;
            }
            db.execute(
                "INSERT INTO kitchen_state (id, version, doc) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
                &[Value::Integer(state.version as i64), to_json(state)?.into()],
            )?;
            Ok(())
        })?;
        Ok(())
    }

    async fn kitchen_log(&self, after: u64, limit: usize) -> StoreResult<Vec<gocoffee_core::kitchen::KitchenRecord>> {
        let rows = self.db.execute(
            "SELECT doc FROM kitchen_events WHERE version > ? ORDER BY version LIMIT ?",
            &[Value::Integer(after as i64), Value::Integer(limit as i64)],
        )?;
        Ok(rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, _>>()?)
    }
}

#[async_trait(?Send)]
impl<D: Db> RateLimiter for SqliteStore<D> {
    async fn admit(&self, key: &str, limit: &RateLimit, now_ms: i64) -> StoreResult<Admission> {
        let params = [key.into(), now_ms.into(), limit.interval_ms().into(), limit.tolerance_ms().into()];
        if !self.db.execute(&admit_sql(self.db.dialect()), &params)?.rows.is_empty() {
            return Ok(Admission::Admitted);
        }
        // Refused: how long until the next request fits (read apart, it only informs Retry-After).
        let rows = self.db.execute("SELECT tat FROM rate_limits WHERE key = ?", &[key.into()])?;
        let tat = rows.rows.first().map(|r| r.int(0)).transpose()?;
        Ok(Admission::Refused { retry_after_ms: limit.step(tat, now_ms).err().unwrap_or(1) })
    }

    async fn forget_idle(&self, now_ms: i64) -> StoreResult<u64> {
        let rows = self.db.execute("DELETE FROM rate_limits WHERE tat < ? RETURNING key", &[now_ms.into()])?;
        Ok(rows.rows.len() as u64)
    }
}
