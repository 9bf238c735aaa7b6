//! The web clients on the local host: the pages and their fingerprinted assets as a browser
//! gets them, and the whole of both apps end to end in headless Chromium (`tests/e2e/web.mjs`),
//! and a crypto payment by QR code with anvil as the chain (`tests/e2e/crypto.mjs`).

use std::process::Command;

use gocoffee_tests::anvil::{Anvil, DEV};
use gocoffee_tests::{Api, Host, workspace};

/// The URLs a page loads from `/assets/` (its `src` and `href` attributes).
fn asset_urls(html: &str) -> Vec<String> {
    html.split(['"', '\'']).filter(|s| s.starts_with("/assets/")).map(str::to_owned).collect()
}

#[test]
fn pages_load_fingerprinted_assets_that_are_cached_for_good() {
    pages_and_assets(&Host::start("web_assets"));
}

/// On AWS the same function serves them as a Lambda behind the HTTP API, on the API's origin.
#[test]
fn the_lambda_serves_the_same_pages_and_assets_behind_the_http_api() {
    pages_and_assets(&gocoffee_tests::lambda::LambdaStack::start_with("web", false));
}

fn pages_and_assets(h: &dyn Api) {
    for page in ["/", "/kitchen"] {
        let r = h.request("GET", page, None, &[], None);
        assert_eq!(r.status, 200, "{page}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{page}");
        assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")), "{page}");
        let html = r.body.as_str().expect("HTML");
        let assets = asset_urls(html);
        assert!(assets.len() >= 2, "{page}: {assets:?}");
        for url in assets {
            let a = h.request("GET", &url, None, &[], None);
            assert_eq!((a.status, a.header("cache-control")), (200, Some("public, max-age=31536000, immutable")), "{url}");
            // Named by a 16-hex-digit hash of what it holds.
            let name = url.rsplit('/').next().expect("name");
            assert!(name.split('.').nth(1).is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())), "{url}");
            // A module's own imports are fingerprinted too.
            if let Some(text) = a.body.as_str() {
                assert!(!text.contains("{{"), "{url} has an unresolved reference");
            }
        }
    }
    assert_eq!(h.request("GET", "/assets/app.js", None, &[], None).status, 404);
    assert_eq!(h.request("POST", "/", None, &[], None).status, 405);
}

#[test]
fn a_customer_orders_and_the_kitchen_display_follows_it_live_in_chromium() {
    let h = Host::start_env("web_e2e", &[("SPIN_VARIABLE_LIVE_POLL_MS", "100")]);
    h.staff("barista@example.com", "barista");
    // Someone already on shift at the food counter; the display's barista joins the espresso bar.
    let baker = h.staff("baker@example.com", "barista");
    let id = h.get("/api/v1/auth/me", Some(&baker)).body["id"].as_str().expect("id").to_owned();
    let shift = h.request("PUT", &format!("/api/v1/kitchen/shifts/{id}"), Some(&baker), &[], Some(("application/json", br#"{"station":"food"}"#.to_vec())));
    assert_eq!(shift.status, 200, "{}", shift.body);
    run_in_chromium(&h, "web.mjs", &[("BARISTA_EMAIL", "barista@example.com"), ("BARISTA_PASSWORD", "staff password")]);
    screenshots_written(&[
        "customer-menu-phone",
        "customer-menu-tablet",
        "customer-order-phone",
        "customer-order-tablet",
        "kitchen-board-tablet",
        "kitchen-board-phone",
    ]);
}

/// Runs `tests/e2e/<script>` against `h` with these variables, screenshots going to
/// `target/screenshots/`; fails with what the script and the host said when it fails.
fn run_in_chromium(h: &Host, script: &str, env: &[(&str, &str)]) {
    let shots = workspace().join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots folder");
    let out = Command::new("node")
        .arg(workspace().join("tests/e2e").join(script))
        .current_dir(workspace())
        .env("GOCOFFEE_BASE", &h.base)
        .env("SCREENSHOTS", &shots)
        .envs(env.iter().copied())
        .output()
        .expect("node runs (tests/tools.sh installs playwright-core and chromium)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}\n--- host log ---\n{}", h.log());
    eprintln!("{script}: {stdout}");
}

fn screenshots_written(names: &[&str]) {
    for name in names {
        let path = workspace().join("target/screenshots").join(format!("{name}.png"));
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is not a real screenshot");
    }
}

#[test]
fn a_customer_pays_in_crypto_by_the_qr_code_and_follows_the_order_in_chromium() {
    let anvil = Anvil::start(137);
    let token = anvil.deploy_token("USDC", 6);
    anvil.mint(&token, DEV[1], 1_000_000_000);
    let mut env: Vec<(String, String)> =
        gocoffee_tests::payments::polygon_usdc_cafe(&anvil.url, &token).into_iter().map(|(k, v)| (format!("SPIN_VARIABLE_{k}"), v)).collect();
    env.push(("SPIN_VARIABLE_PAYMENT_RPC_ORIGIN".into(), "http://127.0.0.1:*".into()));
    env.push(("SPIN_VARIABLE_LIVE_POLL_MS".into(), "100".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let h = Host::start_env("web_crypto", &env);
    // What the cart offers: the café's methods, from its configuration, each of which an order
    // takes as it is listed (the orders and payments functions read the configuration apart).
    let customer = h.register("dan@example.com");
    let methods = h.get("/api/v1/payments/methods", Some(&customer));
    assert_eq!(methods.status, 200, "{}", methods.body);
    assert_eq!(methods.body["methods"][0]["payment_method"], serde_json::json!({"crypto": {"chain": "polygon", "asset": "USDC"}}), "{}", methods.body);
    assert_eq!(methods.body["methods"].as_array().map(Vec::len), Some(1));
    assert_eq!(h.get("/api/v1/payments/methods", None).status, 401);
    let tester = h.register("methods@example.com");
    for method in methods.body["methods"].as_array().expect("methods") {
        let order = serde_json::json!({"lines": [{"item_id": "cappuccino", "size": "medium", "quantity": 1}], "payment_method": method["payment_method"]});
        let placed = h.post("/api/v1/orders", Some(&tester), order);
        assert_eq!(placed.status, 202, "{method}: {}", placed.body);
    }
    // This page follows its order over the WebSocket (web.mjs's over the event stream), so the
    // browser's side of both transports is tested.
    run_in_chromium(&h, "crypto.mjs", &[("ANVIL_URL", &anvil.url), ("TOKEN", &token), ("PAYER", DEV[1]), ("LIVE", "websocket")]);
    screenshots_written(&["customer-cart-crypto-phone", "customer-pay-phone", "customer-pay-tablet"]);
}
