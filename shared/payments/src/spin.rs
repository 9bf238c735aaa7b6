//! The payment service as Spin components: the HTTP routes, the consumer of the orders channel,
//! and the watcher on a cron trigger. Each invocation opens what it needs (Spin keeps no warm
//! state), and RPC calls go out through Spin's outbound HTTP with real timeouts.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;
use std::time::Duration;

use alloy_transport::BoxFuture;
use gocoffee_app::consumer::ConsumerError;
use gocoffee_app::{ApiError, Request, Response};
use gocoffee_spin::{Entry, variable, with_services};

use crate::config::PaymentConfig;
use crate::routes::{FUNCTION, PaymentContext, consume_order_event, reconcile_pass, relay_logged, stuck_after_ms, watch_chains};
use crate::rpc::{HttpPost, MAX_RESPONSE_BYTES, PostError};
use crate::sql::SqlIntentStore;

/// JSON-RPC through [`gocoffee_spin::outbound::post_json`].
pub struct SpinHttpPost;

fn post(url: &str, body: &[u8], timeout: Duration) -> Result<Vec<u8>, PostError> {
    use gocoffee_spin::outbound::{PostFailure, post_json};
    let posted = post_json(url, body, timeout, MAX_RESPONSE_BYTES).map_err(|e| match e {
        PostFailure::Timeout => PostError::Timeout,
        PostFailure::Io(why) => PostError::Io(why),
    })?;
    if !(200..300).contains(&posted.status) {
        return Err(PostError::Status(posted.status));
    }
    Ok(posted.body)
}

impl HttpPost for SpinHttpPost {
    fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> BoxFuture<'static, Result<Vec<u8>, PostError>> {
        let result = post(url, &body, timeout);
        Box::pin(async move { result })
    }
}

/// The payment context of one invocation: its own connection to the `default` database.
fn context() -> Result<PaymentContext, String> {
    let config = PaymentConfig::from_lookup(variable).map_err(|e| format!("payment configuration: {e}"))?;
    let db = gocoffee_spin::open_db("default")?;
    let intents = SqlIntentStore::open(db).map_err(|e| format!("preparing the schema: {e}"))?;
    Ok(PaymentContext::new(config, Box::new(intents), Arc::new(SpinHttpPost)))
}

/// The whole body of the payments HTTP component.
pub fn serve(req: Request) -> Entry<'static, Response> {
    Box::pin(async move {
        match context() {
            Ok(pc) => gocoffee_spin::serve_with(&FUNCTION, Some(&pc), req).await,
            Err(cause) => {
                tracing::error!(%cause, "payments unavailable");
                ApiError::unavailable().into_response()
            }
        }
    })
}

/// The whole body of the payments consumer (the orders channel).
pub fn consume(payload: &[u8]) -> Entry<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let pc = context().map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?;
        with_services(None, Some(&pc), async |svc| {
            consume_order_event(&pc, svc, payload).await?;
            relay_logged(svc).await;
            Ok::<_, ConsumerError>(())
        })
        .await
        .map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?
        .map_err(anyhow::Error::from)
    })
}

/// The payment service's consumer, for components that run their events' subscribers in process
/// (`gocoffee_spin::delivery::run_in_process`, where there is no service chaining).
pub const IN_PROCESS_CONSUMERS: &[(&str, gocoffee_spin::delivery::Consumer)] = &[("payments-consumer", consume)];

/// One reconciler pass (the cron trigger); see [`reconcile_pass`].
pub fn reconcile() -> Entry<'static, Result<(), String>> {
    Box::pin(async move {
        let pc = context()?;
        let after = stuck_after_ms(variable)?;
        with_services(None, Some(&pc), async |svc| reconcile_pass(&pc, svc, after).await.map(|_| ())).await?
    })
}

/// One watcher pass (the cron trigger); see [`watch_chains`].
pub fn watch() -> Entry<'static, Result<(), String>> {
    Box::pin(async move {
        let pc = context()?;
        with_services(None, Some(&pc), async |svc| watch_chains(&pc, svc).await.map(|_| ())).await?
    })
}
