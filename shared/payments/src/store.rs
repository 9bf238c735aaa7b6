//! The payment service's store port, and its in-memory adapter for the use-case tests. The SQL
//! adapter is [`crate::sql`]; DynamoDB's lives with the other AWS adapters.

use std::cell::RefCell;
use std::collections::BTreeMap;

use async_trait::async_trait;
use gocoffee_app::ports::{StoreError, StoreResult};

use crate::intent::{Intent, StoredIntentEvent, TransferKey};

/// Intents, their logs, the credited-transfer claims, the deposit-index counter and the
/// watcher's cursors.
#[async_trait(?Send)]
pub trait IntentStore {
    /// The next deposit index: a counter that only ever increases, so no address is reused
    /// (an index taken by an intent that was never written is skipped, not reused).
    async fn next_deposit_index(&self) -> StoreResult<u64>;

    /// Writes a new intent (its first event, its document and the event's outbox entry) with
    /// `processed` in the consumer ledger, at once. [`StoreError::Conflict`] when it exists.
    async fn create_intent(&self, intent: &Intent, created: &StoredIntentEvent, processed: Option<(&str, &str)>) -> StoreResult<()>;

    /// Appends `events` if the intent is still at `expected_version`, with its new document,
    /// the outbox entries and a unique claim on each of `claims` for this intent, all at once.
    /// [`StoreError::Conflict`] when another writer changed the intent or a transfer is already
    /// claimed (by any intent: see [`IntentStore::claimed_by`]).
    async fn append_intent(&self, intent: &Intent, events: &[StoredIntentEvent], expected_version: u64, claims: &[TransferKey]) -> StoreResult<()>;

    async fn intent(&self, id: &str) -> StoreResult<Option<Intent>>;
    async fn intent_events(&self, id: &str) -> StoreResult<Vec<StoredIntentEvent>>;

    /// Whether `address` is any intent's deposit address.
    async fn is_deposit_address(&self, address: alloy_primitives::Address) -> StoreResult<bool>;

    /// The intent a transfer was credited (or a refund recorded) to.
    async fn claimed_by(&self, key: &TransferKey) -> StoreResult<Option<String>>;

    /// Intents on `chain_id` the watcher still looks at: open, or ended with `monitor_until`
    /// after `now_ms`.
    async fn monitored_intents(&self, chain_id: u64, now_ms: i64) -> StoreResult<Vec<Intent>>;

    /// Intents that owe a refund, oldest first, after the intent id `after`.
    async fn refunds_due(&self, limit: usize, after: Option<&str>) -> StoreResult<Vec<Intent>>;

    /// The last block the watcher scanned on a chain.
    async fn cursor(&self, chain_id: u64) -> StoreResult<Option<u64>>;
    /// Moves the cursor forward (never back).
    async fn advance_cursor(&self, chain_id: u64, block: u64) -> StoreResult<()>;

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool>;
    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()>;
}

/// Everything in memory, for tests of the use cases.
#[derive(Default)]
pub struct MemoryIntentStore {
    inner: RefCell<Memory>,
}

#[derive(Default)]
struct Memory {
    next_index: u64,
    intents: BTreeMap<String, Intent>,
    events: BTreeMap<String, Vec<StoredIntentEvent>>,
    claims: BTreeMap<TransferKey, String>,
    cursors: BTreeMap<u64, u64>,
    processed: std::collections::BTreeSet<(String, String)>,
    /// What the relay would publish, in order.
    pub outbox: Vec<StoredIntentEvent>,
}

impl MemoryIntentStore {
    /// The events queued for the payments stream so far.
    pub fn published(&self) -> Vec<StoredIntentEvent> {
        self.inner.borrow().outbox.clone()
    }
}

#[async_trait(?Send)]
impl IntentStore for MemoryIntentStore {
    async fn next_deposit_index(&self) -> StoreResult<u64> {
        let mut m = self.inner.borrow_mut();
        m.next_index += 1;
        Ok(m.next_index - 1)
    }

    async fn create_intent(&self, intent: &Intent, created: &StoredIntentEvent, processed: Option<(&str, &str)>) -> StoreResult<()> {
        let mut m = self.inner.borrow_mut();
        let id = &intent.terms.intent_id;
        if m.intents.contains_key(id) {
            return Err(StoreError::Conflict);
        }
        m.intents.insert(id.clone(), intent.clone());
        m.events.insert(id.clone(), vec![created.clone()]);
        m.outbox.push(created.clone());
        if let Some((c, e)) = processed {
            m.processed.insert((c.into(), e.into()));
        }
        Ok(())
    }

    async fn append_intent(&self, intent: &Intent, events: &[StoredIntentEvent], expected_version: u64, claims: &[TransferKey]) -> StoreResult<()> {
        let mut m = self.inner.borrow_mut();
        let id = &intent.terms.intent_id;
        if m.intents.get(id).map(|i| i.version) != Some(expected_version) || claims.iter().any(|k| m.claims.contains_key(k)) {
            return Err(StoreError::Conflict);
        }
        for k in claims {
            m.claims.insert(*k, id.clone());
        }
        m.intents.insert(id.clone(), intent.clone());
        m.events.entry(id.clone()).or_default().extend(events.iter().cloned());
        m.outbox.extend(events.iter().cloned());
        Ok(())
    }

    async fn intent(&self, id: &str) -> StoreResult<Option<Intent>> {
        Ok(self.inner.borrow().intents.get(id).cloned())
    }

    async fn intent_events(&self, id: &str) -> StoreResult<Vec<StoredIntentEvent>> {
        Ok(self.inner.borrow().events.get(id).cloned().unwrap_or_default())
    }

    async fn claimed_by(&self, key: &TransferKey) -> StoreResult<Option<String>> {
        Ok(self.inner.borrow().claims.get(key).cloned())
    }

    async fn is_deposit_address(&self, address: alloy_primitives::Address) -> StoreResult<bool> {
        Ok(self.inner.borrow().intents.values().any(|i| i.terms.deposit_address == address))
    }

    async fn monitored_intents(&self, chain_id: u64, now_ms: i64) -> StoreResult<Vec<Intent>> {
        Ok(self.inner.borrow().intents.values().filter(|i| i.terms.chain_id == chain_id && i.is_monitored(now_ms)).cloned().collect())
    }

    async fn refunds_due(&self, limit: usize, after: Option<&str>) -> StoreResult<Vec<Intent>> {
        let m = self.inner.borrow();
        Ok(m.intents
            .values()
            .filter(|i| !i.refund_outstanding().is_zero() && after.is_none_or(|a| i.terms.intent_id.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn cursor(&self, chain_id: u64) -> StoreResult<Option<u64>> {
        Ok(self.inner.borrow().cursors.get(&chain_id).copied())
    }

    async fn advance_cursor(&self, chain_id: u64, block: u64) -> StoreResult<()> {
        let mut m = self.inner.borrow_mut();
        let c = m.cursors.entry(chain_id).or_insert(block);
        *c = (*c).max(block);
        Ok(())
    }

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool> {
        Ok(self.inner.borrow().processed.contains(&(consumer.to_owned(), event_id.to_owned())))
    }

    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()> {
        self.inner.borrow_mut().processed.insert((consumer.to_owned(), event_id.to_owned()));
        Ok(())
    }
}
