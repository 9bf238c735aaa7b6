//! The host's own metrics, through the `metrics` facade: every request by route, method and
//! status class with its latency, and every delivery of the message log by outcome with how long
//! the message waited; and the components' (orders placed, payment outcomes, consumer lag...),
//! read from the Embedded Metric Format lines they write on stdout. Rendered for Prometheus on `--metrics-listen` (`GET /metrics`); without
//! it no recorder is installed and recording costs next to nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::log::MessageLog;

const REQUESTS: &str = "gocoffee_http_requests_total";
const REQUEST_SECONDS: &str = "gocoffee_http_request_duration_seconds";
const DELIVERIES: &str = "gocoffee_deliveries_total";
const DELIVERY_LAG_SECONDS: &str = "gocoffee_delivery_lag_seconds";
const PENDING: &str = "gocoffee_deliveries_pending";
const DEAD_LETTERS: &str = "gocoffee_dead_letters";
const WEBSOCKETS: &str = "gocoffee_websocket_connections";

/// Methods as labels: anything else a client sends is `other`, so no client can grow the series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One answered request. `route` is the manifest's route pattern (bounded), never the path.
pub fn request(method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
    let (method, route) = (method_label(method), route.unwrap_or("none").to_owned());
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status_class(status)).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

/// How many WebSocket connections are open now.
pub fn websockets(open: usize) {
    metrics::gauge!(WEBSOCKETS).set(open as f64);
}

/// One delivery attempt: `delivered`, `retried` or `dead_lettered`, `waited_ms` after the
/// message was published.
pub fn delivery(subscriber: &str, channel: &str, outcome: &'static str, waited_ms: i64) {
    metrics::counter!(DELIVERIES, "subscriber" => subscriber.to_owned(), "channel" => channel.to_owned(), "outcome" => outcome).increment(1);
    metrics::histogram!(DELIVERY_LAG_SECONDS, "subscriber" => subscriber.to_owned()).record(waited_ms.max(0) as f64 / 1000.0);
}

/// The components' own metrics: one CloudWatch Embedded Metric Format document (`line`), as the
/// app writes on stdout at the end of an invocation, recorded as Prometheus series. `Count`
/// metrics are counters (`gocoffee_<name>_total`), time units histograms in seconds
/// (`gocoffee_<name>_seconds`), anything else a gauge (`gocoffee_<name>`); the document's
/// dimensions are the labels. False when `line` is not such a document.
pub fn record_emf(line: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice::<serde_json::Value>(line) else { return false };
    let Some(directives) = doc.get("_aws").and_then(|a| a.get("CloudWatchMetrics")).and_then(|d| d.as_array()) else { return false };
    for directive in directives {
        let dimensions = directive.get("Dimensions").and_then(|d| d.as_array()).and_then(|d| d.first()).and_then(|d| d.as_array());
        let labels: Vec<metrics::Label> = dimensions
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str())
            .filter_map(|name| Some(metrics::Label::new(name.to_owned(), doc.get(name)?.as_str()?.to_owned())))
            .collect();
        for metric in directive.get("Metrics").and_then(|m| m.as_array()).into_iter().flatten() {
            let Some(name) = metric.get("Name").and_then(|n| n.as_str()) else { continue };
            let values: Vec<f64> = match doc.get(name) {
                Some(serde_json::Value::Array(values)) => values.iter().filter_map(serde_json::Value::as_f64).collect(),
                Some(value) => value.as_f64().into_iter().collect(),
                None => continue,
            };
            let per_second = match metric.get("Unit").and_then(|u| u.as_str()) {
                Some("Count") => {
                    let total: f64 = values.iter().sum();
                    metrics::counter!(format!("gocoffee_{name}_total"), labels.clone()).increment(total.max(0.0) as u64);
                    continue;
                }
                Some("Seconds") => 1.0,
                Some("Milliseconds") => 1e-3,
                Some("Microseconds") => 1e-6,
                _ => {
                    if let Some(last) = values.last() {
                        metrics::gauge!(format!("gocoffee_{name}"), labels.clone()).set(*last);
                    }
                    continue;
                }
            };
            let histogram = metrics::histogram!(format!("gocoffee_{name}_seconds"), labels.clone());
            for value in values {
                histogram.record(value * per_second);
            }
        }
    }
    true
}

/// Installs the Prometheus recorder for this process.
pub fn install() -> Result<PrometheusHandle> {
    const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    const LAG_BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), &BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DELIVERY_LAG_SECONDS.into()), &LAG_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("gocoffee_consumer_lag_seconds".into()), &LAG_BUCKETS)?
        // Any other histogram a component records is a latency.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Serves `GET /metrics` on `listener` until the process ends. The log's backlog and dead
/// letters are read at each scrape.
pub async fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle, log: Arc<MessageLog>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (handle, log) = (handle.clone(), log.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (handle, log) = (handle.clone(), log.clone());
                async move {
                    if req.uri().path() == "/metrics" && req.method() == hyper::Method::GET {
                        let counts = tokio::task::spawn_blocking(move || (log.pending(), log.dead_letter_count())).await;
                        if let Ok((Ok(pending), Ok(dead))) = counts {
                            metrics::gauge!(PENDING).set(pending as f64);
                            metrics::gauge!(DEAD_LETTERS).set(dead as f64);
                        }
                        handle.run_upkeep();
                        hyper::Response::builder().header("content-type", "text/plain; version=0.0.4").body(Full::new(Bytes::from(handle.render())))
                    } else {
                        hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"only GET /metrics here\n")))
                    }
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener {addr}"))
}
