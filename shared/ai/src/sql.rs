//! The AI layer's stores on SQL (Spin's SQLite or PostgreSQL, and rusqlite on the host and in
//! tests), in the orders' database: sessions' turns, the day's model usage and each model's
//! breaker, and insights queued in the shared outbox on the `ai` channel.

use async_trait::async_trait;
use gocoffee_app::ports::{StoreError, StoreResult};
use gocoffee_sql::{Db, DbError, RowExt, Value, transaction};

use crate::guard::{Breaker, Usage, UsageLedger};
use crate::store::{AI_CHANNEL, AiStore, Insight, StoredTurn};

pub struct SqlAiStore<D> {
    db: D,
}

impl<D: Db> SqlAiStore<D> {
    /// Wraps `db`, creating or upgrading the schema first.
    pub fn open(db: D) -> Result<Self, DbError> {
        gocoffee_sql::schema::ensure(&db)?;
        Ok(SqlAiStore { db })
    }
}

fn store_error(e: DbError) -> StoreError {
    match e {
        DbError::Constraint(_) => StoreError::Conflict,
        DbError::Other(m) => StoreError::Unavailable(m),
    }
}

fn int(n: u64) -> Value {
    Value::Integer(n.min(i64::MAX as u64) as i64)
}

#[async_trait(?Send)]
impl<D: Db> AiStore for SqlAiStore<D> {
    async fn turns(&self, user_id: &str, session_id: &str) -> StoreResult<Vec<StoredTurn>> {
        let rows = self
            .db
            .execute("SELECT doc FROM ai_turns WHERE user_id = ? AND session_id = ? ORDER BY seq", &[user_id.into(), session_id.into()])
            .map_err(store_error)?;
        rows.rows
            .iter()
            .map(|r| {
                let doc = r.text(0).map_err(store_error)?;
                serde_json::from_str(doc).map_err(|e| StoreError::Unavailable(format!("a stored turn: {e}")))
            })
            .collect()
    }

    async fn save_exchange(&self, user_id: &str, session_id: &str, turns: &[StoredTurn], insight: &Insight) -> StoreResult<()> {
        let insight = serde_json::to_vec(insight).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        transaction(&self.db, |db| {
            db.execute("DELETE FROM ai_turns WHERE user_id = ? AND session_id = ?", &[user_id.into(), session_id.into()])?;
            for (seq, turn) in turns.iter().enumerate() {
                let doc = serde_json::to_string(turn).map_err(|e| DbError::Other(e.to_string()))?;
                db.execute(
                    "INSERT INTO ai_turns (user_id, session_id, seq, at, doc) VALUES (?, ?, ?, ?, ?)",
                    &[user_id.into(), session_id.into(), Value::Integer(seq as i64), turn.at_ms.into(), doc.into()],
                )?;
            }
            db.execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &[AI_CHANNEL.into(), Value::Blob(insight.clone())])?;
            Ok(())
        })
        .map_err(store_error)
    }
}

#[async_trait(?Send)]
impl<D: Db> UsageLedger for SqlAiStore<D> {
    async fn usage(&self, day: i64) -> StoreResult<Usage> {
        let rows = self.db.execute("SELECT calls, tokens, cost_micros FROM ai_usage WHERE day = ?", &[day.into()]).map_err(store_error)?;
        match rows.rows.first() {
            None => Ok(Usage::default()),
            Some(r) => Ok(Usage {
                calls: r.int(0).map_err(store_error)?.max(0) as u64,
                tokens: r.int(1).map_err(store_error)?.max(0) as u64,
                cost_micros: r.int(2).map_err(store_error)?.max(0) as u64,
            }),
        }
    }

    async fn add(&self, day: i64, usage: Usage) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO ai_usage (day, calls, tokens, cost_micros) VALUES (?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET \
                 calls = ai_usage.calls + excluded.calls, tokens = ai_usage.tokens + excluded.tokens, cost_micros = ai_usage.cost_micros + excluded.cost_micros",
                &[day.into(), int(usage.calls), int(usage.tokens), int(usage.cost_micros)],
            )
            .map_err(store_error)?;
        Ok(())
    }

    async fn breaker(&self, model: &str) -> StoreResult<Breaker> {
        let rows = self.db.execute("SELECT failures, open_until FROM ai_breakers WHERE model = ?", &[model.into()]).map_err(store_error)?;
        match rows.rows.first() {
            None => Ok(Breaker::default()),
            Some(r) => Ok(Breaker { failures: r.int(0).map_err(store_error)?.clamp(0, u32::MAX.into()) as u32, open_until_ms: r.int(1).map_err(store_error)? }),
        }
    }

    async fn set_breaker(&self, model: &str, state: Breaker) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO ai_breakers (model, failures, open_until) VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET \
                 failures = excluded.failures, open_until = excluded.open_until",
                &[model.into(), Value::Integer(state.failures.into()), state.open_until_ms.into()],
            )
            .map_err(store_error)?;
        Ok(())
    }
}
