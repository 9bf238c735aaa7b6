//! The intent store on SQLite (Spin components and the local host; rusqlite in tests), in the
//! same database and schema as the orders ([`gocoffee_sql::schema`], version 3). Each change is
//! one write transaction (`gocoffee_sql::transaction`): the version check, the events, the document, the claims
//! (a primary key, so a transfer is claimed once across every intent) and the outbox entries on
//! the `payments` channel.

use async_trait::async_trait;
use gocoffee_app::ports::{StoreError, StoreResult};
use gocoffee_sql::{Db, DbError, RowExt, Value, transaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::intent::{Intent, StoredIntentEvent, TransferKey};
use crate::store::IntentStore;

/// The channel intent events are published on.
pub const PAYMENTS_CHANNEL: &str = "payments";

pub struct SqlIntentStore<D> {
    db: D,
}

impl<D: Db> SqlIntentStore<D> {
    /// Wraps `db`, creating or upgrading the schema first.
    pub fn open(db: D) -> Result<Self, DbError> {
        gocoffee_sql::schema::ensure(&db)?;
        Ok(SqlIntentStore { db })
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Other(format!("encoding a document: {e}")))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::Other(format!("decoding a stored document: {e}")))
}

fn store_error(e: DbError) -> StoreError {
    match e {
        DbError::Constraint(_) => StoreError::Conflict,
        DbError::Other(m) => StoreError::Unavailable(m),
    }
}

fn bool_int(b: bool) -> Value {
    Value::Integer(i64::from(b))
}

/// The intent's row: its document and the columns queries select on.
fn write_intent(db: &dyn Db, intent: &Intent) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO payment_intents (id, chain_id, open, monitor_until, refund_due, version, doc) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET open = excluded.open, refund_due = excluded.refund_due, version = excluded.version, doc = excluded.doc",
        &[
            intent.terms.intent_id.as_str().into(),
            Value::Integer(intent.terms.chain_id as i64),
            bool_int(intent.is_open()),
            intent.terms.monitor_until_ms.into(),
            bool_int(!intent.refund_outstanding().is_zero()),
            Value::Integer(intent.version as i64),
            to_json(intent)?.into(),
        ],
    )?;
    Ok(())
}

fn write_event(db: &dyn Db, event: &StoredIntentEvent) -> Result<(), DbError> {
    let doc = to_json(event)?;
    db.execute(
        "INSERT INTO payment_events (intent_id, version, event_id, doc) VALUES (?, ?, ?, ?)",
        &[event.intent_id.as_str().into(), Value::Integer(event.version as i64), event.event_id.as_str().into(), doc.as_str().into()],
    )?;
    db.execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &[PAYMENTS_CHANNEL.into(), Value::Blob(doc.into_bytes())])?;
    Ok(())
}

fn intents(rows: gocoffee_sql::Rows) -> Result<Vec<Intent>, DbError> {
    rows.rows.iter().map(|r| from_json(r.text(0)?)).collect()
}

#[async_trait(?Send)]
impl<D: Db> IntentStore for SqlIntentStore<D> {
    async fn next_deposit_index(&self) -> StoreResult<u64> {
        let rows = self
            .db
            .execute("INSERT INTO deposit_index (id, next) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET next = deposit_index.next + 1 RETURNING next", &[])
            .map_err(store_error)?;
        let next = rows.rows.first().ok_or_else(|| StoreError::Unavailable("the deposit counter returned nothing".into()))?.int(0).map_err(store_error)?;
        Ok((next - 1) as u64)
    }

    async fn create_intent(&self, intent: &Intent, created: &StoredIntentEvent, processed: Option<(&str, &str)>) -> StoreResult<()> {
        transaction(&self.db, |db| {
            let exists = db.execute("SELECT 1 FROM payment_intents WHERE id = ?", &[intent.terms.intent_id.as_str().into()])?;
            if !exists.rows.is_empty() {
                return Err(DbError::Constraint("the intent exists".into()));
            }
            write_intent(db, intent)?;
            write_event(db, created)?;
            if let Some((consumer, event_id)) = processed {
                db.execute("INSERT INTO processed_events (consumer, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", &[consumer.into(), event_id.into()])?;
            }
            Ok(())
        })
        .map_err(store_error)
    }

    async fn append_intent(&self, intent: &Intent, events: &[StoredIntentEvent], expected_version: u64, claims: &[TransferKey]) -> StoreResult<()> {
        transaction(&self.db, |db| {
            let current = db.execute("SELECT version FROM payment_intents WHERE id = ?", &[intent.terms.intent_id.as_str().into()])?;
            if current.rows.first().map(|r| r.int(0)).transpose()? != Some(expected_version as i64) {
                return Err(DbError::Constraint("the intent changed".into()));
            }
            for key in claims {
                db.execute(
                    "INSERT INTO payment_claims (transfer, intent_id) VALUES (?, ?)",
                    &[key.to_string().into(), intent.terms.intent_id.as_str().into()],
                )?;
            }
            for e in events {
                write_event(db, e)?;
            }
            write_intent(db, intent)
        })
        .map_err(store_error)
    }

    async fn intent(&self, id: &str) -> StoreResult<Option<Intent>> {
        let rows = self.db.execute("SELECT doc FROM payment_intents WHERE id = ?", &[id.into()]).map_err(store_error)?;
        Ok(intents(rows).map_err(store_error)?.into_iter().next())
    }

    async fn intent_events(&self, id: &str) -> StoreResult<Vec<StoredIntentEvent>> {
        let rows = self.db.execute("SELECT doc FROM payment_events WHERE intent_id = ? ORDER BY version", &[id.into()]).map_err(store_error)?;
        rows.rows.iter().map(|r| from_json(r.text(0)?)).collect::<Result<_, _>>().map_err(store_error)
    }

    async fn claimed_by(&self, key: &TransferKey) -> StoreResult<Option<String>> {
        let rows = self.db.execute("SELECT intent_id FROM payment_claims WHERE transfer = ?", &[key.to_string().into()]).map_err(store_error)?;
        Ok(rows.rows.first().map(|r| r.text(0).map(str::to_owned)).transpose().map_err(store_error)?)
    }

    async fn is_deposit_address(&self, address: alloy_primitives::Address) -> StoreResult<bool> {
        // Rare (a refund address being given): a scan of the documents is fine.
        let rows = self
            .db
            .execute(
                &format!("SELECT 1 FROM payment_intents WHERE lower({}) = lower(?) LIMIT 1", gocoffee_sql::dialect::intent_deposit_address(self.db.dialect())),
                &[address.to_string().into()],
            )
            .map_err(store_error)?;
        Ok(!rows.rows.is_empty())
    }

    async fn monitored_intents(&self, chain_id: u64, now_ms: i64) -> StoreResult<Vec<Intent>> {
        let rows = self
            .db
            .execute(
                "SELECT doc FROM payment_intents WHERE chain_id = ?1 AND open = 1 \
                 UNION ALL SELECT doc FROM payment_intents WHERE chain_id = ?1 AND open = 0 AND monitor_until > ?2",
                &[Value::Integer(chain_id as i64), now_ms.into()],
            )
            .map_err(store_error)?;
        intents(rows).map_err(store_error)
    }

    async fn refunds_due(&self, limit: usize, after: Option<&str>) -> StoreResult<Vec<Intent>> {
        let rows = self
            .db
            .execute(
                "SELECT doc FROM payment_intents WHERE refund_due = 1 AND id > ? ORDER BY id LIMIT ?",
                &[after.unwrap_or("").into(), Value::Integer(limit as i64)],
            )
            .map_err(store_error)?;
        intents(rows).map_err(store_error)
    }

    async fn cursor(&self, chain_id: u64) -> StoreResult<Option<u64>> {
        let rows = self.db.execute("SELECT block FROM chain_cursors WHERE chain_id = ?", &[Value::Integer(chain_id as i64)]).map_err(store_error)?;
        Ok(rows.rows.first().map(|r| r.int(0).map(|b| b as u64)).transpose().map_err(store_error)?)
    }

    async fn advance_cursor(&self, chain_id: u64, block: u64) -> StoreResult<()> {
        self.db
            .execute(
                &format!(
                    "INSERT INTO chain_cursors (chain_id, block) VALUES (?1, ?2) ON CONFLICT (chain_id) DO UPDATE SET block = {}",
                    gocoffee_sql::dialect::greatest(self.db.dialect(), "chain_cursors.block", "excluded.block")
                ),
                &[Value::Integer(chain_id as i64), Value::Integer(block as i64)],
            )
            .map_err(store_error)?;
        Ok(())
    }

    async fn republish(&self, event: &StoredIntentEvent) -> StoreResult<()> {
        let doc = to_json(event).map_err(store_error)?;
        self.db
            .execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &[PAYMENTS_CHANNEL.into(), Value::Blob(doc.into_bytes())])
            .map_err(store_error)?;
        Ok(())
    }
}
