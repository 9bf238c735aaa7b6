//! The crypto payment saga end to end over HTTP, on both shells, with anvil as the chain:
//! - the local host running the real components (orders, order consumer, payments, payments
//!   consumer, payments watcher on the cron trigger) on the embedded log;
//! - the Lambda bootstraps on moto behind the API Gateway front, with the template's Kinesis
//!   mappings (the orders stream to the order and payments consumers, the payments stream to the
//!   order consumer) and the kitchen queue's.
//!
//! The watcher is run on demand (the host's operator endpoint; an invocation with the schedule's
//! sample event on Lambda) instead of waiting for its schedule.

use std::time::{Duration, Instant};

use gocoffee_tests::anvil::{Anvil, DEV};
use gocoffee_tests::lambda::LambdaStack;
use gocoffee_tests::{Api, Host};
use serde_json::{Value, json};

enum Platform {
    Host(Host),
    Lambda(LambdaStack),
}

struct Cafe {
    platform: Platform,
    anvil: Anvil,
    token: String,
}

/// Runs the test `$name(lambda)` on the host and on the Lambda shell.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn host() {
                super::$name(false)
            }

            #[test]
            fn lambda() {
                super::$name(true)
            }
        }
    };
}

fn cafe(name: &str, expiry_seconds: &str, lambda: bool) -> Cafe {
    let anvil = Anvil::start(137);
    let token = anvil.deploy_token("USDC", 6);
    anvil.mint(&token, DEV[1], 1_000_000_000);
    let platform = platform(name, lambda, &anvil.url, &token, &[("PAYMENT_EXPIRY_SECONDS", expiry_seconds)], &["--max-attempts", "3", "--retry-base-ms", "50"]);
    Cafe { platform, anvil, token }
}

/// Either shell, taking USDC at `token` on Polygon through `rpc_url`, with more `variables`
/// (upper case names, as on Lambda) and, on the host, these `host_flags`.
fn platform(name: &str, lambda: bool, rpc_url: &str, token: &str, variables: &[(&str, &str)], host_flags: &[&str]) -> Platform {
    let mut vars = gocoffee_tests::payments::polygon_usdc_cafe(rpc_url, token);
    vars.extend(variables.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if lambda {
        let params: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Platform::Lambda(LambdaStack::start_env(name, true, &params))
    } else {
        vars.push(("PAYMENT_RPC_ORIGIN".into(), "http://127.0.0.1:*".into()));
        let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (format!("SPIN_VARIABLE_{k}"), v.clone())).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let state = gocoffee_tests::fresh_state(name);
        Platform::Host(Host::launch_env(state, "127.0.0.1:0", host_flags, &env))
    }
}

/// Runs the cron function `function` once (what its schedule does): the host's operator
/// endpoint, or an invocation with the schedule's sample event on Lambda.
fn tick(platform: &Platform, function: &str) -> Value {
    match platform {
        Platform::Host(host) => {
            let r = host.request("POST", &format!("/.well-known/gocoffee/cron/{function}"), None, &[("x-gocoffee-operator", "1")], None);
            assert_eq!(r.status, 200, "{}; host log:\n{}", r.body, host.log());
            r.body
        }
        Platform::Lambda(stack) => {
            let tick: Value =
                serde_json::from_slice(&std::fs::read(gocoffee_tests::workspace().join("events/schedule/tick.json")).expect("sample")).expect("json");
            stack.function(function).invoke(&tick).unwrap_or_else(|e| panic!("{function}: {e}\n{}", stack.logs()))
        }
    }
}

impl Cafe {
    fn api(&self) -> &dyn Api {
        match &self.platform {
            Platform::Host(h) => h,
            Platform::Lambda(l) => l,
        }
    }

    fn place(&self, customer: &str) -> String {
        let r = self.api().post(
            "/api/v1/orders",
            Some(customer),
            json!({"lines": [{"item_id": "cappuccino", "size": "medium", "quantity": 1}], "payment_method": {"crypto": {"chain": "polygon", "asset": "USDC"}}}),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body["payment_method"]["crypto"]["asset"], "USDC");
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// The order's payment intent, once the consumers made it.
    fn intent(&self, order: &str, customer: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.api().get(&format!("/api/v1/orders/{order}"), Some(customer));
            if let Some(link) = o.body["links"]["payment"].as_str() {
                let r = self.api().get(link, Some(customer));
                if r.status == 200 {
                    return r.body;
                }
            }
            assert!(Instant::now() < deadline, "no payment intent for {order}; host log:\n{}", self.api().log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pay(&self, intent: &Value, amount: u128) -> String {
        self.anvil.transfer_token(&self.token, DEV[1], intent["deposit_address"].as_str().expect("address"), amount, None)
    }

    /// Runs the watcher now (what its cron trigger does every 15 s).
    fn watch(&self) {
        let report = tick(&self.platform, "payments-watcher");
        assert!(matches!(self.platform, Platform::Host(_)) || report["chains"].is_array(), "{report}");
    }

    /// Moves the chain's clock past the intent's expiry and mines on top.
    fn pass_expiry(&self, seconds: u64) {
        std::thread::sleep(Duration::from_secs(seconds));
        self.anvil.rpc("evm_increaseTime", json!([seconds + 5]));
        self.anvil.mine(2);
    }
}

on_both!(a_crypto_order_paid_on_chain_is_carried_through_to_collected);
fn a_crypto_order_paid_on_chain_is_carried_through_to_collected(lambda: bool) {
    let c = cafe("pay-collected", "900", lambda);
    let customer = c.api().register("payer@example.com");
    let order = c.place(&customer);
    let intent = c.intent(&order, &customer);
    assert_eq!(intent["status"], "awaiting_payment");
    let cents = intent["amount_cents"].as_u64().expect("cents");
    let due = u128::from(cents) * 10_000;
    assert_eq!(intent["amount_due"]["base_units"], due.to_string(), "the order's price in USDC's 6 decimals: {intent}");
    assert!(intent["payment_uri"].as_str().expect("uri").starts_with("ethereum:"));
    assert_eq!(c.api().get(&format!("/api/v1/orders/{order}"), Some(&customer)).body["status"], "pending", "unpaid: not for the kitchen");
    let tx = c.pay(&intent, due);
    let path = format!("/api/v1/payments/{}/transactions", intent["id"].as_str().expect("id"));
    let paid = c.api().post(&path, Some(&customer), json!({"tx_hash": tx}));
    assert_eq!((paid.status, paid.body["status"].as_str()), (200, Some("paid")), "{}", paid.body);
    // The same hint again: one effect.
    let again = c.api().post(&path, Some(&customer), json!({"tx_hash": tx}));
    assert_eq!((again.status, &again.body["version"]), (200, &paid.body["version"]));
    c.api().wait_for_status(&order, &customer, "confirmed");
    let barista = c.api().staff("barista@example.com", "barista");
    assert_eq!(c.api().post(&format!("/api/v1/kitchen/orders/{order}/start"), Some(&barista), json!({})).status, 200);
    assert_eq!(c.api().post(&format!("/api/v1/kitchen/orders/{order}/ready"), Some(&barista), json!({})).status, 200);
    assert_eq!(c.api().post(&format!("/api/v1/orders/{order}/collect"), Some(&customer), json!({})).status, 200);
    let events = c.api().event_types(&order, &customer);
    assert_eq!(
        events,
        [
            "OrderPlaced",
            "PaymentRequested",
            "OrderPaid",
            "OrderConfirmed",
            "TicketRouted",
            "PreparationStarted",
            "PartStarted",
            "PartReady",
            "OrderReady",
            "OrderCompleted"
        ]
    );
    // Someone else's intent is not visible, and a bad hash is a 422.
    let other = c.api().register("other@example.com");
    assert_eq!(c.api().get(&format!("/api/v1/payments/{}", intent["id"].as_str().expect("id")), Some(&other)).status, 404);
    assert_eq!(c.api().post(&path, Some(&customer), json!({"tx_hash": "0x1234"})).status, 422);
}

on_both!(an_unpaid_crypto_order_is_cancelled_by_expiry_and_late_money_becomes_a_refund_due);
fn an_unpaid_crypto_order_is_cancelled_by_expiry_and_late_money_becomes_a_refund_due(lambda: bool) {
    let c = cafe("pay-expiry", "2", lambda);
    let customer = c.api().register("late@example.com");
    let order = c.place(&customer);
    let intent = c.intent(&order, &customer);
    c.pass_expiry(3);
    c.watch();
    let cancelled = c.api().wait_for_status(&order, &customer, "cancelled");
    let id = intent["id"].as_str().expect("id");
    let expired = c.api().get(&format!("/api/v1/payments/{id}"), Some(&customer));
    assert_eq!(expired.body["status"], "expired", "{}", expired.body);
    assert!(c.api().event_types(&order, &customer).contains(&"OrderCancelled".to_owned()), "{}", cancelled.body);
    // The customer pays anyway, after the expiry: the watcher credits it late and owes it back.
    c.pay(&intent, 4_500_000);
    c.watch();
    let late = c.api().get(&format!("/api/v1/payments/{id}"), Some(&customer));
    assert_eq!(late.body["status"], "refund_due", "{}", late.body);
    assert_eq!(late.body["refund"]["outstanding"]["base_units"], "4500000");
    let manager = c.api().staff("manager@example.com", "manager");
    let due = c.api().get("/api/v1/payments/refunds", Some(&manager));
    assert_eq!(due.status, 200, "{}", due.body);
    assert!(due.body["items"].as_array().expect("items").iter().any(|i| i["id"] == id));
    assert_eq!(c.api().get("/api/v1/payments/refunds", Some(&customer)).status, 403);
    // The customer names where the refund goes.
    let r = c.api().request(
        "PUT",
        &format!("/api/v1/payments/{id}/refund-address"),
        Some(&customer),
        &[],
        Some(("application/json", serde_json::to_vec(&json!({"address": DEV[2]})).expect("json"))),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["refund"]["address"].as_str().map(str::to_lowercase), Some(DEV[2].to_owned()));
}

on_both!(a_payment_request_whose_handling_failed_for_good_is_redriven_by_the_reconciler);
fn a_payment_request_whose_handling_failed_for_good_is_redriven_by_the_reconciler(lambda: bool) {
    // The chain's node is down when the order asks for payment, and nothing redelivers: the host
    // with redelivery off (one attempt, no retry window), as Spin's Redis trigger behaves; on
    // Lambda the mapping's retries run out and only the batch's metadata reaches its
    // dead-letter queue.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let url = format!("http://127.0.0.1:{port}");
    // The first contract DEV[0] deploys on a fresh node: known before the node runs.
    let token = alloy_primitives::Address::create(&DEV[0].parse().expect("dev"), 0).to_string();
    let platform = platform(
        "pay-reconcile",
        lambda,
        &url,
        &token,
        &[("RECONCILE_AFTER_SECONDS", "1")],
        &["--max-attempts", "1", "--retry-for-secs", "0", "--retry-base-ms", "50"],
    );
    let api: &dyn Api = match &platform {
        Platform::Host(h) => h,
        Platform::Lambda(l) => l,
    };
    let customer = api.register("stuck@example.com");
    let r = api.post(
        "/api/v1/orders",
        Some(&customer),
        json!({"lines": [{"item_id": "cappuccino", "size": "medium", "quantity": 1}], "payment_method": {"crypto": {"chain": "polygon", "asset": "USDC"}}}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let order = r.body["id"].as_str().expect("id").to_owned();
    let intent_path = format!("/api/v1/payments/pi_{order}");
    // The payment was asked for, and its handling failed for good.
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.get(&format!("/api/v1/orders/{order}"), Some(&customer)).body["links"]["payment"].is_null() {
        assert!(Instant::now() < deadline, "the payment was never requested; log:\n{}", api.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(api.get(&intent_path, Some(&customer)).status, 404, "no intent while the chain is unreachable");
    // The node comes up. Each reconciler pass (every minute when deployed) re-drives the stuck
    // request until the intent exists (on Lambda a container's circuit breaker may still be
    // open for the first ones).
    let anvil = Anvil::start_on(137, port);
    assert_eq!(anvil.deploy_token("USDC", 6).to_lowercase(), token.to_lowercase());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let report = tick(&platform, "reconciler");
        std::thread::sleep(Duration::from_secs(2));
        let intent = api.get(&intent_path, Some(&customer));
        if intent.status == 200 {
            assert_eq!(intent.body["status"], "awaiting_payment", "{}", intent.body);
            break;
        }
        assert!(Instant::now() < deadline, "the reconciler never re-drove the request (last: {report}); log:\n{}", api.log());
    }
    assert_eq!(api.get(&format!("/api/v1/orders/{order}"), Some(&customer)).body["status"], "pending", "waiting for its payment, not stuck");
}
