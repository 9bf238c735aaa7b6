//! Init time of Lambda bootstraps: starts each one under the Runtime API emulator `--runs` times
//! and reports, per function, how long after process start its first
//! `GET /runtime/invocation/next` came (the end of its init). Usage:
//! `lambda-init [--runs N] <dir with <function>/bootstrap> ...`

use std::time::Duration;

use gocoffee_tests::lambda::{FUNCTIONS, LambdaFunction};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut runs = 20;
    let mut dirs = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            _ => dirs.push(std::path::PathBuf::from(a)),
        }
    }
    // What the template gives a function, with placeholder values: init reads them but calls
    // nothing, so no AWS endpoint is needed.
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "init-bench"),
        ("AWS_SECRET_ACCESS_KEY", "init-bench"),
        ("AWS_SESSION_TOKEN", "init-bench"),
        ("TABLE_NAME", "gocoffee"),
        ("ORDERS_STREAM", "arn:aws:kinesis:us-east-1:123456789012:stream/orders"),
        ("ANALYTICS_STREAM", "arn:aws:kinesis:us-east-1:123456789012:stream/analytics"),
        ("ANALYTICS_TABLE", "gocoffee-analytics"),
        ("KITCHEN_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/kitchen"),
        ("DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq"),
        ("IMAGES_BUCKET", "gocoffee-images"),
        ("JWT_SECRET", "init-bench-secret-init-bench-secret-000"),
        ("TOKEN_KMS_KEY_IDS", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab,arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ac"),
        ("TOKEN_SIGNING_KEY_ID", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let log = std::env::temp_dir().join(format!("lambda-init-{}.log", std::process::id()));
    for dir in &dirs {
        println!("{}", dir.display());
        for function in FUNCTIONS {
            let bin = dir.join(function).join("bootstrap");
            // A folder may hold only some functions (a comparison of two builds, say).
            if !bin.exists() {
                continue;
            }
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let f = LambdaFunction::start_binary(function, &bin, &env, log.clone());
                    let t = f.wait_ready(Duration::from_secs(10));
                    f.kill();
                    t
                })
                .collect();
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or_default();
            println!(
                "  {function:<15} {:>6.2} MB  init median {:>6.2} ms  p90 {:>6.2} ms  min {:>6.2} ms  ({runs} starts)",
                size as f64 / 1e6,
                ms(times[times.len() / 2]),
                ms(times[times.len() * 9 / 10]),
                ms(times[0])
            );
        }
    }
}
