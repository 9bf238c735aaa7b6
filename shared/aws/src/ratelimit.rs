//! The gateway's rate limits on the table: one item per client key (`RATE#{key}`, TABLE.md)
//! holding its GCRA arrival time `tat`, changed only by conditional updates, so racing Lambda
//! instances never admit more than the limit between them. DynamoDB's TTL removes idle keys.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use gocoffee_app::ports::{Admission, RateLimit, RateLimiter, StoreError, StoreResult};

use crate::dynamo::{DynamoStore, Item, get_n, key, keys, n, sdk};

/// The partition-key prefix of rate-limit items (the functions' roles may update only these).
pub const PREFIX: &str = "RATE#";

/// How an update went: done, or its condition failed (with the item as it was, if DynamoDB said).
enum Update {
    Done,
    Failed(Option<Item>),
}

impl DynamoStore {
    async fn update_tat(&self, item_key: &Item, set: &str, condition: &str, values: &[(&str, i64)]) -> StoreResult<Update> {
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key.clone()))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#ttl", keys::TTL)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            update = update.expression_attribute_values(*name, n(value));
        }
        match update.send().await {
            Ok(_) => Ok(Update::Done),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(Update::Failed(failed.item().cloned())),
                _ => Err(sdk(e)),
            },
        }
    }
}

#[async_trait(?Send)]
impl RateLimiter for DynamoStore {
    /// GCRA in at most two conditional updates. An idle or new key (its `tat` passed) starts
    /// again from now; a busy one moves on by one interval if it stays within the tolerance.
    /// Each condition is the other's complement on `tat >= now`, so one of them decides unless
    /// the key changed in between, and then the two are tried again.
    ///
    /// An update the SDK retries after its answer was lost may count one request twice: the
    /// error is on the side of refusing, never of admitting more than the limit.
    async fn admit(&self, client_key: &str, limit: &RateLimit, now_ms: i64) -> StoreResult<Admission> {
        let item_key = key(format!("{PREFIX}{client_key}"), "RATE");
        // Kept a minute past the last moment the key could still matter.
        let expires = (now_ms + limit.horizon_ms()) / 1000 + 60;
        let fresh = [(":fresh", now_ms + limit.interval_ms()), (":now", now_ms), (":exp", expires)];
        let busy = [(":interval", limit.interval_ms()), (":now", now_ms), (":latest", now_ms + limit.tolerance_ms()), (":exp", expires)];
        for _ in 0..3 {
            let idle = "attribute_not_exists(tat) OR tat < :now";
            if let Update::Done = self.update_tat(&item_key, "SET tat = :fresh, #ttl = :exp", idle, &fresh).await? {
                return Ok(Admission::Admitted);
            }
            let within = "tat >= :now AND tat <= :latest";
            let old = match self.update_tat(&item_key, "SET tat = tat + :interval, #ttl = :exp", within, &busy).await? {
                Update::Done => return Ok(Admission::Admitted),
                Update::Failed(Some(old)) => Some(old),
                Update::Failed(None) => self.get(item_key.clone()).await?,
            };
            match old.as_ref().map(|item| get_n(item, "tat")).transpose()? {
                Some(tat) if tat >= now_ms => return Ok(Admission::Refused { retry_after_ms: limit.step(Some(tat), now_ms).err().unwrap_or(1) }),
                // It went idle or vanished (TTL) in between: decide again.
                _ => continue,
            }
        }
        Err(StoreError::Unavailable(format!("the rate limit of {client_key} kept changing under three attempts")))
    }
}
