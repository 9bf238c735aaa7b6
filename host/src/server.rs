//! The HTTP front: routes each request to its component as Spin does (same headers), reads the
//! body in full (capped and timed) before any guest runs, runs it on a fresh instance once the
//! gate has a slot free, and shuts down gracefully with in-flight requests finishing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::routes::{Match, Route, Router};
use crate::runtime::{InvokeError, Runtime};
use crate::sockets;

/// Bodies over this are refused before any component runs.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How much of an over-limit body is read and dropped before answering 413.
const MAX_DRAIN_BYTES: u64 = 16 << 20;

/// What one request may cost before a component runs for it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Headers must arrive within this (else the connection is closed), and then the whole body
    /// (else 408).
    pub read_timeout: Duration,
    /// How long a request waits for a free instance before a 503.
    pub queue_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { read_timeout: Duration::from_secs(15), queue_timeout: Duration::from_secs(2), max_connections: 512 }
    }
}

pub struct Server {
    pub runtime: Arc<Runtime>,
    pub router: Router,
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Instance slots HTTP requests may take (the pool less one per Redis subscriber).
    pub gate: Arc<Semaphore>,
    /// Lets a non-loopback client use the operator endpoints (`/.well-known/gocoffee/...`).
    pub operator_token: Option<String>,
    /// Whether WebSocket upgrades reach components ([`sockets`]); else they are refused (501).
    pub websockets: bool,
}

/// Why a request body was not read.
enum BodyError {
    TooLarge,
    TimedOut,
    /// The client went away or sent a broken body.
    Broken,
}

/// Reads the whole body, refusing more than `max` bytes and taking at most `timeout`.
async fn read_body(body: &mut Incoming, max: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Broken),
        Err(_) => Err(BodyError::TimedOut),
    }
}

/// Reads and drops a bounded amount of what the client is still sending, for at most
/// `timeout`, so it gets the error response instead of a broken pipe.
async fn drain(body: &mut Incoming, timeout: Duration) {
    let drain = async {
        let mut drained = 0u64;
        while drained < MAX_DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// True for `localhost`, `127.x.x.x` and `[::1]`, with or without a port, and nothing else.
fn is_loopback_authority(authority: &str) -> bool {
    let Ok(parsed) = authority.parse::<http::uri::Authority>() else { return false };
    let exact = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host()),
        None => parsed.host().to_owned(),
    };
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    exact == authority && (host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

fn closing(mut r: hyper::Response<HyperOutgoingBody>) -> hyper::Response<HyperOutgoingBody> {
    r.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    r
}

fn overloaded() -> hyper::Response<HyperOutgoingBody> {
    let mut r = json_error(503, "overloaded", "the server is busy; retry shortly");
    r.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    r
}

fn body(bytes: impl Into<Bytes>) -> HyperOutgoingBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

fn json_error(status: u16, code: &str, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let payload = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body(payload))
        .unwrap_or_else(|_| hyper::Response::new(body(Bytes::new())))
}

/// A body the runtime takes.
fn full(bytes: Bytes) -> impl hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + 'static {
    Full::new(bytes).map_err(|never: Infallible| -> hyper::Error { match never {} })
}

/// Makes a client's request the one its component sees, as under Spin: the `spin-*` headers,
/// the absolute URL, and none of the headers only the host may set.
fn component_request(parts: &mut http::request::Parts, hit: &Match<'_>, client: SocketAddr) {
    let host = parts.headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let full_url = format!("http://{host}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut spin_headers = vec![
        ("spin-full-url", full_url.clone()),
        ("spin-path-info", hit.path_info.clone()),
        ("spin-matched-route", hit.route.raw.clone()),
        ("spin-raw-component-route", hit.route.raw.clone()),
        ("spin-component-route", hit.route.component_route()),
        ("spin-base-path", "/".to_owned()),
        ("spin-client-addr", client.to_string()),
    ];
    let params: Vec<(String, String)> = hit.param_headers().map(|(k, v)| (k, v.to_owned())).collect();
    for (name, value) in spin_headers.drain(..).map(|(k, v)| (k.to_owned(), v)).chain(params) {
        if let (Ok(n), Ok(v)) = (hyper::header::HeaderName::try_from(name), hyper::header::HeaderValue::try_from(value)) {
            parts.headers.insert(n, v);
        }
    }
    // The component sees the absolute URL, as under Spin.
    if let Ok(uri) = full_url.parse() {
        parts.uri = uri;
    }
    parts.headers.remove(sockets::EVENT_HEADER);
    parts.headers.remove(sockets::CONNECTION_HEADER);
}

impl Server {
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>, client: SocketAddr) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let tracer = crate::otlp::tracer();
        let (response, matched) = if tracer.enabled() {
            // The request's span goes to the component as its `traceparent`.
            let mut req = req;
            let parent = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
            let mut span = crate::otlp::start(format!("{method}"), crate::otlp::SpanKind::Server, parent);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&span.context.header()) {
                req.headers_mut().insert("traceparent", v);
            }
            let (response, matched) = self.route(req, client).await;
            let status = response.status().as_u16();
            if let Some(route) = matched {
                span.name = format!("{method} {}", route.raw);
                span.attribute("http.route", route.raw.clone());
                span.attribute("spin.component", route.component.clone());
            }
            span.attribute("http.request.method", method.as_str());
            span.attribute("url.path", path.clone());
            span.attribute("http.response.status_code", status);
            span.error = status >= 500;
            tracer.finish(span);
            (response, matched)
        } else {
            self.route(req, client).await
        };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        tracing::info!(%method, %path, status, component = matched.map_or("-", |r| r.component.as_str()), us = elapsed.as_micros() as u64, "request");
        crate::metrics::request(method.as_str(), matched.map(|r| r.raw.as_str()), status, elapsed);
        response
    }

    /// True when `client` may use the operator endpoints: it presents the operator token, or it
    /// is on this machine and asked for a loopback host (a browser here steered at the host by
    /// DNS rebinding sends a foreign `Host`), and for a change, sent `x-gocoffee-operator` (which
    /// a cross-site form can't, and a cross-site script can't without a preflight the host never
    /// grants).
    fn is_operator(&self, req: &hyper::Request<Incoming>, client: SocketAddr) -> bool {
        let local_host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).is_some_and(is_loopback_authority);
        let deliberate = req.method() == hyper::Method::GET || req.headers().contains_key("x-gocoffee-operator");
        if client.ip().to_canonical().is_loopback() && local_host && deliberate {
            return true;
        }
        let Some(expected) = &self.operator_token else { return false };
        let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        bool::from(sha2::Sha256::digest(given.as_bytes()).ct_eq(&sha2::Sha256::digest(expected.as_bytes())))
    }

    /// The host's own endpoints under `/.well-known/gocoffee/`: the dead letters and their redrive.
    async fn operator(&self, req: &hyper::Request<Incoming>, client: SocketAddr) -> hyper::Response<HyperOutgoingBody> {
        if !self.is_operator(req, client) {
            tracing::warn!(%client, path = req.uri().path(), "operator endpoint refused: not a local operator, and no operator token");
            return json_error(403, "forbidden", "operator endpoints answer local operators, or others with the operator token");
        }
        let log = self.runtime.shared.log.clone();
        let reply = |payload: serde_json::Value| {
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(body(payload.to_string()))
                .unwrap_or_else(|_| hyper::Response::new(body("")))
        };
        match (req.method().as_str(), req.uri().path()) {
            ("GET", "/.well-known/gocoffee/dead-letters") => match tokio::task::spawn_blocking(move || log.dead_letters()).await {
                Ok(Ok(items)) => reply(serde_json::json!({ "items": items })),
                _ => json_error(503, "unavailable", "the message log could not be read"),
            },
            ("POST", "/.well-known/gocoffee/dead-letters/redrive") => {
                let id = req.uri().query().and_then(|q| q.split('&').find_map(|p| p.strip_prefix("id="))).map(str::parse::<i64>);
                let id = match id.transpose() {
                    Ok(id) => id,
                    Err(_) => return json_error(400, "invalid_id", "id must be a dead letter's number"),
                };
                match tokio::task::spawn_blocking(move || log.redrive(id)).await {
                    Ok(Ok(moved)) => reply(serde_json::json!({ "redriven": moved })),
                    _ => json_error(503, "unavailable", "the message log could not be written"),
                }
            }
            ("POST", path) if path.starts_with("/.well-known/gocoffee/cron/") => {
                // Runs a cron-triggered component now, outside its schedule (operators, tests).
                let component = path.trim_start_matches("/.well-known/gocoffee/cron/");
                if self.runtime.components.get(component).is_none_or(|c| c.cron.is_none()) {
                    return json_error(404, "not_found", "no cron-triggered component of that name");
                }
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
                match self.runtime.tick(component, now).await {
                    Ok(()) => reply(serde_json::json!({ "component": component, "ran": true })),
                    Err(e) => json_error(502, "cron_failed", &e),
                }
            }
            _ => json_error(404, "not_found", "no such operator endpoint"),
        }
    }

    /// The response, and the manifest route that took the request (none for the host's own paths
    /// and unmatched ones).
    async fn route(self: &Arc<Self>, req: hyper::Request<Incoming>, client: SocketAddr) -> (hyper::Response<HyperOutgoingBody>, Option<&Route>) {
        let path = req.uri().path().to_owned();
        if path == "/.well-known/spin/health" {
            return (hyper::Response::new(body("OK")), None);
        }
        if path.starts_with("/.well-known/gocoffee/") {
            return (self.operator(&req, client).await, None);
        }
        let Some(hit) = self.router.route(&path) else {
            return (json_error(404, "not_found", "no route matches this path"), None);
        };
        let component = hit.route.component.as_str();
        if sockets::is_upgrade(&req) {
            if !self.websockets {
                return (json_error(501, "websockets_unsupported", "this platform keeps no WebSocket connections"), Some(hit.route));
            }
            return (self.upgrade(req, &hit, client).await, Some(hit.route));
        }
        let (mut parts, mut incoming) = req.into_parts();
        let declared_too_big = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_REQUEST_BYTES as u64);
        // The body is read here, whole, before any instance is taken: a slow or endless body
        // costs a connection and at most 1 MiB of host memory, never a guest.
        let bytes = if declared_too_big { Err(BodyError::TooLarge) } else { read_body(&mut incoming, MAX_REQUEST_BYTES, self.limits.read_timeout).await };
        let bytes = match bytes {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                drain(&mut incoming, self.limits.read_timeout).await;
                return (closing(json_error(413, "body_too_large", "the request body is too large")), Some(hit.route));
            }
            Err(BodyError::TimedOut) => {
                return (closing(json_error(408, "request_timeout", "the request body did not arrive in time")), Some(hit.route));
            }
            Err(BodyError::Broken) => return (closing(json_error(400, "bad_request", "the request body could not be read")), Some(hit.route)),
        };
        component_request(&mut parts, &hit, client);
        let req = hyper::Request::from_parts(parts, full(bytes));
        match self.invoke(component, req).await {
            Ok(resp) => (resp, Some(hit.route)),
            Err(InvokeError::Busy(why)) => {
                tracing::warn!(component, why, "no instance free: 503");
                (overloaded(), Some(hit.route))
            }
            Err(InvokeError::Failed(e)) => {
                tracing::error!(component, error = %format!("{e:#}"), "component failed");
                (json_error(500, "internal", "the component failed while handling this request"), Some(hit.route))
            }
        }
    }

    /// A WebSocket upgrade on `hit`'s route: the component's to accept (it answers its `CONNECT`
    /// with 101); then the connection is served on a task of its own ([`sockets`]).
    async fn upgrade(self: &Arc<Self>, mut req: hyper::Request<Incoming>, hit: &Match<'_>, client: SocketAddr) -> hyper::Response<HyperOutgoingBody> {
        let key = req.headers().get(hyper::header::SEC_WEBSOCKET_KEY).cloned();
        let Some(key) = key.filter(|_| req.method() == hyper::Method::GET) else {
            return json_error(400, "bad_websocket_request", "a WebSocket opens with a GET that carries Sec-WebSocket-Key");
        };
        if req.headers().get(hyper::header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
            let mut r = json_error(426, "unsupported_websocket_version", "the host speaks WebSocket version 13");
            r.headers_mut().insert(hyper::header::SEC_WEBSOCKET_VERSION, hyper::header::HeaderValue::from_static("13"));
            return r;
        }
        let component = hit.route.component.clone();
        let registry = self.runtime.shared.sockets.clone();
        let Some((id, commands)) = registry.open(&component) else {
            return json_error(503, "unavailable", "the connection could not be given an id");
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (mut parts, _) = req.into_parts();
        component_request(&mut parts, hit, client);
        // What every later invocation of this connection carries: where it came in, and the
        // spin-* headers; not the upgrade's own headers.
        let mut later = parts.headers.clone();
        for name in [
            hyper::header::UPGRADE,
            hyper::header::CONNECTION,
            hyper::header::SEC_WEBSOCKET_KEY,
            hyper::header::SEC_WEBSOCKET_VERSION,
            hyper::header::SEC_WEBSOCKET_EXTENSIONS,
        ] {
            later.remove(name);
        }
        let invoker = ComponentInvoker { server: self.clone(), component: component.clone(), uri: parts.uri.clone(), headers: later };
        let id_header = hyper::header::HeaderValue::try_from(id.as_str()).ok();
        parts.headers.insert(sockets::EVENT_HEADER, hyper::header::HeaderValue::from_static("CONNECT"));
        if let Some(v) = id_header {
            parts.headers.insert(sockets::CONNECTION_HEADER, v);
        }
        let answer = self.invoke(&component, hyper::Request::from_parts(parts, full(Bytes::new()))).await;
        let answer = match answer {
            Ok(answer) if answer.status() == hyper::StatusCode::SWITCHING_PROTOCOLS => answer,
            refused => {
                registry.closed(&id);
                return match refused {
                    Ok(answer) => answer,
                    Err(InvokeError::Busy(why)) => {
                        tracing::warn!(%component, why, "no instance free for a WebSocket connect: 503");
                        overloaded()
                    }
                    Err(InvokeError::Failed(e)) => {
                        tracing::error!(%component, error = %format!("{e:#}"), "component failed on a WebSocket connect");
                        json_error(500, "internal", "the component failed while handling this request")
                    }
                };
            }
        };
        drop(answer);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let stream = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(sockets::config())).await;
                    tracing::info!(%component, connection_id = %id, "websocket connection opened");
                    sockets::run(stream, registry, id, commands, invoker).await;
                }
                Err(e) => {
                    // Accepted, but the client went before the handshake finished.
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    registry.closed(&id);
                    sockets::Invoke::invoke(&invoker, "DISCONNECT", &id, Bytes::new()).await;
                }
            }
        });
        hyper::Response::builder()
            .status(hyper::StatusCode::SWITCHING_PROTOCOLS)
            .header(hyper::header::UPGRADE, "websocket")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
            .body(body(Bytes::new()))
            .unwrap_or_else(|_| json_error(500, "internal", "the handshake could not be answered"))
    }

    /// Runs `component` on the request once the gate has an instance slot for it.
    async fn invoke<B>(&self, component: &str, req: hyper::Request<B>) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Wait briefly for a slot; the permit lives as long as the instance does.
        let permit = match tokio::time::timeout(self.limits.queue_timeout, self.gate.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(InvokeError::Busy(format!("every instance slot stayed taken for {:?}", self.limits.queue_timeout))),
        };
        self.runtime.serve_http(component, req, Some(permit)).await
    }

    /// Serves until `shutdown` turns true, then stops accepting and lets in-flight requests
    /// finish (up to `drain`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>, drain: Duration) -> Result<()> {
        let max_connections = self.limits.max_connections;
        let connections = Arc::new(Semaphore::new(max_connections));
        loop {
            // Past the connection limit, new clients wait in the listen backlog: each connection
            // may buffer a body of up to 1 MiB, so this also bounds that memory.
            let slot = tokio::select! {
                slot = connections.clone().acquire_owned() => slot?,
                _ = shutdown.changed() => break,
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, most likely: the connection waits in the
                            // backlog, so pause instead of spinning on it.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    let conn = http1::Builder::new().keep_alive(true).timer(TokioTimer::new()).header_read_timeout(self.limits.read_timeout).serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, Infallible>(server.handle(req, client).await) }
                        }),
                    ).with_upgrades();
                    let mut stopping = shutdown.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let mut conn = std::pin::pin!(conn);
                        // On shutdown, the request in flight finishes and the connection closes
                        // (hyper-util's GracefulShutdown doesn't take upgradeable connections).
                        let ended = tokio::select! {
                            ended = conn.as_mut() => ended,
                            _ = stopping.changed() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        self.runtime.shared.sockets.close_all();
        // Every connection's task holds a slot until it ends.
        tokio::select! {
            _ = connections.acquire_many(max_connections as u32) => tracing::info!("in-flight requests finished"),
            _ = tokio::time::sleep(drain) => tracing::warn!("gave up waiting for in-flight requests"),
        }
        Ok(())
    }
}

/// A connection's later events, as invocations of its component.
struct ComponentInvoker {
    server: Arc<Server>,
    component: String,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl sockets::Invoke for ComponentInvoker {
    async fn invoke(&self, event: &'static str, connection_id: &str, message: Bytes) -> Option<Bytes> {
        let mut req = hyper::Request::new(full(message));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req.headers_mut().insert(sockets::EVENT_HEADER, hyper::header::HeaderValue::from_static(event));
        req.headers_mut().insert(sockets::CONNECTION_HEADER, hyper::header::HeaderValue::try_from(connection_id).ok()?);
        req.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        let started = Instant::now();
        let outcome = self.server.invoke(&self.component, req).await;
        let status = outcome.as_ref().map_or(503, |r| r.status().as_u16());
        crate::metrics::request("POST", Some(&format!("websocket {event}")), status, started.elapsed());
        match outcome {
            Ok(answer) if answer.status().is_success() => answer.into_body().collect().await.ok().map(|c| c.to_bytes()),
            Ok(answer) => {
                tracing::warn!(component = %self.component, connection_id, event, status = answer.status().as_u16(), "websocket event refused");
                None
            }
            Err(InvokeError::Busy(why)) => {
                tracing::warn!(component = %self.component, connection_id, event, why, "no instance free for a websocket event");
                None
            }
            Err(InvokeError::Failed(e)) => {
                tracing::error!(component = %self.component, connection_id, event, error = %format!("{e:#}"), "component failed on a websocket event");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for yes in ["localhost", "LOCALHOST:3000", "127.0.0.1", "127.0.0.1:3000", "[::1]", "[::1]:3000"] {
            assert!(is_loopback_authority(yes), "{yes}");
        }
        for no in ["evil.example", "localhost.evil.example:3000", "192.0.2.2:3000", "127.0.0.1@evil.example", "[::1]evil", ""] {
            assert!(!is_loopback_authority(no), "{no}");
        }
    }
}
