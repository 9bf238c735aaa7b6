//! The orders stream on Kinesis: a batching publisher and the relay that moves the DynamoDB
//! outbox onto it.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use gocoffee_app::outbox::{LeasedOutbox, relay_leased};
use gocoffee_app::ports::{Clock, EventRelay, StoreError, StoreResult, SystemClock};

use crate::dynamo::{DynamoStore, Outbox, keys};

/// PutRecords takes at most 500 records per call.
const MAX_BATCH: usize = 500;
const ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// One record for the stream: its partition key (the order id, so one order's events stay on
/// one shard, in order) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Publishes records with PutRecords, retrying throttled and failed records with exponential
/// backoff; with a copy stream, on both at once.
#[derive(Clone, Debug)]
pub struct KinesisPublisher {
    client: Client,
    /// A stream ARN (`arn:...`) or name.
    stream: String,
    /// A second stream every record also goes to (the orders stream's copy on the analytics one).
    copy: Option<String>,
}

impl KinesisPublisher {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        KinesisPublisher { client, stream: stream.into(), copy: None }
    }

    /// Every record also goes to `stream`: taken only when both streams took it.
    pub fn with_copy_to(mut self, stream: impl Into<String>) -> Self {
        self.copy = Some(stream.into());
        self
    }

    /// Publishes `records`; returns which of them the stream (and the copy stream) took, in the
    /// order given. A record that still fails after the retries is `false`, for the caller to
    /// keep and publish again (on both: consumers are idempotent).
    pub async fn publish(&self, records: &[Record]) -> Vec<bool> {
        match &self.copy {
            None => self.put(&self.stream, records).await,
            Some(copy) => {
                let (main, copied) = tokio::join!(self.put(&self.stream, records), self.put(copy, records));
                main.into_iter().zip(copied).map(|(a, b)| a && b).collect()
            }
        }
    }

    async fn put(&self, stream: &str, records: &[Record]) -> Vec<bool> {
        let mut accepted = vec![false; records.len()];
        for chunk_start in (0..records.len()).step_by(MAX_BATCH) {
            let chunk_end = (chunk_start + MAX_BATCH).min(records.len());
            let mut pending: Vec<usize> = (chunk_start..chunk_end).collect();
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(BACKOFF_BASE * 2u32.pow(attempt - 1)).await;
                }
                let entries: Vec<PutRecordsRequestEntry> = pending
                    .iter()
                    .map(|&i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(&records[i].partition_key)
                            .data(Blob::new(records[i].data.clone()))
                            .build()
                            .expect("partition key and data are set")
                    })
                    .collect();
                let mut request = self.client.put_records().set_records(Some(entries));
                request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
                match request.send().await {
                    Ok(out) => {
                        let results = out.records();
                        let mut still: Vec<usize> = Vec::new();
                        for (k, &i) in pending.iter().enumerate() {
                            match results.get(k) {
                                Some(r) if r.error_code().is_none() => accepted[i] = true,
                                Some(r) => {
                                    tracing::debug!(code = ?r.error_code(), "stream record not taken; retrying");
                                    still.push(i)
                                }
                                None => still.push(i),
                            }
                        }
                        pending = still;
                    }
                    // Throttling and service faults are worth another try; anything else is too.
                    Err(e) => tracing::warn!(error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), attempt, "PutRecords failed"),
                }
                if pending.is_empty() {
                    break;
                }
            }
        }
        accepted
    }
}

/// Moves pending outbox entries from the table to the stream, then removes them. An entry whose
/// publish failed stays for the next relay; a crash between publish and removal publishes it
/// again (consumers are idempotent). One relay at a time holds the lease (a conditional put with
/// an expiry; see [`gocoffee_app::outbox`]), so each entry goes out once, and each order's entries
/// in version order.
pub struct DynamoOutboxRelay<'a> {
    pub store: &'a DynamoStore,
    pub outbox: Outbox,
    pub publisher: &'a KinesisPublisher,
}

/// Batches per lease, so one request never spends long draining a backlog.
const RELAY_ROUNDS: usize = 4;
/// Longer than any function's timeout (10 s in the template, 30 s at most for an API Gateway
/// integration), so a lease outlives its holder only when the holder died, and then not by much.
const LEASE_MS: i64 = 30 * 1000;

#[async_trait(?Send)]
impl LeasedOutbox for DynamoOutboxRelay<'_> {
    async fn is_empty(&self) -> StoreResult<bool> {
        Ok(self.store.outbox(self.outbox, 1).await?.is_empty())
    }

    async fn lease(&self, holder: &str) -> StoreResult<bool> {
        let now = SystemClock.now_ms();
        self.store.lease_outbox(self.outbox, holder, now, now + LEASE_MS).await
    }

    async fn release(&self, holder: &str) -> StoreResult<()> {
        self.store.release_outbox(self.outbox, holder).await
    }

    /// Each round publishes every order's lowest pending version: a later event of an order
    /// never goes out in the same batch as (and so possibly ahead of) an earlier one.
    async fn publish_pending(&self, holder: &str) -> StoreResult<usize> {
        let mut sent = 0;
        for round in 0..RELAY_ROUNDS {
            if round > 0 && !self.lease(holder).await? {
                break;
            }
            let pending = self.store.outbox(self.outbox, MAX_BATCH as i32).await?;
            if pending.is_empty() {
                break;
            }
            let mut batch: Vec<(String, Record, u64)> = Vec::new();
            for item in &pending {
                let (Some(sk), Some(order), Some(doc), Some(version)) = (
                    item.get(keys::SK).and_then(|v| v.as_s().ok()),
                    item.get("order_id").and_then(|v| v.as_s().ok()),
                    item.get("doc").and_then(|v| v.as_s().ok()),
                    item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok()),
                ) else {
                    return Err(StoreError::Unavailable("an outbox entry is malformed".into()));
                };
                match batch.iter_mut().find(|(_, r, _)| r.partition_key == *order) {
                    Some(existing) if existing.2 <= version => {}
                    Some(existing) => *existing = (sk.clone(), Record { partition_key: order.clone(), data: doc.clone().into_bytes() }, version),
                    None => batch.push((sk.clone(), Record { partition_key: order.clone(), data: doc.clone().into_bytes() }, version)),
                }
            }
            let records: Vec<Record> = batch.iter().map(|(_, r, _)| r.clone()).collect();
            let accepted = self.publisher.publish(&records).await;
            let mut failed = false;
            for ((sk, _, _), ok) in batch.iter().zip(accepted) {
                if ok {
                    self.store.remove_from_outbox(self.outbox, sk).await?;
                    sent += 1;
                } else {
                    failed = true;
                }
            }
            if failed {
                return Err(StoreError::Unavailable("the stream did not take every event; the rest wait in the outbox".into()));
            }
        }
        Ok(sent)
    }
}

#[async_trait(?Send)]
impl EventRelay for DynamoOutboxRelay<'_> {
    async fn relay(&self) -> StoreResult<usize> {
        relay_leased(self).await
    }
}
