//! The schema, created on first use by whichever component gets there first. Spin has no
//! migration hook that works everywhere (Fermyon Cloud included), so each connection checks one
//! row and migrates inside a write transaction when it is behind.

use gocoffee_core::menu::default_menu;

use crate::db::{Db, DbError, RowExt, Value};
use crate::dialect::ddl;

pub const VERSION: i64 = 6;

const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS menu_items (id TEXT PRIMARY KEY, position INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS refresh_tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, placed_at INTEGER NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS orders_by_time ON orders (placed_at, id)",
    "CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, placed_at, id)",
    "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, placed_at, id)",
    "CREATE TABLE IF NOT EXISTS order_events (order_id TEXT NOT NULL, version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, PRIMARY KEY (order_id, version))",
    "CREATE TABLE IF NOT EXISTS kitchen_tickets (order_id TEXT PRIMARY KEY, placed_at INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kitchen_queue ON kitchen_tickets (placed_at, order_id)",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS idempotency (owner TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, location TEXT, expires_at INTEGER NOT NULL, PRIMARY KEY (owner, key))",
    "CREATE TABLE IF NOT EXISTS processed_events (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id))",
];

/// Version 2: single-use picture uploads, and the lease that lets one outbox relay run at a time.
const V2: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS image_uploads (key TEXT PRIMARY KEY, used_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, until INTEGER NOT NULL)",
];

/// Version 3: crypto payments. Intents (a document per intent, plus the columns the watcher and
/// the refunds list select on), each intent's event log, the unique claims on credited transfers
/// (`chain_id:tx_hash:log_index`), the deposit-index counter and the watcher's cursors.
const V3: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS payment_intents (id TEXT PRIMARY KEY, chain_id INTEGER NOT NULL, open INTEGER NOT NULL, monitor_until INTEGER NOT NULL, refund_due INTEGER NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS payment_intents_watched ON payment_intents (chain_id, open, monitor_until)",
    "CREATE INDEX IF NOT EXISTS payment_intents_refunds ON payment_intents (refund_due, id)",
    "CREATE TABLE IF NOT EXISTS payment_events (intent_id TEXT NOT NULL, version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, PRIMARY KEY (intent_id, version))",
    "CREATE TABLE IF NOT EXISTS payment_claims (transfer TEXT PRIMARY KEY, intent_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS deposit_index (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chain_cursors (chain_id INTEGER PRIMARY KEY, block INTEGER NOT NULL)",
];

/// Version 4: the gateway's rate limits, one GCRA arrival time per client key.
const V4: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS rate_limits (key TEXT PRIMARY KEY, tat INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS rate_limits_by_tat ON rate_limits (tat)",
];

/// Version 5: the kitchen's stations, equipment and shifts: its event log and its state (one row).
const V5: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kitchen_events (version INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kitchen_state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, doc TEXT NOT NULL)",
];

/// Version 6: the AI layer's sessions (each caller's recent turns), the models' daily usage and
/// their circuit breakers.
const V6: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ai_turns (user_id TEXT NOT NULL, session_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (user_id, session_id, seq))",
    "CREATE TABLE IF NOT EXISTS ai_usage (day INTEGER PRIMARY KEY, calls INTEGER NOT NULL, tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ai_breakers (model TEXT PRIMARY KEY, failures INTEGER NOT NULL, open_until INTEGER NOT NULL)",
];

/// The default menu's dietary and allergen tags, given to its items in a database seeded before
/// items had tags (an item a manager already tagged keeps its own).
fn tag_default_items(db: &dyn Db) -> Result<(), DbError> {
    for item in default_menu() {
        let rows = db.execute("SELECT doc FROM menu_items WHERE id = ?", &[item.id.as_str().into()])?;
        let Some(row) = rows.rows.first() else { continue };
        let mut stored: gocoffee_core::MenuItem = serde_json::from_str(row.text(0)?).map_err(|e| DbError::Other(e.to_string()))?;
        if stored.tags.is_empty() && !item.tags.is_empty() {
            stored.tags = item.tags;
            let doc = serde_json::to_string(&stored).map_err(|e| DbError::Other(e.to_string()))?;
            db.execute("UPDATE menu_items SET doc = ? WHERE id = ?", &[doc.into(), item.id.as_str().into()])?;
        }
    }
    Ok(())
}

fn current(db: &dyn Db) -> Option<i64> {
    let rows = db.execute("SELECT version FROM gocoffee_schema", &[]).ok()?;
    rows.rows.first().and_then(|r| r.int(0).ok())
}

/// Brings the database to [`VERSION`]. Cheap when it is already there: one indexed read.
pub fn ensure(db: &dyn Db) -> Result<(), DbError> {
    if current(db) == Some(VERSION) {
        return Ok(());
    }
    crate::transaction(db, |db| {
        db.execute(&ddl(db.dialect(), "CREATE TABLE IF NOT EXISTS gocoffee_schema (version INTEGER NOT NULL)"), &[])?;
        // Re-read inside the write lock: another connection may have migrated meanwhile.
        let version = current(db).unwrap_or(0);
        if version >= VERSION {
            return Ok(());
        }
        if version < 1 {
            for statement in V1 {
                db.execute(&ddl(db.dialect(), statement), &[])?;
            }
            for (position, item) in default_menu().iter().enumerate() {
                let doc = serde_json::to_string(item).map_err(|e| DbError::Other(e.to_string()))?;
                db.execute(
                    "INSERT INTO menu_items (id, position, doc) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    &[item.id.as_str().into(), Value::Integer(position as i64), doc.into()],
                )?;
            }
        }
        for statement in V2.iter().chain(V3).chain(V4).chain(V5).chain(V6) {
            db.execute(&ddl(db.dialect(), statement), &[])?;
        }
        if (1..6).contains(&version) {
            tag_default_items(db)?;
        }
        db.execute("DELETE FROM gocoffee_schema", &[])?;
        db.execute("INSERT INTO gocoffee_schema (version) VALUES (?)", &[Value::Integer(VERSION)])?;
        Ok(())
    })
}
