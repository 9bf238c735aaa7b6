//! The analytics read model on AWS: a DynamoDB table of its own (`ANALYTICS_TABLE`), one item per
//! order keyed by its id, with a `by-day` index (the UTC day of placement, then the placement
//! time) that reports query day by day; and the two Lambda entries, the reports behind API
//! Gateway and the projector on the analytics stream.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use gocoffee_app::analytics::{AnalyticsContext, AnalyticsStore, FUNCTION, consume};
use gocoffee_app::ports::StoreResult;
use gocoffee_core::analytics::OrderFacts;

use crate::dynamo::{DELETE_BATCH, Item, delete_keys, doc, n, s, sdk, to_doc};
use crate::lambda::{Shell, block_on, http_with_extension, init, kinesis_with_extension};

/// The table's key and index, as the templates declare them.
pub mod keys {
    pub const ORDER_ID: &str = "order_id";
    /// `by-day`: partition `day` (`2026-11-26`), sort `placed_at` (ms).
    pub const BY_DAY: &str = "by-day";
    pub const DAY: &str = "day";
    pub const PLACED_AT: &str = "placed_at";
}

const DAY_MS: i64 = 86_400_000;
/// Keys one clearing step reads.
const CLEAR_PAGE: i32 = 500;

/// The UTC day of `ms`, `YYYY-MM-DD`.
fn day(ms: i64) -> String {
    gocoffee_app::http::rfc3339(ms.div_euclid(DAY_MS) * DAY_MS)[..10].to_owned()
}

/// [`AnalyticsStore`] on its own DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoAnalyticsStore {
    client: Client,
    table: String,
}

impl DynamoAnalyticsStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAnalyticsStore { client, table: table.into() }
    }

    fn item(facts: &OrderFacts) -> StoreResult<Item> {
        Ok(Item::from([
            (keys::ORDER_ID.into(), s(&facts.order_id)),
            (keys::DAY.into(), s(day(facts.placed_at_ms))),
            (keys::PLACED_AT.into(), n(facts.placed_at_ms)),
            ("version".into(), n(facts.version)),
            ("doc".into(), to_doc(facts)?),
        ]))
    }
}

#[async_trait(?Send)]
impl AnalyticsStore for DynamoAnalyticsStore {
    async fn facts(&self, order_id: &str) -> StoreResult<Option<OrderFacts>> {
        let out = self.client.get_item().table_name(&self.table).key(keys::ORDER_ID, s(order_id)).consistent_read(true).send().await.map_err(sdk)?;
        out.item.as_ref().map(doc).transpose()
    }

    async fn save(&self, facts: &OrderFacts) -> StoreResult<bool> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(facts)?))
            .condition_expression("attribute_not_exists(order_id) OR version <= :version")
            .expression_attribute_values(":version", n(facts.version));
        match put.send().await {
            Ok(_) => Ok(true),
            // Held at a later version already: a concurrent fold got there first.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn placed_between(&self, from_ms: i64, to_ms: i64, limit: usize) -> StoreResult<Vec<OrderFacts>> {
        let mut facts = Vec::new();
        let mut start_of_day = from_ms.div_euclid(DAY_MS) * DAY_MS;
        while start_of_day < to_ms && facts.len() < limit {
            let mut page_start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(keys::BY_DAY)
                    .key_condition_expression("#day = :day AND placed_at BETWEEN :from AND :to")
                    .expression_attribute_names("#day", keys::DAY)
                    .expression_attribute_values(":day", s(day(start_of_day)))
                    .expression_attribute_values(":from", n(from_ms))
                    // BETWEEN is inclusive; `to` is not.
                    .expression_attribute_values(":to", n(to_ms - 1))
                    .limit((limit - facts.len()).clamp(1, 1000) as i32)
                    .set_exclusive_start_key(page_start.take())
                    .send()
                    .await
                    .map_err(sdk)?;
                for item in out.items() {
                    facts.push(doc::<OrderFacts>(item)?);
                }
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() && facts.len() < limit => page_start = Some(k),
                    _ => break,
                }
            }
            start_of_day += DAY_MS;
        }
        facts.truncate(limit);
        Ok(facts)
    }

    /// One Scan page of keys (at most [`CLEAR_PAGE`]), deleted 25 at a time. The next call's
    /// Scan starts over: what this one deleted is gone from it.
    async fn clear_batch(&self) -> StoreResult<bool> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression(keys::ORDER_ID)
            .consistent_read(true)
            .limit(CLEAR_PAGE)
            .send()
            .await
            .map_err(sdk)?;
        let ids: Vec<Item> =
            out.items().iter().filter_map(|i| i.get(keys::ORDER_ID).cloned()).map(|id: AttributeValue| Item::from([(keys::ORDER_ID.to_owned(), id)])).collect();
        for chunk in ids.chunks(DELETE_BATCH) {
            delete_keys(&self.client, &self.table, chunk.to_vec()).await?;
        }
        Ok(ids.is_empty() && out.last_evaluated_key.is_none_or(|k| k.is_empty()))
    }
}

/// The shell and the analytics context from the function's environment (`ANALYTICS_TABLE`
/// besides what every function reads).
fn start(function: &'static str) -> Result<(Shell, AnalyticsContext), lambda_runtime::Error> {
    let shell = init(function)?;
    let table = std::env::var("ANALYTICS_TABLE").ok().filter(|t| !t.is_empty()).ok_or("ANALYTICS_TABLE is not set")?;
    let store = DynamoAnalyticsStore::new(shell.store().client().clone(), table);
    Ok((shell, AnalyticsContext { store: Box::new(store) }))
}

/// `main` of the analytics function: the reports behind API Gateway.
pub fn http() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, ac) = &start(FUNCTION.name)?;
        http_with_extension(shell, &FUNCTION, ac).await
    })
}

/// `main` of the analytics projector: Kinesis batches from the analytics stream, with the order
/// consumer's ordering, retry and dead-letter rules.
pub fn consumer() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, ac) = &start(gocoffee_app::analytics::ANALYTICS_CONSUMER)?;
        kinesis_with_extension(shell, ac, consume).await
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_utc() {
        assert_eq!(super::day(0), "1970-01-01");
        assert_eq!(super::day(1_764_115_199_999), "2025-11-25");
        assert_eq!(super::day(1_764_115_200_000), "2025-11-26");
    }
}
