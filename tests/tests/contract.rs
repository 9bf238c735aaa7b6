//! Contract tests over HTTP. The API's contract runs on both shells: the host serving the real
//! `.wasm` components (Spin) with their state in SQLite, again in PostgreSQL (through Spin's
//! postgres interface), and again as each generated Fermyon profile; and the real
//! Lambda binaries on moto behind the template's routes (AWS).
//! The host's own delivery and shutdown guarantees are tested on the host alone.

use std::process::Command;
use std::time::{Duration, Instant};

use gocoffee_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Host, b64, inject_delivery, pending_deliveries, signed_token};
use serde_json::json;

/// Runs each named contract test on both shells: the Spin one on SQLite, on PostgreSQL, as the
/// Fermyon Wasm Functions profile (HTTP triggers alone, events over service chaining, state in
/// PostgreSQL) and as the Fermyon Cloud profile (events handled in process, state in SQLite),
/// each under its platform's rules.
macro_rules! on_both_shells {
    ($($name:ident),* $(,)?) => {
        on_spin_profiles!($($name),*);
        mod lambda {
            $(#[test]
            fn $name() {
                super::$name(&gocoffee_tests::lambda::LambdaStack::start(stringify!($name)));
            })*
        }
    };
}

/// Runs each named test on the Spin shell's four deployments: the host on SQLite, on
/// PostgreSQL, as the Fermyon Wasm Functions profile and as the Fermyon Cloud profile.
macro_rules! on_spin_profiles {
    ($($name:ident),* $(,)?) => {
        mod spin {
            $(#[test]
            fn $name() {
                super::$name(&gocoffee_tests::Host::start(stringify!($name)));
            })*
        }
        mod spin_postgres {
            $(#[test]
            fn $name() {
                let (host, _database) = gocoffee_tests::Host::start_on_postgres(stringify!($name));
                super::$name(&host);
            })*
        }
        mod fermyon_wasm_functions {
            $(#[test]
            fn $name() {
                let (host, _database) = gocoffee_tests::Host::start_on_wasm_functions(stringify!($name));
                super::$name(&host);
            })*
        }
        mod fermyon_cloud {
            $(#[test]
            fn $name() {
                super::$name(&gocoffee_tests::Host::start_on_cloud(stringify!($name)));
            })*
        }
    };
}

on_both_shells!(
    register_login_refresh_and_me,
    an_order_goes_from_placed_to_collected_with_its_history,
    cancel_rules_follow_role_and_status,
    a_retried_post_with_an_idempotency_key_creates_one_order,
    a_customer_cannot_read_another_customers_order,
    bad_input_gets_a_clear_4xx_and_never_a_500,
    a_manager_uploads_a_menu_picture_and_the_menu_links_it,
    the_admin_email_cannot_be_taken_and_racing_first_logins_make_one_admin,
    two_managers_editing_one_item_lose_no_update,
    picture_urls_ignore_a_forged_host_header_and_reads_say_how_to_cache,
    one_trace_follows_an_order_from_the_request_through_the_stream_to_the_kitchen,
    the_analytics_model_follows_the_orders_and_a_rebuild_gives_the_same_answers,
    tokens_verify_from_the_published_keys_and_resist_the_usual_attacks,
    the_agents_answer_from_the_menu_the_knowledge_base_the_callers_own_orders_and_the_sales,
);

/// Live status on the Spin shell alone: on AWS it is the WebSocket API's.
mod live {
    use super::order_changes_reach_open_streams_as_they_happen_and_only_their_followers;
    on_spin_profiles!(order_changes_reach_open_streams_as_they_happen_and_only_their_followers);
}

/// Live status over WebSocket, API Gateway's contract: the host's endpoint on SQLite and on
/// PostgreSQL, and the WebSocket API in front of the Lambda functions.
mod live_sockets {
    use super::websocket_connections_get_what_they_follow_and_only_that;
    mod spin {
        #[test]
        fn websocket_connections_get_what_they_follow_and_only_that() {
            super::websocket_connections_get_what_they_follow_and_only_that(&gocoffee_tests::Host::start(stringify!(
                websocket_connections_get_what_they_follow_and_only_that
            )));
        }
    }
    mod spin_postgres {
        #[test]
        fn websocket_connections_get_what_they_follow_and_only_that() {
            let (host, _database) = gocoffee_tests::Host::start_on_postgres(stringify!(websocket_connections_get_what_they_follow_and_only_that));
            super::websocket_connections_get_what_they_follow_and_only_that(&host);
        }
    }
    mod lambda {
        #[test]
        fn websocket_connections_get_what_they_follow_and_only_that() {
            super::websocket_connections_get_what_they_follow_and_only_that(&gocoffee_tests::lambda::LambdaStack::start(stringify!(
                websocket_connections_get_what_they_follow_and_only_that
            )));
        }
    }
}

/// The next change to `order` on a WebSocket connection (within 10 s), as [`live_change`] reads
/// a stream's.
fn socket_change(socket: &mut gocoffee_tests::ws::WsClient, order: &str, seen: &mut u64) -> (String, String, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = socket.message(deadline.saturating_duration_since(Instant::now()));
        let version = m["version"].as_u64().unwrap_or_else(|| panic!("an envelope, not {m}"));
        if m["order_id"] == order && version > *seen {
            *seen = version;
            return (m["type"].as_str().expect("type").to_owned(), m["status"].as_str().expect("status").to_owned(), version);
        }
    }
}

fn websocket_connections_get_what_they_follow_and_only_that(h: &impl Api) {
    use gocoffee_tests::ws::{Read, WsClient};
    let alice = h.register("alice@example.com");
    let bob = h.register("bob@example.com");
    let barista = h.staff("barista@example.com", "barista");
    let ticket = |token: &str| h.post("/api/v1/live/tickets", Some(token), json!({})).body["ticket"].as_str().expect("a ticket").to_owned();
    // Where to connect is what a ticket's answer says, as a client reads it: a path on the API's
    // origin (the host) or a URL of its own (API Gateway's WebSocket API).
    let offer = h.post("/api/v1/live/tickets", Some(&alice), json!({})).body;
    let socket_url = offer["socket_url"].as_str().unwrap_or_else(|| panic!("a platform that keeps sockets says where: {offer}"));
    let (socket_base, socket_path) = match socket_url.strip_prefix("ws://") {
        Some(rest) => {
            let (authority, path) = rest.split_once('/').expect("a URL with a path");
            (format!("http://{authority}"), format!("/{path}"))
        }
        None => (h.base().to_owned(), socket_url.to_owned()),
    };
    let open = |token: &str| WsClient::connect(&socket_base, &format!("{socket_path}?ticket={}", ticket(token))).expect("connected");

    // $connect is authorized by the ticket in the URL, and a refusal is an HTTP answer.
    let refused = WsClient::connect(&socket_base, &socket_path).err().expect("refused without a ticket");
    assert_eq!(refused.status, 401, "{}", refused.body);
    let forged = WsClient::connect(&socket_base, &format!("{socket_path}?ticket=forged.ticket")).err().expect("refused with a forged ticket");
    // (The handshake's reader keeps only the body bytes that came with the head, so the body,
    // `invalid_ticket`, is the app tests' to check.)
    assert_eq!(forged.status, 401, "{}", forged.body);
    // Only the host may say a request is a connection's: a client's own event headers are dropped.
    let posed = h.request(
        "POST",
        &format!("/api/v1/live/socket?ticket={}", ticket(&alice)),
        None,
        &[("websocket-event-type", "CONNECT"), ("websocket-connection-id", "mine")],
        None,
    );
    assert_eq!(posed.status, 404, "an ordinary request, to no route: {}", posed.body);

    let order = h.place(&alice);
    h.wait_for_status(&order, &alice, "confirmed");
    let channel = format!("order:{order}");
    let mut mine = open(&alice);
    let mut board = open(&barista);
    let mut bobs = open(&bob);
    assert_eq!(mine.act("subscribe", &channel), json!({"action": "subscribe", "channel": channel, "ok": true}));
    assert_eq!(board.act("subscribe", "kitchen")["ok"], true);
    assert_eq!(bobs.act("subscribe", &channel)["error"]["code"], "not_found", "another customer's order");
    assert_eq!(bobs.act("subscribe", "kitchen")["error"]["code"], "forbidden", "the board is the staff's");
    assert_eq!(bobs.act("dance", "kitchen")["error"]["code"], "unknown_action");
    bobs.send(&json!("not an action"));
    assert_eq!(bobs.message(Duration::from_secs(5))["error"]["code"], "invalid_message");

    // What the barista does reaches both followers, as it happens; Bob hears nothing.
    let mut seen = h.get(&format!("/api/v1/orders/{order}"), Some(&alice)).body["version"].as_u64().expect("version");
    let mut on_board = seen;
    let started_at = Instant::now();
    let started = h.post(&format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), json!({}));
    assert_eq!(started.status, 200, "{}", started.body);
    let (kind, status, _) = socket_change(&mut mine, &order, &mut seen);
    eprintln!("the customer's socket heard {kind} {:?} after the start was posted", started_at.elapsed());
    assert!(matches!((kind.as_str(), status.as_str()), ("PreparationStarted" | "PartStarted", "preparing")), "{kind} {status}");
    assert!(matches!(socket_change(&mut board, &order, &mut on_board).1.as_str(), "preparing"));
    let ready = h.post(&format!("/api/v1/kitchen/orders/{order}/ready"), Some(&barista), json!({}));
    assert_eq!(ready.status, 200, "{}", ready.body);
    while seen < 7 {
        socket_change(&mut mine, &order, &mut seen);
    }
    assert!(matches!(bobs.read(Duration::from_millis(500)), Read::TimedOut), "Bob follows nothing");

    // Unsubscribed, the customer hears no more; a closed connection is forgotten, so the
    // notifier's next push to it finds it gone and the order path goes on.
    assert_eq!(mine.act("unsubscribe", &channel)["ok"], true);
    bobs.close();
    let collected = h.post(&format!("/api/v1/orders/{order}/collect"), Some(&barista), json!({}));
    assert_eq!(collected.status, 200, "{}", collected.body);
    while on_board < 8 {
        socket_change(&mut board, &order, &mut on_board);
    }
    assert!(matches!(mine.read(Duration::from_millis(500)), Read::TimedOut), "unsubscribed");

    // A binary frame is not the API's: the server closes with 1003, as API Gateway's JSON
    // routes refuse it.
    mine.send_binary(&[0, 1]);
    match mine.read(Duration::from_secs(5)) {
        Read::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn fermyon_cloud_refuses_websockets_as_the_platform_would() {
    let h = Host::start_on_cloud("websockets_refused");
    let alice = h.register("alice@example.com");
    let offer = h.post("/api/v1/live/tickets", Some(&alice), json!({})).body;
    assert_eq!((offer["events_url"].as_str(), offer.get("socket_url")), (Some("/api/v1/live/events"), None), "the stream, and no socket: {offer}");
    let ticket = offer["ticket"].as_str().expect("a ticket");
    let refused = gocoffee_tests::ws::WsClient::connect(&h.base, &format!("/api/v1/live/socket?ticket={ticket}")).err().expect("refused");
    assert_eq!(refused.status, 501, "{}", refused.body);
}

/// The next change to `order` on `stream` (within 10 s) as `(type, status, version)`, dropping
/// what a client drops: other orders' messages, and any whose version it has (`seen`: the
/// snapshot's, then the last change's). Delivery is at least once and a retried delivery may come
/// after a later event's.
fn live_change(stream: &mut gocoffee_tests::sse::SseStream, order: &str, seen: &mut u64) -> (String, String, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = stream.message(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|| panic!("no change to {order} within 10 s"));
        let version = m.data["version"].as_u64().expect("version");
        if m.data["order_id"] == order && version > *seen {
            *seen = version;
            return (m.data["type"].as_str().expect("type").to_owned(), m.data["status"].as_str().expect("status").to_owned(), version);
        }
    }
}

fn order_changes_reach_open_streams_as_they_happen_and_only_their_followers(h: &Host) {
    use gocoffee_tests::sse::SseStream;
    let alice = h.register("alice@example.com");
    let bob = h.register("bob@example.com");
    let barista = h.staff("barista@example.com", "barista");
    // The board is open before any order exists.
    let mut board = SseStream::open(&h.base, "/api/v1/live/events?channel=kitchen", &barista, None);
    assert_eq!((board.status, board.content_type.as_str()), (200, "text/event-stream"));
    let order = h.place(&alice);
    let placed_at = Instant::now();
    let mut on_board = 0;
    assert_eq!(live_change(&mut board, &order, &mut on_board), ("OrderConfirmed".into(), "confirmed".into(), 2));
    eprintln!("the board heard of the order {:?} after it was placed", placed_at.elapsed());

    // Alice follows her order from now on: she opens the stream, then reads the order, as a
    // client does, and takes the changes after that version.
    let path = format!("/api/v1/live/events?channel=order:{order}");
    let mut mine = SseStream::open(&h.base, &path, &alice, None);
    assert_eq!(mine.status, 200);
    let mut seen = h.get(&format!("/api/v1/orders/{order}"), Some(&alice)).body["version"].as_u64().expect("version");
    assert_eq!(seen, 3, "confirmed and routed to the espresso bar");
    let started = h.post(&format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), json!({}));
    assert_eq!(started.status, 200, "{}", started.body);
    let ready = h.post(&format!("/api/v1/kitchen/orders/{order}/ready"), Some(&barista), json!({}));
    assert_eq!(ready.status, 200, "{}", ready.body);
    // PreparationStarted 4, PartStarted 5, PartReady 6, OrderReady 7 (and the board, from its
    // OrderConfirmed on, TicketRouted 3): each stream follows them to the last (a client may see
    // a later one first and drop the earlier).
    let until_ready = |stream: &mut gocoffee_tests::sse::SseStream, seen: &mut u64| {
        let mut changes = vec![];
        while *seen < 7 {
            changes.push(live_change(stream, &order, seen));
        }
        changes
    };
    let expected = [
        ("TicketRouted", "confirmed", 3),
        ("PreparationStarted", "preparing", 4),
        ("PartStarted", "preparing", 5),
        ("PartReady", "preparing", 6),
        ("OrderReady", "ready", 7),
    ];
    for changes in [until_ready(&mut mine, &mut seen), until_ready(&mut board, &mut on_board)] {
        assert!(changes.iter().all(|(t, s, v)| expected.contains(&(t.as_str(), s.as_str(), *v))), "{changes:?}");
        assert_eq!(changes.last().map(|(t, _, _)| t.as_str()), Some("OrderReady"), "{changes:?}");
    }

    // Bob's order reaches the board and not Alice's stream; Bob can't follow Alice's order, nor
    // a customer the board.
    let bobs = h.place(&bob);
    let mut bobs_seen = 0;
    assert_eq!(live_change(&mut board, &bobs, &mut bobs_seen).0, "OrderConfirmed");
    while let Some(m) = mine.message(Duration::from_millis(500)) {
        assert_eq!(m.data["order_id"], order.as_str(), "Alice's stream carries only her order");
    }
    assert_eq!(SseStream::open(&h.base, &path, &bob, None).status, 404);
    assert_eq!(SseStream::open(&h.base, "/api/v1/live/events?channel=kitchen", &alice, None).status, 403);

    // A reconnect with the last id it saw gets what came since, and the stream's ids rise.
    let last = mine.last_id.expect("an id");
    let collected = h.post(&format!("/api/v1/orders/{order}/collect"), Some(&barista), json!({}));
    assert_eq!(collected.status, 200, "{}", collected.body);
    let mut resumed = SseStream::open(&h.base, &path, &alice, Some(last));
    assert_eq!(live_change(&mut resumed, &order, &mut seen), ("OrderCompleted".into(), "completed".into(), 8));
    assert!(resumed.last_id.expect("an id") > last);
}

#[test]
fn spin_a_live_stream_ends_on_time_and_a_reconnect_resumes_after_the_last_id() {
    use gocoffee_tests::sse::{Next, SseStream};
    let h = Host::start_env("live_stream_bound", &[("SPIN_VARIABLE_LIVE_STREAM_SECONDS", "2"), ("SPIN_VARIABLE_LIVE_POLL_MS", "50")]);
    let alice = h.register("alice@example.com");
    let barista = h.staff("barista@example.com", "barista");
    let order = h.place(&alice);
    h.wait_for_status(&order, &alice, "confirmed");
    let path = format!("/api/v1/live/events?channel=order:{order}");
    let mut stream = SseStream::open(&h.base, &path, &alice, None);
    // Before anything else, the stream names its position, so a reconnect resumes there even
    // when nothing came.
    let Next::Event(first) = stream.next(Duration::from_secs(5)) else { panic!("no opening event") };
    assert!(first.data.is_null() && first.id.is_some(), "{first:?}");
    loop {
        match stream.next(Duration::from_secs(10)) {
            // Only a late redelivery of what came before (version 3 at most) may show up.
            Next::Event(e) => assert!(e.data.is_null() || e.data["version"].as_u64() <= Some(3), "nothing happened to the order: {e:?}"),
            Next::TimedOut => panic!("the stream is still open after {:?}", stream.opened.elapsed()),
            Next::Ended => break,
        }
    }
    let lasted = stream.opened.elapsed();
    assert!(lasted >= Duration::from_millis(1500) && lasted < Duration::from_secs(6), "a 2 s stream lasted {lasted:?}");
    // What happens between two streams is not lost: the next one starts after the last id.
    let started = h.post(&format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), json!({}));
    assert_eq!(started.status, 200, "{}", started.body);
    let mut next = SseStream::open(&h.base, &path, &alice, stream.last_id);
    let mut seen = 3;
    // The start (version 4, with its part's PartStarted as 5), after the routed confirmation (3).
    let (kind, status, version) = live_change(&mut next, &order, &mut seen);
    assert!(
        matches!((kind.as_str(), status.as_str(), version), ("PreparationStarted", "preparing", 4) | ("PartStarted", "preparing", 5)),
        "{kind} {status} {version}"
    );
    // A position that isn't one is refused.
    let bad = h.request("GET", &path, Some(&alice), &[("last-event-id", "yesterday")], None);
    assert_eq!((bad.status, bad.code()), (400, "invalid_last_event_id"));
    // A browser's EventSource sends no Authorization header: it comes with a ticket.
    let ticket = h.post("/api/v1/live/tickets", Some(&alice), json!({}));
    assert_eq!(ticket.status, 201, "{}", ticket.body);
    assert_eq!(ticket.body["events_url"], "/api/v1/live/events", "the ticket says where the stream is");
    let with_ticket = format!("{path}&ticket={}&last_event_id=0", ticket.body["ticket"].as_str().expect("ticket"));
    let mut by_ticket = SseStream::open_with(&h.base, &with_ticket, &[]);
    assert_eq!(by_ticket.status, 200);
    let mut seen = 0;
    live_change(&mut by_ticket, &order, &mut seen);
    assert_eq!(SseStream::open_with(&h.base, &format!("{path}&ticket=forged.ticket"), &[]).status, 401);
    assert_eq!(SseStream::open_with(&h.base, &path, &[]).status, 401);
}

/// The header and claims of a JWT, decoded.
fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let part = |i| gocoffee_tests::jwt_part(token, i).expect("a JWT part, base64url JSON");
    (part(0), part(1))
}

fn tokens_verify_from_the_published_keys_and_resist_the_usual_attacks(h: &impl Api) {
    use gocoffee_tests::DeploymentKey::{Current, Retired};
    let token = h.register("ada@example.com");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "RS256");
    // Anyone can check a token with what identity publishes.
    let jwks = h.get("/.well-known/jwks.json", None);
    assert_eq!(jwks.status, 200, "{}", jwks.body);
    let keys = gocoffee_app::auth::KeySet::from_jwks(&jwks.body).expect("a JWKS document");
    assert_eq!(keys.keys().len(), 2, "the signing key and the one still trusted: {}", jwks.body);
    let audience = gocoffee_app::auth::Audience { issuer: claims["iss"].as_str().expect("iss"), audience: claims["aud"].as_str().expect("aud") };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
    assert!(gocoffee_app::auth::verify_access_token(&keys, audience, &token, now_ms).is_some(), "the token verifies from the JWKS alone");
    let discovery = h.get("/.well-known/openid-configuration", None);
    assert_eq!(discovery.body["issuer"], claims["iss"], "{}", discovery.body);

    let me = |token: &str| h.get("/api/v1/auth/me", Some(token));
    let now = now_ms / 1000;
    let with = |changes: serde_json::Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().expect("changes") {
            c[k] = v.clone();
        }
        b64(&serde_json::to_vec(&c).expect("json"))
    };
    let current = h.token_signer(Current).expect("the test reaches the deployment's keys");
    let retired = h.token_signer(Retired).expect("the test reaches the deployment's keys");
    let stranger = gocoffee_app::auth::PemSigner::from_pem(gocoffee_tests::STRANGER_SIGNING_KEY).expect("key");
    let rs256 = json!({"alg": "RS256", "typ": "JWT"});
    let refused = |token: &str, what: &str| {
        let r = me(token);
        assert!(h.refused_token(&r), "{what}: {} {}", r.status, r.body);
    };

    // The control: the deployment's own key, claims as issued.
    let control = signed_token(&*current, rs256.clone(), &with(json!({})));
    assert_eq!(me(&control).status, 200, "{}", me(&control).body);
    // A key it still trusts (rotated out, or the other KMS slot) verifies too.
    assert_eq!(me(&signed_token(&*retired, rs256.clone(), &with(json!({})))).status, 200);

    // alg=none, unsigned.
    let none = format!("{}.{}.", b64(&serde_json::to_vec(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})).expect("json")), with(json!({})));
    refused(&none, "alg=none");
    // HS256 keyed with the public key (key confusion): its PEM, with and without the last newline.
    let public = keys.get(header["kid"].as_str().expect("kid")).expect("the token's key is published");
    for secret in [public.to_pem().into_bytes(), public.to_pem().trim().as_bytes().to_vec()] {
        use hmac::Mac as _;
        let hs_header = b64(&serde_json::to_vec(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]})).expect("json"));
        let message = format!("{hs_header}.{}", with(json!({})));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("any key length");
        mac.update(message.as_bytes());
        refused(&format!("{message}.{}", b64(&mac.finalize().into_bytes())), "HS256 with the public key");
    }
    // A kid nobody published, signed by the real key.
    refused(&signed_token(&*current, json!({"alg": "RS256", "kid": "not-a-published-key"}), &with(json!({}))), "unknown kid");
    // A stranger's key under the real kid.
    refused(&signed_token(&stranger, json!({"alg": "RS256", "kid": header["kid"]}), &with(json!({}))), "a stranger's signature");
    // Expired, and not yet valid.
    refused(&signed_token(&*current, rs256.clone(), &with(json!({"iat": now - 1000, "nbf": now - 1000, "exp": now - 5}))), "expired");
    refused(&signed_token(&*current, rs256.clone(), &with(json!({"iat": now + 600, "nbf": now + 600, "exp": now + 1500}))), "not yet valid");
    // Another issuer or audience.
    refused(&signed_token(&*current, rs256.clone(), &with(json!({"iss": "https://evil.example"}))), "wrong issuer");
    refused(&signed_token(&*current, rs256.clone(), &with(json!({"aud": "another-api"}))), "wrong audience");
    // A role raised after signing: the signature no longer matches, and no admin route opens.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = with(json!({"role": "admin"}));
    let raised = parts.join(".");
    refused(&raised, "tampered role");
    let create = h.post("/api/v1/auth/users", Some(&raised), json!({"email": "mallory@example.com", "password": "password 123", "role": "admin"}));
    assert_eq!(create.status, 401, "{}", create.body);
    assert_eq!(me(&token).status, 200, "the real token still works");
}

/// Each function checks every token itself too, so nothing rests on the authorizer alone (a route
/// added without it, an API stood up by other means): the attacks, with nothing in front.
#[test]
fn lambda_without_the_authorizer_the_functions_refuse_the_same_tokens() {
    let h = gocoffee_tests::lambda::LambdaStack::start_without_authorizer("tokens_without_authorizer");
    assert!(!gocoffee_tests::Api::gateway_checks_tokens(&h));
    tokens_verify_from_the_published_keys_and_resist_the_usual_attacks(&h);
}

/// Strict limits for the gateway's test: four credential attempts and three changes an hour.
const STRICT_RATE_LIMITS: &str =
    r#"{"credentials": {"requests": 4, "per_seconds": 3600, "burst": 4}, "write": {"requests": 3, "per_seconds": 3600, "burst": 3}}"#;

/// The PostgreSQL runs above would pass on SQLite too if the components ignored `database_url`:
/// here the state is read back from PostgreSQL itself, and no SQLite database was opened.
#[test]
fn spin_with_a_database_url_the_components_keep_their_state_in_postgres() {
    use gocoffee_sql::Db;
    let (h, server) = Host::start_on_postgres("state_in_postgres");
    h.register("pg@example.com");
    let db = gocoffee_sql::postgres::Postgres::connect(&server.address("gocoffee")).expect("connect");
    let users = db.execute("SELECT email FROM users WHERE email = ?", &["pg@example.com".into()]).expect("users");
    assert_eq!(users.rows.len(), 1, "the user is in PostgreSQL");
    assert!(!h.state.join("sqlite").exists(), "no SQLite database was opened");
}

#[test]
fn spin_the_gateway_admits_no_more_than_each_clients_limit_however_requests_race() {
    the_gateway_admits_no_more_than_each_clients_limit_however_requests_race(&Host::start_env(
        "rate_limits",
        &[("SPIN_VARIABLE_RATE_LIMITS", STRICT_RATE_LIMITS)],
    ));
}

#[test]
fn lambda_the_gateway_admits_no_more_than_each_clients_limit_however_requests_race() {
    the_gateway_admits_no_more_than_each_clients_limit_however_requests_race(&gocoffee_tests::lambda::LambdaStack::start_env(
        "rate_limits",
        true,
        &[("RATE_LIMITS", STRICT_RATE_LIMITS)],
    ));
}

/// Fires `n` copies of a request at once; the replies.
fn race(n: usize, send: impl Fn(usize) -> gocoffee_tests::Reply + Sync) -> Vec<gocoffee_tests::Reply> {
    std::thread::scope(|s| {
        let sent: Vec<_> = (0..n)
            .map(|i| {
                s.spawn({
                    let send = &send;
                    move || send(i)
                })
            })
            .collect();
        sent.into_iter().map(|t| t.join().expect("thread")).collect()
    })
}

fn the_gateway_admits_no_more_than_each_clients_limit_however_requests_race(h: &impl Api) {
    let statuses = |replies: &[gocoffee_tests::Reply]| {
        let mut s: Vec<u16> = replies.iter().map(|r| r.status).collect();
        s.sort();
        s
    };
    let refused_well = |r: &gocoffee_tests::Reply| {
        r.status != 429 || (r.code() == "rate_limited" && r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1))
    };
    // Credentials count by address: two of the four are spent here, then eight race for two.
    assert_eq!(h.login(ADMIN_EMAIL, ADMIN_PASSWORD).status, 200);
    let ada = h.register("ada@example.com");
    let registered = race(8, |i| h.post("/api/v1/auth/register", None, json!({"email": format!("racer{i}@example.com"), "password": "password 123"})));
    assert_eq!(statuses(&registered), [201, 201, 429, 429, 429, 429, 429, 429], "{:?}", registered.iter().map(|r| &r.body).collect::<Vec<_>>());
    assert!(registered.iter().all(refused_well), "429s say when to retry, in the JSON error shape");

    // Changes count per user: eight orders race for three, and only those three exist.
    let placed = race(8, |_| h.post("/api/v1/orders", Some(&ada), json!({"lines": [{"item_id": "cappuccino", "size": "medium", "quantity": 1}]})));
    assert_eq!(statuses(&placed), [202, 202, 202, 429, 429, 429, 429, 429], "{:?}", placed.iter().map(|r| &r.body).collect::<Vec<_>>());
    assert!(placed.iter().all(refused_well));
    let listed = h.get("/api/v1/orders", Some(&ada));
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(3), "nothing behind the limit ran: {}", listed.body);
    // Reads have their own budget, and the health check has none.
    assert_eq!(h.get("/api/v1/auth/me", Some(&ada)).status, 200);
    assert_eq!(h.get("/health", None).status, 200);
}

/// A plain HTTP call to an absolute URL (a picture URL may point away from the API, at S3):
/// status, content type and raw body.
fn fetch(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let mut resp = agent.run(req.body(body.to_vec()).expect("request")).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (resp.status().as_u16(), ct, resp.body_mut().read_to_vec().expect("body"))
}

fn a_manager_uploads_a_menu_picture_and_the_menu_links_it(h: &impl Api) {
    let manager = h.staff("manager@example.com", "manager");
    let customer = h.register("ada@example.com");
    let picture = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR a small picture".to_vec();
    let ask = |token: &str, body: serde_json::Value| {
        h.request("PUT", "/api/v1/menu/items/latte/image", Some(token), &[], Some(("application/json", serde_json::to_vec(&body).expect("json"))))
    };
    let announced = json!({"content_type": "image/png", "content_length": picture.len()});
    assert_eq!(ask(&customer, announced.clone()).status, 403);
    assert_eq!(ask(&manager, json!({"content_type": "image/gif", "content_length": 10})).code(), "unsupported_image_type");

    let issued = ask(&manager, announced);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let upload = issued.body["upload_url"].as_str().expect("upload url").to_owned();
    assert!(upload.starts_with("http://"), "an absolute URL: {upload}");
    let before = h.get("/api/v1/menu/items/latte", None).body["image_url"].as_str().expect("image url").to_owned();
    let (status, _, _) = fetch("GET", &before, None, &[]);
    assert!(status == 403 || status == 404, "nothing to serve before the upload: {status}");

    let (status, _, body) = fetch("PUT", &upload, Some("image/png"), &picture);
    assert!((200..300).contains(&status), "upload: {status} {}", String::from_utf8_lossy(&body));

    let item = h.get("/api/v1/menu/items/latte", None);
    let url = item.body["image_url"].as_str().expect("image url").to_owned();
    let menu = h.get("/api/v1/menu", None);
    let listed = menu.body["items"].as_array().expect("items").iter().find(|i| i["id"] == "latte").expect("latte")["image_url"].clone();
    assert_eq!(listed.as_str(), Some(url.as_str()));
    let (status, content_type, bytes) = fetch("GET", &url, None, &[]);
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(bytes, picture, "the uploaded bytes come back");
}

/// One raw HTTP/1.1 request, so the test controls every header (`Host` included); the whole
/// response as text.
fn raw_http(base: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(base.trim_start_matches("http://")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    conn.write_all(request.as_bytes()).expect("request");
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn the_admin_email_cannot_be_taken_and_racing_first_logins_make_one_admin(h: &impl Api) {
    let squat = h.post("/api/v1/auth/register", None, json!({"email": ADMIN_EMAIL.to_uppercase(), "password": "squatter password"}));
    assert_eq!((squat.status, squat.code()), (409, "email_taken"), "{}", squat.body);
    let ids: Vec<String> = std::thread::scope(|s| {
        let logins: Vec<_> = (0..4).map(|_| s.spawn(|| h.login(ADMIN_EMAIL, ADMIN_PASSWORD))).collect();
        logins
            .into_iter()
            .map(|t| {
                let r = t.join().expect("thread");
                assert_eq!((r.status, r.body["user"]["role"].as_str()), (200, Some("admin")), "{}", r.body);
                r.body["user"]["id"].as_str().expect("id").to_owned()
            })
            .collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "one admin account: {ids:?}");
    assert_eq!(h.login(ADMIN_EMAIL, "squatter password").status, 401);
}

fn two_managers_editing_one_item_lose_no_update(h: &impl Api) {
    let manager = h.staff("manager@example.com", "manager");
    let patch = |body: serde_json::Value, if_match: &[(&str, &str)]| {
        h.request("PATCH", "/api/v1/menu/items/mocha", Some(&manager), if_match, Some(("application/json", serde_json::to_vec(&body).expect("json"))))
    };
    let read = h.get("/api/v1/menu/items/mocha", None);
    let etag = read.header("etag").expect("etag").to_owned();
    let sold_out = patch(json!({"available": false}), &[("if-match", &etag)]);
    assert_eq!(sold_out.status, 200, "{}", sold_out.body);
    // The other manager still holds the old version: told so, instead of making it orderable again.
    let stale = patch(json!({"available": true}), &[("if-match", &etag)]);
    assert_eq!((stale.status, stale.code()), (412, "precondition_failed"), "{}", stale.body);

    // Without If-Match, concurrent edits of different fields all land.
    let edits = [json!({"name": "Mocha Grande"}), json!({"description": "Chocolate and espresso"}), json!({"modifiers": []})];
    std::thread::scope(|s| {
        for edit in &edits {
            s.spawn(|| assert_eq!(patch(edit.clone(), &[]).status, 200));
        }
    });
    let item = h.get("/api/v1/menu/items/mocha", None).body;
    assert_eq!(
        (item["available"].as_bool(), item["name"].as_str(), item["description"].as_str(), item["modifiers"].as_array().map(Vec::len)),
        (Some(false), Some("Mocha Grande"), Some("Chocolate and espresso"), Some(0)),
        "{item}"
    );
    assert_eq!(item["version"].as_u64(), read.body["version"].as_u64().map(|v| v + 4));
}

fn picture_urls_ignore_a_forged_host_header_and_reads_say_how_to_cache(h: &impl Api) {
    let manager = h.staff("manager@example.com", "manager");
    let body = r#"{"content_type": "image/png", "content_length": 8}"#;
    let issued = raw_http(
        h.base(),
        &format!(
            "PUT /api/v1/menu/items/latte/image HTTP/1.1\r\nhost: evil.example\r\nauthorization: Bearer {manager}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(issued.starts_with("HTTP/1.1 200") && issued.contains("upload_url"), "{issued}");
    assert!(!issued.contains("evil.example"), "{issued}");
    let menu = raw_http(h.base(), "GET /api/v1/menu HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n");
    assert!(menu.starts_with("HTTP/1.1 200") && menu.contains("image_url"), "{menu}");
    assert!(!menu.contains("evil.example"), "a cache in front of the menu would hand this to everyone: {menu}");
    assert_eq!(h.get("/api/v1/menu", None).header("cache-control"), Some("public, max-age=30"));
    let ada = h.register("ada@example.com");
    assert_eq!(h.get("/api/v1/orders", Some(&ada)).header("cache-control"), Some("no-store"));
}

fn register_login_refresh_and_me(h: &impl Api) {
    let token = h.register("ada@example.com");
    let me = h.get("/api/v1/auth/me", Some(&token));
    assert_eq!((me.status, me.body["role"].as_str()), (200, Some("customer")));
    assert_eq!(h.login("ada@example.com", "nope nope nope").status, 401);
    let login = h.login("ada@example.com", "password 123");
    let refresh = login.body["refresh_token"].as_str().expect("refresh").to_owned();
    let rotated = h.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh}));
    assert_eq!(rotated.status, 200);
    assert_eq!(h.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).code(), "invalid_refresh_token");
    let admin = h.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!((admin.status, admin.body["user"]["role"].as_str()), (200, Some("admin")));
}

fn an_order_goes_from_placed_to_collected_with_its_history(h: &impl Api) {
    let customer = h.register("ada@example.com");
    let barista = h.staff("barista@example.com", "barista");
    // Lattes and a croissant: the espresso bar's part and the food counter's.
    let placed = h.post(
        "/api/v1/orders",
        Some(&customer),
        json!({"lines": [{"item_id": "latte", "size": "large", "modifiers": ["oat-milk"], "quantity": 2}, {"item_id": "croissant", "quantity": 1}], "note": "extra hot"}),
    );
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(placed.header("location"), Some(format!("/api/v1/orders/{id}").as_str()));
    assert_eq!(placed.body["total_cents"], 2 * (500 + 70) + 325);

    h.wait_for_status(&id, &customer, "confirmed");
    let queue = h.get("/api/v1/kitchen/queue", Some(&barista));
    assert_eq!(queue.body["items"][0]["order_id"].as_str(), Some(id.as_str()), "{}", queue.body);
    let stations = |r: &gocoffee_tests::Reply| -> Vec<String> {
        r.body["parts"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .map(|p| format!("{} {}", p["station"].as_str().unwrap_or("?"), p["status"].as_str().unwrap_or("?")))
            .collect()
    };
    assert_eq!(stations(&h.get(&format!("/api/v1/orders/{id}"), Some(&customer))), ["espresso-bar queued", "food queued"]);
    let board = h.get("/api/v1/kitchen/board", Some(&barista));
    assert_eq!(board.status, 200, "{}", board.body);
    let food = board.body["stations"].as_array().expect("stations").iter().find(|s| s["id"] == "food").cloned().expect("food");
    assert_eq!((food["tickets"][0]["order_id"].as_str(), food["tickets"][0]["lines"][0]["item_id"].as_str()), (Some(id.as_str()), Some("croissant")), "{food}");

    // The bar starts and finishes its part; the order is ready with the food counter's.
    let part = |station: &str, step: &str| h.post(&format!("/api/v1/kitchen/orders/{id}/stations/{station}/{step}"), Some(&barista), json!({}));
    assert_eq!(part("espresso-bar", "start").body["status"], "preparing");
    let bar_done = part("espresso-bar", "ready");
    assert_eq!(stations(&bar_done), ["espresso-bar ready", "food queued"], "{}", bar_done.body);
    assert_eq!(bar_done.body["status"], "preparing");
    assert_eq!(h.post(&format!("/api/v1/kitchen/orders/{id}/ready"), Some(&barista), json!({})).body["status"], "ready");
    assert_eq!(h.post(&format!("/api/v1/orders/{id}/collect"), Some(&customer), json!({})).body["status"], "completed");
    assert_eq!(
        h.event_types(&id, &customer),
        ["OrderPlaced", "OrderConfirmed", "TicketRouted", "PreparationStarted", "PartStarted", "PartReady", "PartReady", "OrderReady", "OrderCompleted"]
    );

    // With the bar's machine and grinder out of order, its drinks leave the menu until one works.
    let manager = h.staff("manager@example.com", "manager");
    let status = |equipment: &str, s: &str| h.post(&format!("/api/v1/kitchen/equipment/{equipment}/status"), Some(&manager), json!({ "status": s }));
    assert_eq!(status("espresso-machine", "out_of_order").status, 200);
    assert_eq!(status("grinder", "out_of_order").body["unavailable_items"].as_array().map(|a| a.contains(&json!("latte"))), Some(true));
    assert_eq!(h.get("/api/v1/menu/items/latte", None).body["available"], false);
    let refused = h.post("/api/v1/orders", Some(&customer), json!({"lines": [{"item_id": "latte", "size": "large", "quantity": 1}]}));
    assert_eq!((refused.status, refused.code()), (422, "item_unavailable"));
    assert_eq!(status("grinder", "degraded").status, 200);
    assert_eq!(h.get("/api/v1/menu/items/latte", None).body["available"], true);
    let kitchen = h.get("/api/v1/kitchen", Some(&barista));
    let grinder = kitchen.body["equipment"].as_array().expect("equipment").iter().find(|e| e["id"] == "grinder").cloned().expect("grinder");
    assert_eq!((grinder["status"].as_str(), grinder["log"].as_array().map(Vec::len)), (Some("degraded"), Some(2)), "{grinder}");
}

/// The read model is fed by the analytics stream (its own channel, function and store), so it is
/// eventually consistent: reads poll until it has caught up. A rebuild from the orders' own logs
/// gives the same answers.
fn the_analytics_model_follows_the_orders_and_a_rebuild_gives_the_same_answers(h: &impl Api) {
    let customer = h.register("ada@example.com");
    let barista = h.staff("barista@example.com", "barista");
    let manager = h.staff("manager@example.com", "manager");
    let made = h.place(&customer);
    let cancelled = h.place(&customer);
    let waiting = h.place(&customer);
    for id in [&made, &cancelled, &waiting] {
        h.wait_for_status(id, &customer, "confirmed");
    }
    assert_eq!(h.post(&format!("/api/v1/kitchen/orders/{made}/start"), Some(&barista), json!({})).status, 200);
    assert_eq!(h.post(&format!("/api/v1/kitchen/orders/{made}/ready"), Some(&barista), json!({})).status, 200);
    assert_eq!(h.post(&format!("/api/v1/orders/{cancelled}/cancel"), Some(&customer), json!({})).status, 200);

    // From yesterday to tomorrow (UTC days), so the orders are in range whatever the clock.
    let day = |offset: i64| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64 + offset * 86_400;
        gocoffee_app::http::rfc3339(secs * 1000)[..10].to_owned()
    };
    let range = format!("from={}&to={}", day(-1), day(1));
    let report = |what: &str| {
        let r = h.get(&format!("/api/v1/analytics/{what}?{range}"), Some(&manager));
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        r.body
    };
    let all = || ["sales", "items", "times", "rates"].map(report);
    // Caught up: three orders, one ready, one cancelled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rates = report("rates");
        if rates["orders"] == 3 && rates["cancelled"] == 1 && report("times")["ready_orders"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the read model never caught up: {rates}\n{}", h.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every event that moves a figure is folded now (ready comes after started, per order).
    let live = all();
    // The orders may straddle an hour: add the buckets up.
    let total = |field: &str| live[0]["buckets"].as_array().expect("buckets").iter().map(|b| b[field].as_u64().expect("a count")).sum::<u64>();
    assert_eq!(live[0]["bucket"], "hour");
    assert_eq!((total("orders"), total("sales"), total("revenue_cents")), (3, 2, 2 * 430), "two medium cappuccinos stayed sales: {}", live[0]);
    assert_eq!(live[1]["items"][0]["item_id"], "cappuccino");
    assert_eq!(live[1]["items"][0]["quantity"], 2);
    assert!(live[2]["average_wait_ms"].as_i64().is_some_and(|ms| ms >= 0), "{}", live[2]);
    assert_eq!(live[3]["cancellation_rate"].as_f64().map(|r| (r * 3.0).round()), Some(1.0));

    // Only managers read, only the admin rebuilds.
    assert_eq!(h.get("/api/v1/analytics/sales", Some(&customer)).status, 403);
    assert_eq!(h.get("/api/v1/analytics/sales?bucket=fortnight", Some(&manager)).status, 400);
    assert_eq!(h.post("/api/v1/analytics/rebuild", Some(&manager), json!({})).status, 403);
    let admin = h.login(ADMIN_EMAIL, ADMIN_PASSWORD).body["access_token"].as_str().expect("token").to_owned();
    let mut cursor: Option<String> = None;
    loop {
        let path = cursor.as_ref().map_or_else(|| "/api/v1/analytics/rebuild".to_owned(), |c| format!("/api/v1/analytics/rebuild?cursor={c}"));
        let r = h.post(&path, Some(&admin), json!({}));
        assert_eq!(r.status, 200, "{}", r.body);
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(all(), live, "the rebuilt model answers as the live one did");
}

/// The caller's `traceparent` starts the trace; each event carries it on (the streams have no
/// headers), each piece of work is a span of its own, and every log line of the work names it.
fn one_trace_follows_an_order_from_the_request_through_the_stream_to_the_kitchen(h: &impl Api) {
    let customer = h.register("ada@example.com");
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let body = serde_json::to_vec(&json!({"lines": [{"item_id": "latte", "size": "small", "quantity": 1}]})).expect("json");
    let placed = h.request("POST", "/api/v1/orders", Some(&customer), &[("traceparent", &traceparent)], Some(("application/json", body)));
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    h.wait_for_status(&id, &customer, "confirmed");

    let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&customer)).body["events"].as_array().cloned().expect("events");
    let spans: Vec<String> = events
        .iter()
        .map(|e| {
            let parent = e["traceparent"].as_str().unwrap_or_else(|| panic!("an event without its trace: {e}"));
            let parts: Vec<&str> = parent.split('-').collect();
            assert_eq!((parts.len(), parts[0], parts[1], parts[3]), (4, "00", trace_id, "01"), "{e}");
            parts[2].to_owned()
        })
        .collect();
    assert_eq!(events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
    assert!(spans[0] != caller_span && spans[1] != spans[0], "the request and the kitchen's confirmation are spans of their own: {spans:?}");

    // The consumer's (and on AWS the kitchen's) log lines name the trace.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = h.log();
        let handled = log.lines().filter(|l| l.contains(trace_id) && l.contains("event handled")).count();
        if handled >= 1 && log.lines().any(|l| l.contains(trace_id) && l.contains("order placed")) {
            break;
        }
        assert!(Instant::now() < deadline, "no log line of the order's handling names trace {trace_id}:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cancel_rules_follow_role_and_status(h: &impl Api) {
    let ada = h.register("ada@example.com");
    let barista = h.staff("barista@example.com", "barista");
    let early = h.place(&ada);
    assert_eq!(h.post(&format!("/api/v1/orders/{early}/cancel"), Some(&ada), json!({"reason": "wrong size"})).body["status"], "cancelled");

    let started = h.place(&ada);
    h.wait_for_status(&started, &ada, "confirmed");
    h.post(&format!("/api/v1/kitchen/orders/{started}/start"), Some(&barista), json!({}));
    let too_late = h.post(&format!("/api/v1/orders/{started}/cancel"), Some(&ada), json!({}));
    assert_eq!((too_late.status, too_late.code()), (409, "illegal_transition"));
    assert_eq!(h.post(&format!("/api/v1/orders/{started}/cancel"), Some(&barista), json!({})).body["status"], "cancelled");
    let customer_start = h.post(&format!("/api/v1/kitchen/orders/{early}/start"), Some(&ada), json!({}));
    assert_eq!(customer_start.status, 403);
}

fn a_retried_post_with_an_idempotency_key_creates_one_order(h: &impl Api) {
    let ada = h.register("ada@example.com");
    let body = serde_json::to_vec(&json!({"lines": [{"item_id": "espresso", "size": "double", "quantity": 1}]})).expect("json");
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| h.request("POST", "/api/v1/orders", Some(&ada), &[("idempotency-key", "retry-1")], Some(("application/json", body.clone())))))
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .map(|r| {
                assert_eq!(r.status, 202, "{}", r.body);
                r.body["id"].as_str().expect("id").to_owned()
            })
            .collect()
    });
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let list = h.get("/api/v1/orders", Some(&ada));
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let other = serde_json::to_vec(&json!({"lines": [{"item_id": "espresso", "size": "single", "quantity": 1}]})).expect("json");
    let misuse = h.request("POST", "/api/v1/orders", Some(&ada), &[("idempotency-key", "retry-1")], Some(("application/json", other)));
    assert_eq!((misuse.status, misuse.code()), (422, "idempotency_key_reused"));
}

fn a_customer_cannot_read_another_customers_order(h: &impl Api) {
    let ada = h.register("ada@example.com");
    let bob = h.register("bob@example.com");
    let id = h.place(&ada);
    for path in [format!("/api/v1/orders/{id}"), format!("/api/v1/orders/{id}/events")] {
        let r = h.get(&path, Some(&bob));
        assert_eq!((r.status, r.code()), (404, "not_found"), "{path}");
    }
    assert_eq!(h.post(&format!("/api/v1/orders/{id}/cancel"), Some(&bob), json!({})).status, 404);
    assert_eq!(h.get("/api/v1/orders", Some(&bob)).body["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(h.get(&format!("/api/v1/orders/{id}"), None).status, 401);
}

fn bad_input_gets_a_clear_4xx_and_never_a_500(h: &impl Api) {
    let ada = h.register("ada@example.com");
    let raw = |method: &str, path: &str, ct: &str, body: &[u8]| h.request(method, path, Some(&ada), &[], Some((ct, body.to_vec())));
    let cases: Vec<(gocoffee_tests::Reply, u16, &str)> = vec![
        (raw("POST", "/api/v1/orders", "application/json", b"{\"lines\": ["), 400, "malformed_json"),
        (raw("POST", "/api/v1/orders", "text/plain", b"{}"), 415, "unsupported_media_type"),
        (raw("POST", "/api/v1/orders", "application/json", &vec![b' '; 100_000]), 413, "body_too_large"),
        (raw("POST", "/api/v1/orders", "application/json", &vec![b' '; 2 << 20]), 413, "body_too_large"),
        (raw("POST", "/api/v1/orders", "application/json", br#"{"lines":[],"coupon":"FREE"}"#), 400, "invalid_body"),
        (
            raw("POST", "/api/v1/orders", "application/json", br#"{"lines":[{"item_id":"latte","size":"small","quantity":1,"price_cents":0}]}"#),
            400,
            "invalid_body",
        ),
        (raw("POST", "/api/v1/orders", "application/json", br#"{"lines":[{"item_id":"unicorn-frappe","quantity":1}]}"#), 422, "unknown_item"),
        (raw("POST", "/api/v1/orders", "application/json", br#"{"lines":[{"item_id":"latte","size":"small","quantity":99}]}"#), 422, "invalid_quantity"),
        (raw("POST", "/api/v1/orders", "application/json", br#"{"lines":[{"item_id":"latte","size":"small","quantity":"two"}]}"#), 400, "invalid_body"),
        (raw("POST", "/api/v1/auth/register", "application/json", br#"{"email":"not-an-email","password":"password 123"}"#), 422, "invalid_email"),
        (raw("PATCH", "/api/v1/menu/items/latte", "application/json", br#"{"available":false}"#), 403, "forbidden"),
        (raw("GET", "/api/v1/orders?limit=1000", "", b""), 400, "invalid_limit"),
        (raw("GET", "/api/v1/orders/does-not-exist", "", b""), 404, "not_found"),
        (raw("GET", "/api/v1/nowhere", "", b""), 404, "not_found"),
        (raw("DELETE", "/api/v1/menu", "", b""), 405, "method_not_allowed"),
    ];
    for (i, (reply, status, code)) in cases.iter().enumerate() {
        assert_eq!((reply.status, reply.code()), (*status, *code), "case {i}: {}", reply.body);
        assert!(reply.body["error"]["message"].is_string(), "case {i}");
    }
    let garbled = h.request("GET", "/api/v1/auth/me", Some("not-a-token"), &[], None);
    assert!(h.refused_token(&garbled), "{} {}", garbled.status, garbled.body);
}

#[test]
fn the_same_event_delivered_twice_has_one_effect() {
    let h = Host::start("duplicates");
    let ada = h.register("ada@example.com");
    let id = h.place(&ada);
    h.wait_for_status(&id, &ada, "confirmed");
    let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&ada)).body;
    let placed = serde_json::to_vec(&events["events"][0]).expect("event");
    let state = h.kill();
    // The broker redelivers OrderPlaced twice more after a crash.
    inject_delivery(&state, &placed);
    inject_delivery(&state, &placed);
    let h = Host::start_in(state.clone(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_deliveries(&state) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pending_deliveries(&state), 0, "{}", h.log());
    assert_eq!(h.event_types(&id, &ada), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
    assert_eq!(h.get("/.well-known/gocoffee/dead-letters", None).body["items"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_poison_message_is_dead_lettered_and_the_rest_keep_flowing() {
    let h = Host::start("poison");
    let ada = h.register("ada@example.com");
    let state = h.kill();
    inject_delivery(&state, b"this is not an event");
    let h = Host::start_in(state, 0);
    let id = h.place(&ada);
    h.wait_for_status(&id, &ada, "confirmed");
    let dead = h.get("/.well-known/gocoffee/dead-letters", None);
    let items = dead.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", dead.body);
    // The consumer says it can never succeed, so it is not retried.
    assert_eq!((items[0]["payload"].as_str(), items[0]["attempts"].as_u64()), (Some("this is not an event"), Some(1)));
    assert!(items[0]["last_error"].as_str().is_some_and(|e| e.starts_with("poison: ")), "{}", dead.body);
    let listed = h.cli(&["dead-letters"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("this is not an event"), "{listed}");

    // Redriven from another process, it is delivered again (and, still poison, dead-lettered
    // again) without waiting for a new publish or a restart: a new dead letter replaces the old.
    // (The running host may take it back within moments, so the list is never checked empty.)
    let first_id = items[0]["id"].as_i64().expect("id");
    assert!(h.cli(&["redrive"]).starts_with("1 message"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = h.cli(&["dead-letters"]);
        let ids: Vec<i64> = listed.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["id"].as_i64()).collect();
        if !ids.is_empty() && !ids.contains(&first_id) {
            assert_eq!(ids.len(), 1, "{listed}");
            break;
        }
        assert!(Instant::now() < deadline, "never dead-lettered again: {listed}\n{}", h.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = h.place(&ada);
    h.wait_for_status(&next, &ada, "confirmed");
}

#[test]
fn sigkill_mid_flow_loses_no_accepted_order() {
    let h = Host::start("sigkill");
    let ada = h.register("ada@example.com");
    let port = h.port();
    let mut ids = vec![];
    for _ in 0..25 {
        ids.push(h.place(&ada));
    }
    // Killed right after the last 202: some orders are committed but not yet published or
    // consumed.
    let state = h.kill();
    let h = Host::start_in(state, port);
    for id in &ids {
        h.wait_for_status(id, &ada, "confirmed");
    }
    assert_eq!(h.get("/api/v1/orders?limit=100", Some(&ada)).body["items"].as_array().map(Vec::len), Some(25));
}

#[test]
fn a_backup_taken_while_orders_flow_restores_every_order_accepted_before_it() {
    let h = Host::start("backup");
    let ada = h.register("ada@example.com");
    let port = h.port();
    let before: Vec<String> = (0..15).map(|_| h.place(&ada)).collect();
    let backup = h.state.with_file_name(format!("{}-backup", h.state.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let _ = std::fs::remove_dir_all(&backup);
    // Orders keep coming while the backup is taken.
    let during = std::thread::scope(|s| {
        let placing = s.spawn(|| (0..15).map(|_| h.place(&ada)).collect::<Vec<_>>());
        let out = h.cli(&["backup", "--to", backup.to_str().expect("utf8")]);
        assert!(out.contains("log.db") && out.contains("sqlite/"), "{out}");
        placing.join().expect("placing")
    });
    // The disk is lost: only the compiled components survive.
    let state = h.kill();
    for gone in ["log.db", "log.db-wal", "log.db-shm", "sqlite", "kv"] {
        let p = state.join(gone);
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
    let out = Command::new(gocoffee_tests::host_binary())
        .args(["restore", "--from", backup.to_str().expect("utf8"), "--state-dir", state.to_str().expect("utf8")])
        .output()
        .expect("restore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let h = Host::start_in(state, port);
    let ada = h.login("ada@example.com", "password 123").body["access_token"].as_str().expect("the account is back").to_owned();
    for id in &before {
        h.wait_for_status(id, &ada, "confirmed");
    }
    // Orders placed during the backup are each either wholly there or not at all.
    let listed = h.get("/api/v1/orders?limit=100", Some(&ada)).body["items"].as_array().cloned().unwrap_or_default();
    assert!(listed.len() >= before.len() && listed.len() <= before.len() + during.len(), "{} orders", listed.len());
    for order in &listed {
        h.wait_for_status(order["id"].as_str().expect("id"), &ada, "confirmed");
    }
}

#[test]
fn the_metrics_listener_counts_requests_by_route_and_status_class_and_deliveries_by_outcome() {
    // Port 0, and the address the host logs: a port probed free here could be taken by another
    // test's host before this one binds it.
    let h = Host::start_with("metrics", "127.0.0.1:0", &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = h
        .log()
        .lines()
        .rev()
        .find_map(|l| l.contains("metrics at /metrics").then(|| l.rsplit("address=").next().map(str::trim).map(str::to_owned)).flatten())
        .expect("the host logs where its metrics are");
    let ada = h.register("ada@example.com");
    let id = h.place(&ada);
    h.wait_for_status(&id, &ada, "confirmed");
    assert_eq!(h.get("/no/such/path", None).status, 404);
    let scrape = || ureq::get(&format!("http://{metrics}/metrics")).call().expect("scrape").body_mut().read_to_string().expect("text");
    // A delivery is counted, and a component's metrics reach the host, when its invocation ends:
    // that can be just after the order reads confirmed, so scrape until the consumer's are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape();
        let settled = [r#"gocoffee_consumer_lag_seconds_count{consumer="order-consumer"}"#, r#"outcome="delivered"}"#].iter().all(|m| text.contains(m));
        if settled || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let sample = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
    };
    // Labels are the manifest's route patterns, never raw paths (which would grow without bound).
    assert_eq!(sample(r#"gocoffee_http_requests_total{method="POST",route="/api/v1/orders/...",status="2xx"}"#), 1.0);
    assert_eq!(sample(r#"gocoffee_http_requests_total{method="GET",route="none",status="4xx"}"#), 1.0);
    assert!(sample(r#"gocoffee_http_request_duration_seconds_count{method="POST",route="/api/v1/orders/..."}"#) >= 1.0);
    assert!(text.contains(r#"gocoffee_http_request_duration_seconds_bucket{method="POST",route="/api/v1/orders/...",le="0.005"}"#), "{text}");
    assert!(!text.contains(&id), "no order id in any label");
    assert!(sample(r#"gocoffee_deliveries_total{subscriber="order-consumer",channel="orders",outcome="delivered"}"#) >= 1.0);
    assert!(sample(r#"gocoffee_delivery_lag_seconds_count{subscriber="order-consumer"}"#) >= 1.0);
    assert_eq!(sample("gocoffee_dead_letters "), 0.0);
    // The components' own metrics, from the EMF lines they write on stdout.
    assert_eq!(sample(r#"gocoffee_order_events_total{event="OrderPlaced"}"#), 1.0);
    assert_eq!(sample(r#"gocoffee_order_events_total{event="OrderConfirmed"}"#), 1.0);
    assert!(sample(r#"gocoffee_consumer_lag_seconds_count{consumer="order-consumer"}"#) >= 1.0);
    assert!(text.contains(r#"gocoffee_consumer_lag_seconds_bucket{consumer="order-consumer",le="900"}"#), "{text}");

    // Open WebSocket connections are a gauge, and their events count as requests by event.
    let connections =
        |text: &str| text.lines().find(|l| l.starts_with("gocoffee_websocket_connections ")).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    let ticket = h.post("/api/v1/live/tickets", Some(&ada), json!({})).body["ticket"].as_str().expect("a ticket").to_owned();
    let mut socket = gocoffee_tests::ws::WsClient::connect(&h.base, &format!("/api/v1/live/socket?ticket={ticket}")).expect("connected");
    assert_eq!(socket.act("subscribe", &format!("order:{id}"))["ok"], true);
    let text = scrape();
    assert_eq!(connections(&text), Some(1.0), "{text}");
    assert!(text.contains(r#"route="websocket MESSAGE""#), "{text}");
    socket.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections(&scrape()) != Some(0.0) {
        assert!(Instant::now() < deadline, "the closed connection is still counted:\n{}", scrape());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_an_otlp_endpoint_the_host_exports_its_spans_in_the_callers_trace() {
    let (endpoint, spans) = gocoffee_tests::otlp_receiver();
    let state = gocoffee_tests::workspace().join("target/test-state").join(format!("otlp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    let h = Host::launch_env(state, "127.0.0.1:0", &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let ada = h.register("ada@example.com");
    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let body = serde_json::to_vec(&json!({"lines": [{"item_id": "latte", "size": "small", "quantity": 1}]})).expect("json");
    let placed =
        h.request("POST", "/api/v1/orders", Some(&ada), &[("traceparent", &format!("00-{trace_id}-{caller_span}-01"))], Some(("application/json", body)));
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    h.wait_for_status(&id, &ada, "confirmed");
    let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&ada)).body["events"].clone();
    let placed_span = events[0]["traceparent"].as_str().expect("traceparent").split('-').nth(2).expect("span").to_owned();

    let attribute =
        |span: &serde_json::Value, key: &str| span["attributes"].as_array().and_then(|a| a.iter().find(|kv| kv["key"] == key)).map(|kv| kv["value"].clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (server, delivery) = loop {
        let all = spans.lock().expect("lock").clone();
        let in_trace = |name: &str, group: Option<&str>| {
            all.iter()
                .find(|s| {
                    s["traceId"] == trace_id
                        && s["name"] == name
                        && group.is_none_or(|g| attribute(s, "messaging.consumer.group.name") == Some(json!({"stringValue": g})))
                })
                .cloned()
        };
        // Both subscribers of the orders channel took the event in its trace.
        let payments = in_trace("process orders", Some("payments-consumer"));
        if let (Some(server), Some(delivery), Some(_)) =
            (in_trace("POST /api/v1/orders/...", None), in_trace("process orders", Some("order-consumer")), payments)
        {
            break (server, delivery);
        }
        assert!(Instant::now() < deadline, "spans of trace {trace_id} never arrived: {all:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The host's server span is the caller's child; the component's work, a child of it, made
    // the order's event.
    assert_eq!(server["parentSpanId"], caller_span);
    assert_eq!(server["kind"], 2);
    assert_eq!(attribute(&server, "http.response.status_code"), Some(json!({"intValue": "202"})));
    assert_ne!(server["spanId"], placed_span.as_str(), "the component's work is a span of its own");
    // The consumer's span continues the trace the event carried.
    assert_eq!(delivery["parentSpanId"], placed_span.as_str());
    assert_eq!(delivery["kind"], 5);
    let start: u128 = server["startTimeUnixNano"].as_str().and_then(|n| n.parse().ok()).expect("start");
    let end: u128 = server["endTimeUnixNano"].as_str().and_then(|n| n.parse().ok()).expect("end");
    assert!(end > start, "{server}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    use std::io::{Read, Write};
    let h = Host::start("sigterm");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", h.port())).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = br#"{"email":"late@example.com","password":"password 123"}"#;
    write!(conn, "POST /api/v1/auth/register HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len())
        .expect("headers");
    // Half the body: the request is now in flight, its component waiting for the rest.
    conn.write_all(&body[..20]).expect("first half");
    std::thread::sleep(Duration::from_millis(500));
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the host this test started.
    unsafe {
        libc::kill(h.pid(), libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(&body[20..]).expect("second half");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let (_, status) = h.terminate();
    assert!(status.success(), "exit status {status:?}");
}

/// An `OrderPlaced` for an order that was never written: the consumer can only say "not visible
/// yet", a transient failure.
fn placed_for_a_missing_order(h: &Host, ada: &str) -> Vec<u8> {
    let id = h.place(ada);
    h.wait_for_status(&id, ada, "confirmed");
    let mut placed = h.get(&format!("/api/v1/orders/{id}/events"), Some(ada)).body["events"][0].clone();
    placed["order_id"] = json!("01NEVERWRITTEN0000000000000");
    placed["event_id"] = json!("01NEVERWRITTEN0000000000001");
    serde_json::to_vec(&placed).expect("event")
}

fn attempts_so_far(state: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(state.join("log.db")).expect("log db");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn.query_row("SELECT COALESCE(MAX(attempts), 0) FROM deliveries", [], |r| r.get(0)).expect("attempts")
}

#[test]
fn a_transient_failure_is_retried_past_the_attempt_limit_until_its_window_ends() {
    let h = Host::start("transient");
    let ada = h.register("ada@example.com");
    let payload = placed_for_a_missing_order(&h, &ada);
    let state = h.kill();
    inject_delivery(&state, &payload);
    // Three faults would dead-letter it; a transient failure is retried for the whole window.
    let h = Host::launch(state.clone(), "127.0.0.1:0", &["--max-attempts", "3", "--retry-base-ms", "50", "--retry-max-ms", "200"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts_so_far(&state) < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(attempts_so_far(&state) >= 6, "{}", h.log());
    assert_eq!(h.get("/.well-known/gocoffee/dead-letters", None).body["items"].as_array().map(Vec::len), Some(0), "{}", h.log());
    assert_eq!(pending_deliveries(&state), 1);

    // With a window of one second, it has been failing for long enough: dead-lettered, and the
    // messages behind it flow again.
    let state = h.kill();
    let h = Host::launch(state.clone(), "127.0.0.1:0", &["--retry-base-ms", "50", "--retry-for-secs", "1"]);
    let next = h.place(&ada);
    h.wait_for_status(&next, &ada, "confirmed");
    let dead = h.get("/.well-known/gocoffee/dead-letters", None).body;
    assert_eq!(dead["items"].as_array().map(Vec::len), Some(1), "{dead}");
    assert!(dead["items"][0]["last_error"].as_str().is_some_and(|e| e.starts_with("transient: ")), "{dead}");
}

/// This machine's first address that isn't loopback, for tests of what a LAN client sees.
fn lan_address() -> std::net::IpAddr {
    let out = std::process::Command::new("hostname").arg("-I").output().expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .expect("a non-loopback IPv4 address on this machine (hostname -I)")
}

#[test]
fn operator_endpoints_answer_remote_clients_only_with_the_operator_token() {
    let h = Host::start_with("operator", "0.0.0.0:0", &["--operator-token", "operator-secret-token"]);
    let lan = gocoffee_tests::Remote(format!("http://{}:{}", lan_address(), h.port()));
    // The API itself is for everyone on the LAN...
    assert_eq!(lan.get("/api/v1/menu", None).status, 200);
    // ...the dead letters (order events: customer ids, notes) are not.
    let refused = lan.get("/.well-known/gocoffee/dead-letters", None);
    assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.body);
    assert!(refused.body["items"].is_null());
    assert_eq!(lan.get("/.well-known/gocoffee/dead-letters", Some("wrong-token")).status, 403);
    assert_eq!(lan.post("/.well-known/gocoffee/dead-letters/redrive", None, json!({})).status, 403);
    assert_eq!(lan.get("/.well-known/gocoffee/dead-letters", Some("operator-secret-token")).status, 200);
    assert_eq!(h.get("/.well-known/gocoffee/dead-letters", None).status, 200, "a local operator needs no token");
    // A browser on this machine steered at the host: by DNS rebinding (a foreign Host), or by a
    // cross-site form (no custom header).
    let rebound = raw_http(h.base(), "GET /.well-known/gocoffee/dead-letters HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert_eq!(h.post("/.well-known/gocoffee/dead-letters/redrive", None, json!({})).status, 403);
    let redriven = h.request("POST", "/.well-known/gocoffee/dead-letters/redrive", None, &[("x-gocoffee-operator", "1")], None);
    assert_eq!((redriven.status, redriven.body["redriven"].as_u64()), (200, Some(0)));
}

/// Sends `head` and then `body` in pieces of `chunk` bytes every `pause`, on a thread; returns
/// the stream to read the response from.
fn send_slowly(port: u16, head: String, body: Vec<u8>, chunk: usize, pause: Duration) -> std::net::TcpStream {
    use std::io::Write;
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut writer = conn.try_clone().expect("clone");
    std::thread::spawn(move || {
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        for piece in body.chunks(chunk) {
            if writer.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    });
    conn
}

fn status_line(mut conn: std::net::TcpStream) -> String {
    use std::io::Read;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the end of the headers is enough.
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).lines().next().unwrap_or("").to_owned()
}

#[test]
fn bodies_are_capped_by_what_arrives_and_a_trickling_one_is_timed_out() {
    let h = Host::start_with("bodies", "127.0.0.1:0", &["--read-timeout-ms", "1500"]);
    // 8 MiB in chunks, with no Content-Length, to the picture route (which takes raw bytes and
    // has no cap of its own): refused by the host before a component could read it.
    let mut chunked = Vec::new();
    for _ in 0..128 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b'x', 64 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "PUT /api/v1/menu/items/latte/image/x.png?expires=1&signature=00 HTTP/1.1\r\nhost: localhost\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\n";
    let conn = send_slowly(h.port(), head.to_owned(), chunked, 1 << 20, Duration::ZERO);
    assert!(status_line(conn).starts_with("HTTP/1.1 413"));

    // A body that trickles in (10 of 100 bytes, then a byte every 200 ms) is cut off.
    let started = Instant::now();
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let conn = send_slowly(h.port(), head.to_owned(), vec![b' '; 100], 1, Duration::from_millis(200));
    assert!(status_line(conn).starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // Headers that never finish are cut off too.
    let conn = send_slowly(h.port(), String::new(), b"GET /health HTTP/1.1\r\nx-slow: ".to_vec(), 1, Duration::from_millis(100));
    let started = Instant::now();
    let _ = status_line(conn);
    assert!(started.elapsed() < Duration::from_secs(10), "the connection was closed: {:?}", started.elapsed());
    assert!(!h.log().contains("status=500"), "{}", h.log());
}

#[test]
fn two_hundred_slow_clients_do_not_starve_reads_orders_or_the_consumer() {
    use std::io::Write;
    let h = Host::start("slow-clients");
    let ada = h.register("ada@example.com");
    // 200 requests whose bodies never finish arriving: more than the instance pool holds.
    let slow: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", h.port())).expect("connect");
            c.write_all(b"POST /api/v1/auth/register HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"email\"")
                .expect("partial request");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.get("/health", None).status, 200);
    assert_eq!(h.get("/api/v1/menu", None).status, 200);
    let id = h.place(&ada);
    h.wait_for_status(&id, &ada, "confirmed");
    drop(slow);
    assert!(!h.log().contains("status=500"), "{}", h.log());
}

#[test]
fn a_full_instance_pool_answers_503_with_retry_after_not_500() {
    // Seven instances: one each for the four consumers and the two cron triggers, one for HTTP; a
    // request waits 50 ms for it.
    let h = Host::start_with("busy", "127.0.0.1:0", &["--max-instances", "7", "--queue-timeout-ms", "50"]);
    let replies: Vec<gocoffee_tests::Reply> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let h = &h;
                s.spawn(move || h.post("/api/v1/auth/register", None, json!({"email": format!("user{i}@example.com"), "password": "password 123"})))
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("thread")).collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 201 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&201) && statuses.contains(&503), "{statuses:?}");
    for r in replies.iter().filter(|r| r.status == 503) {
        assert_eq!((r.code(), r.header("retry-after")), ("overloaded", Some("1")));
    }
    // The consumer's slot is its own: orders are still confirmed.
    let ada = h.register("ada@example.com");
    let id = h.place(&ada);
    h.wait_for_status(&id, &ada, "confirmed");
}

#[test]
fn an_upload_url_on_the_host_works_once() {
    let h = Host::start("upload-once");
    let manager = h.staff("manager@example.com", "manager");
    let issued = h.request(
        "PUT",
        "/api/v1/menu/items/latte/image",
        Some(&manager),
        &[],
        Some(("application/json", serde_json::to_vec(&json!({"content_type": "image/png", "content_length": 8})).expect("json"))),
    );
    let upload = issued.body["upload_url"].as_str().expect("upload url").to_owned();
    assert_eq!(fetch("PUT", &upload, Some("image/png"), b"\x89PNG\r\n\x1a\n").0, 204);
    let (status, _, body) = fetch("PUT", &upload, Some("image/png"), b"EVIL\r\n\x1a\n");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let url = h.get("/api/v1/menu/items/latte", None).body["image_url"].as_str().expect("url").to_owned();
    assert_eq!(fetch("GET", &url, None, &[]).2, b"\x89PNG\r\n\x1a\n");
}

/// The Fermyon Wasm Functions profile's own guarantees: its event delivery (service chaining from
/// the outbox relay to private routes) and its schedules (routes the platform's cron jobs call).
mod wasm_functions_delivery {
    use std::time::{Duration, Instant};

    use gocoffee_sql::postgres::Postgres;
    use gocoffee_sql::{Db, Value};
    use gocoffee_tests::{Api, CRON_SECRET, Host};

    fn database(server: &gocoffee_sql::postgres::LocalServer) -> Postgres {
        Postgres::connect(&server.address("gocoffee")).expect("connect to the test database")
    }

    fn count(db: &Postgres, sql: &str) -> i64 {
        match db.execute(sql, &[]).expect("count").rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(n)) => *n,
            other => panic!("{sql}: {other:?}"),
        }
    }

    /// Calls the reconciler's route (as the platform's cron job would, every few minutes) until
    /// the order is confirmed: the first runs may find a dead relay's lease still unexpired.
    fn reconcile_until_confirmed(h: &Host, id: &str, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            assert_eq!(h.scheduled_run("reconciler"), 200, "{}", h.log());
            if h.get(&format!("/api/v1/orders/{id}"), Some(token)).body["status"] == "confirmed" {
                return;
            }
            assert!(Instant::now() < deadline, "order {id} was never confirmed:\n{}", h.log());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    #[test]
    fn killed_between_the_commit_and_the_chained_delivery_the_order_is_still_confirmed() {
        let (h, server) = Host::start_on_wasm_functions("wf_crash");
        let ada = h.register("ada@example.com");
        let first = h.place(&ada);
        h.wait_for_status(&first, &ada, "confirmed");
        let port = h.port();

        // Every consumer first asks whether it has seen the event; with that table locked, the
        // chained delivery waits inside the consumer while the order is already committed.
        let locker = database(&server);
        locker.execute("BEGIN", &[]).expect("begin");
        locker.execute("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE", &[]).expect("lock");
        let base = h.base().to_owned();
        let token = ada.clone();
        let placing = std::thread::spawn(move || {
            gocoffee_tests::Remote(base).request(
                "POST",
                "/api/v1/orders",
                Some(&token),
                &[],
                Some(("application/json", br#"{"lines":[{"item_id":"latte","size":"small","quantity":1}]}"#.to_vec())),
            )
        });
        let db = database(&server);
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&db, "SELECT count(*) FROM orders") < 2 {
            assert!(Instant::now() < deadline, "the second order was never committed:\n{}", h.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(count(&db, "SELECT count(*) FROM outbox") >= 1, "the committed order's event waits in the outbox");
        assert!(!placing.is_finished(), "the POST is still waiting on its chained delivery");

        let state = h.kill();
        drop(locker);
        // The client never got its answer; the order was committed all the same.
        let _ = placing.join();
        let pending: Vec<String> = db
            .execute("SELECT id FROM orders WHERE status = 'pending'", &[])
            .expect("pending orders")
            .rows
            .iter()
            .filter_map(|r| match r.first() {
                Some(Value::Text(id)) => Some(id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pending.len(), 1, "exactly the second order is unconfirmed");

        let h = Host::relaunch_on_wasm_functions(state, port, &server);
        reconcile_until_confirmed(&h, &pending[0], &ada);
        assert_eq!(h.event_types(&pending[0], &ada), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
        assert_eq!(count(&db, "SELECT count(*) FROM outbox"), 0, "{}", h.log());
    }

    #[test]
    fn an_event_delivered_twice_has_one_effect_and_a_poison_one_holds_nothing_back() {
        let (h, server) = Host::start_on_wasm_functions("wf_duplicates");
        let ada = h.register("ada@example.com");
        let id = h.place(&ada);
        h.wait_for_status(&id, &ada, "confirmed");
        let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&ada)).body;
        let placed = serde_json::to_vec(&events["events"][0]).expect("event");

        // A relay that died after delivering but before deleting sends the event again; a
        // message no consumer understands is in the way too.
        let db = database(&server);
        for payload in [placed.clone(), b"this is not an event".to_vec(), placed] {
            db.execute("INSERT INTO outbox (channel, payload) VALUES (?, ?)", &["orders".into(), Value::Blob(payload)]).expect("insert");
        }
        assert_eq!(h.scheduled_run("reconciler"), 200, "{}", h.log());
        assert_eq!(count(&db, "SELECT count(*) FROM outbox"), 0, "every entry was delivered or refused as poison:\n{}", h.log());
        assert_eq!(h.event_types(&id, &ada), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
        assert!(h.log().contains("poison message"), "{}", h.log());
        // Later events flow, and the analytics projection counted the twice-delivered order once.
        let next = h.place(&ada);
        h.wait_for_status(&next, &ada, "confirmed");
        let manager = h.staff("manager@example.com", "manager");
        let rates = h.get("/api/v1/analytics/rates", Some(&manager));
        assert_eq!((rates.status, rates.body["orders"].as_i64()), (200, Some(2)), "{}", rates.body);
    }

    #[test]
    fn consumer_routes_are_private_and_schedules_need_the_cron_secret() {
        let (h, _server) = Host::start_on_wasm_functions("wf_routes");
        for path in ["/events/orders", "/api/v1/events/orders"] {
            let reply = h.request("POST", path, None, &[], Some(("application/json", b"{}".to_vec())));
            assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        }
        assert_eq!(h.request("GET", "/cron/reconciler", None, &[], None).status, 401);
        assert_eq!(h.request("GET", "/cron/reconciler?key=not-the-secret", None, &[], None).status, 401);
        let bearer = format!("Bearer {CRON_SECRET}");
        assert_eq!(h.request("POST", "/cron/payments-watcher", None, &[("authorization", bearer.as_str())], None).status, 200, "{}", h.log());
        assert_eq!(h.scheduled_run("reconciler"), 200);
        assert_eq!(h.request("DELETE", &format!("/cron/reconciler?key={CRON_SECRET}"), None, &[], None).status, 405);
    }
}

/// The Fermyon Cloud profile's own guarantees: with no service chaining, each component runs its
/// events' consumers itself, and the reconciler's route re-drives what a crash left.
mod cloud_delivery {
    use std::time::{Duration, Instant};

    use gocoffee_tests::{Api, Host};

    fn outbox(h: &Host) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(h.state.join("sqlite/default.db")).expect("the host's default database");
        db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        db
    }

    #[test]
    fn killed_between_the_commit_and_a_delivery_the_event_still_reaches_every_consumer() {
        let h = Host::start_on_cloud("cloud_crash");
        let ada = h.register("ada@example.com");
        let manager = h.staff("manager@example.com", "manager");
        let first = h.place(&ada);
        h.wait_for_status(&first, &ada, "confirmed");
        let port = h.port();

        // The analytics consumer writes to its own database: with that locked, the order commits
        // and the order consumer confirms it, but the analytics delivery can't finish.
        let locker = rusqlite::Connection::open(h.state.join("sqlite/analytics.db")).expect("the analytics database");
        locker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let placing = {
            let (base, token) = (h.base().to_owned(), ada.clone());
            std::thread::spawn(move || {
                let body = br#"{"lines":[{"item_id":"latte","size":"small","quantity":1}]}"#.to_vec();
                gocoffee_tests::Remote(base).request("POST", "/api/v1/orders", Some(&token), &[], Some(("application/json", body)))
            })
        };
        let db = outbox(&h);
        let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while count("SELECT count(*) FROM orders") < 2 || count("SELECT count(*) FROM outbox") == 0 {
            assert!(Instant::now() < deadline, "the second order was never committed:\n{}", h.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = h.kill();
        drop(locker);
        let _ = placing.join();
        let second: String = db.query_row("SELECT id FROM orders WHERE id <> ?1", [&first], |r| r.get(0)).expect("the second order");

        let h = Host::relaunch_on_cloud(state, port);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            // What the outside scheduler does on Cloud.
            assert_eq!(h.scheduled_run("reconciler"), 200, "{}", h.log());
            let rates = h.get("/api/v1/analytics/rates", Some(&manager)).body;
            if rates["orders"] == 2 && count("SELECT count(*) FROM outbox") == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the second order never reached analytics: {rates}\n{}", h.log());
            std::thread::sleep(Duration::from_millis(300));
        }
        // The order consumer saw OrderPlaced again after the restart, with one effect.
        h.wait_for_status(&second, &ada, "confirmed");
        assert_eq!(h.event_types(&second, &ada), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
    }

    #[test]
    fn an_event_handled_twice_has_one_effect_and_a_poison_one_holds_nothing_back() {
        let h = Host::start_on_cloud("cloud_duplicates");
        let ada = h.register("ada@example.com");
        let id = h.place(&ada);
        h.wait_for_status(&id, &ada, "confirmed");
        let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&ada)).body;
        let placed = serde_json::to_vec(&events["events"][0]).expect("event");
        let db = outbox(&h);
        for payload in [placed.clone(), b"this is not an event".to_vec(), placed] {
            db.execute("INSERT INTO outbox (channel, payload) VALUES ('orders', ?1)", [payload]).expect("insert");
        }
        assert_eq!(h.scheduled_run("reconciler"), 200, "{}", h.log());
        let left: i64 = db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).expect("count");
        assert_eq!(left, 0, "every entry was handled or refused as poison:\n{}", h.log());
        assert_eq!(h.event_types(&id, &ada), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
        assert!(h.log().contains("poison message"), "{}", h.log());
        let next = h.place(&ada);
        h.wait_for_status(&next, &ada, "confirmed");
        let manager = h.staff("manager@example.com", "manager");
        let rates = h.get("/api/v1/analytics/rates", Some(&manager));
        assert_eq!((rates.status, rates.body["orders"].as_i64()), (200, Some(2)), "{}", rates.body);
    }
}

/// `POST /api/v1/ai/ask` end to end: routing to each agent, the embedding model the platform
/// runs (or words alone where it has none), the knowledge base cited, the caller's own orders
/// and nobody else's, the analytics agent for managers only, a follow-up kept in its session,
/// clear 4xx on bad input, and every answer's insight relayed out of the outbox.
fn the_agents_answer_from_the_menu_the_knowledge_base_the_callers_own_orders_and_the_sales(h: &impl Api) {
    let ada = h.register("ada@example.com");
    let bob = h.register("bob@example.com");
    let manager = h.staff("manager@example.com", "manager");
    let order = h.place(&ada);
    h.wait_for_status(&order, &ada, "confirmed");
    let ask = |token: &str, body: serde_json::Value| {
        let r = h.post("/api/v1/ai/ask", Some(token), body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };

    let found = ask(&ada, json!({"message": "anything vegan to eat?"}));
    assert_eq!(found["agent"], "search", "{found}");
    let items: Vec<&str> = found["data"]["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().expect("id")).collect();
    assert!(items.contains(&"avocado-toast") && !items.contains(&"croissant"), "{found}");
    assert!(found["insight_id"].is_string() && found["session_id"].is_string());
    let session = found["session_id"].as_str().expect("session").to_owned();
    let follow_up = ask(&ada, json!({"message": "what about that one?", "session_id": session}));
    assert_eq!((follow_up["agent"].as_str(), follow_up["routing"]["method"].as_str()), (Some("search"), Some("context")), "{follow_up}");

    let hours = ask(&ada, json!({"message": "what time do you open on saturday?"}));
    assert_eq!(hours["agent"], "customer-service", "{hours}");
    assert_eq!(hours["sources"][0]["id"], "opening-hours", "{hours}");
    assert_eq!(hours["fallback"], "no_model", "no language model is configured: {hours}");
    assert!(hours["answer"].as_str().expect("answer").contains("[opening-hours]"), "{hours}");

    let mine = ask(&ada, json!({"message": "where is my order?"}));
    assert_eq!(mine["agent"], "customer-service", "{mine}");
    assert_eq!(mine["data"]["orders"][0]["id"], order.as_str(), "{mine}");
    let theirs = ask(&bob, json!({"message": "where is my order?"}));
    assert_eq!(theirs["data"]["orders"], json!([]), "another customer sees none of Ada's: {theirs}");
    let nosy = ask(&bob, json!({"message": "what did my friend ada order?"}));
    assert_eq!(nosy["data"]["handoff"], true, "{nosy}");

    // Sales questions are the managers'.
    assert_eq!(h.post("/api/v1/ai/ask", Some(&ada), json!({"message": "what sold most today", "agent": "analytics"})).status, 403);
    assert_ne!(ask(&ada, json!({"message": "what sold most today"}))["agent"], "analytics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let sold = loop {
        let sold = ask(&manager, json!({"message": "what sold most today?"}));
        assert_eq!(sold["agent"], "analytics", "{sold}");
        if sold["data"]["rows"][0]["key"] == "cappuccino" {
            break sold;
        }
        assert!(Instant::now() < deadline, "the read model never had the order: {sold}\n{}", h.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sold["data"]["query"], json!({"measure": "items_sold", "by": "item", "range": "today", "top": 1}), "{sold}");

    for (body, status) in [
        (json!({"message": ""}), 400),
        (json!({"message": "hi", "extra": 1}), 400),
        (json!({"message": "hi", "session_id": "not a session!"}), 400),
        (json!({"message": "hi", "agent": "kitchen"}), 400),
        (json!({"message": "x".repeat(1001)}), 400),
    ] {
        let r = h.post("/api/v1/ai/ask", Some(&ada), body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
    }
    assert_eq!(h.post("/api/v1/ai/ask", None, json!({"message": "hi"})).status, 401);
}

/// An OpenAI-compatible chat service for the host to forward inference to, doing as told:
/// answer citing the first passage of its prompt (`Cite`), answer without a citation
/// (`Uncited`), or fail with a 500 (`Fail`). It counts the calls it gets.
#[derive(Clone, Copy, PartialEq)]
enum Model {
    Cite,
    Uncited,
    Fail,
}

struct ChatService {
    url: String,
    mode: std::sync::Arc<std::sync::Mutex<Model>>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ChatService {
    fn start() -> ChatService {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = std::sync::Arc::new(std::sync::Mutex::new(Model::Cite));
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, c) = (mode.clone(), calls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (_, body) = gocoffee_tests::read_request(&stream);
                c.fetch_add(1, Ordering::SeqCst);
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let prompt = request["messages"][0]["content"].as_str().unwrap_or_default();
                let first_passage = prompt.split("Passages:\n[").nth(1).and_then(|p| p.split(']').next()).unwrap_or("none");
                let mode = *m.lock().expect("mode");
                let (status, answer) = match mode {
                    Model::Cite => ("200 OK", format!("We open at 8 on Saturdays. [{first_passage}]")),
                    Model::Uncited => ("200 OK", "We open whenever we like.".to_owned()),
                    Model::Fail => ("500 Internal Server Error", String::new()),
                };
                let reply = if mode == Model::Fail {
                    json!({"error": {"message": "the model crashed", "type": "server_error"}})
                } else {
                    json!({"choices": [{"message": {"role": "assistant", "content": answer}}], "usage": {"prompt_tokens": 300, "completion_tokens": 12}})
                }
                .to_string();
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        ChatService { url, mode, calls }
    }

    fn set(&self, mode: Model) {
        *self.mode.lock().expect("mode") = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// With a language model configured (the host forwarding Spin's `infer` to an OpenAI-compatible
/// service): a customer-service answer is the model's when it cites one of its passages, the
/// grounded template's when it cites none; a failing service is fallen back from, and after
/// three failures in a row the breaker stops calling it.
#[test]
fn spin_with_a_model_answers_are_its_own_when_cited_and_a_failing_one_is_cut_off() {
    let service = ChatService::start();
    let state = gocoffee_tests::fresh_state("ai-with-a-model");
    let h = Host::launch_env(
        state,
        "127.0.0.1:0",
        &["--llm-url", &service.url],
        &[("SPIN_VARIABLE_AI_MODEL", "llama2-chat"), ("SPIN_VARIABLE_AI_BREAKER_FAILURES", "3"), ("SPIN_VARIABLE_AI_BREAKER_COOLDOWN_MS", "600000")],
    );
    let ada = h.register("ada@example.com");
    let ask = || {
        let r = h.post("/api/v1/ai/ask", Some(&ada), json!({"message": "what time do you open on saturday?"}));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["agent"], "customer-service", "{}", r.body);
        r.body
    };

    let phrased = ask();
    assert_eq!((phrased["model"].as_str(), &phrased["fallback"]), (Some("llama2-chat"), &serde_json::Value::Null), "{phrased}");
    assert_eq!(phrased["answer"], "We open at 8 on Saturdays. [opening-hours]", "{phrased}");
    assert_eq!(phrased["sources"][0]["id"], "opening-hours", "{phrased}");
    assert_eq!(service.calls(), 1);

    service.set(Model::Uncited);
    let ungrounded = ask();
    assert_eq!(ungrounded["fallback"], "ungrounded", "{ungrounded}");
    assert!(ungrounded["answer"].as_str().expect("answer").contains("[opening-hours]"), "the template's grounded answer instead: {ungrounded}");
    assert!(!ungrounded["answer"].as_str().expect("answer").contains("whenever"), "{ungrounded}");

    service.set(Model::Fail);
    for _ in 0..3 {
        let failed = ask();
        assert_eq!(failed["fallback"], "unavailable", "{failed}");
        assert!(failed["answer"].as_str().expect("answer").contains("[opening-hours]"), "{failed}");
    }
    let before = service.calls();
    assert_eq!(before, 5);
    let cut_off = ask();
    assert_eq!(cut_off["fallback"], "circuit_open", "{cut_off}");
    assert_eq!(service.calls(), before, "an open breaker makes no call");
}

/// `gocoffee-host eval` with a language model: the customer-service answers phrased by it, and
/// its fallback rate measured (none when it cites its passages, all when it cites none).
#[test]
fn the_evaluation_measures_a_models_fallback_rate_and_citations() {
    let service = ChatService::start();
    let eval = || {
        let out = Command::new(gocoffee_tests::host_binary())
            .current_dir(gocoffee_tests::workspace())
            .args(["eval", "--ai-models", "target/ai-models", "--split", "dev", "--llm-url", &service.url, "--llm-model", "test-chat"])
            .output()
            .expect("eval runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.contains("phrased by test-chat")).unwrap_or_else(|| panic!("no phrased row: {text}")).to_owned()
    };
    let cites = eval();
    assert!(cites.contains("fallback rate 0.000 (failed 0, cited none 0)"), "{cites}");
    let asked: usize = cites.split(": ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(asked > 10 && service.calls() == asked, "{cites} ({} calls)", service.calls());
    service.set(Model::Uncited);
    let uncited = eval();
    assert!(uncited.contains("fallback rate 1.000") && uncited.contains("cited ok 0.000"), "{uncited}");
}
