//! The payment service on AWS: the intent store on the one DynamoDB table every port uses
//! (`shared/aws/TABLE.md`), and the three Lambda entries (the HTTP routes, the consumer of the
//! orders stream, the watcher on a schedule).
//!
//! Every change is one `TransactWriteItems`: the intent item (conditional on its version), the
//! new events (each only if its version is new), their entries in the payments outbox, a claim
//! item per credited transfer (only if unclaimed, so a transfer pays one intent, ever), and the
//! marker items the watcher and the refunds list read (in the base table, so those reads are
//! consistent, unlike a GSI's).

use std::sync::Arc;

use alloy_primitives::Address;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem};
use gocoffee_app::ports::{StoreError, StoreResult};
use gocoffee_aws::DynamoStore;
use gocoffee_aws::dynamo::keys::TTL;
use gocoffee_aws::dynamo::{Item, NEW, PAYMENTS_OUTBOX, conditional, doc, get_n, get_s, key, n, outbox_entry, processed_item, s, sdk, to_doc};
use gocoffee_aws::lambda::{Shell, block_on, finish_invocation, http_with_extension, init, kinesis_with_extension};
use serde_json::{Value, json};

use crate::config::PaymentConfig;
use crate::intent::{Intent, StoredIntentEvent, TransferKey};
use crate::native::HyperPost;
use crate::routes::{FUNCTION, PaymentContext, consume_order_event, reconcile_pass, stuck_after_ms, watch_chains};
use crate::store::IntentStore;

/// Key prefixes of the payment items (documented in `shared/aws/TABLE.md`).
pub mod keys {
    /// `INTENT#{id}`: the intent (sort key `INTENT`) and its log (`EVENT#{version:010}`).
    pub const INTENT: &str = "INTENT#";
    /// `PAYWATCH#{chain id}`: what the watcher reads. `OPEN#{id}` while the intent is open;
    /// `UNTIL#{monitor_until_ms:015}#{id}` once it ended, until `monitor_until` (then TTL).
    pub const WATCH: &str = "PAYWATCH#";
    /// Intents that owe a refund, sort key the intent id.
    pub const REFUNDS: &str = "PAYREFUNDS";
    /// `PAYCLAIM#{chain id}:{tx hash}:{log index, or "value"}`: the intent a transfer was
    /// credited or refunded to.
    pub const CLAIM: &str = "PAYCLAIM#";
    /// `PAYADDR#{address, lower case}`: the intent a deposit address belongs to.
    pub const ADDRESS: &str = "PAYADDR#";
    /// The deposit index counter (sort key `DEPOSIT`).
    pub const COUNTER: &str = "PAYCOUNTER";
    /// `PAYCURSOR#{chain id}`: the last block the watcher scanned.
    pub const CURSOR: &str = "PAYCURSOR#";
}

/// How long an ended intent's watch marker outlives `monitor_until` before TTL removes it.
const MARKER_GRACE_S: i64 = 24 * 3600;

fn intent_pk(id: &str) -> String {
    format!("{}{id}", keys::INTENT)
}

fn watch_pk(chain_id: u64) -> String {
    format!("{}{chain_id}", keys::WATCH)
}

fn until_sk(monitor_until_ms: i64, id: &str) -> String {
    format!("UNTIL#{:015}#{id}", monitor_until_ms.max(0))
}

fn address_pk(address: Address) -> String {
    format!("{}{}", keys::ADDRESS, address.to_string().to_ascii_lowercase())
}

fn claim_pk(key: &TransferKey) -> String {
    format!("{}{key}", keys::CLAIM)
}

/// The intent store on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoIntentStore {
    table: DynamoStore,
}

impl DynamoIntentStore {
    pub fn new(table: DynamoStore) -> Self {
        DynamoIntentStore { table }
    }

    fn intent_item(intent: &Intent) -> StoreResult<Item> {
        let mut item = key(intent_pk(&intent.terms.intent_id), "INTENT");
        item.insert("doc".into(), to_doc(intent)?);
        item.insert("version".into(), n(intent.version));
        item.insert("order_id".into(), s(&intent.terms.order_id));
        item.insert("status".into(), s(intent.status.as_str()));
        Ok(item)
    }

    /// A marker carrying the intent's document, so a list of them needs no second read.
    fn marker(pk: String, sk: &str, intent: &Intent) -> StoreResult<Item> {
        let mut item = key(pk, sk);
        item.insert("doc".into(), to_doc(intent)?);
        Ok(item)
    }

    /// The markers that follow the intent's state: on the watch list while open or monitored,
    /// on the refunds list while a refund is owed.
    fn marker_writes(&self, intent: &Intent) -> StoreResult<Vec<TransactWriteItem>> {
        let id = &intent.terms.intent_id;
        let watch = watch_pk(intent.terms.chain_id);
        let open_sk = format!("OPEN#{id}");
        let mut writes = Vec::new();
        if intent.is_open() {
            writes.push(TransactWriteItem::builder().put(self.table.put(Self::marker(watch, &open_sk, intent)?)).build());
        } else {
            writes.push(self.table.delete(key(watch.clone(), &open_sk)));
            let mut until = Self::marker(watch, &until_sk(intent.terms.monitor_until_ms, id), intent)?;
            until.insert(TTL.into(), n(intent.terms.monitor_until_ms.div_euclid(1000) + MARKER_GRACE_S));
            writes.push(TransactWriteItem::builder().put(self.table.put(until)).build());
        }
        if intent.refund_outstanding().is_zero() {
            writes.push(self.table.delete(key(keys::REFUNDS, id)));
        } else {
            writes.push(TransactWriteItem::builder().put(self.table.put(Self::marker(keys::REFUNDS.into(), id, intent)?)).build());
        }
        Ok(writes)
    }

    /// The event in the intent's log (only if its version is new) and its outbox entry, keyed by
    /// the order so the payments stream keeps one order's events in order.
    fn event_writes(&self, event: &StoredIntentEvent) -> StoreResult<[TransactWriteItem; 2]> {
        let payload = to_doc(event)?;
        let mut item = key(intent_pk(&event.intent_id), &format!("EVENT#{:010}", event.version));
        item.insert("doc".into(), payload.clone());
        item.insert("event_id".into(), s(&event.event_id));
        let outbox = outbox_entry(PAYMENTS_OUTBOX, &event.order_id, event.version, payload);
        Ok([self.table.put_if(item, NEW, &[]), TransactWriteItem::builder().put(self.table.put(outbox)).build()])
    }

    fn docs(items: &[Item]) -> StoreResult<Vec<Intent>> {
        items.iter().map(doc).collect()
    }
}

#[async_trait(?Send)]
impl IntentStore for DynamoIntentStore {
    /// An atomic `ADD` on the counter item. An index whose answer was lost (the SDK retried the
    /// update) is skipped, never handed out twice.
    async fn next_deposit_index(&self) -> StoreResult<u64> {
        let out = self
            .table
            .client()
            .update_item()
            .table_name(self.table.table())
            .set_key(Some(key(keys::COUNTER, "DEPOSIT")))
            .update_expression("ADD #next :one")
            .expression_attribute_names("#next", "next_index")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk)?;
        let next = out
            .attributes
            .as_ref()
            .map(|a| get_n(a, "next_index"))
            .transpose()?
            .ok_or_else(|| StoreError::Unavailable("the deposit counter returned nothing".into()))?;
        u64::try_from(next - 1).map_err(|_| StoreError::Unavailable("the deposit counter is corrupt".into()))
    }

    async fn create_intent(&self, intent: &Intent, created: &StoredIntentEvent, processed: Option<(&str, &str)>) -> StoreResult<()> {
        let mut writes = vec![self.table.put_if(Self::intent_item(intent)?, NEW, &[])];
        writes.extend(self.event_writes(created)?);
        writes.extend(self.marker_writes(intent)?);
        // The address is the intent's alone: a second intent at the same index can't be written.
        let mut address = key(address_pk(intent.terms.deposit_address), "ADDRESS");
        address.insert("intent_id".into(), s(&intent.terms.intent_id));
        writes.push(self.table.put_if(address, NEW, &[]));
        if let Some((consumer, event_id)) = processed {
            // Marked whether or not it was marked before (the SQL store's INSERT OR IGNORE).
            writes.push(TransactWriteItem::builder().put(self.table.put(processed_item(consumer, event_id))).build());
        }
        self.table.transact(writes).await
    }

    async fn append_intent(&self, intent: &Intent, events: &[StoredIntentEvent], expected_version: u64, claims: &[TransferKey]) -> StoreResult<()> {
        let mut writes = vec![self.table.put_if(Self::intent_item(intent)?, "version = :expected", &[(":expected", n(expected_version))])];
        for event in events {
            writes.extend(self.event_writes(event)?);
        }
        for transfer in claims {
            let mut claim = key(claim_pk(transfer), "CLAIM");
            claim.insert("intent_id".into(), s(&intent.terms.intent_id));
            writes.push(self.table.put_if(claim, NEW, &[]));
        }
        writes.extend(self.marker_writes(intent)?);
        self.table.transact(writes).await
    }

    async fn intent(&self, id: &str) -> StoreResult<Option<Intent>> {
        self.table.get(key(intent_pk(id), "INTENT")).await?.as_ref().map(doc).transpose()
    }

    async fn intent_events(&self, id: &str) -> StoreResult<Vec<StoredIntentEvent>> {
        self.table.partition(&intent_pk(id), "EVENT#").await?.iter().map(doc).collect()
    }

    async fn is_deposit_address(&self, address: Address) -> StoreResult<bool> {
        Ok(self.table.get(key(address_pk(address), "ADDRESS")).await?.is_some())
    }

    async fn claimed_by(&self, transfer: &TransferKey) -> StoreResult<Option<String>> {
        let item = self.table.get(key(claim_pk(transfer), "CLAIM")).await?;
        item.as_ref().map(|i| get_s(i, "intent_id").map(str::to_owned)).transpose()
    }

    async fn monitored_intents(&self, chain_id: u64, now_ms: i64) -> StoreResult<Vec<Intent>> {
        let pk = watch_pk(chain_id);
        let mut items = self.table.partition(&pk, "OPEN#").await?;
        let range = [(":low", s(until_sk(now_ms + 1, ""))), (":high", s("UNTIL#~"))];
        items.extend(self.table.query_partition(&pk, "sk BETWEEN :low AND :high", &range, None).await?);
        Self::docs(&items)
    }

    async fn refunds_due(&self, limit: usize, after: Option<&str>) -> StoreResult<Vec<Intent>> {
        let items = match after {
            Some(after) => self.table.query_partition(keys::REFUNDS, "sk > :after", &[(":after", s(after))], Some(limit)).await?,
            None => self.table.query_partition(keys::REFUNDS, "", &[], Some(limit)).await?,
        };
        Self::docs(&items)
    }

    async fn cursor(&self, chain_id: u64) -> StoreResult<Option<u64>> {
        let item = self.table.get(key(format!("{}{chain_id}", keys::CURSOR), "CURSOR")).await?;
        item.as_ref().map(|i| get_n(i, "block").map(|b| b as u64)).transpose()
    }

    /// Never back: the update only happens when the stored block is lower.
    async fn advance_cursor(&self, chain_id: u64, block: u64) -> StoreResult<()> {
        let update = self
            .table
            .client()
            .update_item()
            .table_name(self.table.table())
            .set_key(Some(key(format!("{}{chain_id}", keys::CURSOR), "CURSOR")))
            // `block` is one of DynamoDB's reserved words.
            .update_expression("SET #block = :block")
            .condition_expression("attribute_not_exists(#block) OR #block < :block")
            .expression_attribute_names("#block", "block")
            .expression_attribute_values(":block", AttributeValue::N(block.to_string()));
        match update.send().await.map_err(conditional) {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn republish(&self, event: &StoredIntentEvent) -> StoreResult<()> {
        let entry = outbox_entry(PAYMENTS_OUTBOX, &event.order_id, event.version, to_doc(event)?);
        self.table.client().put_item().table_name(self.table.table()).set_item(Some(entry)).send().await.map_err(sdk)?;
        Ok(())
    }
}

// ------------------------------------------------------------------ the Lambda entries

/// What a payment function keeps for the life of its container: the shell, and the payment
/// context with its chain readers (whose circuit breakers remember failing endpoints from one
/// invocation to the next).
fn start(function: &'static str) -> Result<(Shell, PaymentContext), lambda_runtime::Error> {
    let shell = init(function)?;
    let fail = |e: String| {
        tracing::error!(function, error = %e, "cannot start");
        lambda_runtime::Error::from(e)
    };
    let config = PaymentConfig::from_lookup(|name| std::env::var(name.to_ascii_uppercase()).ok()).map_err(|e| fail(format!("payment configuration: {e}")))?;
    let http = HyperPost::new();
    let intents = DynamoIntentStore::new(shell.store().clone());
    let context = PaymentContext::new(config, Box::new(intents), Arc::new(http));
    Ok((shell, context))
}

/// `main` of the payments function: its routes behind API Gateway.
pub fn http() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, pc) = &start(FUNCTION.name)?;
        http_with_extension(shell, &FUNCTION, pc).await
    })
}

/// `main` of the payments consumer: Kinesis batches from the orders stream, with the order
/// consumer's ordering, retry and dead-letter rules.
pub fn consumer() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, pc) = &start("payments-consumer")?;
        kinesis_with_extension(shell, pc, async |svc: &gocoffee_app::Services<'_>, payload: &[u8]| consume_order_event(pc, svc, payload).await).await
    })
}

/// `main` of the payment watcher: one pass per scheduled event (EventBridge), or per direct
/// invocation by an operator. A pass in which a chain could not be read fails, so it counts in
/// the function's `Errors` metric; the next tick goes on from each chain's cursor.
pub fn watcher() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, pc) = &start("payments-watcher")?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<Value>| {
            let reports = Box::pin(shell.with_services(Some(pc), async |svc| watch_chains(pc, svc).await)).await;
            finish_invocation(&event.context).await;
            let reports = reports.map_err(lambda_runtime::Error::from)?;
            let chains: Vec<Value> = reports
                .iter()
                .map(|r| json!({"chain_id": r.chain_id, "from": r.from_block, "to": r.to_block, "intents": r.intents, "credited": r.credited, "seen": r.seen, "expired": r.expired, "dropped": r.dropped}))
                .collect();
            Ok::<_, lambda_runtime::Error>(json!({ "chains": chains }))
        }))
        .await
    })
}

/// `main` of the reconciler: one pass per scheduled event (or direct invocation), see
/// [`reconcile_pass`]. It relays both outboxes, so on AWS it also publishes what a function
/// that died before relaying left behind, and it re-drives what a Kinesis batch that exhausted
/// its retries never did (the on-failure destination only gets the batch's metadata).
pub fn reconciler() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, pc) = &start("reconciler")?;
        let after = stuck_after_ms(|name| std::env::var(name.to_ascii_uppercase()).ok()).map_err(lambda_runtime::Error::from)?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<Value>| {
            let report = Box::pin(shell.with_services(Some(pc), async |svc| reconcile_pass(pc, svc, after).await)).await;
            finish_invocation(&event.context).await;
            let report = report.map_err(lambda_runtime::Error::from)?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        }))
        .await
    })
}
