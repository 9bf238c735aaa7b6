//! OpenTelemetry spans of a Lambda's invocations: a server span per API Gateway request (handed
//! to the app as `traceparent`) and a consumer span per stream or queue record (continuing the
//! trace the record's event carries). Exported over OTLP/HTTP (JSON) to the collector the
//! environment names (`OTEL_EXPORTER_OTLP_ENDPOINT`: on AWS the ADOT collector layer's
//! `http://localhost:4318`, which sends them on to X-Ray), before the invocation returns: a
//! frozen container sends nothing. Off, and free, without the variable. The span model and the
//! POST are `gocoffee-otel`'s, shared with the host.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use gocoffee_otel::Collector;
pub use gocoffee_otel::{Span, SpanKind, start};
use serde_json::Value;

struct Exporter {
    collector: Collector,
    service: String,
    spans: Mutex<Vec<Value>>,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Reads the collector from the environment, once per container.
pub fn init(function: &str) {
    EXPORTER.get_or_init(|| {
        let collector = match Collector::from_lookup(|name| std::env::var(name).ok()) {
            Ok(collector) => collector?,
            Err(endpoint) => {
                tracing::warn!(endpoint, "traces are off: the OTLP endpoint must be a plain http:// URL (the collector layer's)");
                return None;
            }
        };
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| function.to_owned());
        Some(Exporter { collector, service, spans: Mutex::default() })
    });
}

fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get().and_then(Option::as_ref)
}

pub fn enabled() -> bool {
    exporter().is_some()
}

/// A record's span, started now: `system` is `aws_kinesis` or `aws_sqs`, `source` the
/// record's stream or queue ARN.
pub fn record(system: &'static str, source: &str, consumer: &str, payload: &[u8]) -> Span {
    let destination = source.rsplit([':', '/']).next().unwrap_or(source);
    gocoffee_otel::consume(system, destination, consumer, payload)
}

/// Ends `span` now; it is sent with the invocation's others by [`flush`].
pub fn finish(span: Span) {
    if let Some(exporter) = exporter() {
        exporter.spans.lock().unwrap_or_else(PoisonError::into_inner).push(span.end(gocoffee_otel::now_nanos()));
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
    let body = gocoffee_otel::otlp_export(&exporter.service, "gocoffee-lambda", spans).to_string();
    if let Err(e) = exporter.collector.post(body, Duration::from_secs(2)).await {
        tracing::warn!(error = %e, "exporting spans failed; they are dropped");
    }
}
