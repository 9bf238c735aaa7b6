//! The web clients on the local host: the pages and their fingerprinted assets as a browser
//! gets them, and the whole of both apps end to end in headless Chromium (`tests/e2e/web.mjs`).

use std::process::Command;

use gocoffee_tests::{Api, Host, workspace};

/// The URLs a page loads from `/assets/` (its `src` and `href` attributes).
fn asset_urls(html: &str) -> Vec<String> {
    html.split(['"', '\'']).filter(|s| s.starts_with("/assets/")).map(str::to_owned).collect()
}

#[test]
fn pages_load_fingerprinted_assets_that_are_cached_for_good() {
    let h = Host::start("web_assets");
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
    let shots = workspace().join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots folder");
    let out = Command::new("node")
        .arg(workspace().join("tests/e2e/web.mjs"))
        .current_dir(workspace())
        .env("GOCOFFEE_BASE", &h.base)
        .env("BARISTA_EMAIL", "barista@example.com")
        .env("BARISTA_PASSWORD", "staff password")
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("node runs (tests/tools.sh installs playwright-core and chromium)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}\n--- host log ---\n{}", h.log());
    eprintln!("web end to end: {stdout}");
    for name in ["customer-menu-phone", "customer-menu-tablet", "customer-order-phone", "customer-order-tablet", "kitchen-board-tablet", "kitchen-board-phone"]
    {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is not a real screenshot");
    }
}
