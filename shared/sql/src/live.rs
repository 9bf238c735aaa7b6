//! Live status on a [`Db`], in the write side's database: the feed (one table of channel
//! messages in append order, kept for [`gocoffee_app::live::RETENTION_MS`]), and the open
//! WebSocket connections with what each follows.

use async_trait::async_trait;
use gocoffee_app::Caller;
use gocoffee_app::live::sockets::{Connection, ConnectionStore};
use gocoffee_app::live::{FeedEntry, LiveFeed};
use gocoffee_app::ports::StoreResult;
use gocoffee_core::Role;
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

const CONNECTIONS_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS live_connections (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, role TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS live_subscriptions (channel TEXT NOT NULL, connection_id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (channel, connection_id))",
    "CREATE INDEX IF NOT EXISTS live_subscriptions_by_connection ON live_subscriptions (connection_id)",
    "CREATE INDEX IF NOT EXISTS live_connections_by_expiry ON live_connections (expires_at)",
];

/// [`ConnectionStore`] on a [`Db`]. A subscription carries its connection's expiry, so the
/// fan-out reads one table; expired rows go when a new connection is saved.
pub struct SqlConnections<D> {
    db: D,
}

impl<D: Db> SqlConnections<D> {
    /// The store on `db`, its tables created on first use.
    pub fn open(db: D) -> Result<Self, DbError> {
        for statement in CONNECTIONS_SCHEMA {
            db.execute(&crate::dialect::ddl(db.dialect(), statement), &[])?;
        }
        Ok(SqlConnections { db })
    }
}

#[async_trait(?Send)]
impl<D: Db> ConnectionStore for SqlConnections<D> {
    async fn save_connection(&self, c: &Connection) -> StoreResult<()> {
        transaction(&self.db, |db| {
            let now = c.expires_at_ms - gocoffee_app::live::sockets::CONNECTION_TTL_MS;
            db.execute("DELETE FROM live_subscriptions WHERE expires_at <= ?", &[Value::Integer(now)])?;
            db.execute("DELETE FROM live_connections WHERE expires_at <= ?", &[Value::Integer(now)])?;
            db.execute(
                "INSERT INTO live_connections (id, user_id, role, expires_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, role = excluded.role, expires_at = excluded.expires_at",
                &[c.id.as_str().into(), c.caller.user_id.as_str().into(), c.caller.role.as_str().into(), Value::Integer(c.expires_at_ms)],
            )?;
            Ok(())
        })?;
        Ok(())
    }

    async fn connection(&self, id: &str, now_ms: i64) -> StoreResult<Option<Connection>> {
        let rows =
            self.db.execute("SELECT user_id, role, expires_at FROM live_connections WHERE id = ? AND expires_at > ?", &[id.into(), Value::Integer(now_ms)])?;
        let Some(row) = rows.rows.first() else { return Ok(None) };
        let role = Role::parse(row.text(1)?).ok_or_else(|| DbError::Other(format!("connection {id} has an unknown role")))?;
        Ok(Some(Connection { id: id.to_owned(), caller: Caller { user_id: row.text(0)?.to_owned(), role }, expires_at_ms: row.int(2)? }))
    }

    async fn subscribe(&self, c: &Connection, channel: &str, limit: usize) -> StoreResult<bool> {
        Ok(transaction(&self.db, |db| {
            let rows = db.execute("SELECT channel FROM live_subscriptions WHERE connection_id = ?", &[c.id.as_str().into()])?;
            let followed = rows.rows.iter().map(|r| r.text(0).map(str::to_owned)).collect::<Result<Vec<_>, _>>()?;
            if followed.iter().any(|f| f == channel) {
                return Ok(true);
            }
            if followed.len() >= limit {
                return Ok(false);
            }
            db.execute(
                "INSERT INTO live_subscriptions (channel, connection_id, expires_at) VALUES (?, ?, ?)",
                &[channel.into(), c.id.as_str().into(), Value::Integer(c.expires_at_ms)],
            )?;
            Ok(true)
        })?)
    }

    async fn unsubscribe(&self, connection_id: &str, channel: &str) -> StoreResult<()> {
        self.db.execute("DELETE FROM live_subscriptions WHERE channel = ? AND connection_id = ?", &[channel.into(), connection_id.into()])?;
        Ok(())
    }

    async fn subscribers(&self, channel: &str, now_ms: i64) -> StoreResult<Vec<String>> {
        let rows = self.db.execute(
            "SELECT connection_id FROM live_subscriptions WHERE channel = ? AND expires_at > ? ORDER BY connection_id",
            &[channel.into(), Value::Integer(now_ms)],
        )?;
        Ok(rows.rows.iter().map(|r| r.text(0).map(str::to_owned)).collect::<Result<_, DbError>>()?)
    }

    async fn forget(&self, connection_id: &str) -> StoreResult<()> {
        transaction(&self.db, |db| {
            db.execute("DELETE FROM live_subscriptions WHERE connection_id = ?", &[connection_id.into()])?;
            db.execute("DELETE FROM live_connections WHERE id = ?", &[connection_id.into()])?;
            Ok(())
        })?;
        Ok(())
    }
}
