//! The payment service as Spin components: the HTTP routes, the consumer of the orders channel,
//! and the watcher on a cron trigger. Each invocation opens what it needs (Spin keeps no warm
//! state), and RPC calls go out through Spin's outbound HTTP with real timeouts.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;
use std::time::Duration;

use alloy_transport::BoxFuture;
use gocoffee_app::consumer::ConsumerError;
use gocoffee_app::{ApiError, Request, Response};
use gocoffee_spin::{variable, with_services};
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

use crate::config::PaymentConfig;
use crate::routes::{FUNCTION, PaymentContext, consume_order_event, reconcile_pass, relay_logged, stuck_after_ms, watch_chains};
use crate::rpc::{HttpPost, MAX_RESPONSE_BYTES, PostError};
use crate::sql::SqlIntentStore;

/// JSON-RPC over `wasi:http/outgoing-handler` with connect, first-byte and between-bytes
/// timeouts (spin-sdk's `send` sets none). Blocking: a component serves one invocation.
pub struct SpinHttpPost;

fn post(url: &str, body: &[u8], timeout: Duration) -> Result<Vec<u8>, PostError> {
    let io = |what: &str| PostError::Io(what.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| io("bad RPC URL"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => return Err(io("RPC URLs are http or https")),
    };
    let headers = Fields::from_list(&[("content-type".to_owned(), b"application/json".to_vec())]).map_err(|_| io("headers"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|_| io("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|_| io("scheme"))?;
    request.set_authority(uri.authority().map(|a| a.as_str())).map_err(|_| io("authority"))?;
    request.set_path_with_query(Some(uri.path_and_query().map_or("/", |p| p.as_str()))).map_err(|_| io("path"))?;
    let outgoing = request.body().map_err(|_| io("body"))?;
    let options = RequestOptions::new();
    let ns = Some(timeout.as_nanos() as u64);
    // A host that doesn't support an option keeps its own limit; that is not an error.
    let _ = options.set_connect_timeout(ns);
    let _ = options.set_first_byte_timeout(ns);
    let _ = options.set_between_bytes_timeout(ns);
    let future = wasi::http::outgoing_handler::handle(request, Some(options)).map_err(|e| error(&e))?;
    {
        let stream = outgoing.write().map_err(|_| io("body stream"))?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| PostError::Io(format!("sending: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| error(&e))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(error(&e)),
        _ => return Err(io("no response")),
    };
    let status = response.status();
    if !(200..300).contains(&status) {
        return Err(PostError::Status(status));
    }
    let incoming = response.consume().map_err(|_| io("response body"))?;
    let stream = incoming.stream().map_err(|_| io("response stream"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(PostError::Io(format!("reading: {e:?}"))),
        }
        if out.len() > MAX_RESPONSE_BYTES {
            return Err(io("the response is too large"));
        }
    }
    Ok(out)
}

fn error(e: &ErrorCode) -> PostError {
    match e {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout => PostError::Timeout,
        other => PostError::Io(format!("{other:?}")),
    }
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
pub async fn serve(req: Request) -> Response {
    match context() {
        Ok(pc) => gocoffee_spin::serve_with(&FUNCTION, Some(&pc), req).await,
        Err(cause) => {
            tracing::error!(%cause, "payments unavailable");
            ApiError::unavailable().into_response()
        }
    }
}

/// The whole body of the payments consumer (the orders channel).
pub async fn consume(payload: &[u8]) -> anyhow::Result<()> {
    let pc = context().map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?;
    with_services(None, Some(&pc), async |svc| {
        consume_order_event(&pc, svc, payload).await?;
        relay_logged(svc).await;
        Ok::<_, ConsumerError>(())
    })
    .await
    .map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?
    .map_err(anyhow::Error::from)
}

/// One reconciler pass (the cron trigger); see [`reconcile_pass`].
pub async fn reconcile() -> Result<(), String> {
    let pc = context()?;
    let after = stuck_after_ms(variable)?;
    with_services(None, Some(&pc), async |svc| reconcile_pass(&pc, svc, after).await.map(|_| ())).await?
}

/// One watcher pass (the cron trigger); see [`watch_chains`].
pub async fn watch() -> Result<(), String> {
    let pc = context()?;
    with_services(None, Some(&pc), async |svc| watch_chains(&pc, svc).await.map(|_| ())).await?
}
