//! The DynamoDB adapter: every store port on one table (single-table design, see
//! `shared/aws/TABLE.md`). Each write that must be atomic is one `TransactWriteItems`; each
//! expected-version check is a condition on the order item.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use gocoffee_app::ports::{
    Entropy, IdempotencyRecord, KitchenStore, MenuStore, OrderQuery, OrderStore, OsEntropy, Page, RefreshTokenRecord, StoreError, StoreResult, UserRecord,
    UserStore,
};
use gocoffee_core::menu::default_menu;
use gocoffee_core::{KitchenTicket, MenuItem, Order, Role, StoredEvent};

/// Key attribute names, GSI names and key prefixes. `TABLE.md` documents them and the tests
/// read the table's definition from `sam-template.yaml`, so these are checked against it.
pub mod keys {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    /// Range key of every order GSI: `{placed_at_ms:015}#{order_id}`.
    pub const PLACED: &str = "placed_sk";
    pub const BY_CUSTOMER: (&str, &str) = ("by-customer", "customer_pk");
    pub const BY_STATUS: (&str, &str) = ("by-status", "status_pk");
    pub const BY_TIME: (&str, &str) = ("by-time", "time_pk");
    pub const KITCHEN: (&str, &str) = ("kitchen", "kitchen_pk");
    /// DynamoDB's TTL attribute (epoch seconds).
    pub const TTL: &str = "expires_at";
    pub const OUTBOX: &str = "OUTBOX";
    /// The one item whose holder may relay the outbox.
    pub const OUTBOX_LEASE: &str = "OUTBOX_LEASE";
}

/// One outbox in the table: the partition its pending entries are in (sort key
/// `{partition key}#{version:010}`) and its relay lease's partition. Each goes to its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbox {
    pub partition: &'static str,
    pub lease: &'static str,
}

/// Order events, for the orders stream.
pub const ORDERS_OUTBOX: Outbox = Outbox { partition: keys::OUTBOX, lease: keys::OUTBOX_LEASE };
/// Payment intent events, for the payments stream.
pub const PAYMENTS_OUTBOX: Outbox = Outbox { partition: "OUTBOX#payments", lease: "OUTBOX_LEASE#payments" };
/// The AI agents' insights, for the `ai` stream (each its own partition key: its id).
pub const AI_OUTBOX: Outbox = Outbox { partition: "OUTBOX#ai", lease: "OUTBOX_LEASE#ai" };

/// The pending entry of an event in `outbox`: `doc` goes out with `partition_key` (an order id:
/// one order's events stay on one shard, in `version` order).
pub fn outbox_entry(outbox: Outbox, partition_key: &str, version: u64, doc: AttributeValue) -> Item {
    let mut item = key(outbox.partition, &format!("{partition_key}#{version:010}"));
    item.insert("doc".into(), doc);
    item.insert("order_id".into(), s(partition_key));
    item.insert("version".into(), n(version));
    item
}

/// A consumer's marker that it handled an event (kept [`PROCESSED_TTL_S`]).
pub fn processed_item(consumer: &str, event_id: &str) -> Item {
    let mut item = key(format!("PROCESSED#{consumer}#{event_id}"), "PROCESSED");
    item.insert(TTL.into(), n(now_s() + PROCESSED_TTL_S));
    item
}

use keys::*;

/// How long a consumer's processed-event marker is kept: far beyond any redelivery window
/// (Kinesis keeps records up to 7 days on this stream; SQS 4 days).
const PROCESSED_TTL_S: i64 = 14 * 24 * 3600;

/// One item, by attribute name.
pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn key(pk: impl Into<String>, sk: &str) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// The condition of a write that creates an item: nothing with that key exists yet.
pub const NEW: &str = "attribute_not_exists(pk)";

fn placed_sk(placed_at_ms: i64, id: &str) -> String {
    format!("{:015}#{id}", placed_at_ms.max(0))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Unavailable(format!("item is missing string attribute `{name}`"))),
    }
}

pub fn get_n(item: &Item, name: &str) -> StoreResult<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| StoreError::Unavailable(format!("attribute `{name}` is not an integer"))),
        _ => Err(StoreError::Unavailable(format!("item is missing number attribute `{name}`"))),
    }
}

pub fn doc<T: serde::de::DeserializeOwned>(item: &Item) -> StoreResult<T> {
    serde_json::from_str(get_s(item, "doc")?).map_err(|e| StoreError::Unavailable(format!("stored document is unreadable: {e}")))
}

pub fn to_doc(value: &impl serde::Serialize) -> StoreResult<AttributeValue> {
    serde_json::to_string(value).map(AttributeValue::S).map_err(unavailable)
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// Any other SDK failure: the service is unavailable (throttled, unreachable, faulting).
pub fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> StoreError {
    StoreError::Unavailable(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
}

/// BatchWriteItem takes at most 25 requests.
pub const DELETE_BATCH: usize = 25;

/// Deletes the items with `keys` (at most [`DELETE_BATCH`]) from `table`, retrying what
/// DynamoDB left unprocessed with a backoff.
pub async fn delete_keys(client: &Client, table: &str, keys: Vec<Item>) -> StoreResult<()> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    const ATTEMPTS: u32 = 5;
    let mut requests: Vec<WriteRequest> = keys
        .into_iter()
        .map(|key| WriteRequest::builder().delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key is set")).build())
        .collect();
    for attempt in 0..ATTEMPTS {
        if requests.is_empty() {
            return Ok(());
        }
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        let out = client.batch_write_item().request_items(table, requests).send().await.map_err(sdk)?;
        requests = out.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
    }
    if requests.is_empty() { Ok(()) } else { Err(StoreError::Unavailable(format!("{} deletes left unprocessed", requests.len()))) }
}

/// Maps a failed conditional write: a failed condition is a [`StoreError::Conflict`], anything
/// else is the service being unavailable.
pub fn conditional<E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> StoreError {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match e.code() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        _ => sdk(e),
    }
}

/// Maps a failed transaction: any item's failed condition (or a concurrent transaction on the
/// same item) is a [`StoreError::Conflict`].
fn transaction_error(e: SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, impl std::fmt::Debug>) -> StoreError {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    if let Some(E::TransactionCanceledException(c)) = e.as_service_error() {
        let conflict = c.cancellation_reasons().iter().any(|r| matches!(r.code(), Some("ConditionalCheckFailed") | Some("TransactionConflict")));
        if conflict {
            return StoreError::Conflict;
        }
    }
    sdk(e)
}

/// Every store port on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One item by key, read consistently.
    pub async fn get(&self, key: Item) -> StoreResult<Option<Item>> {
        let out = self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true).send().await.map_err(sdk)?;
        Ok(out.item)
    }

    /// A put that only happens if `condition` holds. A failed condition is a
    /// [`StoreError::Conflict`], unless the item already holds exactly what this put writes:
    /// then the SDK retried a put whose answer was lost after it committed, and it succeeded.
    pub async fn put_conditionally(&self, item: Item, condition: &str, values: &[(&str, AttributeValue)]) -> StoreResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            put = put.expression_attribute_values(*name, value.clone());
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) if failed.item() == Some(&item) => Ok(()),
                Some(PutItemError::ConditionalCheckFailedException(_)) => Err(StoreError::Conflict),
                _ => Err(sdk(e)),
            },
        }
    }

    pub fn put(&self, item: Item) -> Put {
        Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("table name and item are set")
    }

    /// A put of `item` that only happens if `condition` holds, with `values` for the condition.
    pub fn put_if(&self, item: Item, condition: &str, values: &[(&str, AttributeValue)]) -> TransactWriteItem {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        for (name, value) in values {
            put = put.expression_attribute_values(*name, value.clone());
        }
        TransactWriteItem::builder().put(put.build().expect("table name and item are set")).build()
    }

    /// Every item in partition `pk` whose sort key starts with `sk_prefix`, across pages, with
    /// a consistent read.
    pub async fn partition(&self, pk: &str, sk_prefix: &str) -> StoreResult<Vec<Item>> {
        self.query_partition(pk, "begins_with(sk, :prefix)", &[(":prefix", s(sk_prefix))], None).await
    }

    /// Items in partition `pk` whose sort key meets `sk_condition` (a key condition on `sk`
    /// such as `sk > :after` or `sk BETWEEN :low AND :high`, with `values`), in sort key order,
    /// at most `limit` of them (all when `None`), across pages, with a consistent read.
    pub async fn query_partition(&self, pk: &str, sk_condition: &str, values: &[(&str, AttributeValue)], limit: Option<usize>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(format!("pk = :pk AND {sk_condition}"))
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (name, value) in values {
                q = q.expression_attribute_values(*name, value.clone());
            }
            if let Some(limit) = limit {
                q = q.limit((limit - items.len()).clamp(1, 1000) as i32);
            }
            let out = q.send().await.map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && limit.is_none_or(|l| items.len() < l) => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// A delete of the item at `key` inside a transaction (nothing happens if there is none).
    pub fn delete(&self, key: Item) -> TransactWriteItem {
        let delete = aws_sdk_dynamodb::types::Delete::builder().table_name(&self.table).set_key(Some(key)).build().expect("table name and key are set");
        TransactWriteItem::builder().delete(delete).build()
    }

    /// One atomic write. The client request token makes it idempotent for 10 minutes: when the
    /// SDK retries a transaction whose first attempt committed but whose answer was lost, DynamoDB
    /// answers the retry with success instead of failing its conditions (which would report a
    /// committed order as a conflict). The SDK fills in a token of its own when none is given
    /// (the member is an idempotency token in DynamoDB's model); ours makes the guarantee
    /// explicit rather than a code-generation detail. A fresh token per call, so a deliberate
    /// retry by the app is a new transaction.
    pub async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<()> {
        let token = format!("{:032x}", OsEntropy.u128());
        self.client.transact_write_items().set_transact_items(Some(items)).client_request_token(token).send().await.map_err(transaction_error)?;
        Ok(())
    }

    /// Reads `index` in `forward` order from `start` until `want` items pass the status filter
    /// (a filter applies after `Limit`, so one page may not be enough) or the index ends.
    async fn query_index(
        &self,
        (index, pk_attr): (&str, &str),
        pk: &str,
        forward: bool,
        start: Option<Item>,
        want: usize,
        filter_status: Option<&str>,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = start;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_values(":pk", s(pk))
                .scan_index_forward(forward)
                .limit((want - items.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            if let Some(status) = filter_status {
                q = q.filter_expression("#status = :status").expression_attribute_names("#status", "status").expression_attribute_values(":status", s(status));
            }
            let out = q.send().await.map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if items.len() < want && !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// The order item: the current state (a projection of its events) with the GSI keys that
    /// list it per customer, per status, by time and (while in the kitchen) on the kitchen board.
    fn order_item(order: &Order) -> StoreResult<Item> {
        let mut item = key(format!("ORDER#{}", order.id), "ORDER");
        let placed = placed_sk(order.placed_at_ms, &order.id);
        item.insert("doc".into(), to_doc(order)?);
        item.insert("version".into(), n(order.version));
        item.insert("status".into(), s(order.status.as_str()));
        item.insert(PLACED.into(), s(placed));
        item.insert(BY_CUSTOMER.1.into(), s(format!("CUSTOMER#{}", order.customer_id)));
        item.insert(BY_STATUS.1.into(), s(format!("STATUS#{}", order.status.as_str())));
        item.insert(BY_TIME.1.into(), s("ORDERS"));
        if let Some(ticket) = KitchenTicket::for_order(order) {
            item.insert(KITCHEN.1.into(), s("KITCHEN"));
            item.insert("ticket".into(), to_doc(&ticket)?);
        }
        Ok(item)
    }

    /// The event's item in the order's log (only written if that version is new) and its outbox
    /// entry for the relay.
    fn event_items(&self, event: &StoredEvent) -> StoreResult<[TransactWriteItem; 2]> {
        let payload = to_doc(event)?;
        let mut item = key(format!("ORDER#{}", event.order_id), &format!("EVENT#{:010}", event.version));
        item.insert("doc".into(), payload.clone());
        item.insert("event_id".into(), s(&event.event_id));
        let log = self.put_if(item, NEW, &[]);
        // Keyed by (order, version), not by the writer's clock: the relay publishes each
        // order's lowest pending version first, whatever the clocks of the writers said.
        let outbox = outbox_entry(ORDERS_OUTBOX, &event.order_id, event.version, payload);
        Ok([log, TransactWriteItem::builder().put(self.put(outbox)).build()])
    }

    /// Pending outbox entries, oldest first.
    pub(crate) async fn outbox(&self, outbox: Outbox, limit: i32) -> StoreResult<Vec<Item>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(outbox.partition))
            .consistent_read(true)
            .limit(limit)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.items.unwrap_or_default())
    }

    pub(crate) async fn remove_from_outbox(&self, outbox: Outbox, sk: &str) -> StoreResult<()> {
        self.client.delete_item().table_name(&self.table).set_key(Some(key(outbox.partition, sk))).send().await.map_err(sdk)?;
        Ok(())
    }

    /// Takes (or extends) the relay lease for `holder` until `until_ms`; false while another
    /// relay holds an unexpired one.
    pub(crate) async fn lease_outbox(&self, outbox: Outbox, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        let mut item = key(outbox.lease, "LEASE");
        item.insert("holder".into(), s(holder));
        item.insert("until_ms".into(), n(until_ms));
        let condition = "attribute_not_exists(pk) OR until_ms <= :now OR holder = :me";
        match self.put_conditionally(item, condition, &[(":now", n(now_ms)), (":me", s(holder))]).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn release_outbox(&self, outbox: Outbox, holder: &str) -> StoreResult<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(outbox.lease, "LEASE")))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(holder));
        match delete.send().await.map_err(conditional) {
            // Someone took it over after it expired: it is theirs now.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn user_item(pk: String, sk: &str, u: &UserRecord) -> Item {
    let mut item = key(pk, sk);
    item.insert("id".into(), s(&u.id));
    item.insert("email".into(), s(&u.email));
    if let Some(name) = &u.name {
        item.insert("name".into(), s(name));
    }
    item.insert("role".into(), s(u.role.as_str()));
    item.insert("password_hash".into(), s(&u.password_hash));
    item.insert("created_at_ms".into(), n(u.created_at_ms));
    item
}

fn user(item: &Item) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: get_s(item, "id")?.to_owned(),
        email: get_s(item, "email")?.to_owned(),
        name: get_s(item, "name").ok().map(str::to_owned),
        role: Role::parse(get_s(item, "role")?).ok_or_else(|| StoreError::Unavailable("stored role is unknown".into()))?,
        password_hash: get_s(item, "password_hash")?.to_owned(),
        created_at_ms: get_n(item, "created_at_ms")?,
    })
}

#[async_trait(?Send)]
impl UserStore for DynamoStore {
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        // The user and its email claim in one transaction: the email item makes emails unique.
        self.transact(vec![
            self.put_if(user_item(format!("USER#{}", u.id), "USER", u), NEW, &[]),
            self.put_if(user_item(format!("EMAIL#{}", u.email), "EMAIL", u), NEW, &[]),
        ])
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        self.get(key(format!("EMAIL#{email}"), "EMAIL")).await?.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.get(key(format!("USER#{id}"), "USER")).await?.as_ref().map(user).transpose()
    }

    async fn save_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()> {
        let mut item = key(format!("REFRESH#{}", t.token_hash), "REFRESH");
        item.insert("user_id".into(), s(&t.user_id));
        item.insert("expires_at_ms".into(), n(t.expires_at_ms));
        item.insert(TTL.into(), n(t.expires_at_ms.div_euclid(1000) + 1));
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(conditional)?;
        Ok(())
    }

    async fn take_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("REFRESH#{token_hash}"), "REFRESH")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(conditional)?;
        // Expiry is the caller's to judge (TTL deletion lags by up to days).
        out.attributes
            .map(|item| {
                Ok(RefreshTokenRecord {
                    token_hash: token_hash.to_owned(),
                    user_id: get_s(&item, "user_id")?.to_owned(),
                    expires_at_ms: get_n(&item, "expires_at_ms")?,
                })
            })
            .transpose()
    }
}

/// The menu is the default menu overlaid with what was written: a table that has never been
/// written serves the defaults without a seeding step (and without a seeding race).
#[async_trait(?Send)]
impl MenuStore for DynamoStore {
    async fn menu(&self) -> StoreResult<Vec<MenuItem>> {
        let mut stored: Vec<(i64, MenuItem)> = Vec::new();
        for item in self.partition("MENU", "ITEM#").await? {
            stored.push((get_n(&item, "position")?, doc(&item)?));
        }
        let mut all: Vec<(i64, MenuItem)> = default_menu().into_iter().enumerate().map(|(i, item)| (i as i64, item)).collect();
        for (position, item) in stored {
            match all.iter_mut().find(|(_, d)| d.id == item.id) {
                Some(slot) => slot.1 = item,
                None => all.push((position, item)),
            }
        }
        all.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        Ok(all.into_iter().map(|(_, item)| item).collect())
    }

    async fn menu_item(&self, id: &str) -> StoreResult<Option<MenuItem>> {
        match self.get(key("MENU", &format!("ITEM#{id}"))).await? {
            Some(item) => Ok(Some(doc(&item)?)),
            None => Ok(default_menu().into_iter().find(|d| d.id == id)),
        }
    }

    async fn insert_menu_item(&self, item: &MenuItem) -> StoreResult<()> {
        if default_menu().iter().any(|d| d.id == item.id) {
            return Err(StoreError::Conflict);
        }
        let mut row = key("MENU", &format!("ITEM#{}", item.id));
        // After the defaults, in the order items were added.
        let position = 1_000_000 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
        row.insert("position".into(), n(position));
        row.insert("version".into(), n(item.version));
        row.insert("doc".into(), to_doc(item)?);
        self.put_conditionally(row, NEW, &[]).await
    }

    async fn replace_menu_item(&self, item: &MenuItem, expected_version: u64) -> StoreResult<bool> {
        let item_key = key("MENU", &format!("ITEM#{}", item.id));
        let position = match default_menu().iter().position(|d| d.id == item.id) {
            // A default item always exists (stored or not); it keeps its place.
            Some(p) => p as i64,
            None => match self.get(item_key.clone()).await? {
                Some(existing) => get_n(&existing, "position")?,
                None => return Ok(false),
            },
        };
        let mut row = item_key;
        row.insert("position".into(), n(position));
        row.insert("version".into(), n(item.version));
        row.insert("doc".into(), to_doc(item)?);
        // Items stored before versions existed (and defaults never stored) have no `version`:
        // they are at 0.
        let condition = if expected_version == 0 { "attribute_not_exists(version) OR version = :expected" } else { "version = :expected" };
        self.put_conditionally(row, condition, &[(":expected", n(expected_version))]).await?;
        Ok(true)
    }

    async fn claim_upload(&self, key_: &str, at_ms: i64) -> StoreResult<()> {
        let mut item = key(format!("UPLOAD#{key_}"), "UPLOAD");
        item.insert("used_at_ms".into(), n(at_ms));
        // Tells this claim from another one made in the same millisecond.
        item.insert("claim".into(), s(format!("{:032x}", OsEntropy.u128())));
        // Upload URLs live 15 minutes; the claim only has to outlive them.
        item.insert(TTL.into(), n(at_ms.div_euclid(1000) + 24 * 3600));
        self.put_conditionally(item, NEW, &[]).await
    }

    async fn release_upload(&self, key_: &str) -> StoreResult<()> {
        self.client.delete_item().table_name(&self.table).set_key(Some(key(format!("UPLOAD#{key_}"), "UPLOAD"))).send().await.map_err(sdk)?;
        Ok(())
    }
}

fn order_start_key(index: (&str, &str), pk: &str, after: &Option<(i64, String)>) -> Option<Item> {
    after.as_ref().map(|(t, id)| {
        let mut k = key(format!("ORDER#{id}"), "ORDER");
        k.insert(index.1.into(), s(pk));
        k.insert(PLACED.into(), s(placed_sk(*t, id)));
        k
    })
}

/// The kitchen's partition: its state (`STATE`, with the version writes are conditional on) and
/// its log (`EVENT#<version>`).
const KITCHEN_PARTITION: &str = "KITCHEN#CONFIG";

#[async_trait(?Send)]
impl KitchenStore for DynamoStore {
    async fn kitchen(&self) -> StoreResult<gocoffee_core::kitchen::Kitchen> {
        match self.get(key(KITCHEN_PARTITION.to_owned(), "STATE")).await? {
            Some(item) => doc(&item),
            None => Ok(gocoffee_core::kitchen::Kitchen::initial()),
        }
    }

    async fn append_kitchen(
        &self,
        state: &gocoffee_core::kitchen::Kitchen,
        records: &[gocoffee_core::kitchen::KitchenRecord],
        expected_version: u64,
    ) -> StoreResult<()> {
        let mut item = key(KITCHEN_PARTITION.to_owned(), "STATE");
        item.insert("doc".into(), to_doc(state)?);
        item.insert("version".into(), n(state.version));
        let mut items = vec![match expected_version {
            0 => self.put_if(item, NEW, &[]),
            v => self.put_if(item, "version = :expected", &[(":expected", n(v))]),
        }];
        for r in records {
            let mut event = key(KITCHEN_PARTITION.to_owned(), &format!("EVENT#{:010}", r.version));
            event.insert("doc".into(), to_doc(r)?);
            items.push(self.put_if(event, NEW, &[]));
        }
        self.transact(items).await
    }

    async fn kitchen_log(&self, after: u64, limit: usize) -> StoreResult<Vec<gocoffee_core::kitchen::KitchenRecord>> {
        // BETWEEN is inclusive, and the state item sorts after the log: from the next version to
        // the log's end.
        let from = s(format!("EVENT#{:010}", after + 1));
        let items = self.query_partition(KITCHEN_PARTITION, "sk BETWEEN :from AND :end", &[(":from", from), (":end", s("EVENT#~"))], Some(limit)).await?;
        items.iter().map(doc).collect()
    }
}

#[async_trait(?Send)]
impl OrderStore for DynamoStore {
    async fn create_order(&self, order: &Order, placed: &StoredEvent, idempotency: Option<&IdempotencyRecord>) -> StoreResult<()> {
        let mut items = vec![self.put_if(Self::order_item(order)?, NEW, &[])];
        items.extend(self.event_items(placed)?);
        if let Some(r) = idempotency {
            let mut item = key(format!("IDEMPOTENCY#{}#{}", r.owner, r.key), "IDEMPOTENCY");
            item.insert("request_hash".into(), s(&r.request_hash));
            item.insert("status".into(), n(r.status));
            item.insert("body".into(), s(&r.body));
            if let Some(l) = &r.location {
                item.insert("location".into(), s(l));
            }
            item.insert("expires_at_ms".into(), n(r.expires_at_ms));
            item.insert(TTL.into(), n(r.expires_at_ms.div_euclid(1000) + 1));
            // An expired record (TTL deletes lazily) no longer guards anything.
            items.push(self.put_if(item, "attribute_not_exists(pk) OR expires_at_ms <= :now", &[(":now", n(placed.occurred_at_ms))]));
        }
        self.transact(items).await
    }

    async fn append(&self, order: &Order, events: &[StoredEvent], expected_version: u64, processed: Option<(&str, &str)>) -> StoreResult<()> {
        let mut items = vec![self.put_if(Self::order_item(order)?, "version = :expected", &[(":expected", n(expected_version))])];
        for event in events {
            items.extend(self.event_items(event)?);
        }
        if let Some((consumer, event_id)) = processed {
            items.push(self.put_if(processed_item(consumer, event_id), NEW, &[]));
        }
        self.transact(items).await
    }

    async fn order(&self, id: &str) -> StoreResult<Option<Order>> {
        self.get(key(format!("ORDER#{id}"), "ORDER")).await?.as_ref().map(doc).transpose()
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<StoredEvent>> {
        self.partition(&format!("ORDER#{id}"), "EVENT#").await?.iter().map(doc).collect()
    }

    async fn orders(&self, q: &OrderQuery) -> StoreResult<Page<Order>> {
        let (index, pk, filter) = match (&q.customer_id, q.status) {
            (Some(c), status) => (BY_CUSTOMER, format!("CUSTOMER#{c}"), status.map(|s| s.as_str())),
            (None, Some(status)) => (BY_STATUS, format!("STATUS#{}", status.as_str()), None),
            (None, None) => (BY_TIME, "ORDERS".to_owned(), None),
        };
        let start = order_start_key(index, &pk, &q.after);
        let items = self.query_index(index, &pk, false, start, q.limit + 1, filter).await?;
        let orders: Vec<Order> = items.iter().map(doc).collect::<StoreResult<_>>()?;
        Ok(Page::from_overfetch(orders, q.limit, |o| (o.placed_at_ms, o.id.clone())))
    }

    async fn kitchen_queue(&self, limit: usize, after: Option<(i64, String)>) -> StoreResult<Page<KitchenTicket>> {
        let start = order_start_key(KITCHEN, "KITCHEN", &after);
        let items = self.query_index(KITCHEN, "KITCHEN", true, start, limit + 1, None).await?;
        let tickets: Vec<KitchenTicket> = items
            .iter()
            .map(|item| serde_json::from_str(get_s(item, "ticket")?).map_err(|e| StoreError::Unavailable(format!("stored ticket is unreadable: {e}"))))
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_overfetch(tickets, limit, |t| (t.placed_at_ms, t.order_id.clone())))
    }

    async fn idempotency_record(&self, owner: &str, key_: &str, now_ms: i64) -> StoreResult<Option<IdempotencyRecord>> {
        let Some(item) = self.get(key(format!("IDEMPOTENCY#{owner}#{key_}"), "IDEMPOTENCY")).await? else {
            return Ok(None);
        };
        let expires_at_ms = get_n(&item, "expires_at_ms")?;
        if expires_at_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(IdempotencyRecord {
            owner: owner.to_owned(),
            key: key_.to_owned(),
            request_hash: get_s(&item, "request_hash")?.to_owned(),
            status: u16::try_from(get_n(&item, "status")?).map_err(|_| StoreError::Unavailable("stored status is out of range".into()))?,
            body: get_s(&item, "body")?.to_owned(),
            location: get_s(&item, "location").ok().map(str::to_owned),
            expires_at_ms,
        }))
    }

    async fn is_processed(&self, consumer: &str, event_id: &str) -> StoreResult<bool> {
        Ok(self.get(key(format!("PROCESSED#{consumer}#{event_id}"), "PROCESSED")).await?.is_some())
    }

    async fn mark_processed(&self, consumer: &str, event_id: &str) -> StoreResult<()> {
        self.client.put_item().table_name(&self.table).set_item(Some(processed_item(consumer, event_id))).send().await.map_err(conditional)?;
        Ok(())
    }

    /// The same entry the event's append wrote (a pending one is simply written again).
    async fn republish(&self, event: &StoredEvent) -> StoreResult<()> {
        let entry = outbox_entry(ORDERS_OUTBOX, &event.order_id, event.version, to_doc(event)?);
        self.client.put_item().table_name(&self.table).set_item(Some(entry)).send().await.map_err(sdk)?;
        Ok(())
    }
}
