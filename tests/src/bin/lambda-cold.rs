//! Whole cold requests of the Lambda bootstraps on moto: each function's process is started
//! `--runs` times, and each time its first invocation is its sample event from `events/` (with a
//! real access token in place of the placeholder). Reported per function, medians: the cold
//! request (process start to the first invocation's response: init and whatever the first
//! request does that later ones don't), init alone (process start to its first
//! `GET /runtime/invocation/next`), the same event again on the now warm process, and the cold
//! request over `health`'s. Moving work from init into the first request shows up here, not as a
//! gain. Usage: `lambda-cold [--runs N]` (the binaries in target/release, as `make test` builds
//! them, or `GOCOFFEE_LAMBDA_DIR`).

use std::time::{Duration, Instant};

use gocoffee_tests::lambda::{API_ID, JWT_SECRET, LambdaFunction, LambdaStack};
use gocoffee_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, TEST_RATE_LIMITS, workspace};

/// Each function's first invocation: a sample its callers send most (a scheduled tick, a stream
/// batch, the API's read on its prefix).
const FIRST_EVENTS: [(&str, &str); 16] = [
    ("health", "http/health.json"),
    ("web", "http/web-customer-app.json"),
    ("identity", "http/identity-jwks.json"),
    ("menu", "http/menu-list.json"),
    ("orders", "http/orders-list.json"),
    ("kitchen", "http/kitchen-queue.json"),
    ("order-consumer", "kinesis/order-events.json"),
    ("payments", "http/payments-refunds.json"),
    ("payments-consumer", "kinesis/order-events.json"),
    ("payments-watcher", "schedule/tick.json"),
    ("reconciler", "schedule/tick.json"),
    ("analytics", "http/analytics-sales.json"),
    ("analytics-consumer", "kinesis/order-events.json"),
    ("live", "http/live-ticket.json"),
    ("notifier", "kinesis/order-events.json"),
    ("ai", "http/ai-ask.json"),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let mut runs = 15;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            other => panic!("unknown argument {other}; usage: lambda-cold [--runs N]"),
        }
    }
    // The stack's tables, streams, queues and keys on moto, every function warm behind the
    // test gateway: only to sign in (the tokens the samples need), never measured.
    let stack = LambdaStack::start_with("cold", false);
    let login = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    let token = login.body["access_token"].as_str().unwrap_or_else(|| panic!("admin login: {} {}", login.status, login.body)).to_owned();
    let extra = [("JWT_SECRET", JWT_SECRET), ("ADMIN_EMAIL", ADMIN_EMAIL), ("ADMIN_PASSWORD", ADMIN_PASSWORD), ("RATE_LIMITS", TEST_RATE_LIMITS)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!("{runs} cold starts each, on moto; medians");
    println!("{:<19} {:>10} {:>8} {:>8} {:>12}", "function", "cold req", "init", "warm", "x health");
    let mut health_cold = None;
    for (function, sample) in FIRST_EVENTS {
        let path = workspace().join("events").join(sample);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let event: serde_json::Value = serde_json::from_str(&text.replace("REPLACE_WITH_ACCESS_TOKEN", &token).replace("abcdef1234", API_ID)).expect("json");
        let env = stack.stack.function_env(function, &extra);
        let log = stack.dir.join(format!("{function}-cold.log"));
        let (mut cold, mut init, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let f = LambdaFunction::start(function, &env, log.clone());
            let first = f.invoke(&event).unwrap_or_else(|e| panic!("{function}: {e}"));
            cold.push(f.started.elapsed());
            init.push(f.wait_ready(Duration::from_secs(1)));
            check(function, &first);
            let t = Instant::now();
            f.invoke(&event).unwrap_or_else(|e| panic!("{function}: {e}"));
            warm.push(t.elapsed());
            f.kill();
        }
        let cold = median(cold);
        let base = *health_cold.get_or_insert(cold);
        println!(
            "{function:<19} {:>7.2} ms {:>5.2} ms {:>5.2} ms {:>11.2}x",
            ms(cold),
            ms(median(init)),
            ms(median(warm)),
            cold.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// A cold start that failed isn't a measurement: an API answer must not be a 5xx or a refused
/// token. (A batch's answer isn't judged: the consumers may rightly ask for a sample's record
/// again, an order this stack never placed.)
fn check(function: &str, answer: &serde_json::Value) {
    if let Some(status) = answer["statusCode"].as_u64() {
        assert!(status < 500 && status != 401 && status != 403, "{function} answered {status}: {answer}");
    }
}
