//! Go Coffee's use cases, written against ports: the HTTP routes (platform-neutral `http`
//! requests in, responses out) and the stream event handlers. Shells (Spin components, Lambda
//! functions) only convert to and from these.

pub mod analytics;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod http;
mod images;
pub mod live;
pub mod memory;
pub mod outbox;
pub mod ports;
pub mod ratelimit;
pub mod reconcile;
mod routes;
pub mod telemetry;
pub mod web;

pub use gocoffee_core::trace;

pub use crate::routes::{health, identity, kitchen, menu, orders};

use std::future::Future;
use std::pin::Pin;

use ::http::{HeaderValue, Method, StatusCode, header};
use gocoffee_core::Role;

pub use crate::auth::Caller;
pub use crate::config::{Config, ConfigError};
pub use crate::http::{ApiError, Request, Response};
use crate::ports::{
    Clock, Entropy, EventRelay, Images, KitchenQueue, KitchenStore, MenuStore, OrderStore, RateLimiter, StoreResult, TokenKeys, TokenSigner, UserStore,
};
pub use crate::ratelimit::{ClientAddr, RateClass};

/// Everything a use case may touch, borrowed for one request or one event.
pub struct Services<'a> {
    pub users: &'a dyn UserStore,
    pub menu: &'a dyn MenuStore,
    pub orders: &'a dyn OrderStore,
    pub relay: &'a dyn EventRelay,
    /// The kitchen's queue of placed orders. Without one (Spin, the local host), the order
    /// consumer accepts placed orders for the kitchen itself.
    pub kitchen_queue: Option<&'a dyn KitchenQueue>,
    /// The kitchen's stations, equipment and shifts.
    pub kitchen: &'a dyn KitchenStore,
    /// Where menu pictures go. Without one, the picture routes answer 404.
    pub images: Option<Images<'a>>,
    /// The gateway's rate-limit state. Without one, nothing is limited.
    pub limiter: Option<&'a dyn RateLimiter>,
    /// The keys tokens are checked against (and that identity publishes).
    pub tokens: &'a dyn TokenKeys,
    /// The key tokens are signed with: identity's alone. Elsewhere `None`, so no other function
    /// links the signing code or holds the key.
    pub signer: Option<&'a dyn TokenSigner>,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
    pub config: &'a Config,
    /// What a function brings beyond these (its own stores and clients: the payment service's
    /// chains and intents), for its own routes to take back with `downcast_ref`.
    pub extension: Option<&'a dyn std::any::Any>,
}

impl Services<'_> {
    /// A fresh time-ordered id.
    pub fn new_id(&self) -> String {
        gocoffee_core::ids::ulid(self.clock.now_ms() as u64, self.entropy.u128())
    }

    /// A new span: a child of `parent` (a `traceparent`) when it is valid, else a new trace.
    pub fn span(&self, parent: Option<&str>) -> trace::TraceContext {
        trace::TraceContext::continue_or_start(parent, self.clock.now_ms(), self.entropy.u128())
    }

    /// `events` recorded against `order` by `actor` now, each at the next version, and the order
    /// after them: what one append writes.
    pub fn record(
        &self,
        order: &gocoffee_core::Order,
        events: Vec<gocoffee_core::OrderEvent>,
        actor: &str,
        correlation_id: Option<String>,
        trace: &trace::TraceContext,
    ) -> (gocoffee_core::Order, Vec<gocoffee_core::StoredEvent>) {
        let now_ms = self.clock.now_ms();
        let mut next = order.clone();
        let stored = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let stored = gocoffee_core::StoredEvent {
                    event_id: self.new_id(),
                    order_id: order.id.clone(),
                    version: order.version + 1 + i as u64,
                    occurred_at_ms: now_ms,
                    actor: actor.to_owned(),
                    correlation_id: correlation_id.clone(),
                    traceparent: Some(trace.header()),
                    event,
                };
                next.apply(&stored);
                stored
            })
            .collect();
        (next, stored)
    }

    /// What the function brought beyond these (its [`Services::extension`]), when it is a `T`.
    pub fn extension<T: 'static>(&self) -> Option<&T> {
        self.extension.and_then(|e| e.downcast_ref::<T>())
    }
}

/// A route handler: borrows the request's context for as long as its future runs.
pub type Handler = for<'a, 'b> fn(&'b Ctx<'a>) -> Pin<Box<dyn Future<Output = Result<Response, ApiError>> + 'b>>;

/// One HTTP route of a function: method, path in OpenAPI template form, handler, and the rate
/// limit it counts against.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: Handler,
    pub class: RateClass,
}

/// A route table entry: `route!(GET "/api/v1/menu" => menu::list)`. A GET counts as a read and
/// anything else as a write, unless a class follows: `route!(POST "/api/v1/auth/login" =>
/// identity::login, Credentials)`.
#[macro_export]
macro_rules! route {
    (GET $path:literal => $handler:path) => {
        $crate::route!(GET $path => $handler, Read)
    };
    ($method:ident $path:literal => $handler:path) => {
        $crate::route!($method $path => $handler, Write)
    };
    ($method:ident $path:literal => $handler:path, $class:ident) => {
        $crate::Route {
            method: ::http::Method::$method,
            path: $path,
            handler: |ctx| ::std::boxed::Box::pin($handler(ctx)),
            class: $crate::RateClass::$class,
        }
    };
}

/// One deployed function (one Spin component, one Lambda): its name and the routes it serves.
/// A function's crate names only its own `Function`, so it links only its own handlers; the
/// agreement tests (openapi.yaml, spin.toml, sam-template.yaml) read every function's table.
pub struct Function {
    /// The crate, Spin component and Lambda name.
    pub name: &'static str,
    pub routes: &'static [Route],
    /// Its writes queue events, so each of its requests also relays the outbox.
    pub publishes: bool,
    /// It stores menu pictures, so the shell opens the picture store for it.
    pub images: bool,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The functions whose routes live in this crate (others, such as payments, bring their own).
pub static FUNCTIONS: &[&Function] =
    &[&HEALTH, &identity::FUNCTION, &menu::FUNCTION, &orders::FUNCTION, &kitchen::FUNCTION, &analytics::FUNCTION, &live::FUNCTION, &web::FUNCTION];

/// Liveness: `GET /health`, without touching any store.
pub static HEALTH: Function = Function { name: "health", routes: &[route!(GET "/health" => routes::health_route, Exempt)], publishes: false, images: false };

/// Path parameters of `path` when it matches the template, in order.
fn match_path(template: &str, path: &str) -> Option<Vec<String>> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(ps.to_owned());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// The route that answered a request, in its response's extensions: what a shell labels the
/// request's metrics with (a template, never the path, so the series stay bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    pub method: Method,
    pub path: &'static str,
}

/// What one request needs while a route handles it.
pub struct Ctx<'a> {
    pub svc: &'a Services<'a>,
    pub req: &'a Request,
    pub params: Vec<String>,
    pub request_id: String,
    /// This request's span: events it makes carry it, so their consumers continue its trace.
    pub trace: trace::TraceContext,
    pub now_ms: i64,
    /// The key for signing picture URLs, derived on first use.
    pub picture_mac: std::cell::OnceCell<hmac::Hmac<sha2::Sha256>>,
    /// The bearer token's verdict, checked once (by the gateway or the first route to ask).
    auth: std::cell::OnceCell<Result<Caller, ApiError>>,
    /// The keys to check the bearer token against, fetched before the route runs when the request
    /// carries one.
    keys: Option<StoreResult<std::sync::Arc<auth::KeySet>>>,
}

/// The issuer a platform names for its tokens where `token_issuer` is not configured (the Lambda
/// shell: the URL of the API that invoked it), in a request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIssuer(pub String);

impl<'a> Ctx<'a> {
    /// The function's own context (see [`Services::extension`]); a shell that didn't bring it
    /// is a deployment fault: logged, and 503 to the caller.
    pub fn extension<T: 'static>(&self) -> Result<&T, ApiError> {
        self.svc.extension::<T>().ok_or_else(|| {
            tracing::error!(context = std::any::type_name::<T>(), "the function runs without its context");
            ApiError::unavailable()
        })
    }

    /// The context of one request to a matched route, with the path parameters it captured.
    pub fn new(svc: &'a Services<'a>, req: &'a Request, params: Vec<String>, request_id: String, trace: trace::TraceContext) -> Ctx<'a> {
        Ctx { svc, req, params, request_id, trace, now_ms: svc.clock.now_ms(), picture_mac: Default::default(), auth: Default::default(), keys: None }
    }

    /// Who this deployment's tokens are issued by and for: `token_issuer` if configured, else
    /// what the platform names, else [`auth::DEFAULT_ISSUER`].
    pub fn token_audience(&self) -> auth::Audience<'_> {
        let issuer = self.svc.config.token_issuer.as_deref().or_else(|| self.req.extensions().get::<TokenIssuer>().map(|i| i.0.as_str()));
        auth::Audience { issuer: issuer.unwrap_or(auth::DEFAULT_ISSUER), audience: &self.svc.config.token_audience }
    }

    /// The caller named by the bearer token; 401 without a valid one.
    pub fn caller(&self) -> Result<Caller, ApiError> {
        self.auth.get_or_init(|| self.authenticate()).clone()
    }

    fn authenticate(&self) -> Result<Caller, ApiError> {
        let header = self.req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
        let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).ok_or_else(ApiError::unauthorized)?;
        let keys = match &self.keys {
            Some(Ok(keys)) => keys,
            Some(Err(e)) => {
                tracing::error!(request_id = %self.request_id, error = %e, "the token keys are out of reach");
                return Err(ApiError::unavailable());
            }
            None => return Err(ApiError::unauthorized()),
        };
        auth::verify_access_token(keys, self.token_audience(), token.trim(), self.now_ms)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is invalid or expired"))
    }

    /// The caller, if they hold at least `role`: 401 without a token, 403 with too little.
    pub fn require(&self, role: Role) -> Result<Caller, ApiError> {
        let caller = self.caller()?;
        if caller.role.at_least(role) { Ok(caller) } else { Err(ApiError::forbidden(format!("this needs the {role} role or above"))) }
    }

    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

fn request_id(req: &Request, svc: &Services<'_>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| svc.new_id())
}

/// The request's span: a child of the caller's `traceparent`, else of X-Ray's
/// `X-Amzn-Trace-Id` (API Gateway and Lambda), else the root of a new trace.
fn request_trace(req: &Request, svc: &Services<'_>) -> trace::TraceContext {
    match trace::TraceContext::incoming(|name| req.headers().get(name).and_then(|v| v.to_str().ok())) {
        Some(parent) => parent.child(svc.entropy.u128() as u64),
        None => trace::TraceContext::root(svc.clock.now_ms(), svc.entropy.u128()),
    }
}

/// Handles one HTTP request with the routes of `functions` (a deployed function passes itself;
/// tests pass several). A path no route matches is 404; a path matched with another method 405.
/// Everything it logs is in a `request` span with the request and trace ids.
pub async fn handle(svc: &Services<'_>, functions: &[&Function], req: Request) -> Response {
    let request_id = request_id(&req, svc);
    let trace = request_trace(&req, svc);
    let span = tracing::info_span!("request", request_id = %request_id, trace_id = %trace.trace_id_hex(), span_id = %trace.span_id_hex());
    tracing::Instrument::instrument(route(svc, functions, req, request_id, trace), span).await
}

async fn route(svc: &Services<'_>, functions: &[&Function], req: Request, request_id: String, trace: trace::TraceContext) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let candidates: Vec<(&Function, &Route, Vec<String>)> =
        functions.iter().flat_map(|f| f.routes.iter().map(move |r| (*f, r))).filter_map(|(f, r)| match_path(r.path, &path).map(|p| (f, r, p))).collect();
    let chosen = candidates.iter().find(|(_, r, _)| r.method == method || (method == Method::HEAD && r.method == Method::GET));
    let mut response = match chosen {
        Some((function, route, params)) => {
            let mut ctx = Ctx::new(svc, &req, params.clone(), request_id.clone(), trace);
            if req.headers().contains_key(header::AUTHORIZATION) {
                ctx.keys = Some(svc.tokens.keys().await);
            }
            // The gateway: over its client's limit, a request goes no further.
            let caller = if matches!(route.class, RateClass::Credentials | RateClass::Exempt) { None } else { ctx.caller().ok() };
            let result = match ratelimit::gate(svc, &req, route.class, caller.as_ref(), ctx.now_ms).await {
                Ok(()) => {
                    let result = (route.handler)(&ctx).await;
                    if function.publishes {
                        relay(svc, &request_id).await;
                    }
                    result
                }
                Err(refused) => Err(refused),
            };
            let mut response = result.unwrap_or_else(ApiError::into_response);
            response.extensions_mut().insert(MatchedRoute { method: route.method.clone(), path: route.path });
            response
        }
        None if !candidates.is_empty() => {
            let allow: Vec<&str> = candidates.iter().map(|(_, r, _)| r.method.as_str()).collect();
            let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed here")).into_response();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {method} {path}")).into_response(),
    };
    if method == Method::HEAD {
        response.body_mut().clear();
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    // Answers are private and change with every write unless a route says otherwise (the
    // public menu, pictures): no shared cache may keep one.
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    tracing::info!(request_id = %request_id, method = %method, path = %path, status = response.status().as_u16(), "request");
    response
}

/// Publishes what this request (or an earlier, interrupted one) queued. The events are already
/// committed, so a failure here delays them to the next relay instead of losing them.
async fn relay(svc: &Services<'_>, request_id: &str) {
    match svc.relay.relay().await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(request_id, published = n, "outbox relayed"),
        Err(e) => tracing::warn!(request_id, error = %e, "outbox relay failed; will retry on a later request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_and_capture_parameters() {
        assert_eq!(match_path("/api/v1/orders/{id}", "/api/v1/orders/abc"), Some(vec!["abc".into()]));
        assert_eq!(match_path("/api/v1/orders/{id}", "/api/v1/orders/abc/"), Some(vec!["abc".into()]));
        assert_eq!(match_path("/api/v1/orders/{id}", "/api/v1/orders/"), None);
        assert_eq!(match_path("/api/v1/orders/{id}", "/api/v1/orders/a/b"), None);
        assert_eq!(match_path("/api/v1/orders", "/api/v1/ordersx"), None);
        assert_eq!(match_path("/health", "/health"), Some(vec![]));
    }

    #[test]
    fn every_route_is_unique() {
        let all: Vec<&Route> = FUNCTIONS.iter().flat_map(|f| f.routes.iter()).collect();
        for (i, r) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|o| (o.method.clone(), o.path) != (r.method.clone(), r.path)), "{} {}", r.method, r.path);
        }
    }
}
