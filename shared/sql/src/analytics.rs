//! The analytics read model on SQLite: one row per order in a database of its own (Spin's
//! `analytics` label), apart from the write side.

use async_trait::async_trait;
use gocoffee_app::analytics::AnalyticsStore;
use gocoffee_app::ports::StoreResult;
use gocoffee_core::analytics::OrderFacts;

use crate::db::{Db, DbError, RowExt, Value};
use crate::{from_json, to_json};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS order_facts (order_id TEXT PRIMARY KEY, placed_at INTEGER NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS order_facts_by_placement ON order_facts (placed_at)",
];

/// [`AnalyticsStore`] on a [`Db`].
pub struct SqlAnalyticsStore<D> {
    db: D,
}

impl<D: Db> SqlAnalyticsStore<D> {
    /// The store on `db`, its table created on first use.
    pub fn open(db: D) -> Result<Self, DbError> {
        for statement in SCHEMA {
            db.execute(&crate::dialect::ddl(db.dialect(), statement), &[])?;
        }
        Ok(SqlAnalyticsStore { db })
    }
}

#[async_trait(?Send)]
impl<D: Db> AnalyticsStore for SqlAnalyticsStore<D> {
    async fn facts(&self, order_id: &str) -> StoreResult<Option<OrderFacts>> {
        let rows = self.db.execute("SELECT doc FROM order_facts WHERE order_id = ?", &[order_id.into()])?;
        Ok(rows.rows.first().map(|r| r.text(0).and_then(from_json)).transpose()?)
    }

    async fn save(&self, facts: &OrderFacts) -> StoreResult<bool> {
        // One statement: the upsert writes only over the same or an older version, atomically.
        let rows = self.db.execute(
            "INSERT INTO order_facts (order_id, placed_at, version, doc) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (order_id) DO UPDATE SET placed_at = excluded.placed_at, version = excluded.version, doc = excluded.doc \
             WHERE excluded.version >= order_facts.version RETURNING version",
            &[facts.order_id.as_str().into(), Value::Integer(facts.placed_at_ms), Value::Integer(facts.version as i64), to_json(facts)?.into()],
        )?;
        Ok(!rows.rows.is_empty())
    }

    async fn placed_between(&self, from_ms: i64, to_ms: i64, limit: usize) -> StoreResult<Vec<OrderFacts>> {
        let rows = self.db.execute(
            "SELECT doc FROM order_facts WHERE placed_at >= ? AND placed_at < ? ORDER BY placed_at LIMIT ?",
            &[Value::Integer(from_ms), Value::Integer(to_ms), Value::Integer(limit as i64)],
        )?;
        Ok(rows.rows.iter().map(|r| r.text(0).and_then(from_json)).collect::<Result<_, _>>()?)
    }

    async fn clear_batch(&self) -> StoreResult<bool> {
        // Bounded, so a large model never holds the write lock for long.
        self.db.execute("DELETE FROM order_facts WHERE order_id IN (SELECT order_id FROM order_facts LIMIT 1000)", &[])?;
        Ok(self.db.execute("SELECT 1 FROM order_facts LIMIT 1", &[])?.rows.is_empty())
    }
}
