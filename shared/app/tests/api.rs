//! The use cases over in-memory adapters: routes called directly with requests, no server.

use std::sync::Arc;

use gocoffee_app::analytics::AnalyticsContext;
use gocoffee_app::auth::{KeySet, PemSigner, StaticKeys};
use gocoffee_app::consumer::{ConsumerError, handle_kitchen_ticket, handle_order_event};
use gocoffee_app::live::LiveContext;
use gocoffee_app::memory::{ManualClock, MemoryAnalytics, MemoryImageBlobs, MemoryKitchen, MemoryKitchenQueue, MemoryLiveFeed, MemoryStore};
use gocoffee_app::ports::{Clock, Entropy, Images, OrderStore};
use gocoffee_app::ratelimit::RateLimits;
use gocoffee_app::{ClientAddr, Config, FUNCTIONS, Services, handle};
use gocoffee_core::{Email, Password};
use serde_json::{Value, json};

struct Counter(std::cell::Cell<u64>);

impl Entropy for Counter {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0.set(self.0.get() + 1);
            let bytes = self.0.get().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

struct World {
    store: MemoryStore,
    kitchen: MemoryKitchen,
    images: MemoryImageBlobs,
    clock: ManualClock,
    entropy: Counter,
    config: Config,
    signer: PemSigner,
    keys: StaticKeys,
    analytics: AnalyticsContext,
    live: LiveContext,
    /// Where the next requests come from, as the shell would say.
    addr: std::cell::Cell<Option<ClientAddr>>,
}

struct Reply {
    status: u16,
    body: Value,
    headers: http::HeaderMap,
}

const ADMIN: (&str, &str) = ("admin@gocoffee.test", "admin password 1");

impl World {
    fn new() -> World {
        World {
            store: MemoryStore::default(),
            kitchen: MemoryKitchen::default(),
            images: MemoryImageBlobs::default(),
            clock: ManualClock::new(1_700_000_000_000),
            entropy: Counter(Default::default()),
            config: Config {
                jwt_secret: b"test-secret-test-secret-test-secret!".to_vec(),
                access_token_ttl_s: 900,
                refresh_token_ttl_s: 3600,
                bootstrap_admin: Some((Email::parse(ADMIN.0).expect("email"), Password::parse(ADMIN.1).expect("password"))),
                public_base_url: None,
                crypto_methods: vec![("polygon".into(), "USDC".into())],
                rate_limits: RateLimits::OFF,
                token_issuer: None,
                token_audience: "gocoffee-api".into(),
                token_public_keys: None,
                live_socket_url: Some("/api/v1/live/socket".into()),
            },
            signer: PemSigner::from_pem(include_str!("keys/current.pem")).expect("the test key"),
            keys: StaticKeys(Arc::new(
                KeySet::from_pems(concat!(include_str!("keys/current.pub.pem"), include_str!("keys/retired.pub.pem"))).expect("test keys"),
            )),
            analytics: AnalyticsContext { store: Box::new(MemoryAnalytics::default()) },
            live: LiveContext { feed: Box::new(MemoryLiveFeed::default()) },
            addr: Default::default(),
        }
    }

    fn svc(&self) -> Services<'_> {
        self.svc_with(&self.analytics)
    }

    /// The services of a function that brings `extension`.
    fn svc_with<'a>(&'a self, extension: &'a dyn std::any::Any) -> Services<'a> {
        Services {
            users: &self.store,
            menu: &self.store,
            orders: &self.store,
            relay: &self.store,
            kitchen_queue: None,
            kitchen: &self.kitchen,
            images: Some(Images::Served(&self.images)),
            limiter: Some(&self.store),
            tokens: &self.keys,
            signer: Some(&self.signer),
            clock: &self.clock,
            entropy: &self.entropy,
            config: &self.config,
            extension: Some(extension),
        }
    }

    fn raw(&self, method: &str, path: &str, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        self.clock.advance(1);
        let mut b = http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(body).expect("request");
        if let Some(addr) = self.addr.get() {
            req.extensions_mut().insert(addr);
        }
        let resp = pollster::block_on(handle(&self.svc(), FUNCTIONS, req));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if resp.body().is_empty() { Value::Null } else { serde_json::from_slice(resp.body()).expect("JSON body") };
        if status >= 400 {
            assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "error shape: {body}");
        }
        Reply { status, body, headers }
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let (ct, bytes) = match body {
            Some(v) => (Some("application/json"), serde_json::to_vec(&v).expect("json")),
            None => (None, vec![]),
        };
        self.raw(method, path, token, ct, bytes, &[])
    }

    fn register(&self, email: &str) -> String {
        let r = self.call("POST", "/api/v1/auth/register", None, Some(json!({"email": email, "password": "password 123"})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    fn login(&self, email: &str, password: &str) -> Reply {
        self.call("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": password})))
    }

    fn admin(&self) -> String {
        let r = self.login(ADMIN.0, ADMIN.1);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    fn staff(&self, email: &str, role: &str) -> String {
        let admin = self.admin();
        let r = self.call("POST", "/api/v1/auth/users", Some(&admin), Some(json!({"email": email, "password": "staff password", "role": role})));
        assert_eq!(r.status, 201, "{}", r.body);
        self.login(email, "staff password").body["access_token"].as_str().expect("token").to_owned()
    }

    fn place(&self, token: &str) -> String {
        let r = self.call(
            "POST",
            "/api/v1/orders",
            Some(token),
            Some(json!({"lines": [{"item_id": "latte", "size": "medium", "modifiers": ["oat-milk"], "quantity": 2}]})),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// A request whose answer may not be JSON (pictures): status, headers and the raw body.
    fn bytes(&self, method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, http::HeaderMap, Vec<u8>) {
        self.clock.advance(1);
        let mut b = http::Request::builder().method(method).uri(url);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let resp = pollster::block_on(handle(&self.svc(), FUNCTIONS, b.body(body.to_vec()).expect("request")));
        (resp.status().as_u16(), resp.headers().clone(), resp.into_body())
    }

    /// `GET /api/v1/live/events` (`query` after the `?`): status, headers and the SSE body.
    fn sse(&self, query: &str, token: &str, last_event_id: Option<&str>) -> (u16, http::HeaderMap, String) {
        self.clock.advance(1);
        let mut b = http::Request::builder().uri(format!("/api/v1/live/events?{query}")).header("authorization", format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            b = b.header("last-event-id", id);
        }
        let resp = pollster::block_on(handle(&self.svc_with(&self.live), FUNCTIONS, b.body(vec![]).expect("request")));
        (resp.status().as_u16(), resp.headers().clone(), String::from_utf8(resp.into_body()).expect("UTF-8"))
    }

    /// Gives the notifier everything published so far (again: it must not repeat itself).
    fn notify_all(&self) {
        for e in self.store.published() {
            let payload = serde_json::to_vec(&e).expect("event");
            pollster::block_on(gocoffee_app::live::notify(&self.svc_with(&self.live), &payload)).expect("notified");
        }
    }

    /// Delivers everything published so far to the order consumer, like the stream would.
    fn deliver_all(&self) {
        let mut delivered = 0;
        loop {
            let published = self.store.published();
            if delivered == published.len() {
                break;
            }
            for e in &published[delivered..] {
                let payload = serde_json::to_vec(e).expect("event");
                pollster::block_on(handle_order_event(&self.svc(), &payload)).expect("handled");
            }
            delivered = published.len();
            pollster::block_on(gocoffee_app::ports::EventRelay::relay(&self.store)).expect("relay");
        }
    }
}

#[test]
fn health_answers_without_auth() {
    let w = World::new();
    let r = w.call("GET", "/health", None, None);
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let trace = http::Request::builder().method("TRACE").uri("/health").body(vec![]).expect("request");
    let r = gocoffee_app::health(&trace);
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().ok()), (405, Some("GET, HEAD")));
}

#[test]
fn register_login_me_and_refresh_rotation() {
    let w = World::new();
    let token = w.register("Ada@Example.com");
    let me = w.call("GET", "/api/v1/auth/me", Some(&token), None);
    assert_eq!((me.status, me.body["email"].as_str(), me.body["role"].as_str()), (200, Some("ada@example.com"), Some("customer")));

    assert_eq!(w.login("ada@example.com", "wrong password").status, 401);
    assert_eq!(w.login("nobody@example.com", "password 123").body["error"]["code"], "invalid_credentials");
    let login = w.login("ada@example.com", "password 123");
    assert_eq!(login.status, 200);
    let refresh = login.body["refresh_token"].as_str().expect("refresh").to_owned();

    let r1 = w.call("POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": refresh})));
    assert_eq!(r1.status, 200);
    let again = w.call("POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": refresh})));
    assert_eq!((again.status, again.body["error"]["code"].as_str()), (401, Some("invalid_refresh_token")), "a refresh token works once");

    let next = r1.body["refresh_token"].as_str().expect("rotated");
    assert_eq!(w.call("POST", "/api/v1/auth/logout", None, Some(json!({"refresh_token": next}))).status, 204);
    assert_eq!(w.call("POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": next}))).status, 401);
}

#[test]
fn registering_twice_or_with_bad_input_is_rejected() {
    let w = World::new();
    w.register("ada@example.com");
    let dup = w.call("POST", "/api/v1/auth/register", None, Some(json!({"email": "ADA@example.com", "password": "password 123"})));
    assert_eq!((dup.status, dup.body["error"]["code"].as_str()), (409, Some("email_taken")));
    let weak = w.call("POST", "/api/v1/auth/register", None, Some(json!({"email": "bob@example.com", "password": "short"})));
    assert_eq!((weak.status, weak.body["error"]["code"].as_str()), (422, Some("weak_password")));
    let role = w.call("POST", "/api/v1/auth/register", None, Some(json!({"email": "eve@example.com", "password": "password 123", "role": "admin"})));
    assert_eq!((role.status, role.body["error"]["code"].as_str()), (400, Some("invalid_body")), "nobody self-registers as staff");
}

#[test]
fn tokens_expire_and_forged_ones_are_refused() {
    let w = World::new();
    let token = w.register("ada@example.com");
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some("garbage"), None).body["error"]["code"], "invalid_token");
    assert_eq!(w.call("GET", "/api/v1/auth/me", None, None).status, 401);
    w.clock.advance(901_000);
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&token), None).status, 401);
}

#[test]
fn identity_publishes_the_keys_its_tokens_verify_with() {
    let w = World::new();
    let jwks = w.call("GET", "/.well-known/jwks.json", None, None);
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.headers["cache-control"], "public, max-age=300");
    let kids: Vec<&str> = jwks.body["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid")).collect();
    assert_eq!(kids, [w.signer.kid(), w.keys.0.keys()[1].kid.as_str()], "the current key and the retired one");
    // The token names the current key, and says who issued it for whom.
    let token = w.register("ada@example.com");
    let part = |i: usize| -> Value {
        use base64::Engine as _;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(i).expect("part")).expect("base64url"))
            .expect("json")
    };
    assert_eq!((part(0)["alg"].as_str(), part(0)["kid"].as_str()), (Some("RS256"), Some(w.signer.kid())));
    assert_eq!((part(1)["iss"].as_str(), part(1)["aud"].as_str()), (Some("gocoffee"), Some("gocoffee-api")));
    assert_eq!(part(1)["exp"].as_i64().expect("exp") - part(1)["nbf"].as_i64().expect("nbf"), 900);
    let discovery = w.call("GET", "/.well-known/openid-configuration", None, None);
    assert_eq!((discovery.body["issuer"].as_str(), discovery.body["jwks_uri"].as_str()), (Some("gocoffee"), Some("/.well-known/jwks.json")));
    // An issuer that is a URL is where its keys are, as a JWT authorizer looks for them.
    let fresh = World::new();
    let w = World { config: Config { token_issuer: Some("https://api.coffee.example".into()), ..fresh.config.clone() }, ..fresh };
    let discovery = w.call("GET", "/.well-known/openid-configuration", None, None);
    assert_eq!(discovery.body["jwks_uri"], "https://api.coffee.example/.well-known/jwks.json");
    let token = w.register("ada@example.com");
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&token), None).status, 200);
}

#[test]
fn tokens_survive_a_key_rotation_until_their_key_is_removed() {
    let w = World::new();
    let before = w.register("ada@example.com");
    // The retired key signs from now on; the old current one stays trusted.
    let rotated = World { signer: PemSigner::from_pem(include_str!("keys/retired.pem")).expect("key"), ..w };
    assert_eq!(rotated.call("GET", "/api/v1/auth/me", Some(&before), None).status, 200, "a token signed before the rotation");
    let after = rotated.login("ada@example.com", "password 123").body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(rotated.call("GET", "/api/v1/auth/me", Some(&after), None).status, 200);
    // Once the old key is dropped from the set, its tokens are refused.
    let dropped = World { keys: StaticKeys(Arc::new(KeySet::from_pems(include_str!("keys/retired.pub.pem")).expect("key"))), ..rotated };
    assert_eq!(dropped.call("GET", "/api/v1/auth/me", Some(&before), None).body["error"]["code"], "invalid_token");
    assert_eq!(dropped.call("GET", "/api/v1/auth/me", Some(&after), None).status, 200);
}

#[test]
fn without_its_keys_the_service_is_unavailable_not_the_caller_unauthorized() {
    let w = World::new();
    let token = w.register("ada@example.com");
    let svc = Services { tokens: &KeysDown, ..w.svc() };
    let req = http::Request::builder().uri("/api/v1/auth/me").header("authorization", format!("Bearer {token}")).body(vec![]).expect("request");
    assert_eq!(pollster::block_on(handle(&svc, FUNCTIONS, req)).status(), 503);
    let svc = Services { signer: None, ..w.svc() };
    let body = serde_json::to_vec(&json!({"email": "ada@example.com", "password": "password 123"})).expect("json");
    let req = http::Request::builder().method("POST").uri("/api/v1/auth/login").header("content-type", "application/json").body(body).expect("request");
    assert_eq!(pollster::block_on(handle(&svc, FUNCTIONS, req)).status(), 503, "only identity signs");
}

struct KeysDown;

#[async_trait::async_trait(?Send)]
impl gocoffee_app::ports::TokenKeys for KeysDown {
    async fn keys(&self) -> gocoffee_app::ports::StoreResult<Arc<KeySet>> {
        Err(gocoffee_app::ports::StoreError::Unavailable("KMS is down".into()))
    }
}

#[test]
fn only_an_admin_creates_staff_accounts() {
    let w = World::new();
    let customer = w.register("ada@example.com");
    let r = w.call("POST", "/api/v1/auth/users", Some(&customer), Some(json!({"email": "b@example.com", "password": "staff password", "role": "barista"})));
    assert_eq!(r.status, 403);
    let barista = w.staff("barista@example.com", "barista");
    let me = w.call("GET", "/api/v1/auth/me", Some(&barista), None);
    assert_eq!(me.body["role"], "barista");
    // The bootstrap admin is created once; a wrong password for it is just a wrong password.
    assert_eq!(w.login(ADMIN.0, "not the password").status, 401);
    assert_eq!(w.login(ADMIN.0, ADMIN.1).body["user"]["role"], "admin");
}

#[test]
fn the_menu_is_public_and_managers_change_it() {
    let w = World::new();
    let menu = w.call("GET", "/api/v1/menu", None, None);
    assert_eq!(menu.status, 200);
    assert!(menu.body["items"].as_array().expect("items").len() >= 15);

    let barista = w.staff("barista@example.com", "barista");
    let manager = w.staff("manager@example.com", "manager");
    let new_item = json!({"name": "Iced Latte", "category": "drink", "sizes": [{"size": "medium", "price_cents": 475}]});
    assert_eq!(w.call("POST", "/api/v1/menu/items", Some(&barista), Some(new_item.clone())).status, 403);
    let created = w.call("POST", "/api/v1/menu/items", Some(&manager), Some(new_item.clone()));
    assert_eq!((created.status, created.headers["location"].to_str().ok()), (201, Some("/api/v1/menu/items/iced-latte")));
    assert_eq!(w.call("POST", "/api/v1/menu/items", Some(&manager), Some(new_item)).status, 409);

    let patched = w.call("PATCH", "/api/v1/menu/items/iced-latte", Some(&manager), Some(json!({"available": false})));
    assert_eq!((patched.status, patched.body["available"].as_bool()), (200, Some(false)));
    assert_eq!(w.call("PATCH", "/api/v1/menu/items/nope", Some(&manager), Some(json!({"available": false}))).status, 404);
    assert_eq!(w.call("GET", "/api/v1/menu/items/iced-latte", None, None).body["available"], false);

    let customer = w.register("ada@example.com");
    let r = w.call("POST", "/api/v1/orders", Some(&customer), Some(json!({"lines": [{"item_id": "iced-latte", "quantity": 1}]})));
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some("item_unavailable")));
}

#[test]
fn a_manager_uploads_a_picture_through_a_signed_url_and_the_menu_links_it() {
    let w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    let barista = w.staff("barista@example.com", "barista");
    let path = "/api/v1/menu/items/latte/image";
    let ask = |token: Option<&str>, body: Value| w.call("PUT", path, token, Some(body));
    let png = json!({"content_type": "image/png", "content_length": 8});
    assert_eq!(ask(None, png.clone()).status, 401);
    assert_eq!(ask(Some(&barista), png.clone()).status, 403);
    assert_eq!(w.call("PUT", "/api/v1/menu/items/nope/image", Some(&manager), Some(png.clone())).status, 404);
    for (bad, code) in [
        (json!({"content_type": "text/html", "content_length": 8}), "unsupported_image_type"),
        (json!({"content_type": "image/png", "content_length": 0}), "invalid_image_size"),
        (json!({"content_type": "image/png", "content_length": 1_000_001}), "invalid_image_size"),
    ] {
        let r = ask(Some(&manager), bad);
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some(code)), "{}", r.body);
    }
    assert_eq!(ask(Some(&manager), json!({"content_type": "image/png"})).status, 400);

    let issued = ask(Some(&manager), png);
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!((issued.body["method"].as_str(), issued.body["headers"]["content-type"].as_str()), (Some("PUT"), Some("image/png")));
    let upload = issued.body["upload_url"].as_str().expect("upload url").to_owned();
    assert!(upload.starts_with("/api/v1/menu/items/latte/image/") && upload.contains(".png?"), "{upload}");

    let bytes = b"\x89PNG\r\n\x1a\n";
    // The URL takes exactly what was announced, unaltered.
    assert_eq!(w.bytes("PUT", &upload, Some("image/jpeg"), bytes).0, 403);
    assert_eq!(w.bytes("PUT", &upload, Some("image/png"), b"\x89PNG").0, 400);
    assert_eq!(w.bytes("PUT", &upload.replace("content_length=8", "content_length=4"), Some("image/png"), b"\x89PNG").0, 403);
    assert_eq!(w.bytes("PUT", &upload.replace("expires=", "expires=9"), Some("image/png"), bytes).0, 403);
    assert_eq!(w.bytes("PUT", &upload, Some("image/png"), bytes).0, 204);

    let item = w.call("GET", "/api/v1/menu/items/latte", None, None);
    assert!(item.body.get("image").is_none(), "the object key stays private: {}", item.body);
    let download = item.body["image_url"].as_str().expect("image url").to_owned();
    let listed = w.call("GET", "/api/v1/menu", None, None);
    let latte = listed.body["items"].as_array().expect("items").iter().find(|i| i["id"] == "latte").expect("latte").clone();
    assert_eq!(latte["image_url"].as_str(), Some(download.as_str()), "one URL per window, so caches keep the picture");
    assert!(listed.body["items"][0]["image_url"].is_null());

    let (status, headers, body) = w.bytes("GET", &download, None, &[]);
    assert_eq!((status, body.as_slice()), (200, bytes.as_slice()));
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(w.bytes("GET", &download.replace("/image/", "/image/x"), None, &[]).0, 403);
    assert_eq!(w.bytes("GET", download.split('?').next().expect("path"), None, &[]).0, 403);
    // The upload URL is not a download URL.
    assert_eq!(w.bytes("GET", &upload, None, &[]).0, 403);

    w.clock.advance(2 * 3600 * 1000);
    assert_eq!(w.bytes("GET", &download, None, &[]).0, 403, "expired");
    assert_eq!(w.bytes("PUT", &upload, Some("image/png"), bytes).0, 403, "expired");
    let fresh = w.call("GET", "/api/v1/menu/items/latte", None, None).body["image_url"].as_str().expect("url").to_owned();
    assert_eq!(w.bytes("GET", &fresh, None, &[]).0, 200);
}

#[test]
fn without_picture_storage_the_picture_routes_are_404() {
    let w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    let svc = Services { images: None, ..w.svc() };
    let req = http::Request::builder()
        .method("PUT")
        .uri("/api/v1/menu/items/latte/image")
        .header("authorization", format!("Bearer {manager}"))
        .header("content-type", "application/json")
        .body(br#"{"content_type": "image/png", "content_length": 8}"#.to_vec())
        .expect("request");
    assert_eq!(pollster::block_on(handle(&svc, FUNCTIONS, req)).status(), 404);
    let req = http::Request::builder().uri("/api/v1/menu/items/latte/image/x.png?expires=1&signature=00").body(vec![]).expect("request");
    assert_eq!(pollster::block_on(handle(&svc, FUNCTIONS, req)).status(), 404);
}

#[test]
fn an_order_goes_from_placed_to_collected_with_its_history() {
    let w = World::new();
    let customer = w.register("ada@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let placed = w.call(
        "POST",
        "/api/v1/orders",
        Some(&customer),
        Some(json!({
            "lines": [{"item_id": "latte", "size": "large", "modifiers": ["extra-shot"], "quantity": 2, }, {"item_id": "croissant", "quantity": 1}],
            "note": "no foam"
        })),
    );
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(placed.headers["location"].to_str().ok(), Some(format!("/api/v1/orders/{id}").as_str()));
    assert_eq!((placed.body["status"].as_str(), placed.body["total_cents"].as_u64()), (Some("pending"), Some(2 * 590 + 325)));

    // The stream carries OrderPlaced; the consumer confirms and the kitchen sees the ticket.
    w.deliver_all();
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}"), Some(&customer), None).body["status"], "confirmed");
    let queue = w.call("GET", "/api/v1/kitchen/queue", Some(&barista), None);
    assert_eq!(queue.body["items"][0]["order_id"].as_str(), Some(id.as_str()));
    assert_eq!(queue.body["items"][0]["note"], "no foam");

    assert_eq!(w.call("POST", &format!("/api/v1/kitchen/orders/{id}/start"), Some(&customer), None).status, 403);
    assert_eq!(w.call("POST", &format!("/api/v1/kitchen/orders/{id}/start"), Some(&barista), None).body["status"], "preparing");
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{id}/collect"), Some(&customer), None).status, 409);
    assert_eq!(w.call("POST", &format!("/api/v1/kitchen/orders/{id}/ready"), Some(&barista), None).body["status"], "ready");
    assert_eq!(w.call("GET", "/api/v1/kitchen/queue", Some(&barista), None).body["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{id}/collect"), Some(&customer), None).body["status"], "completed");

    let history = w.call("GET", &format!("/api/v1/orders/{id}/events"), Some(&customer), None);
    let names: Vec<&str> = history.body["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().expect("type")).collect();
    // The confirmation routed it to the stations; the whole-order start and ready moved each part.
    assert_eq!(
        names,
        [
            "OrderPlaced",
            "OrderConfirmed",
            "TicketRouted",
            "PreparationStarted",
            "PartStarted",
            "PartStarted",
            "PartReady",
            "PartReady",
            "OrderReady",
            "OrderCompleted"
        ]
    );
    let versions: Vec<u64> = history.body["events"].as_array().expect("events").iter().map(|e| e["version"].as_u64().expect("v")).collect();
    assert_eq!(versions, (1..=10).collect::<Vec<u64>>());
    w.deliver_all();
    let published: Vec<&str> = w.store.published().iter().map(|e| e.event.name()).collect::<Vec<_>>().into_iter().collect();
    assert_eq!(published, names, "every event went out on the stream, in order");
}

#[test]
fn with_a_kitchen_queue_placed_orders_wait_there_until_the_kitchen_accepts_them_once() {
    let w = World::new();
    let customer = w.register("ada@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let id = w.call("POST", "/api/v1/orders", Some(&customer), Some(json!({"lines": [{"item_id": "espresso", "size": "single", "quantity": 1}]}))).body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let queue = MemoryKitchenQueue::default();
    let svc = Services { kitchen_queue: Some(&queue), ..w.svc() };
    let placed = serde_json::to_vec(&w.store.published()[0]).expect("event");
    pollster::block_on(handle_order_event(&svc, &placed)).expect("queued");
    assert_eq!(queue.0.borrow().len(), 1, "the placed order went to the kitchen queue");
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}"), Some(&customer), None).body["status"], "pending", "not yet accepted");

    let ticket = serde_json::to_vec(&queue.0.borrow()[0]).expect("ticket");
    pollster::block_on(handle_kitchen_ticket(&svc, &ticket)).expect("accepted");
    pollster::block_on(handle_kitchen_ticket(&svc, &ticket)).expect("a duplicate is a no-op");
    let events = w.call("GET", &format!("/api/v1/orders/{id}/events"), Some(&customer), None);
    assert_eq!(events.body["events"].as_array().map(Vec::len), Some(3), "one OrderConfirmed (and its routing) for two deliveries: {}", events.body);
    assert_eq!(w.call("GET", "/api/v1/kitchen/queue", Some(&barista), None).body["items"][0]["order_id"].as_str(), Some(id.as_str()));

    let confirmed = serde_json::to_vec(&pollster::block_on(w.store.events(&id)).expect("events")[1]).expect("event");
    assert!(matches!(pollster::block_on(handle_kitchen_ticket(&svc, &confirmed)), Err(ConsumerError::Poison(_))), "only placed orders are tickets");
    assert!(matches!(pollster::block_on(handle_kitchen_ticket(&svc, b"{}")), Err(ConsumerError::Poison(_))));
}

#[test]
fn a_retried_post_with_the_same_idempotency_key_returns_the_first_order() {
    let w = World::new();
    let customer = w.register("ada@example.com");
    let body = serde_json::to_vec(&json!({"lines": [{"item_id": "espresso", "size": "double", "quantity": 1}]})).expect("json");
    let first = w.raw("POST", "/api/v1/orders", Some(&customer), Some("application/json"), body.clone(), &[("idempotency-key", "k-1")]);
    let second = w.raw("POST", "/api/v1/orders", Some(&customer), Some("application/json"), body, &[("idempotency-key", "k-1")]);
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(w.call("GET", "/api/v1/orders", Some(&customer), None).body["items"].as_array().map(Vec::len), Some(1));

    let other = serde_json::to_vec(&json!({"lines": [{"item_id": "espresso", "size": "single", "quantity": 1}]})).expect("json");
    let misuse = w.raw("POST", "/api/v1/orders", Some(&customer), Some("application/json"), other, &[("idempotency-key", "k-1")]);
    assert_eq!((misuse.status, misuse.body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
}

#[test]
fn customers_only_see_their_own_orders() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let bob = w.register("bob@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let id = w.place(&ada);
    w.place(&bob);
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}"), Some(&bob), None).status, 404);
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}/events"), Some(&bob), None).status, 404);
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{id}/cancel"), Some(&bob), None).status, 404);
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}"), Some(&barista), None).status, 200);
    assert_eq!(w.call("GET", "/api/v1/orders", Some(&bob), None).body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(w.call("GET", "/api/v1/orders", Some(&barista), None).body["items"].as_array().map(Vec::len), Some(2));
}

#[test]
fn cancel_rules_depend_on_role_and_status() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let manager = w.staff("manager@example.com", "manager");

    let early = w.place(&ada);
    let r = w.call("POST", &format!("/api/v1/orders/{early}/cancel"), Some(&ada), Some(json!({"reason": "changed my mind"})));
    assert_eq!(r.body["status"], "cancelled");

    let started = w.place(&ada);
    w.deliver_all();
    w.call("POST", &format!("/api/v1/kitchen/orders/{started}/start"), Some(&barista), None);
    let r = w.call("POST", &format!("/api/v1/orders/{started}/cancel"), Some(&ada), None);
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("illegal_transition")));
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{started}/cancel"), Some(&barista), None).body["status"], "cancelled");

    let ready = w.place(&ada);
    w.deliver_all();
    w.call("POST", &format!("/api/v1/kitchen/orders/{ready}/start"), Some(&barista), None);
    w.call("POST", &format!("/api/v1/kitchen/orders/{ready}/ready"), Some(&barista), None);
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{ready}/cancel"), Some(&manager), None).status, 409);

    assert_eq!(w.call("POST", &format!("/api/v1/orders/{early}/refund"), Some(&barista), None).status, 403);
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{early}/refund"), Some(&manager), None).body["status"], "refunded");
}

#[test]
fn bad_input_gets_a_clear_4xx() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let post = |ct: Option<&str>, body: &[u8]| w.raw("POST", "/api/v1/orders", Some(&ada), ct, body.to_vec(), &[]);
    let code = |r: Reply| (r.status, r.body["error"]["code"].as_str().unwrap_or("").to_owned());
    assert_eq!(code(post(Some("application/json"), b"{not json")), (400, "malformed_json".into()));
    assert_eq!(code(post(Some("text/plain"), b"{}")), (415, "unsupported_media_type".into()));
    assert_eq!(code(post(Some("application/json"), &vec![b' '; 70_000])), (413, "body_too_large".into()));
    assert_eq!(code(post(Some("application/json"), br#"{"lines":[],"extra":1}"#)), (400, "invalid_body".into()));
    assert_eq!(
        code(post(Some("application/json"), br#"{"lines":[{"item_id":"latte","size":"small","quantity":1,"price_cents":1}]}"#)),
        (400, "invalid_body".into())
    );
    assert_eq!(code(post(Some("application/json"), br#"{"lines":[{"item_id":"unicorn","quantity":1}]}"#)), (422, "unknown_item".into()));
    assert_eq!(code(post(Some("application/json"), br#"{"lines":[{"item_id":"latte","size":"small","quantity":21}]}"#)), (422, "invalid_quantity".into()));
    assert_eq!(code(post(Some("application/json"), br#"{"lines":[]}"#)), (422, "empty_order".into()));
    assert_eq!(
        code(w.raw("POST", "/api/v1/orders", Some(&ada), Some("application/json"), b"{}".to_vec(), &[("idempotency-key", "")])),
        (400, "invalid_idempotency_key".into())
    );
    assert_eq!(code(w.call("GET", "/api/v1/orders?limit=0", Some(&ada), None)), (400, "invalid_limit".into()));
    assert_eq!(code(w.call("GET", "/api/v1/orders?status=lost", Some(&ada), None)), (400, "invalid_status".into()));
    assert_eq!(code(w.call("GET", "/api/v1/orders?cursor=%%%", Some(&ada), None)), (400, "invalid_cursor".into()));
    assert_eq!(code(w.call("GET", "/api/v1/nope", None, None)), (404, "not_found".into()));
    let r = w.call("DELETE", "/api/v1/orders", Some(&ada), None);
    assert_eq!((r.status, r.headers["allow"].to_str().ok()), (405, Some("POST, GET")));
}

#[test]
fn a_failing_store_is_a_503_not_a_500() {
    let w = World::new();
    w.store.fail.set(true);
    let r = w.call("GET", "/api/v1/menu", None, None);
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (503, Some("unavailable")));
    assert_eq!(r.headers["retry-after"], "1");
}

#[test]
fn the_same_event_delivered_twice_has_one_effect() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let id = w.place(&ada);
    pollster::block_on(gocoffee_app::ports::EventRelay::relay(&w.store)).expect("relay");
    let placed = serde_json::to_vec(&w.store.published()[0]).expect("event");
    for _ in 0..3 {
        pollster::block_on(handle_order_event(&w.svc(), &placed)).expect("handled");
    }
    let events = pollster::block_on(w.store.events(&id)).expect("events");
    assert_eq!(events.iter().map(|e| e.event.name()).collect::<Vec<_>>(), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
}

#[test]
fn a_poison_message_is_not_retryable_and_a_missing_order_is() {
    let w = World::new();
    let err = pollster::block_on(handle_order_event(&w.svc(), b"{\"nope\":1}")).expect_err("poison");
    assert!(matches!(err, ConsumerError::Poison(_)) && !err.is_retryable());
    let ada = w.register("ada@example.com");
    w.place(&ada);
    pollster::block_on(gocoffee_app::ports::EventRelay::relay(&w.store)).expect("relay");
    let mut event = w.store.published()[0].clone();
    event.order_id = "01UNKNOWNUNKNOWNUNKNOWNUNK".into();
    let err = pollster::block_on(handle_order_event(&w.svc(), &serde_json::to_vec(&event).expect("json"))).expect_err("missing");
    assert!(err.is_retryable());
}

#[test]
fn a_cancelled_order_is_not_confirmed_by_a_late_event() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let id = w.place(&ada);
    w.call("POST", &format!("/api/v1/orders/{id}/cancel"), Some(&ada), None);
    w.deliver_all();
    assert_eq!(w.call("GET", &format!("/api/v1/orders/{id}"), Some(&ada), None).body["status"], "cancelled");
}

#[test]
fn order_lists_page_with_a_cursor() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    let ids: Vec<String> = (0..5).map(|_| w.place(&ada)).collect();
    let mut seen = vec![];
    let mut url = "/api/v1/orders?limit=2".to_owned();
    loop {
        let page = w.call("GET", &url, Some(&ada), None);
        seen.extend(page.body["items"].as_array().expect("items").iter().map(|o| o["id"].as_str().expect("id").to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/orders?limit=2&cursor={c}"),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
}

#[test]
fn a_function_serves_only_its_own_routes() {
    let w = World::new();
    let req = http::Request::builder().uri("/api/v1/menu").body(vec![]).expect("request");
    let r = pollster::block_on(handle(&w.svc(), &[&gocoffee_app::orders::FUNCTION], req));
    assert_eq!(r.status(), 404);
}

#[test]
fn the_request_id_is_echoed() {
    let w = World::new();
    let r = w.raw("GET", "/health", None, None, vec![], &[("x-request-id", "abc-123")]);
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

#[test]
fn the_admin_email_cannot_be_registered_before_the_admin_first_logs_in() {
    let w = World::new();
    let squat = w.call("POST", "/api/v1/auth/register", None, Some(json!({"email": "Admin@GoCoffee.test", "password": "squatter password"})));
    assert_eq!((squat.status, squat.body["error"]["code"].as_str()), (409, Some("email_taken")), "answered as a taken email");
    let login = w.login(ADMIN.0, ADMIN.1);
    assert_eq!((login.status, login.body["user"]["role"].as_str()), (200, Some("admin")));
    let admin_id = login.body["user"]["id"].as_str().expect("id").to_owned();
    let admin = login.body["access_token"].as_str().expect("token").to_owned();
    let staff = w.call("POST", "/api/v1/auth/users", Some(&admin), Some(json!({"email": ADMIN.0, "password": "staff password", "role": "barista"})));
    assert_eq!(staff.status, 409);
    // A second first login (as after a race) finds the one admin.
    assert_eq!(w.login(ADMIN.0, ADMIN.1).body["user"]["id"].as_str(), Some(admin_id.as_str()));
    assert_eq!(w.login(ADMIN.0, "admin password 2").status, 401);
}

#[test]
fn menu_writes_are_conditional_on_the_version_read() {
    let w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    let read = w.call("GET", "/api/v1/menu/items/latte", None, None);
    let etag = read.headers["etag"].to_str().expect("etag").to_owned();
    assert_eq!(etag, "\"0\"");
    let patch = |body: Value, if_match: Option<&str>| {
        let headers: Vec<(&str, &str)> = if_match.map(|m| vec![("if-match", m)]).unwrap_or_default();
        w.raw("PATCH", "/api/v1/menu/items/latte", Some(&manager), Some("application/json"), serde_json::to_vec(&body).expect("json"), &headers)
    };
    // Two managers read version 0; the first write wins, the second is told it is stale.
    let first = patch(json!({"available": false}), Some(&etag));
    assert_eq!((first.status, first.headers["etag"].to_str().ok(), first.body["version"].as_u64()), (200, Some("\"1\""), Some(1)));
    let second = patch(json!({"name": "Big Latte"}), Some(&etag));
    assert_eq!((second.status, second.body["error"]["code"].as_str()), (412, Some("precondition_failed")));
    assert_eq!(patch(json!({"name": "Big Latte"}), Some("W/\"1\"")).status, 412, "weak tags never match");
    // Without If-Match the change is applied on top of whatever is current: nothing is lost.
    let merged = patch(json!({"name": "Big Latte"}), None);
    assert_eq!((merged.status, merged.body["available"].as_bool(), merged.body["name"].as_str()), (200, Some(false), Some("Big Latte")));
    assert_eq!(patch(json!({"available": true}), Some("\"7\", \"2\"")).status, 200, "any listed tag may match");
    assert_eq!(patch(json!({"available": true}), Some("*")).status, 200);
}

#[test]
fn an_upload_url_works_once_and_a_replaced_picture_is_deleted() {
    let w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    let bytes = b"\x89PNG\r\n\x1a\n";
    let issue = || {
        let r = w.call("PUT", "/api/v1/menu/items/latte/image", Some(&manager), Some(json!({"content_type": "image/png", "content_length": 8})));
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["upload_url"].as_str().expect("upload url").to_owned()
    };
    let first = issue();
    assert_eq!(w.bytes("PUT", &first, Some("image/png"), bytes).0, 204);
    let replayed = w.bytes("PUT", &first, Some("image/png"), b"evil!!!!");
    assert_eq!(replayed.0, 403, "a second PUT on the same URL is refused");
    let first_download = w.call("GET", "/api/v1/menu/items/latte", None, None).body["image_url"].as_str().expect("url").to_owned();
    assert_eq!(w.bytes("GET", &first_download, None, &[]).2, bytes, "the first upload's bytes stand");

    let second = issue();
    assert_eq!(w.bytes("GET", &first_download, None, &[]).0, 404, "the replaced picture's bytes are gone");
    assert_eq!(w.images.0.borrow().len(), 0);
    assert_eq!(w.bytes("PUT", &second, Some("image/png"), bytes).0, 204);
    let third = issue();
    assert_eq!(w.bytes("PUT", &second, Some("image/png"), bytes).0, 403, "a superseded URL takes nothing");
    assert_eq!(w.bytes("PUT", &third, Some("image/png"), bytes).0, 204);
    assert_eq!(w.images.0.borrow().len(), 1, "one picture stored per item");
}

#[test]
fn picture_urls_never_take_their_origin_from_a_public_host_header() {
    let mut w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    w.call("PUT", "/api/v1/menu/items/latte/image", Some(&manager), Some(json!({"content_type": "image/png", "content_length": 8})));
    let url_for = |w: &World, host: &str, client: &str| {
        let mut headers = vec![("host", host)];
        if !client.is_empty() {
            headers.push(("spin-client-addr", client));
        }
        let r = w.raw("GET", "/api/v1/menu/items/latte", None, None, vec![], &headers);
        r.body["image_url"].as_str().expect("url").to_owned()
    };
    assert!(url_for(&w, "evil.example", "127.0.0.1:5000").starts_with("/api/v1/menu/items/latte/image/"), "relative when the host is not known to be safe");
    assert!(url_for(&w, "127.0.0.1:3000", "127.0.0.1:5000").starts_with("http://127.0.0.1:3000/api/v1/"), "a local client asking a loopback host");
    assert!(url_for(&w, "localhost:3000", "203.0.113.9:5000").starts_with("/api/v1/"), "a remote client's `Host: localhost` is not believed");
    assert!(url_for(&w, "localhost:3000", "").starts_with("/api/v1/"), "nor one from a platform that doesn't say who asked");
    w.config.public_base_url = Some("https://coffee.example".into());
    assert!(url_for(&w, "evil.example", "").starts_with("https://coffee.example/api/v1/menu/items/latte/image/"));
}

#[test]
fn responses_say_how_they_may_be_cached() {
    let w = World::new();
    let ada = w.register("ada@example.com");
    assert_eq!(w.call("GET", "/api/v1/menu", None, None).headers["cache-control"], "public, max-age=30");
    assert_eq!(w.call("GET", "/api/v1/menu/items/latte", None, None).headers["cache-control"], "no-cache", "edits start from a fresh ETag");
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&ada), None).headers["cache-control"], "no-store");
    assert_eq!(w.call("GET", "/api/v1/orders", Some(&ada), None).headers["cache-control"], "no-store");
    assert_eq!(w.call("GET", "/api/v1/nowhere", None, None).headers["cache-control"], "no-store");
}

#[test]
fn the_reconciler_redrives_an_order_whose_placed_event_was_lost_and_only_once_it_is_stuck() {
    use gocoffee_app::reconcile::{GIVE_UP_AFTER_MS, STUCK_AFTER_MS, reconcile_orders};
    let w = World::new();
    let ada = w.register("ada@example.com");
    let lost = w.place(&ada);
    // Published, and the delivery failed for good (nothing redelivers on Spin).
    pollster::block_on(gocoffee_app::ports::EventRelay::relay(&w.store)).expect("relay");
    let before = w.store.published().len();
    let now = w.clock.now_ms();
    let fresh = pollster::block_on(reconcile_orders(&w.svc(), now, STUCK_AFTER_MS)).expect("pass");
    assert_eq!(fresh.republished, Vec::<String>::new(), "not stuck yet: a consumer may still be on it");
    w.clock.advance(STUCK_AFTER_MS);
    let stuck = pollster::block_on(reconcile_orders(&w.svc(), w.clock.now_ms(), STUCK_AFTER_MS)).expect("pass");
    assert_eq!(stuck.republished, vec![lost.clone()]);
    w.deliver_all();
    assert!(w.store.published().len() > before, "the placed event went out again");
    let order = pollster::block_on(w.store.order(&lost)).expect("read").expect("order");
    assert_eq!(order.status, gocoffee_core::OrderStatus::Confirmed, "the consumer got it this time");
    // Confirmed: nothing left to re-drive. A pending order older than a day is left to a person.
    w.clock.advance(STUCK_AFTER_MS);
    let old = w.place(&ada);
    w.clock.advance(GIVE_UP_AFTER_MS + 1);
    let later = pollster::block_on(reconcile_orders(&w.svc(), w.clock.now_ms(), STUCK_AFTER_MS)).expect("pass");
    assert_eq!((later.republished.len(), later.abandoned), (0, 1), "{old} is abandoned, {lost} is done");
}

#[test]
fn the_analytics_model_folds_the_stream_mends_gaps_from_the_log_and_rebuilds_to_the_same_answer() {
    let w = World::new();
    let customer = w.register("ada@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let manager = w.staff("manager@example.com", "manager");
    let made = w.place(&customer);
    let cancelled = w.place(&customer);
    let _waiting = w.place(&customer);
    w.deliver_all();
    for step in ["start", "ready"] {
        assert_eq!(w.call("POST", &format!("/api/v1/kitchen/orders/{made}/{step}"), Some(&barista), None).status, 200);
        w.clock.advance(60_000);
    }
    assert_eq!(w.call("POST", &format!("/api/v1/orders/{cancelled}/cancel"), Some(&customer), Some(json!({}))).status, 200);
    w.deliver_all();

    // The stream, with one of `made`'s events lost on the way: its next event mends it.
    let project = |e: &gocoffee_core::StoredEvent| {
        let payload = serde_json::to_vec(e).expect("event");
        pollster::block_on(gocoffee_app::analytics::consume(&w.svc(), &payload)).expect("projected");
    };
    for e in w.store.published().iter().filter(|e| !(e.order_id == made && e.version == 3)) {
        project(e);
        project(e);
    }
    let range = "from=2023-11-14&to=2023-11-15";
    let read = |what: &str| {
        let r = w.call("GET", &format!("/api/v1/analytics/{what}?{range}"), Some(&manager), None);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        r.body
    };
    let answers = || ["sales", "items", "times", "rates"].map(read);
    let live = answers();
    assert_eq!(live[0]["buckets"][0]["orders"], 3, "{}", live[0]);
    assert_eq!(
        (live[0]["buckets"][0]["sales"].as_u64(), live[0]["buckets"][0]["revenue_cents"].as_u64()),
        (Some(2), Some(2 * 2 * 520)),
        "two medium oat lattes each"
    );
    assert_eq!(live[1]["items"][0], json!({"item_id": "latte", "name": "Caffè Latte", "quantity": 4, "orders": 2}));
    assert_eq!(live[2]["ready_orders"], 1);
    assert_eq!(live[2]["average_preparation_ms"], 60_001, "the lost PreparationStarted came back from the log");
    assert_eq!((live[3]["cancelled"].as_u64(), live[3]["orders"].as_u64()), (Some(1), Some(3)));

    // Rebuilt from the write side's logs, a page at a time: the same answers.
    let admin = w.admin();
    assert_eq!(w.call("POST", "/api/v1/analytics/rebuild", Some(&manager), None).status, 403, "rebuilding is an administrator's");
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/analytics/rebuild?cursor={c}"),
            None => "/api/v1/analytics/rebuild".to_owned(),
        };
        let r = w.call("POST", &path, Some(&admin), None);
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 1);
    assert_eq!(answers(), live);
    // With no time to spare per step, forgetting takes a step per batch (two orders here), each
    // answered with a cursor that goes on; then a page of orders a step. Same answers.
    let mut step = None;
    let mut steps = Vec::new();
    loop {
        let done = pollster::block_on(gocoffee_app::analytics::rebuild(w.analytics.store.as_ref(), &w.store, step.clone(), 2, std::time::Duration::ZERO))
            .expect("a rebuild step");
        steps.push(done.orders);
        match done.next {
            Some(next) => step = Some(next),
            None => break,
        }
    }
    assert_eq!(steps, [0, 2, 1], "one clearing step (three orders, two a batch), then two pages of orders");
    assert_eq!(answers(), live);

    // Who may read, and what a report refuses.
    assert_eq!(w.call("GET", "/api/v1/analytics/sales", Some(&customer), None).status, 403);
    assert_eq!(w.call("GET", "/api/v1/analytics/sales", Some(&barista), None).status, 403);
    assert_eq!(w.call("GET", "/api/v1/analytics/sales", None, None).status, 401);
    for bad in ["bucket=week", "from=yesterday", "from=2023-11-15&to=2023-11-14", "bucket=hour&from=2023-01-01&to=2023-11-14"] {
        let r = w.call("GET", &format!("/api/v1/analytics/sales?{bad}"), Some(&manager), None);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(w.call("GET", "/api/v1/analytics/sales?bucket=day&from=2023-01-01&to=2023-11-14", Some(&manager), None).status, 200);
}

#[test]
fn the_gateway_limits_each_client_by_class_and_nothing_runs_past_the_limit() {
    let mut w = World::new();
    w.config.rate_limits = RateLimits::parse(
        r#"{"credentials": {"requests": 2, "per_seconds": 60, "burst": 2}, "read": {"requests": 3, "per_seconds": 60, "burst": 3}, "write": null}"#,
    )
    .expect("limits");
    let at = |addr: &str| w.addr.set(ClientAddr::parse(addr));
    at("203.0.113.7:4000");
    let ada = w.register("ada@example.com");
    let bob = w.register("bob@example.com");
    let refused = w.call("POST", "/api/v1/auth/register", None, Some(json!({"email": "eve@example.com", "password": "password 123"})));
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", refused.body);
    assert_eq!(refused.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("30"), "one interval, in whole seconds");
    // Nothing behind the limit ran: no account for eve, from any address.
    at("198.51.100.2:5000");
    assert_eq!(w.login("eve@example.com", "password 123").status, 401);
    at("203.0.113.7:4001");
    assert_eq!(w.login("ada@example.com", "password 123").status, 429, "another port of the same address is the same client");

    // Reads count per user once signed in, and per address otherwise.
    for _ in 0..3 {
        assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&ada), None).status, 200);
    }
    let limited = w.call("GET", "/api/v1/orders", Some(&ada), None);
    assert_eq!(limited.status, 429, "one budget across every read route");
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&bob), None).status, 200, "bob has his own");
    assert_eq!(w.call("GET", "/api/v1/menu", None, None).status, 200, "anonymous reads count by address");
    assert_eq!(w.call("GET", "/health", None, None).status, 200);
    // Writes are unlimited here (`null`), and a forged token counts as anonymous, not as ada.
    assert_eq!(w.call("POST", "/api/v1/auth/logout", Some(&ada), Some(json!({"refresh_token": "x"}))).status / 100, 2);
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&format!("{ada}x")), None).status, 401);

    w.clock.advance(20_000);
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&ada), None).status, 200, "one interval later, one more read");
    assert_eq!(w.call("GET", "/api/v1/auth/me", Some(&ada), None).status, 429);

    // A limiter that fails lets requests through rather than taking the API down.
    w.clock.advance(1_000);
    let svc = Services { limiter: Some(&FailingLimiter), ..w.svc() };
    let req = http::Request::builder().uri("/api/v1/menu").body(vec![]).expect("request");
    assert_eq!(pollster::block_on(handle(&svc, FUNCTIONS, req)).status(), 200);
}

struct FailingLimiter;

#[async_trait::async_trait(?Send)]
impl gocoffee_app::ports::RateLimiter for FailingLimiter {
    async fn admit(&self, _: &str, _: &gocoffee_app::ports::RateLimit, _: i64) -> gocoffee_app::ports::StoreResult<gocoffee_app::ports::Admission> {
        Err(gocoffee_app::ports::StoreError::Unavailable("down".into()))
    }
}

/// The SSE messages in `body`: each event's id and its envelope.
fn sse_messages(body: &str) -> Vec<(u64, Value)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let id = frame.lines().find_map(|l| l.strip_prefix("id: "))?.parse().expect("numeric id");
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((id, serde_json::from_str(data).expect("JSON envelope")))
        })
        .collect()
}

#[test]
fn live_streams_carry_each_order_change_to_its_customer_and_the_board_once() {
    let w = World::new();
    let alice = w.register("alice@example.com");
    let bob = w.register("bob@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let order = w.place(&alice);
    let channel = format!("channel=order:{order}");

    // Opened before anything happened, each stream starts at the head: no messages, only where to resume.
    let (status, headers, body) = w.sse(&channel, &alice, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body, "retry: 1000\nid: 0\n\n");

    w.deliver_all();
    w.notify_all();
    w.notify_all();
    let r = w.call("POST", &format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), None);
    assert_eq!(r.status, 200, "{}", r.body);
    w.notify_all();

    let (_, _, body) = w.sse(&channel, &alice, Some("0"));
    let mine: Vec<(String, String, u64)> = sse_messages(&body)
        .into_iter()
        .map(|(_, m)| (m["type"].as_str().expect("type").to_owned(), m["status"].as_str().expect("status").to_owned(), m["version"].as_u64().expect("version")))
        .collect();
    assert_eq!(
        mine,
        [
            ("OrderPlaced".into(), "pending".into(), 1),
            ("OrderConfirmed".into(), "confirmed".into(), 2),
            ("TicketRouted".into(), "confirmed".into(), 3),
            ("PreparationStarted".into(), "preparing".into(), 4),
            ("PartStarted".into(), "preparing".into(), 5)
        ],
        "each change once, in order, though the notifier saw each event twice or thrice"
    );
    let envelope = &sse_messages(&body)[0].1;
    assert_eq!(envelope["channel"], format!("order:{order}"));
    assert_eq!(envelope["order_id"], order.as_str());
    assert!(envelope["event_id"].is_string() && envelope["time"].as_str().expect("time").ends_with('Z'), "{envelope}");

    // The board hears of the order once it is confirmed.
    let (status, _, board) = w.sse("channel=kitchen", &barista, Some("0"));
    assert_eq!(status, 200);
    let kinds: Vec<String> = sse_messages(&board).iter().map(|(_, m)| m["type"].as_str().expect("type").to_owned()).collect();
    assert_eq!(kinds, ["OrderConfirmed", "TicketRouted", "PreparationStarted", "PartStarted"]);
    assert_eq!(sse_messages(&board)[3].1["station"], "espresso-bar");
    assert!(sse_messages(&board).iter().all(|(_, m)| m["channel"] == "kitchen"));

    // Resuming after a message gives only what came after it.
    let (first, _) = sse_messages(&body)[0].clone();
    let (_, _, rest) = w.sse(&channel, &alice, Some(&first.to_string()));
    assert_eq!(sse_messages(&rest).len(), 4);

    // Nobody else follows the order, and customers don't follow the board.
    let (status, _, body) = w.sse(&channel, &bob, Some("0"));
    assert_eq!(status, 404, "another customer's order is as missing as a missing one: {body}");
    assert_eq!(w.sse("channel=kitchen", &alice, None).0, 403);
    assert_eq!(w.sse(&channel, &barista, Some("0")).0, 200, "staff follow any order");
    for bad in ["", "channel=", "channel=orders:x", "channel=order:not-an-id"] {
        assert_eq!(w.sse(bad, &alice, None).0, 422, "{bad}");
    }
    assert_eq!(w.sse(&channel, &alice, Some("yesterday")).0, 400);
    let anonymous = pollster::block_on(handle(
        &w.svc_with(&w.live),
        FUNCTIONS,
        http::Request::builder().uri(format!("/api/v1/live/events?{channel}")).body(vec![]).expect("request"),
    ));
    assert_eq!(anonymous.status(), 401);

    // A browser's EventSource sends no headers: it opens the stream with a ticket instead.
    let r = w.call("POST", "/api/v1/live/tickets", Some(&alice), None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["expires_in"], 60);
    let ticket = r.body["ticket"].as_str().expect("ticket").to_owned();
    let by_ticket = |ticket: &str| {
        let uri = format!("/api/v1/live/events?{channel}&ticket={ticket}&last_event_id=0");
        pollster::block_on(handle(&w.svc_with(&w.live), FUNCTIONS, http::Request::builder().uri(uri).body(vec![]).expect("request")))
    };
    let opened = by_ticket(&ticket);
    assert_eq!(opened.status(), 200);
    assert_eq!(sse_messages(std::str::from_utf8(opened.body()).expect("UTF-8")).len(), 5, "last_event_id resumes as the header does");
    assert_eq!(by_ticket("forged.ticket").status(), 401);
    w.clock.advance(60_000);
    let expired = by_ticket(&ticket);
    assert_eq!(expired.status(), 401);
    assert!(String::from_utf8_lossy(expired.body()).contains("invalid_ticket"));
    assert_eq!(w.call("POST", "/api/v1/live/tickets", None, None).status, 401, "a ticket needs a signed-in caller");
}

#[test]
fn websocket_connections_follow_what_their_ticket_allows_and_the_notifier_pushes_to_them() {
    use gocoffee_app::live::sockets::{self, SocketsContext};
    use gocoffee_app::memory::{MemoryConnections, RecordingPusher};
    let w = World::new();
    let alice = w.register("alice@example.com");
    let bob = w.register("bob@example.com");
    let barista = w.staff("barista@example.com", "barista");
    let order = w.place(&alice);
    let (connections, pusher) = (MemoryConnections::default(), RecordingPusher::default());
    let ctx = SocketsContext { connections: &connections, pusher: Some(&pusher) };
    let svc = w.svc();
    let ticket = |token: &str| w.call("POST", "/api/v1/live/tickets", Some(token), None).body["ticket"].as_str().expect("ticket").to_owned();
    let open = |id: &str, token: &str| {
        let caller = sockets::authenticate(&svc, Some(&ticket(token))).expect("a good ticket");
        pollster::block_on(sockets::connect(&svc, &ctx, id, caller)).expect("connected");
    };
    assert_eq!(sockets::authenticate(&svc, None).map_err(|e| e.status.as_u16()), Err(401));
    assert_eq!(sockets::authenticate(&svc, Some("forged.ticket")).map_err(|e| e.code), Err("invalid_ticket"));
    open("c-alice", &alice);
    open("c-bob", &bob);
    open("c-barista", &barista);
    let send =
        |id: &str, body: &str| -> Value { serde_json::from_slice(&pollster::block_on(sockets::message(&svc, &ctx, id, body.as_bytes()))).expect("JSON reply") };
    let subscribe = |id: &str, channel: &str| send(id, &json!({"action": "subscribe", "channel": channel}).to_string());
    let channel = format!("order:{order}");
    assert_eq!(subscribe("c-alice", &channel), json!({"action": "subscribe", "channel": channel, "ok": true}));
    assert_eq!(subscribe("c-alice", &channel)["ok"], true, "subscribing twice is one subscription");
    assert_eq!(subscribe("c-bob", &channel)["error"]["code"], "not_found", "another customer's order is as missing as a missing one");
    assert_eq!(subscribe("c-bob", "kitchen")["error"]["code"], "forbidden");
    assert_eq!(subscribe("c-barista", "kitchen")["ok"], true);
    assert_eq!(subscribe("c-unknown", "kitchen")["error"]["code"], "unauthorized", "a connection that isn't open");
    assert_eq!(send("c-alice", "not json")["error"]["code"], "invalid_message");
    assert_eq!(send("c-alice", r#"{"action": "dance", "channel": "kitchen"}"#)["error"]["code"], "unknown_action");
    assert_eq!(subscribe("c-alice", "orders:x")["error"]["code"], "invalid_channel");
    for i in 0..9 {
        assert_eq!(subscribe("c-barista", &format!("order:01JABCDEFGHJKMNPQRSTVWX{i:03}"))["ok"], true);
    }
    assert_eq!(subscribe("c-barista", "order:01JABCDEFGHJKMNPQRSTVWXZZZ")["error"]["code"], "too_many_channels");
    assert_eq!(send("c-barista", &json!({"action": "unsubscribe", "channel": "order:01JABCDEFGHJKMNPQRSTVWX000"}).to_string())["ok"], true);

    // The notifier pushes each event's envelopes to the channel's followers, and forgets a
    // connection the platform says is gone.
    w.deliver_all();
    pusher.gone.borrow_mut().insert("c-bob".into());
    for e in w.store.published() {
        let payload = serde_json::to_vec(&e).expect("event");
        pollster::block_on(sockets::fan_out(&svc, &ctx, &payload)).expect("fanned out");
    }
    let got = |id: &str| {
        pusher
            .pushed
            .borrow()
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, m)| (m["channel"].as_str().expect("channel").to_owned(), m["type"].as_str().expect("type").to_owned()))
            .collect::<Vec<_>>()
    };
    let kinds = |names: &[&str], channel: &str| names.iter().map(|n| (channel.to_owned(), n.to_string())).collect::<Vec<_>>();
    assert_eq!(got("c-alice"), kinds(&["OrderPlaced", "OrderConfirmed", "TicketRouted"], &channel));
    assert_eq!(got("c-barista"), kinds(&["OrderConfirmed", "TicketRouted"], "kitchen"));
    assert!(got("c-bob").is_empty());
    // Bob's subscriptions were all refused, so nothing went to him. A follower the platform says
    // is gone is forgotten with its subscriptions.
    pusher.gone.borrow_mut().insert("c-alice".into());
    let r = w.call("POST", &format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let started = w.store.published().last().cloned().expect("an event");
    pollster::block_on(sockets::fan_out(&svc, &ctx, &serde_json::to_vec(&started).expect("event"))).expect("fanned out");
    assert!(!connections.connections.borrow().contains_key("c-alice"));
    assert!(connections.subscriptions.borrow().iter().all(|(_, c)| c != "c-alice"));
    assert_eq!(got("c-barista").last().map(|m| m.1.as_str()), Some("PartStarted"));
    pollster::block_on(sockets::disconnect(&ctx, "c-barista")).expect("closed");
    assert!(connections.subscriptions.borrow().iter().all(|(_, c)| c != "c-barista"));
}

#[test]
fn tickets_split_by_station_carry_estimates_and_the_kitchen_is_run_through_the_api() {
    let w = World::new();
    let manager = w.staff("manager@example.com", "manager");
    let ann = w.staff("ann@example.com", "barista");
    let bob = w.staff("bob@example.com", "barista");
    let customer = w.register("ada@example.com");
    let id_of = |token: &str| w.call("GET", "/api/v1/auth/me", Some(token), None).body["id"].as_str().expect("id").to_owned();
    let (ann_id, bob_id, customer_id) = (id_of(&ann), id_of(&bob), id_of(&customer));

    let kitchen = w.call("GET", "/api/v1/kitchen", Some(&ann), None);
    assert_eq!(kitchen.status, 200);
    let stations: Vec<&str> = kitchen.body["stations"].as_array().expect("stations").iter().map(|s| s["id"].as_str().expect("id")).collect();
    assert_eq!(stations, ["espresso-bar", "brew-bar", "food"]);
    assert_eq!(w.call("GET", "/api/v1/kitchen", Some(&customer), None).status, 403);

    // A latte and two croissants: the bar's part and the food counter's.
    let place = |lines: Value| w.call("POST", "/api/v1/orders", Some(&customer), Some(json!({ "lines": lines })));
    let placed = place(json!([{"item_id": "latte", "size": "large", "quantity": 1}, {"item_id": "croissant", "quantity": 2}]));
    assert_eq!(placed.status, 202, "{}", placed.body);
    let order = placed.body["id"].as_str().expect("id").to_owned();
    w.deliver_all();
    let mine = w.call("GET", &format!("/api/v1/orders/{order}"), Some(&customer), None);
    let parts: Vec<(&str, &str)> = mine.body["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| (p["station"].as_str().expect("station"), p["status"].as_str().expect("status")))
        .collect();
    assert_eq!(parts, [("espresso-bar", "queued"), ("food", "queued")]);
    assert!(mine.body.get("estimated_ready_at").is_none(), "nobody on shift: no estimate to give: {}", mine.body);

    // Shifts: a barista their own, a manager anyone's; customers don't work shifts.
    let shift =
        |token: &str, user: &str, station: &str| w.call("PUT", &format!("/api/v1/kitchen/shifts/{user}"), Some(token), Some(json!({ "station": station })));
    assert_eq!(shift(&ann, &bob_id, "food").status, 403);
    assert_eq!(shift(&manager, &customer_id, "food").status, 422);
    assert_eq!(shift(&ann, &ann_id, "nowhere").status, 422);
    assert_eq!(shift(&ann, &ann_id, "espresso-bar").status, 200);
    assert_eq!(shift(&manager, &bob_id, "food").status, 200);

    let board = w.call("GET", "/api/v1/kitchen/board", Some(&ann), None);
    assert_eq!(board.status, 200, "{}", board.body);
    let station = |b: &Value, id: &str| b["stations"].as_array().expect("stations").iter().find(|s| s["id"] == id).cloned().expect("station");
    let bar = station(&board.body, "espresso-bar");
    assert_eq!(bar["staff"], json!([ann_id]));
    assert_eq!(bar["tickets"][0]["order_id"], order.as_str());
    assert_eq!(bar["tickets"][0]["lines"].as_array().map(Vec::len), Some(1), "only the bar's line");
    // A latte takes 90 s and two croissants 2 x 30 s, from now.
    let now = w.clock.now_ms();
    let at = |secs: i64| gocoffee_app::http::rfc3339(now + secs * 1000);
    assert_eq!(bar["tickets"][0]["estimated_ready_at"], at(90).as_str());
    assert_eq!(station(&board.body, "food")["tickets"][0]["estimated_ready_at"], at(60).as_str());
    let mine = w.call("GET", &format!("/api/v1/orders/{order}"), Some(&customer), None);
    assert!(mine.body["estimated_ready_at"].as_str().is_some(), "the later of the two: {}", mine.body);

    // Each station moves its own part; the last one ready readies the order.
    let part = |station: &str, step: &str| w.call("POST", &format!("/api/v1/kitchen/orders/{order}/stations/{station}/{step}"), Some(&ann), None);
    assert_eq!(part("food", "ready").status, 409, "not started");
    assert_eq!(part("brew-bar", "start").status, 404, "nothing of it is made there");
    assert_eq!(w.call("POST", &format!("/api/v1/kitchen/orders/{order}/stations/food/start"), Some(&customer), None).status, 403);
    assert_eq!(part("espresso-bar", "start").body["status"], "preparing");
    assert_eq!(part("espresso-bar", "ready").body["status"], "preparing", "the food is still to come");
    assert_eq!(part("food", "start").status, 200);
    let done = part("food", "ready");
    assert_eq!(done.body["status"], "ready", "{}", done.body);
    assert!(done.body["parts"].as_array().expect("parts").iter().all(|p| p["status"] == "ready"));

    // Equipment: the bar without a working machine can't make a latte, until it is fixed.
    let status = |equipment: &str, s: &str| {
        w.call("POST", &format!("/api/v1/kitchen/equipment/{equipment}/status"), Some(&ann), Some(json!({ "status": s, "note": "reported at the bar" })))
    };
    assert_eq!(status("espresso-machine", "out_of_order").status, 200);
    assert_eq!(status("kettle", "ok").status, 404);
    assert_eq!(status("grinder", "broken").status, 400, "not a status");
    let broken = status("grinder", "out_of_order");
    assert_eq!(broken.body["unavailable_items"].as_array().map(|a| a.contains(&json!("latte"))), Some(true), "{}", broken.body);
    let latte = |t: &str| w.call("GET", "/api/v1/menu/items/latte", Some(t), None).body["available"].clone();
    assert_eq!(latte(&customer), false);
    let menu = w.call("GET", "/api/v1/menu", None, None);
    let available = |item: &str| menu.body["items"].as_array().expect("items").iter().find(|i| i["id"] == item).expect("item")["available"].clone();
    assert_eq!((available("latte"), available("croissant")), (json!(false), json!(true)));
    let refused = place(json!([{"item_id": "latte", "size": "large", "quantity": 1}]));
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (422, Some("item_unavailable")));
    assert_eq!(place(json!([{"item_id": "croissant", "quantity": 1}])).status, 202, "the food counter still works");
    assert_eq!(status("grinder", "ok").status, 200);
    assert_eq!(latte(&customer), true, "back when fixed");
    let logged = w.call("POST", "/api/v1/kitchen/equipment/grinder/log", Some(&bob), Some(json!({"note": "burrs replaced"})));
    assert_eq!(logged.status, 201);
    let grinder = logged.body["equipment"].as_array().expect("equipment").iter().find(|e| e["id"] == "grinder").cloned().expect("grinder");
    assert_eq!(grinder["log"][0]["note"], "burrs replaced", "newest first");
    assert_eq!(grinder["log"][1]["status"], "ok");

    // Stations are the managers'.
    let tea = json!({"id": "tea-bar", "name": "Tea bar", "items": ["chai-latte"]});
    assert_eq!(w.call("POST", "/api/v1/kitchen/stations", Some(&ann), Some(tea.clone())).status, 403);
    let taken = w.call("POST", "/api/v1/kitchen/stations", Some(&manager), Some(tea.clone()));
    assert_eq!((taken.status, taken.body["error"]["code"].as_str()), (409, Some("item_on_another_station")));
    let moved = w.call("PATCH", "/api/v1/kitchen/stations/brew-bar", Some(&manager), Some(json!({"items": ["cold-brew", "hot-chocolate", "matcha-latte"]})));
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(w.call("POST", "/api/v1/kitchen/stations", Some(&manager), Some(tea)).status, 201);
    assert_eq!(w.call("POST", "/api/v1/kitchen/equipment", Some(&manager), Some(json!({"id": "kettle", "station": "tea-bar", "name": "Kettle"}))).status, 201);
    assert_eq!(w.call("DELETE", "/api/v1/kitchen/stations/tea-bar", Some(&manager), None).status, 409, "its kettle is still there");
    assert_eq!(w.call("DELETE", "/api/v1/kitchen/equipment/kettle", Some(&manager), None).status, 204);
    assert_eq!(w.call("DELETE", "/api/v1/kitchen/stations/tea-bar", Some(&manager), None).status, 204);
    assert_eq!(w.call("DELETE", "/api/v1/kitchen/stations/tea-bar", Some(&manager), None).status, 404);
    assert_eq!(w.call("PATCH", "/api/v1/kitchen/stations/food", Some(&manager), Some(json!({"colour": "red"}))).status, 400);
    assert_eq!(w.call("DELETE", &format!("/api/v1/kitchen/shifts/{bob_id}"), Some(&bob), None).status, 204);

    // Every change is in the kitchen's log, in order.
    assert_eq!(w.call("GET", "/api/v1/kitchen/events", Some(&ann), None).status, 403);
    let log = w.call("GET", "/api/v1/kitchen/events?limit=100", Some(&manager), None);
    let kinds: Vec<&str> = log.body["items"].as_array().expect("items").iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(
        kinds,
        [
            "ShiftStarted",
            "ShiftStarted",
            "EquipmentStatusChanged",
            "EquipmentStatusChanged",
            "EquipmentStatusChanged",
            "MaintenanceLogged",
            "StationChanged",
            "StationOpened",
            "EquipmentAdded",
            "EquipmentRemoved",
            "StationClosed",
            "ShiftEnded"
        ]
    );
    let page = w.call("GET", "/api/v1/kitchen/events?after=10&limit=1", Some(&manager), None);
    assert_eq!((page.body["items"][0]["version"].as_u64(), page.body["next_after"].as_u64()), (Some(11), Some(11)));
}
