//! OpenTelemetry spans of a Lambda's invocations: a server span per API Gateway request (handed
//! to the app as `traceparent`) and a consumer span per stream or queue record (continuing the
//! trace the record's event carries). Exported over OTLP/HTTP (JSON) to the collector the
//! environment names (`OTEL_EXPORTER_OTLP_ENDPOINT`: on AWS the ADOT collector layer's
//! `http://localhost:4318`, which sends them on to X-Ray), before the invocation returns: a
//! frozen container sends nothing. Off, and free, without the variable. Hand-written for the
//! reasons the host's is (`host/src/otlp.rs`): two kinds of span and a small documented
//! encoding, without the SDK's dependency tree in every bootstrap.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use gocoffee_core::trace::{Span, SpanKind};
use serde_json::Value;

struct Exporter {
    authority: String,
    path: String,
    service: String,
    spans: Mutex<Vec<Value>>,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Reads the collector from the environment, once per container.
pub fn init(function: &str) {
    EXPORTER.get_or_init(|| {
        let endpoint = gocoffee_core::trace::otlp_traces_endpoint(|name| std::env::var(name).ok())?;
        let Some((authority, path)) = endpoint.strip_prefix("http://").map(|rest| rest.split_at(rest.find('/').unwrap_or(rest.len()))) else {
            tracing::warn!(endpoint, "traces are off: the OTLP endpoint must be a plain http:// URL (the collector layer's)");
            return None;
        };
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| function.to_owned());
        Some(Exporter { authority: authority.to_owned(), path: if path.is_empty() { "/".into() } else { path.to_owned() }, service, spans: Mutex::default() })
    });
}

fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get().and_then(Option::as_ref)
}

pub fn enabled() -> bool {
    exporter().is_some()
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn random() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        return now_nanos();
    }
    u128::from_be_bytes(bytes)
}

/// A span of this invocation, started now.
pub fn start(name: String, kind: SpanKind, parent: Option<&str>) -> Span {
    Span::start(name, kind, parent, now_nanos(), random())
}

/// A record's span, started now: `system` is `aws_kinesis` or `aws_sqs`, `source` the
/// record's stream or queue ARN.
pub fn record(system: &'static str, source: &str, consumer: &str, payload: &[u8]) -> Span {
    let destination = source.rsplit([':', '/']).next().unwrap_or(source);
    Span::consume(system, destination, consumer, payload, now_nanos(), random())
}

/// Ends `span` now; it is sent with the invocation's others by [`flush`].
pub fn finish(span: Span) {
    if let Some(exporter) = exporter() {
        exporter.spans.lock().unwrap_or_else(PoisonError::into_inner).push(span.end(now_nanos()));
    }
}

/// Sends this invocation's spans. A collector that is away costs the spans, never the
/// invocation: the failure is logged.
pub async fn flush() {
    let Some(exporter) = exporter() else { return };
    let spans = std::mem::take(&mut *exporter.spans.lock().unwrap_or_else(PoisonError::into_inner));
    if spans.is_empty() {
        return;
    }
    let body = gocoffee_core::trace::otlp_export(&exporter.service, "gocoffee-lambda", spans).to_string();
    if let Err(e) = post(exporter, body).await {
        tracing::warn!(error = %e, "exporting spans failed; they are dropped");
    }
}

async fn post(exporter: &Exporter, body: String) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(&exporter.authority);
    let stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .map_err(|_| "connecting timed out".to_owned())?
        .map_err(|e| format!("connecting to {}: {e}", exporter.authority))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post(&exporter.path)
        .header(hyper::header::HOST, &exporter.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(2), sender.send_request(request))
        .await
        .map_err(|_| "the collector did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() { Ok(()) } else { Err(format!("the collector answered {}", response.status())) }
}
