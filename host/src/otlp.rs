//! Traces of the host's own work, as Spin makes them: a server span per HTTP request and a
//! consumer span per delivery, exported over OTLP/HTTP in its JSON encoding when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the variables
//! Spin honours. A request's span is handed to its component as `traceparent`, so what the
//! component does and the events it makes are in the caller's trace; a delivery's span continues
//! the trace its message carries.
//!
//! Spans are batched, and dropped rather than queued without bound while the collector is away
//! (`gocoffee-otel` has the span model and the one POST, shared with the Lambda shell).

use std::time::Duration;

use gocoffee_otel::{Collector, now_nanos};
pub use gocoffee_otel::{Span, SpanKind, start};
use serde_json::Value;
use tokio::sync::mpsc;

/// Spans waiting for the exporter; past this, new ones are dropped.
const QUEUE: usize = 4096;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_secs(1);

/// A delivery's span, started now.
pub fn delivery(subscriber: &str, channel: &str, payload: &[u8]) -> Span {
    gocoffee_otel::consume("gocoffee-host", channel, subscriber, payload)
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
        let target = match Collector::from_lookup(|name| std::env::var(name).ok()) {
            Ok(Some(target)) => target,
            Ok(None) => return Tracer(None),
            Err(endpoint) => {
                tracing::warn!(endpoint, "traces are off: the OTLP endpoint must be a plain http:// URL");
                return Tracer(None);
            }
        };
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "gocoffee-host".into());
        let (tx, rx) = mpsc::channel(QUEUE);
        tracing::info!(collector = ?target, "exporting traces over OTLP");
        tokio::spawn(export(target, service, rx));
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

/// Sends batches of spans (up to `BATCH`, or what a second gathers) until the host exits.
async fn export(target: Collector, service: String, mut rx: mpsc::Receiver<Value>) {
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
        let body = gocoffee_otel::otlp_export(&service, "gocoffee-host", std::mem::take(&mut batch));
        if let Err(e) = target.post(body.to_string(), Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "exporting spans failed; this batch is dropped");
        }
    }
}
