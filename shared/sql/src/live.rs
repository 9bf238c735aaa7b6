//! The live feed on a [`Db`]: one table of channel messages in append order, in the write side's
//! database, kept for [`gocoffee_app::live::RETENTION_MS`].

use async_trait::async_trait;
use gocoffee_app::live::{FeedEntry, LiveFeed};
use gocoffee_app::ports::StoreResult;
use gocoffee_core::live::Envelope;

use crate::db::{Db, DbError, RowExt, Value};
use crate::{to_json, transaction};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS live_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, event_id TEXT NOT NULL, at INTEGER NOT NULL, doc TEXT NOT NULL, UNIQUE (event_id, channel))",
    "CREATE INDEX IF NOT EXISTS live_messages_by_channel ON live_messages (channel, seq)",
    "CREATE INDEX IF NOT EXISTS live_messages_by_time ON live_messages (at)",
];

/// [`LiveFeed`] on a [`Db`].
pub struct SqlLiveFeed<D> {
    db: D,
}

impl<D: Db> SqlLiveFeed<D> {
    /// The feed on `db`, its table created on first use.
    pub fn open(db: D) -> Result<Self, DbError> {
        for statement in SCHEMA {
            db.execute(&crate::dialect::ddl(db.dialect(), statement), &[])?;
        }
        Ok(SqlLiveFeed { db })
    }
}

#[async_trait(?Send)]
impl<D: Db> LiveFeed for SqlLiveFeed<D> {
    async fn append(&self, messages: &[Envelope], now_ms: i64, forget_before_ms: i64) -> StoreResult<()> {
        // Under the write lock, so positions become visible in the order they were given: a
        // reader that saw position n never later finds a message before it (PostgreSQL hands
        // out identities before commit).
        transaction(&self.db, |db| {
            db.execute("DELETE FROM live_messages WHERE at < ?", &[Value::Integer(forget_before_ms)])?;
            for m in messages {
                db.execute(
                    "INSERT INTO live_messages (channel, event_id, at, doc) VALUES (?, ?, ?, ?) ON CONFLICT (event_id, channel) DO NOTHING",
                    &[m.channel.as_str().into(), m.event_id.as_str().into(), Value::Integer(now_ms), to_json(m)?.into()],
                )?;
            }
            Ok(())
        })?;
        Ok(())
    }

    async fn read(&self, channels: &[String], after: u64, limit: usize) -> StoreResult<Vec<FeedEntry>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; channels.len()].join(", ");
        let mut params: Vec<Value> = vec![Value::Integer(after as i64)];
        params.extend(channels.iter().map(|c| c.as_str().into()));
        params.push(Value::Integer(limit as i64));
        let rows = self.db.execute(&format!("SELECT seq, doc FROM live_messages WHERE seq > ? AND channel IN ({marks}) ORDER BY seq LIMIT ?"), &params)?;
        let entries = rows.rows.iter().map(|r| Ok(FeedEntry { seq: r.int(0)? as u64, message: r.text(1)?.to_owned() }));
        Ok(entries.collect::<Result<_, DbError>>()?)
    }

    async fn head(&self) -> StoreResult<u64> {
        let rows = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM live_messages", &[])?;
        Ok(rows.rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
    }
}
