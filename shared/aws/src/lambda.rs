//! The Lambda shell: converts API Gateway HTTP API (v2) events, Kinesis batches and SQS batches
//! to app calls and back. Each function's `main` is one call: [`health`], [`http`] or
//! [`order_consumer`].

use std::any::Any;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gocoffee_app::auth::{ConfiguredKeys, PemSigner};
use gocoffee_app::consumer::{ConsumerError, handle_kitchen_ticket, handle_stream_message};
use gocoffee_app::ports::{EventRelay, Images, KitchenQueue, OsEntropy, StoreResult, SystemClock, TokenSigner};
use gocoffee_app::{ApiError, Config, Function, Request, Response, Services};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::dynamo::{AI_OUTBOX, ORDERS_OUTBOX, Outbox, PAYMENTS_OUTBOX};
use crate::tokens::{KmsKeys, KmsSigner};
use crate::{AwsEnvironment, Clients, DynamoOutboxRelay, DynamoStore, KinesisPublisher, S3Images, SqsDeadLetters, SqsKitchenQueue};

/// Structured logs on stdout for CloudWatch: JSON when the function's log format is JSON
/// (`AWS_LAMBDA_LOG_FORMAT`), at `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`, default info).
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_target(false).with_writer(std::io::stdout);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let _ = if json {
        tracing::subscriber::set_global_default(builder.json().flatten_event(true).with_span_list(false).finish())
    } else {
        // CloudWatch stamps every line already.
        tracing::subscriber::set_global_default(builder.without_time().finish())
    };
}

/// The function's metrics, recorded through the `metrics` facade by the app and this shell, as
/// CloudWatch Embedded Metric Format documents on stdout, flushed after every invocation (a
/// frozen container must not hold them). Each document names the function and the invocation.
static METRICS: std::sync::OnceLock<&'static metrics_cloudwatch_embedded::Collector> = std::sync::OnceLock::new();

fn init_metrics(function: &str) {
    match metrics_cloudwatch_embedded::Builder::new().cloudwatch_namespace(gocoffee_app::telemetry::NAMESPACE).init() {
        Ok(collector) => {
            collector.set_property("function", function.to_owned());
            let _ = METRICS.set(collector);
            gocoffee_app::telemetry::describe();
        }
        Err(e) => tracing::warn!(error = %e, "metrics are off: no recorder"),
    }
}

/// The end of an invocation: what it recorded goes out before Lambda may freeze the container
/// (metrics as EMF on stdout, spans to the collector).
pub async fn finish_invocation(context: &lambda_runtime::Context) {
    flush_metrics(context);
    crate::otlp::flush().await;
}

/// Writes what this invocation recorded, with its request and X-Ray trace ids.
fn flush_metrics(context: &lambda_runtime::Context) {
    if let Some(collector) = METRICS.get() {
        collector.set_property("RequestId", context.request_id.clone());
        match &context.xray_trace_id {
            Some(xray) => collector.set_property("xray_trace_id", xray.clone()),
            None => collector.remove_property("xray_trace_id"),
        };
        if let Err(e) = collector.flush(std::io::stdout().lock()) {
            tracing::warn!(error = %e, "writing the metrics failed");
        }
    }
}

/// Relays each outbox the function has a stream for (none for identity and menu, which never
/// queue events). Every one is tried; the first failure is reported.
struct Relays<'a>(Vec<DynamoOutboxRelay<'a>>);

#[async_trait::async_trait(?Send)]
impl EventRelay for Relays<'_> {
    async fn relay(&self) -> StoreResult<usize> {
        let mut sent = 0;
        let mut failure = None;
        for relay in &self.0 {
            match relay.relay().await {
                Ok(n) => sent += n,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(sent), Err)
    }
}

/// What a function keeps for the life of its container: config and clients.
pub struct Shell {
    /// The function's name, in the metrics.
    function: &'static str,
    config: Config,
    store: DynamoStore,
    /// The outboxes this function relays, each to its stream.
    streams: Vec<(Outbox, KinesisPublisher)>,
    kitchen: Option<SqsKitchenQueue>,
    dead_letters: Option<SqsDeadLetters>,
    images: Option<S3Images>,
    /// The token keys in KMS (`TOKEN_KMS_KEY_IDS`); without them, the configured PEM keys.
    kms_keys: Option<KmsKeys>,
    /// What signs tokens: identity's alone (`TOKEN_SIGNING_KEY_ID` in KMS, or the PEM
    /// `TOKEN_SIGNING_KEY` where there is no KMS, as under `sam local`).
    signer: Option<Box<dyn TokenSigner + Send + Sync>>,
    region: String,
    /// The SDK settings every client of this function is made from.
    sdk: aws_types::SdkConfig,
}

impl Shell {
    /// From the function's environment: the SDK settings, the app config (`JWT_SECRET`, ...:
    /// [`Config::VARIABLES`] in upper case) and the resources (`TABLE_NAME`, `ORDERS_STREAM` with
    /// `ANALYTICS_STREAM`, `PAYMENTS_STREAM`, `AI_STREAM`, `KITCHEN_QUEUE_URL`, `DEAD_LETTER_QUEUE_URL`, `IMAGES_BUCKET`; all but
    /// the table only where used), and the token keys (`TOKEN_KMS_KEY_IDS`, identity's
    /// `TOKEN_SIGNING_KEY_ID`; or PEM `TOKEN_PUBLIC_KEYS` and `TOKEN_SIGNING_KEY` without KMS). A
    /// function relays the outbox of each stream it is given.
    pub fn from_lookup(function: &'static str, lookup: impl Fn(&str) -> Option<String>) -> Result<Shell, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let aws = AwsEnvironment::from_lookup(get)?;
        // One SDK config, so every client shares one HTTP client: one connection pool and one
        // TLS configuration built on first use.
        let sdk = aws.sdk_config();
        let clients = Clients::new(&sdk);
        let images = get("IMAGES_BUCKET").map(|bucket| S3Images::new(bucket, &aws.region, aws.credentials.clone(), aws.endpoint.clone()));
        let config = Config::from_lookup(|name| get(&name.to_ascii_uppercase())).map_err(|e| format!("configuration: {e}"))?;
        let table = get("TABLE_NAME").ok_or("TABLE_NAME is not set")?;
        let mut streams: Vec<(Outbox, KinesisPublisher)> = Vec::new();
        if let Some(orders) = get("ORDERS_STREAM") {
            // Every order event also feeds the analytics stream (its read model and archive).
            let analytics = get("ANALYTICS_STREAM").ok_or("ORDERS_STREAM is set but ANALYTICS_STREAM is not: order events also go to the analytics stream")?;
            streams.push((ORDERS_OUTBOX, KinesisPublisher::new(clients.kinesis.clone(), orders).with_copy_to(analytics)));
        }
        if let Some(payments) = get("PAYMENTS_STREAM") {
            streams.push((PAYMENTS_OUTBOX, KinesisPublisher::new(clients.kinesis.clone(), payments)));
        }
        if let Some(ai) = get("AI_STREAM") {
            streams.push((AI_OUTBOX, KinesisPublisher::new(clients.kinesis.clone(), ai)));
        }
        let kms = || aws_sdk_kms::Client::new(&sdk);
        let kms_key_ids: Vec<String> =
            get("TOKEN_KMS_KEY_IDS").map(|ids| ids.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect()).unwrap_or_default();
        let kms_keys = (!kms_key_ids.is_empty())
            .then(|| KmsKeys::new(kms(), kms_key_ids, config.token_public_keys.clone()))
            .transpose()
            .map_err(|e| format!("TOKEN_KMS_KEY_IDS: {e}"))?;
        let signer: Option<Box<dyn TokenSigner + Send + Sync>> = match (get("TOKEN_SIGNING_KEY_ID"), get("TOKEN_SIGNING_KEY")) {
            (Some(id), None) => Some(Box::new(KmsSigner::new(kms(), id).map_err(|e| format!("TOKEN_SIGNING_KEY_ID: {e}"))?)),
            (None, Some(pem)) => Some(Box::new(PemSigner::from_pem(&pem).map_err(|e| format!("TOKEN_SIGNING_KEY: {e}"))?)),
            (None, None) => None,
            (Some(_), Some(_)) => return Err("set TOKEN_SIGNING_KEY_ID (KMS) or TOKEN_SIGNING_KEY (PEM), not both".into()),
        };
        Ok(Shell {
            kms_keys,
            signer,
            region: aws.region.clone(),
            sdk: sdk.clone(),
            function,
            config,
            store: DynamoStore::new(clients.dynamodb.clone(), table),
            streams,
            kitchen: get("KITCHEN_QUEUE_URL").map(|q| SqsKitchenQueue::new(clients.sqs.clone(), q)),
            dead_letters: get("DEAD_LETTER_QUEUE_URL").map(|q| SqsDeadLetters::new(clients.sqs.clone(), q)),
            images,
        })
    }

    pub fn from_env(function: &'static str) -> Result<Shell, String> {
        Shell::from_lookup(function, |name| std::env::var(name).ok())
    }

    /// The SDK settings, for a client the function makes itself.
    pub fn sdk_config(&self) -> &aws_types::SdkConfig {
        &self.sdk
    }

    /// The table every port of this function is on.
    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    /// Runs `f` with this container's services; `extension` is what a function brings beyond
    /// them (see [`Services::extension`]).
    pub async fn with_services<T>(&self, extension: Option<&dyn Any>, f: impl AsyncFnOnce(&Services<'_>) -> T) -> T {
        let relays = Relays(self.streams.iter().map(|(outbox, publisher)| DynamoOutboxRelay { store: &self.store, outbox: *outbox, publisher }).collect());
        let configured = ConfiguredKeys(&self.config);
        let svc = Services {
            users: &self.store,
            menu: &self.store,
            orders: &self.store,
            relay: &relays,
            kitchen_queue: self.kitchen.as_ref().map(|k| k as &dyn KitchenQueue),
            kitchen: &self.store,
            images: self.images.as_ref().map(|i| Images::Presigned(i)),
            limiter: Some(&self.store),
            tokens: match &self.kms_keys {
                Some(kms) => kms,
                None => &configured,
            },
            signer: self.signer.as_deref().map(|s| s as &dyn TokenSigner),
            clock: &SystemClock,
            entropy: &OsEntropy,
            config: &self.config,
            extension,
        };
        f(&svc).await
    }

    /// One API Gateway request for `function`.
    pub async fn http(&self, function: &Function, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        self.http_with(function, None, event).await
    }

    /// One API Gateway request for `function`, with the function's `extension`, counted by the
    /// route that answered it (`GET /api/v1/orders/{id}`; `none` when none did) and status class,
    /// and traced as a server span when spans are exported.
    pub async fn http_with(&self, function: &Function, extension: Option<&dyn Any>, mut event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let started = std::time::Instant::now();
        let span = crate::otlp::enabled().then(|| server_span(&mut event));
        let method = event.request_context.http.method.clone();
        let issuer = self.config.token_issuer.is_none().then(|| api_issuer(&event, &self.region)).flatten();
        let response = match request_from_apigw(event) {
            Ok(mut req) => {
                if let Some(issuer) = issuer {
                    req.extensions_mut().insert(issuer);
                }
                self.with_services(extension, async |svc| gocoffee_app::handle(svc, &[function], req).await).await
            }
            Err(e) => e.into_response(),
        };
        let route = response.extensions().get::<gocoffee_app::MatchedRoute>().map_or_else(|| "none".to_owned(), |r| format!("{} {}", r.method, r.path));
        let status = response.status().as_u16();
        gocoffee_app::telemetry::http_request(&route, status, started.elapsed().as_secs_f64() * 1000.0);
        if let Some(mut span) = span {
            span.name = if route == "none" { method.to_string() } else { route.clone() };
            span.attribute("http.request.method", method.as_str());
            span.attribute("http.route", route);
            span.attribute("http.response.status_code", status);
            span.attribute("faas.name", self.function);
            span.error = status >= 500;
            crate::otlp::finish(span);
        }
        response_to_apigw(response)
    }

    /// One batch from the orders stream. Records are handled in order; the first one that may
    /// succeed later is reported with everything after it left for the retry (Kinesis resumes
    /// from the lowest reported sequence number, which keeps one order's events in order). A
    /// poison record can never succeed, so it goes to the dead-letter queue with its reason and
    /// the batch goes on: it neither blocks the shard nor replays the records behind it.
    pub async fn kinesis(&self, event: KinesisEvent) -> KinesisEventResponse {
        self.kinesis_with(event, None, handle_stream_message).await
    }

    /// One stream batch, each record handled by `handle` (with the function's `extension`), with
    /// the ordering and dead-lettering of [`Shell::kinesis`].
    pub async fn kinesis_with(
        &self,
        event: KinesisEvent,
        extension: Option<&dyn Any>,
        handle: impl AsyncFn(&Services<'_>, &[u8]) -> Result<(), ConsumerError>,
    ) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        self.with_services(extension, async |svc| {
            for record in &event.records {
                let source = record.event_source_arn.as_deref().unwrap_or("kinesis");
                let span = crate::otlp::enabled().then(|| crate::otlp::record("aws_kinesis", source, self.function, &record.kinesis.data.0));
                let outcome = match handle(svc, &record.kinesis.data.0).await {
                    Err(ConsumerError::Poison(reason)) => self.dead_letter(record_summary(record, &reason)).await,
                    other => other,
                };
                if let Some(mut span) = span {
                    span.attribute("messaging.message.id", record.kinesis.sequence_number.clone());
                    span.error = outcome.is_err();
                    crate::otlp::finish(span);
                }
                if let Err(e) = outcome {
                    tracing::warn!(sequence_number = %record.kinesis.sequence_number, error = %e, "stream record failed; the batch resumes here");
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(record.kinesis.sequence_number.clone());
                    response.batch_item_failures.push(failure);
                    break;
                }
            }
            relay(svc).await;
        })
        .await;
        response
    }

    async fn dead_letter(&self, message: Value) -> Result<(), ConsumerError> {
        match &self.dead_letters {
            Some(dlq) => {
                tracing::error!(message = %message, "poison record sent to the dead-letter queue");
                dlq.send(&message).await.map_err(ConsumerError::from)?;
                gocoffee_app::telemetry::dead_lettered(self.function);
                Ok(())
            }
            None => Err(ConsumerError::Retryable("poison record and no DEAD_LETTER_QUEUE_URL to put it in".into())),
        }
    }

    /// One batch from the kitchen queue. Each message stands alone: failures are reported by
    /// message id and come back after the visibility timeout, until the queue's redrive policy
    /// moves them to its dead-letter queue.
    pub async fn sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        self.with_services(None, async |svc| {
            for message in &event.records {
                let id = message.message_id.clone().unwrap_or_default();
                let body = message.body.as_deref().unwrap_or_default();
                let source = message.event_source_arn.as_deref().unwrap_or("sqs");
                let span = crate::otlp::enabled().then(|| crate::otlp::record("aws_sqs", source, self.function, body.as_bytes()));
                let outcome = handle_kitchen_ticket(svc, body.as_bytes()).await;
                if let Some(mut span) = span {
                    span.attribute("messaging.message.id", id.clone());
                    span.error = outcome.is_err();
                    crate::otlp::finish(span);
                }
                if let Err(e) = outcome {
                    tracing::warn!(message_id = %id, error = %e, "kitchen ticket failed");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
            }
            relay(svc).await;
        })
        .await;
        response
    }
}

fn record_summary(record: &aws_lambda_events::kinesis::KinesisEventRecord, reason: &str) -> Value {
    json!({
        "source": record.event_source_arn,
        "reason": reason,
        "partition_key": record.kinesis.partition_key,
        "sequence_number": record.kinesis.sequence_number,
        "data": BASE64.encode(&record.kinesis.data.0),
    })
}

/// Publishes what handling queued; on failure the next relay sends it.
pub async fn relay(svc: &Services<'_>) {
    if let Err(e) = svc.relay.relay().await {
        tracing::warn!(error = %e, "outbox relay failed; a later request or batch relays it");
    }
}

/// The issuer tokens name where `TOKEN_ISSUER` isn't set: the invoking HTTP API's own URL, as a
/// JWT authorizer on that API would be configured (the template can't hand a function its API's
/// id: the API's routes already depend on the function). `apiId` is API Gateway's word, not the
/// client's.
fn api_issuer(event: &ApiGatewayV2httpRequest, region: &str) -> Option<gocoffee_app::TokenIssuer> {
    let api = event.request_context.apiid.as_deref().filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))?;
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    Some(gocoffee_app::TokenIssuer(format!("https://{api}.execute-api.{region}.{suffix}")))
}

/// An API Gateway HTTP API (payload 2.0) event as an `http` request. API Gateway's request id
/// becomes the request id when the caller sent none.
pub fn request_from_apigw(event: ApiGatewayV2httpRequest) -> Result<Request, ApiError> {
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", why);
    let path = event.raw_path.filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let uri = match event.raw_query_string.as_deref() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    };
    let mut builder = http::Request::builder().method(event.request_context.http.method).uri(uri);
    // The address API Gateway saw the connection come from: what anonymous calls are limited by.
    if let Some(addr) = event.request_context.http.source_ip.as_deref().and_then(gocoffee_app::ClientAddr::parse) {
        builder = builder.extension(addr);
    }
    if let Some(headers) = builder.headers_mut() {
        *headers = event.headers;
        if let Some(cookies) = event.cookies.filter(|c| !c.is_empty()) {
            let value = HeaderValue::from_str(&cookies.join("; ")).map_err(|e| bad(format!("bad cookie header: {e}")))?;
            headers.insert(http::header::COOKIE, value);
        }
        if !headers.contains_key("x-request-id")
            && let Some(id) = event.request_context.request_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert("x-request-id", id);
        }
    }
    let body = match event.body {
        None => Vec::new(),
        Some(b) if event.is_base64_encoded => BASE64.decode(b).map_err(|e| bad(format!("the body is not valid base64: {e}")))?,
        Some(b) => b.into_bytes(),
    };
    builder.body(body).map_err(|e| bad(format!("malformed request: {e}")))
}

/// The invocation's server span, a child of the request's `traceparent` or else of its X-Ray
/// header; the request goes on with the span as its `traceparent`, so the app's work is its child.
fn server_span(event: &mut ApiGatewayV2httpRequest) -> crate::otlp::Span {
    let parent = gocoffee_app::trace::TraceContext::incoming(|name| event.headers.get(name).and_then(|v| v.to_str().ok())).map(|c| c.header());
    let span = crate::otlp::start(String::new(), crate::otlp::SpanKind::Server, parent.as_deref());
    if let Ok(value) = HeaderValue::from_str(&span.context.header()) {
        event.headers.insert("traceparent", value);
    }
    span
}

/// The request with this invocation's X-Ray trace header when it carries no trace context of its
/// own, so the app's request span is a child of the Lambda's segment.
pub fn with_xray(mut event: ApiGatewayV2httpRequest, context: &lambda_runtime::Context) -> ApiGatewayV2httpRequest {
    if !event.headers.contains_key("traceparent")
        && !event.headers.contains_key("x-amzn-trace-id")
        && let Some(value) = context.xray_trace_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok())
    {
        event.headers.insert("x-amzn-trace-id", value);
    }
    event
}

/// An `http` response as API Gateway's (payload 2.0) response: text bodies as text, anything
/// else base64.
pub fn response_to_apigw(response: Response) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    (out.body, out.is_base64_encoded) = if body.is_empty() {
        (None, false)
    } else {
        match String::from_utf8(body) {
            Ok(text) => (Some(Body::Text(text)), false),
            Err(e) => (Some(Body::Text(BASE64.encode(e.into_bytes()))), true),
        }
    };
    out
}

/// The event source of a Lambda event: an API Gateway request or a batch of queue records.
pub fn source(event: &Value) -> &str {
    if event.get("requestContext").is_some() {
        return "apigateway";
    }
    event.get("Records").and_then(|r| r.get(0)).and_then(|r| r.get("eventSource")).and_then(Value::as_str).unwrap_or("unknown")
}

/// A function's start: its logs, then its shell from the environment (a failure is the init
/// error Lambda reports).
pub fn init(function: &'static str) -> Result<Shell, lambda_runtime::Error> {
    init_tracing();
    init_metrics(function);
    crate::otlp::init(function);
    Shell::from_env(function).inspect_err(|e| tracing::error!(function, error = %e, "cannot start")).map_err(lambda_runtime::Error::from)
}

// Each entry below is a separate function, so a binary links only the paths its function takes
// (the health binary has no AWS SDK in it). Handler futures are boxed: SDK calls inside app
// calls make them too deep to lay out inline.

/// Runs a function's `main` on the current-thread runtime (what `#[tokio::main(flavor =
/// "current_thread")]` builds). The entries call it themselves and are plain, non-generic
/// functions, so the runtime, the service and every future under them are compiled once, in
/// this crate, not again in each binary that calls them.
pub fn block_on(main: impl Future<Output = Result<(), lambda_runtime::Error>>) -> Result<(), lambda_runtime::Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(main)
}

/// `main` of the health function: no config, no clients.
pub fn health() -> Result<(), lambda_runtime::Error> {
    stateless(|req| match req.uri().path() {
        "/health" => gocoffee_app::health(req),
        path => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {} {path}", req.method())).into_response(),
    })
}

/// `main` of a function that answers from what it holds, reading no store and no configuration:
/// `serve` per request behind API Gateway (health; the web clients' pages and assets).
pub fn stateless(serve: fn(&Request) -> Response) -> Result<(), lambda_runtime::Error> {
    block_on(async {
        init_tracing();
        lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let response = match request_from_apigw(event.payload) {
                Ok(req) => serve(&req),
                Err(e) => e.into_response(),
            };
            Ok::<_, lambda_runtime::Error>(response_to_apigw(response))
        }))
        .await
    })
}

/// `main` of an HTTP function serving `function`'s routes behind API Gateway. Config and
/// clients are created once, before the first invocation; a function that can't configure itself
/// fails its init, which Lambda reports.
pub fn http(function: &'static Function) -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let shell = &init(function.name)?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<ApiGatewayV2httpRequest>| {
            let response = Box::pin(shell.http(function, with_xray(event.payload, &event.context))).await;
            finish_invocation(&event.context).await;
            Ok::<_, lambda_runtime::Error>(response)
        }))
        .await
    })
}

/// `main` of the kitchen: its routes behind API Gateway and the SQS batches of its queue.
pub fn kitchen() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let function = &gocoffee_app::kitchen::FUNCTION;
        let shell = &init(function.name)?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<Value>| {
            let payload = event.payload;
            let result = match source(&payload) {
                "apigateway" => {
                    let request = with_xray(serde_json::from_value(payload)?, &event.context);
                    serde_json::to_value(Box::pin(shell.http(function, request)).await).map_err(lambda_runtime::Error::from)
                }
                "aws:sqs" => serde_json::to_value(Box::pin(shell.sqs(serde_json::from_value(payload)?)).await).map_err(lambda_runtime::Error::from),
                other => Err(lambda_runtime::Error::from(format!("the {} function does not take {other} events", function.name))),
            };
            finish_invocation(&event.context).await;
            result
        }))
        .await
    })
}

/// `main` of an HTTP function whose routes need what it brings itself (`extension`: its own
/// stores and clients, made once per container).
pub async fn http_with_extension(shell: &Shell, function: &'static Function, extension: &dyn Any) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<ApiGatewayV2httpRequest>| {
        let response = Box::pin(shell.http_with(function, Some(extension), with_xray(event.payload, &event.context))).await;
        finish_invocation(&event.context).await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}

/// `main` of a stream consumer that brings `extension`: Kinesis batches, each record handled by
/// `handle`, with the order consumer's ordering, retry and dead-letter rules
/// ([`Shell::kinesis`]).
pub async fn kinesis_with_extension(
    shell: &Shell,
    extension: &dyn Any,
    handle: impl AsyncFn(&Services<'_>, &[u8]) -> Result<(), ConsumerError>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<KinesisEvent>| {
        let response = Box::pin(shell.kinesis_with(event.payload, Some(extension), &handle)).await;
        finish_invocation(&event.context).await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}

/// `main` of the order consumer: Kinesis batches from the orders stream.
pub fn order_consumer() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let shell = &init("order-consumer")?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<KinesisEvent>| {
            let response = Box::pin(shell.kinesis(event.payload)).await;
            finish_invocation(&event.context).await;
            Ok::<_, lambda_runtime::Error>(response)
        }))
        .await
    })
}
