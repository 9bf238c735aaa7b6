//! The payment service's store port. The SQL adapter is [`crate::sql`]. The consumers' ledger
//! of processed events is the order store's ([`OrderStore::is_processed`]); `create_intent`
//! writes to it in the intent's own transaction.
//!
//! [`OrderStore::is_processed`]: gocoffee_app::ports::OrderStore::is_processed

use async_trait::async_trait;
use gocoffee_app::ports::StoreResult;

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

    /// Queues a stored intent event for publishing again (the reconciler's re-drive).
    async fn republish(&self, event: &StoredIntentEvent) -> StoreResult<()>;
}
