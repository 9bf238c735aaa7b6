//! Spans of the platform shells (the local host, the Lambda shell) for OpenTelemetry, and their
//! export over OTLP/HTTP in its JSON encoding: the span model, the encoding, where the collector
//! is (OpenTelemetry's variables) and the one POST that sends a batch. Native only.
//!
//! Written here rather than with the `opentelemetry` crates: the shells make two kinds of span
//! (a server span per request, a consumer span per message) and send them one way, OTLP/JSON is
//! a small documented encoding, and the SDK with its exporter would add their dependency trees to
//! every Lambda bootstrap and to a build with a time budget. Plain `http://` collectors only: the
//! ADOT collector layer on Lambda, an OpenTelemetry Collector beside the host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gocoffee_core::trace::TraceContext;

/// OTLP's `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Consumer = 5,
}

/// A span of work done by a platform shell (the local host, a Lambda invocation), for export
/// over OTLP: made at the start, ended and encoded at the end.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: TraceContext,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u128,
    pub attributes: Vec<(&'static str, serde_json::Value)>,
    pub error: bool,
}

impl Span {
    /// A span started at `now_unix_nanos`: a child of `parent` (a `traceparent`) when it is
    /// valid, else the root of a new trace; ids from `random`.
    pub fn start(name: String, kind: SpanKind, parent: Option<&str>, now_unix_nanos: u128, random: u128) -> Span {
        let parent = parent.and_then(TraceContext::parse);
        let context = match parent {
            Some(p) => p.child(random as u64),
            None => TraceContext::root((now_unix_nanos / 1_000_000) as i64, random),
        };
        Span { context, parent: parent.map(|p| p.span_id), name, kind, start_unix_nanos: now_unix_nanos, attributes: Vec::new(), error: false }
    }

    /// A consumer's span for one message: a child of the trace its JSON `payload` carries (a
    /// `traceparent` member, as the CloudEvents tracing attribute), if it carries one.
    pub fn consume(system: &'static str, destination: &str, consumer: &str, payload: &[u8], now_unix_nanos: u128, random: u128) -> Span {
        #[derive(serde::Deserialize)]
        struct Carrier<'a> {
            #[serde(borrow, default)]
            traceparent: Option<&'a str>,
        }
        let parent = serde_json::from_slice::<Carrier<'_>>(payload).ok().and_then(|c| c.traceparent);
        let mut span = Span::start(format!("process {destination}"), SpanKind::Consumer, parent, now_unix_nanos, random);
        span.attribute("messaging.system", system);
        span.attribute("messaging.operation.type", "process");
        span.attribute("messaging.destination.name", destination.to_owned());
        span.attribute("messaging.consumer.group.name", consumer.to_owned());
        span
    }

    pub fn attribute(&mut self, key: &'static str, value: impl Into<serde_json::Value>) {
        self.attributes.push((key, value.into()));
    }

    /// Ends the span at `end_unix_nanos`, as an OTLP/JSON span.
    pub fn end(&self, end_unix_nanos: u128) -> serde_json::Value {
        use serde_json::{Value, json};
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
                    Value::Number(n) => json!({ "doubleValue": n }),
                    Value::Bool(b) => json!({ "boolValue": b }),
                    Value::String(s) => json!({ "stringValue": s }),
                    other => json!({ "stringValue": other.to_string() }),
                };
                json!({ "key": key, "value": value })
            })
            .collect();
        let mut span = json!({
            "traceId": self.context.trace_id_hex(),
            "spanId": self.context.span_id_hex(),
            "name": self.name,
            "kind": self.kind as u8,
            "startTimeUnixNano": self.start_unix_nanos.to_string(),
            "endTimeUnixNano": end_unix_nanos.max(self.start_unix_nanos).to_string(),
            "attributes": attributes,
            // OTLP's status codes: unset, or error.
            "status": { "code": if self.error { 2 } else { 0 } },
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = json!(parent.iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
        span
    }
}

/// An OTLP `ExportTraceServiceRequest` (JSON encoding) of `spans` made by `service`.
pub fn otlp_export(service: &str, scope: &str, spans: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "resourceSpans": [{
        "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] },
        "scopeSpans": [{ "scope": { "name": scope }, "spans": spans }],
    }]})
}

/// Where a shell sends its spans: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces` (OpenTelemetry's variables); `None` when
/// neither is set.
pub fn otlp_traces_endpoint(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim_end_matches('/'))))
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// 128 random bits for trace and span ids (without entropy, the time: a collision only merges
/// two traces).
pub fn random() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        return now_nanos();
    }
    u128::from_be_bytes(bytes)
}

/// A span started now.
pub fn start(name: String, kind: SpanKind, parent: Option<&str>) -> Span {
    Span::start(name, kind, parent, now_nanos(), random())
}

/// A consumer's span for one message, started now.
pub fn consume(system: &'static str, destination: &str, consumer: &str, payload: &[u8]) -> Span {
    Span::consume(system, destination, consumer, payload, now_nanos(), random())
}

/// A plain-HTTP OTLP traces endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    authority: String,
    path: String,
}

impl Collector {
    /// The collector the environment names ([`otlp_traces_endpoint`]): `Ok(None)` when none is,
    /// `Err` with the endpoint when it is not a plain `http://` URL.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Collector>, String> {
        let Some(endpoint) = otlp_traces_endpoint(lookup) else { return Ok(None) };
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| endpoint.clone())?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(endpoint);
        }
        Ok(Some(Collector { authority: authority.to_owned(), path: if path.is_empty() { "/".into() } else { path.to_owned() } }))
    }

    /// Sends one export request (see [`otlp_export`]), waiting at most `timeout` to connect and
    /// as long again for the answer.
    pub async fn post(&self, body: String, timeout: Duration) -> Result<(), String> {
        let connect = tokio::net::TcpStream::connect(&self.authority);
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(timeout, sender.send_request(request))
            .await
            .map_err(|_| "the collector did not answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        if response.status().is_success() { Ok(()) } else { Err(format!("the collector answered {}", response.status())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_opentelemetrys_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(Collector::from_lookup(env(&[])), Ok(None));
        assert_eq!(Collector::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])), Ok(None));
        let c = Collector::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318/")])).expect("valid").expect("set");
        assert_eq!((c.authority.as_str(), c.path.as_str()), ("localhost:4318", "/v1/traces"));
        let c = Collector::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/t")]))
            .expect("valid")
            .expect("set");
        assert_eq!((c.authority.as_str(), c.path.as_str()), ("b:2", "/t"), "the traces endpoint is used as is");
        assert!(Collector::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")])).is_err());
    }

    #[test]
    fn spans_encode_as_otlp_json_in_their_parents_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let payload = format!(r#"{{"event_id":"e1","traceparent":"{parent}"}}"#);
        let mut span = Span::consume("aws_sqs", "kitchen", "kitchen", payload.as_bytes(), 1_000, 42);
        span.attribute("messaging.message.id", "m-1");
        span.attribute("retries", 2);
        span.error = true;
        let json = span.end(2_500);
        assert_eq!(json["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(json["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(json["spanId"], "000000000000002a");
        assert_eq!((json["kind"].clone(), json["name"].clone()), (serde_json::json!(5), serde_json::json!("process kitchen")));
        assert_eq!((json["startTimeUnixNano"].as_str(), json["endTimeUnixNano"].as_str()), (Some("1000"), Some("2500")));
        assert_eq!(json["status"]["code"], 2);
        let attributes = json["attributes"].as_array().expect("attributes");
        assert!(attributes.contains(&serde_json::json!({"key": "retries", "value": {"intValue": "2"}})));
        assert!(attributes.contains(&serde_json::json!({"key": "messaging.destination.name", "value": {"stringValue": "kitchen"}})));
        let root = Span::consume("aws_sqs", "kitchen", "kitchen", b"not json", 1_000, 42).end(1_000);
        assert!(root.get("parentSpanId").is_none(), "a message without a trace starts one");
        let export = otlp_export("orders", "gocoffee-lambda", vec![json]);
        assert_eq!(export["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "orders");
    }
}
