//! SQS: the kitchen's queue of placed orders, and the dead-letter queue the order consumer puts
//! poison stream records on.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use gocoffee_app::ports::{KitchenQueue, StoreError, StoreResult};
use gocoffee_core::StoredEvent;

/// Sends placed orders to the kitchen queue; the kitchen function consumes it.
#[derive(Clone, Debug)]
pub struct SqsKitchenQueue {
    client: Client,
    queue_url: String,
}

impl SqsKitchenQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsKitchenQueue { client, queue_url: queue_url.into() }
    }
}

#[async_trait(?Send)]
impl KitchenQueue for SqsKitchenQueue {
    async fn send(&self, placed: &StoredEvent) -> StoreResult<()> {
        let body = serde_json::to_string(placed).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        send(&self.client, &self.queue_url, body).await
    }
}

/// Where messages that can never be handled go, with why, for a person to look at and redrive.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsDeadLetters { client, queue_url: queue_url.into() }
    }

    pub async fn send(&self, body: &serde_json::Value) -> StoreResult<()> {
        send(&self.client, &self.queue_url, body.to_string()).await
    }
}

async fn send(client: &Client, queue_url: &str, body: String) -> StoreResult<()> {
    client
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| StoreError::Unavailable(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e))))?;
    Ok(())
}
