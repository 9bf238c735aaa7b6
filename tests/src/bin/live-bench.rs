//! Live status benchmark on the local host with the real components: for each number of
//! connected clients, that many Server-Sent Events streams follow the kitchen board while orders
//! are placed one at a time, and each stream's `OrderConfirmed` message is timed from the
//! moment the event was committed (the envelope's `time`) to its arrival: p50 and p99 over every
//! (order, stream). Also the host's resident memory per open stream. Each round fits in one
//! stream's life (25 s), so no client reconnects while it is measured.
//!
//! `live-bench [--clients 100,1000] [--orders 20] [--poll-ms 250]`; `--smoke` runs a small
//! version (make test).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gocoffee_tests::sse::SseStream;
use gocoffee_tests::{Api, Host};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The host's resident memory, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
}

fn parse_ms(rfc3339: &str) -> f64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).expect("an RFC 3339 time");
    t.unix_timestamp_nanos() as f64 / 1e6
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let smoke = args.iter().any(|a| a == "--smoke");
    let clients: Vec<usize> = flag("--clients")
        .unwrap_or_else(|| if smoke { "10".into() } else { "100,1000".into() })
        .split(',')
        .map(|n| n.trim().parse().expect("a number"))
        .collect();
    let orders: usize = flag("--orders").map_or(if smoke { 3 } else { 20 }, |n| n.parse().expect("a number"));
    let poll_ms = flag("--poll-ms").unwrap_or_else(|| "250".into());

    println!("live status: {orders} orders, each to N streams on the kitchen board (poll every {poll_ms} ms)");
    println!("{:>8} {:>12} {:>12} {:>12} {:>16} {:>10}", "clients", "p50 (ms)", "p99 (ms)", "max (ms)", "RSS/stream (KiB)", "missed");
    for n in clients {
        let instances = (n + 64).to_string();
        let connections = (n + 64).to_string();
        let name = format!("live-bench-{n}");
        let host = Host::launch_env(
            gocoffee_tests::fresh_state(&name),
            "127.0.0.1:0",
            &["--max-instances", &instances, "--max-connections", &connections],
            &[("SPIN_VARIABLE_LIVE_POLL_MS", poll_ms.as_str())],
        );
        let customer = host.register("bench-customer@example.com");
        let barista = host.staff("bench-barista@example.com", "barista");
        // Warm the host (the components' first instances) before measuring memory.
        let warm = host.place(&customer);
        host.wait_for_status(&warm, &customer, "confirmed");
        let before = rss_kib(host.pid());
        let opened = Instant::now();
        let mut streams: Vec<SseStream> = (0..n).map(|_| SseStream::open(&host.base, "/api/v1/live/events?channel=kitchen", &barista, None)).collect();
        assert!(streams.iter().all(|s| s.status == 200), "every stream opened");
        // Each stream's opening line, so every one is past its first poll.
        for s in &mut streams {
            s.next(Duration::from_secs(10));
        }
        let per_stream = (rss_kib(host.pid()).saturating_sub(before)) as f64 / n as f64;
        let mut latencies = Vec::with_capacity(n * orders);
        let mut missed = 0;
        // Orders go in at a random point of the streams' polling period, as they would.
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let period: u64 = poll_ms.parse().expect("a number");
        for _ in 0..orders {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(seed % period.max(1)));
            let order = host.place(&customer);
            for s in &mut streams {
                // Skip what came before (the warm-up order's confirmation may reach the feed
                // after a stream opened).
                let deadline = Instant::now() + Duration::from_secs(10);
                let found = std::iter::from_fn(|| s.message(deadline.saturating_duration_since(Instant::now()))).find(|m| m.data["order_id"] == order.as_str());
                match found {
                    Some(m) => {
                        let arrived = now_ms() - m.at.elapsed().as_secs_f64() * 1000.0;
                        latencies.push(arrived - parse_ms(m.data["time"].as_str().expect("time")));
                    }
                    None => missed += 1,
                }
            }
            assert!(opened.elapsed() < Duration::from_secs(24), "the round outlived a stream: use fewer orders");
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "{n:>8} {:>12.1} {:>12.1} {:>12.1} {:>16.0} {:>10}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            per_stream,
            missed
        );
        assert_eq!(missed, 0, "every stream got every order");
    }
}
