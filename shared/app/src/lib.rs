//! Go Coffee's use cases, written against ports: the HTTP routes (platform-neutral `http`
//! requests in, responses out) and the stream event handlers. Shells (Spin components, Lambda
//! functions) only convert to and from these.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod http;
mod images;
pub mod memory;
pub mod outbox;
pub mod ports;
mod routes;

pub use crate::routes::health;

use ::http::{HeaderValue, Method, StatusCode, header};
use gocoffee_core::Role;

pub use crate::auth::Caller;
pub use crate::config::{Config, ConfigError};
pub use crate::http::{ApiError, Request, Response};
use crate::ports::{Clock, Entropy, EventRelay, Images, KitchenQueue, MenuStore, OrderStore, UserStore};

/// Everything a use case may touch, borrowed for one request or one event.
pub struct Services<'a> {
    pub users: &'a dyn UserStore,
    pub menu: &'a dyn MenuStore,
    pub orders: &'a dyn OrderStore,
    pub relay: &'a dyn EventRelay,
    /// The kitchen's queue of placed orders. Without one (Spin, the local host), the order
    /// consumer accepts placed orders for the kitchen itself.
    pub kitchen: Option<&'a dyn KitchenQueue>,
    /// Where menu pictures go. Without one, the picture routes answer 404.
    pub images: Option<Images<'a>>,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
    pub config: &'a Config,
}

impl Services<'_> {
    /// A fresh time-ordered id.
    pub fn new_id(&self) -> String {
        gocoffee_core::ids::ulid(self.clock.now_ms() as u64, self.entropy.u128())
    }
}

/// The endpoint groups; each is one function (one Spin component, one Lambda).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Health,
    Identity,
    Menu,
    Orders,
    Kitchen,
}

impl Group {
    /// The function (crate, Spin component, Lambda) that serves this group.
    pub fn function(self) -> &'static str {
        match self {
            Group::Health => "health",
            Group::Identity => "identity",
            Group::Menu => "menu",
            Group::Orders => "orders",
            Group::Kitchen => "kitchen",
        }
    }

    /// Groups whose writes queue events: their requests also relay the outbox.
    fn publishes(self) -> bool {
        matches!(self, Group::Orders | Group::Kitchen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteId {
    Health,
    Register,
    Login,
    Refresh,
    Logout,
    Me,
    CreateUser,
    Menu,
    MenuItem,
    CreateMenuItem,
    PatchMenuItem,
    UploadMenuImage,
    PutMenuImage,
    GetMenuImage,
    PlaceOrder,
    ListOrders,
    GetOrder,
    OrderEvents,
    CancelOrder,
    CollectOrder,
    RefundOrder,
    KitchenQueue,
    StartOrder,
    ReadyOrder,
}

/// One HTTP route: its group, method and path in OpenAPI template form.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub group: Group,
    pub method: Method,
    pub path: &'static str,
    pub(crate) id: RouteId,
}

macro_rules! routes {
    ($($group:ident $method:ident $path:literal => $id:ident,)*) => {
        /// Every route the API serves. `openapi.yaml` and `spin.toml` are tested against this.
        pub static ROUTES: &[RouteSpec] = &[
            $(RouteSpec { group: Group::$group, method: Method::$method, path: $path, id: RouteId::$id },)*
        ];
    };
}

routes! {
    Health GET "/health" => Health,
    Identity POST "/api/v1/auth/register" => Register,
    Identity POST "/api/v1/auth/login" => Login,
    Identity POST "/api/v1/auth/refresh" => Refresh,
    Identity POST "/api/v1/auth/logout" => Logout,
    Identity GET "/api/v1/auth/me" => Me,
    Identity POST "/api/v1/auth/users" => CreateUser,
    Menu GET "/api/v1/menu" => Menu,
    Menu POST "/api/v1/menu/items" => CreateMenuItem,
    Menu GET "/api/v1/menu/items/{id}" => MenuItem,
    Menu PATCH "/api/v1/menu/items/{id}" => PatchMenuItem,
    Menu PUT "/api/v1/menu/items/{id}/image" => UploadMenuImage,
    Menu PUT "/api/v1/menu/items/{id}/image/{file}" => PutMenuImage,
    Menu GET "/api/v1/menu/items/{id}/image/{file}" => GetMenuImage,
    Orders POST "/api/v1/orders" => PlaceOrder,
    Orders GET "/api/v1/orders" => ListOrders,
    Orders GET "/api/v1/orders/{id}" => GetOrder,
    Orders GET "/api/v1/orders/{id}/events" => OrderEvents,
    Orders POST "/api/v1/orders/{id}/cancel" => CancelOrder,
    Orders POST "/api/v1/orders/{id}/collect" => CollectOrder,
    Orders POST "/api/v1/orders/{id}/refund" => RefundOrder,
    Kitchen GET "/api/v1/kitchen/queue" => KitchenQueue,
    Kitchen POST "/api/v1/kitchen/orders/{id}/start" => StartOrder,
    Kitchen POST "/api/v1/kitchen/orders/{id}/ready" => ReadyOrder,
}

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

/// What one request needs while a route handles it.
pub(crate) struct Ctx<'a> {
    pub svc: &'a Services<'a>,
    pub req: &'a Request,
    pub params: Vec<String>,
    pub request_id: String,
    pub now_ms: i64,
    /// The key for signing picture URLs, derived on first use.
    pub picture_mac: std::cell::OnceCell<hmac::Hmac<sha2::Sha256>>,
}

impl Ctx<'_> {
    /// The caller named by the bearer token; 401 without a valid one.
    pub fn caller(&self) -> Result<Caller, ApiError> {
        let header = self.req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
        let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).ok_or_else(ApiError::unauthorized)?;
        auth::verify_access_token(self.svc.config, token.trim(), self.now_ms)
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

/// Handles one HTTP request. With `only`, routes outside that group are 404 (what a function
/// deployed for one group does).
pub async fn handle(svc: &Services<'_>, only: Option<Group>, req: Request) -> Response {
    let request_id = request_id(&req, svc);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let candidates: Vec<(&RouteSpec, Vec<String>)> =
        ROUTES.iter().filter(|r| only.is_none_or(|g| g == r.group)).filter_map(|r| match_path(r.path, &path).map(|p| (r, p))).collect();
    let chosen = candidates.iter().find(|(r, _)| r.method == method || (method == Method::HEAD && r.method == Method::GET));
    let mut response = match chosen {
        Some((route, params)) => {
            let ctx =
                Ctx { svc, req: &req, params: params.clone(), request_id: request_id.clone(), now_ms: svc.clock.now_ms(), picture_mac: Default::default() };
            let result = routes::dispatch(route.id, &ctx).await;
            if route.group.publishes() {
                relay(svc, &request_id).await;
            }
            result.unwrap_or_else(ApiError::into_response)
        }
        None if !candidates.is_empty() => {
            let allow: Vec<&str> = candidates.iter().map(|(r, _)| r.method.as_str()).collect();
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
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(ROUTES[..i].iter().all(|o| (o.method.clone(), o.path) != (r.method.clone(), r.path)), "{} {}", r.method, r.path);
        }
    }
}
