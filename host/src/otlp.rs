//! Traces of the host's own work, as Spin makes them: a server span per HTTP request and a
//! consumer span per delivery, exported over OTLP/HTTP in its JSON encoding when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the variables
//! Spin honours. A request's span is handed to its component as `traceparent`, so what the
//! component does and the events it makes are in the caller's trace; a delivery's span continues
//! the trace its message carries.
//!
//! Written here rather than with the `opentelemetry` crates: the host makes two kinds of span
//! and has one exporter, OTLP/JSON is a small documented encoding, and the SDK with its exporter
//! would add their dependency trees to a build with a time budget. Plain `http://` collectors
//! only (an OpenTelemetry Collector beside the host); spans are batched, and dropped rather than
//! queued without bound while the collector is away.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use gocoffee_core::trace::{Span, SpanKind};
use serde_json::Value;
use tokio::sync::mpsc;

/// Spans waiting for the exporter; past this, new ones are dropped.
const QUEUE: usize = 4096;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_secs(1);

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn random() -> u128 {
    let mut bytes = [0u8; 16];
    // Without entropy, ids still differ by time; a collision only merges two traces.
    if getrandom::fill(&mut bytes).is_err() {
        return now_nanos();
    }
    u128::from_be_bytes(bytes)
}

/// A span of the host's, started now.
pub fn start(name: String, kind: SpanKind, parent: Option<&str>) -> Span {
    Span::start(name, kind, parent, now_nanos(), random())
}

/// A delivery's span, started now.
pub fn delivery(subscriber: &str, channel: &str, payload: &[u8]) -> Span {
    Span::consume("gocoffee-host", channel, subscriber, payload, now_nanos(), random())
}

/// Where finished spans go: a channel to the exporter, or nowhere when tracing is off.
#[derive(Clone, Default)]
pub struct Tracer(Option<mpsc::Sender<Value>>);

static TRACER: std::sync::OnceLock<Tracer> = std::sync::OnceLock::new();

/// Starts the exporter if the environment names a collector (on the current runtime).
pub fn init() {
    let _ = TRACER.set(Tracer::from_env());
}

/// The process's tracer (off until [`init`]).
pub fn tracer() -> &'static Tracer {
    TRACER.get_or_init(Tracer::default)
}

impl Tracer {
    fn from_env() -> Tracer {
        let Some(endpoint) = gocoffee_core::trace::otlp_traces_endpoint(|name| std::env::var(name).ok()) else { return Tracer(None) };
        let Some(target) = Target::parse(&endpoint) else {
            tracing::warn!(endpoint, "traces are off: the OTLP endpoint must be a plain http:// URL");
            return Tracer(None);
        };
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "gocoffee-host".into());
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(target, service, rx));
        tracing::info!(endpoint, "exporting traces over OTLP");
        Tracer(Some(tx))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Ends `span` now and hands it to the exporter.
    pub fn finish(&self, span: Span) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(span.end(now_nanos()));
        }
    }
}

/// A plain-HTTP collector endpoint.
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
        (!authority.is_empty()).then(|| Target { authority: authority.to_owned(), path })
    }
}

/// Sends batches of spans (up to `BATCH`, or what a second gathers) until the host exits.
async fn export(target: Target, service: String, mut rx: mpsc::Receiver<Value>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                _ => break,
            }
        }
        let body = gocoffee_core::trace::otlp_export(&service, "gocoffee-host", std::mem::take(&mut batch));
        if let Err(e) = post(&target, body.to_string()).await {
            tracing::warn!(error = %e, "exporting spans failed; this batch is dropped");
        }
    }
}

async fn post(target: &Target, body: String) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(&target.authority);
    let stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "connecting timed out".to_owned())?
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| "the collector did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() { Ok(()) } else { Err(format!("the collector answered {}", response.status())) }
}
