//! The ports: narrow traits named for what the use cases need. Adapters implement them per
//! platform (SQLite on Spin and the local host, DynamoDB/Kinesis on AWS, memory in tests).
//!
//! Futures are `?Send`: a Spin component is single-threaded, and the Lambda runtime awaits one
//! invocation at a time.

use async_trait::async_trait;
use gocoffee_core::kitchen::{Kitchen, KitchenRecord};
use gocoffee_core::{KitchenTicket, MenuItem, Order, OrderStatus, Role, StoredEvent};

pub use crate::ratelimit::{Admission, RateLimit};

/// Why a port call failed, in the terms the app can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or expected-version condition failed: someone else wrote first.
    #[error("conflicting write")]
    Conflict,
    /// The backing service failed or is unreachable; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub password_hash: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token, hex. The token itself is never stored.
    pub token_hash: String,
    pub user_id: String,
    pub expires_at_ms: i64,
}

#[async_trait(?Send)]
pub trait UserStore {
    /// Creates a user; [`StoreError::Conflict`] when the email is taken.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn save_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()>;
    /// Removes the token and returns it, so each refresh token works once.
    async fn take_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
}

#[async_trait(?Send)]
pub trait MenuStore {
    /// Every item, in menu order. A store that has never been written holds the default menu.
    async fn menu(&self) -> StoreResult<Vec<MenuItem>>;
    async fn menu_item(&self, id: &str) -> StoreResult<Option<MenuItem>>;
    /// Adds an item; [`StoreError::Conflict`] when the id is taken.
    async fn insert_menu_item(&self, item: &MenuItem) -> StoreResult<()>;
    /// Replaces an existing item if it is still at `expected_version` (`item.version` is the
    /// new one); `false` when there is no item with that id, [`StoreError::Conflict`] when
    /// another writer changed it first.
    async fn replace_menu_item(&self, item: &MenuItem, expected_version: u64) -> StoreResult<bool>;
    /// Marks a picture upload (by object key) as used; [`StoreError::Conflict`] when it already
    /// was, so each upload URL works once.
    async fn claim_upload(&self, key: &str, at_ms: i64) -> StoreResult<()>;
    /// Gives back a claim whose upload failed, so the same URL can be retried.
    async fn release_upload(&self, key: &str) -> StoreResult<()>;
}

/// The first response to an idempotent request, kept so a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub owner: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub expires_at_ms: i64,
}

/// Which orders a list query wants, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderQuery {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    pub limit: usize,
    /// Continue after this (placed_at_ms, id).
    pub after: Option<(i64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts, when there may be one.
    pub next: Option<(i64, String)>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` items read in order: the extra one only says there is more.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> (i64, String)) -> Page<T> {
        let next = (items.len() > limit && limit > 0).then(|| key(&items[limit - 1]));
        items.truncate(limit);
        Page { items, next }
    }
}

#[async_trait(?Send)]
pub trait OrderStore {
    /// Writes a new order's first event, its read models, the event's outbox entry and the
    /// idempotency record in one atomic write. [`StoreError::Conflict`] when the order id or the
    /// idempotency key already exists.
    async fn create_order(&self, order: &Order, placed: &StoredEvent, idempotency: Option<&IdempotencyRecord>) -> StoreResult<()>;

    /// Appends `events` to the order's log if its version is still `expected_version`, updates the
    /// read models to `order` (the state after the events) and queues the events for publishing,
    /// all in one write; with `processed`, also records that `(consumer, event_id)` is handled.
    /// [`StoreError::Conflict`] when another writer got there first.
    async fn append(&self, order: &Order, events: &[StoredEvent], expected_version: u64, processed: Option<(&str, &str)>) -> StoreResult<()>;

    async fn order(&self, id: &str) -> StoreResult<Option<Order>>;
    /// The order's whole log, oldest first.
    async fn events(&self, id: &str) -> StoreResult<Vec<StoredEvent>>;
    async fn orders(&self, query: &OrderQuery) -> StoreResult<Page<Order>>;
    /// Orders on the kitchen board, oldest first.
    async fn kitchen_queue(&self, limit: usize, after: Option<(i64, String)>) -> StoreResult<Page<KitchenTicket>>;

    /// The live (unexpired at `now_ms`) record for `(owner, key)`.
    async fn idempotency_record(&self, owner: &str, key: &str, now_ms: i64) -> StoreResult<Option<IdempotencyRecord>>;

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool>;
    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()>;

    /// Queues a stored event for publishing again (the reconciler's re-drive of a stuck order);
    /// consumers that already handled it ignore it by its id.
    async fn republish(&self, event: &StoredEvent) -> StoreResult<()>;
}

/// The kitchen's stations, equipment and shifts: its state with its event log, written with an
/// expected version like an order's.
#[async_trait(?Send)]
pub trait KitchenStore {
    /// The kitchen now; a store never written holds [`Kitchen::initial`].
    async fn kitchen(&self) -> StoreResult<Kitchen>;
    /// Appends `records` and stores `state` (the kitchen after them) if the kitchen is still at
    /// `expected_version`, in one write; [`StoreError::Conflict`] when another writer was first.
    async fn append_kitchen(&self, state: &Kitchen, records: &[KitchenRecord], expected_version: u64) -> StoreResult<()>;
    /// Up to `limit` records after version `after`, oldest first.
    async fn kitchen_log(&self, after: u64, limit: usize) -> StoreResult<Vec<KitchenRecord>>;
}

/// Where placed orders wait for the kitchen to accept them, when the platform has a queue for
/// that (SQS on AWS). Sending is at least once: the kitchen's acceptance is idempotent.
#[async_trait(?Send)]
pub trait KitchenQueue {
    async fn send(&self, placed: &StoredEvent) -> StoreResult<()>;
}

/// Presigned URLs for pictures that clients upload and download directly, without passing
/// through a function (S3 on AWS). Signing is local: no call to the store.
pub trait ImageUrls {
    /// A URL that takes one `PUT` of exactly `content_length` bytes of `content_type`, valid from
    /// `signed_at_ms` for `expires_in_s` seconds.
    fn upload_url(&self, key: &str, content_type: &str, content_length: u64, signed_at_ms: i64, expires_in_s: u64) -> StoreResult<String>;
    /// A URL that serves the object to a plain `GET`, valid from `signed_at_ms` for `expires_in_s`.
    fn download_url(&self, key: &str, signed_at_ms: i64, expires_in_s: u64) -> StoreResult<String>;
}

/// Picture bytes the platform keeps itself, uploaded and served through the menu function on
/// URLs the app signs (Spin key-value, the local host).
#[async_trait(?Send)]
pub trait ImageBlobs {
    async fn put_image(&self, key: &str, content_type: &str, bytes: &[u8]) -> StoreResult<()>;
    /// The picture's content type and bytes.
    async fn image(&self, key: &str) -> StoreResult<Option<(String, Vec<u8>)>>;
    /// Removes a picture; removing one that isn't there is not an error.
    async fn delete_image(&self, key: &str) -> StoreResult<()>;
}

/// Where menu pictures live on this platform.
#[derive(Clone, Copy)]
pub enum Images<'a> {
    /// In an object store that signs its own URLs (S3).
    Presigned(&'a dyn ImageUrls),
    /// In the platform's own storage, behind the menu function's signed routes.
    Served(&'a dyn ImageBlobs),
}

/// Publishes what the stores queued for the event stream (the transactional outbox), in order.
#[async_trait(?Send)]
pub trait EventRelay {
    /// Publishes pending events and returns how many went out.
    async fn relay(&self) -> StoreResult<usize>;
}

/// The gateway's rate-limit state: one GCRA arrival time per client key.
#[async_trait(?Send)]
pub trait RateLimiter {
    /// Counts one request of `key` under `limit` at `now_ms` in one atomic step: however many
    /// requests race, no more than the limit are admitted.
    async fn admit(&self, key: &str, limit: &RateLimit, now_ms: i64) -> StoreResult<Admission>;

    /// Forgets keys whose arrival time passed before `now_ms` (they mean nothing any more),
    /// where the store doesn't expire them itself; how many went.
    async fn forget_idle(&self, _now_ms: i64) -> StoreResult<u64> {
        Ok(0)
    }
}

/// The keys access tokens may be signed with (current and retired), to verify them and to
/// publish them as JWKS.
#[async_trait(?Send)]
pub trait TokenKeys {
    async fn keys(&self) -> StoreResult<std::sync::Arc<crate::auth::KeySet>>;
}

/// The key that signs access tokens now: only the identity function holds one.
#[async_trait(?Send)]
pub trait TokenSigner {
    /// The `kid` tokens it signs carry (among [`TokenKeys::keys`] wherever they are checked).
    async fn kid(&self) -> StoreResult<String>;
    /// `message`'s RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256).
    async fn sign(&self, message: &[u8]) -> StoreResult<Vec<u8>>;
}

pub trait Clock {
    fn now_ms(&self) -> i64;
}

pub trait Entropy {
    fn fill(&self, buf: &mut [u8]);

    fn u128(&self) -> u128 {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        u128::from_le_bytes(b)
    }
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
    }
}

/// The platform's CSPRNG (WASI random on Spin, the OS elsewhere).
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // A platform without a CSPRNG cannot issue ids or tokens safely; there is no fallback.
            panic!("no secure random source: {e}");
        }
    }
}
