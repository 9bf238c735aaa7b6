//! Live status benchmark on the local host with the real components: for each number of
//! connected clients and each transport, that many clients follow the kitchen board (Server-Sent
//! Events streams, or WebSocket connections subscribed to `kitchen`) while orders are placed one
//! at a time, and each client's `OrderConfirmed` message is timed from the moment the event was
//! committed (the envelope's `time`) to its arrival: p50 and p99 over every (order, client).
//! Also the host's resident memory per open connection. Each round fits in one stream's life
//! (25 s), so no client reconnects while it is measured.
//!
//! `live-bench [--clients 100,1000] [--orders 20] [--poll-ms 250] [--transports sse,websocket]`;
//! `--smoke` runs a small version (make test).

use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gocoffee_tests::sse::SseStream;
use gocoffee_tests::ws::{Read, WsClient};
use gocoffee_tests::{Api, Host};
use serde_json::Value;

/// The clients of one round, whichever the transport: each message with when it arrived.
enum Clients {
    Streams(Vec<SseStream>),
    /// Each connection is read on a thread of its own, which hands over what comes.
    Sockets(Vec<Receiver<(Value, Instant)>>),
}

impl Clients {
    fn len(&self) -> usize {
        match self {
            Clients::Streams(s) => s.len(),
            Clients::Sockets(s) => s.len(),
        }
    }

    /// Client `i`'s next message (within `timeout`), and when it arrived.
    fn message(&mut self, i: usize, timeout: Duration) -> Option<(Value, Instant)> {
        match self {
            Clients::Streams(s) => s[i].message(timeout).map(|m| (m.data, m.at)),
            Clients::Sockets(s) => s[i].recv_timeout(timeout).ok(),
        }
    }
}

/// `n` clients on the kitchen board, each past its opening (a stream's first poll; a
/// connection's subscription).
fn open(host: &Host, transport: &str, barista: &str, n: usize) -> Clients {
    if transport == "sse" {
        let mut streams: Vec<SseStream> = (0..n).map(|_| SseStream::open(&host.base, "/api/v1/live/events?channel=kitchen", barista, None)).collect();
        assert!(streams.iter().all(|s| s.status == 200), "every stream opened");
        for s in &mut streams {
            s.next(Duration::from_secs(10));
        }
        return Clients::Streams(streams);
    }
    // A ticket opens any number of connections while it lasts (60 s).
    let ticket = host.post("/api/v1/live/tickets", Some(barista), serde_json::json!({})).body["ticket"].as_str().expect("a ticket").to_owned();
    let sockets = (0..n)
        .map(|_| {
            let mut socket = WsClient::connect(&host.base, &format!("/api/v1/live/socket?ticket={ticket}")).expect("connected");
            assert_eq!(socket.act("subscribe", "kitchen")["ok"], true);
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                loop {
                    match socket.read(Duration::from_secs(60)) {
                        Read::Message(m, at) => {
                            if tx.send((m, at)).is_err() {
                                return;
                            }
                        }
                        Read::TimedOut => continue,
                        Read::Closed(_) | Read::Reset => return,
                    }
                }
            });
            rx
        })
        .collect();
    Clients::Sockets(sockets)
}

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
    let transports: Vec<String> = flag("--transports").unwrap_or_else(|| "sse,websocket".into()).split(',').map(|t| t.trim().to_owned()).collect();
    assert!(transports.iter().all(|t| t == "sse" || t == "websocket"), "the transports are sse and websocket");

    println!("live status: {orders} orders, each to N clients on the kitchen board (SSE streams poll every {poll_ms} ms; WebSocket messages are pushed)");
    println!("{:>8} {:>10} {:>12} {:>12} {:>12} {:>20} {:>10}", "clients", "transport", "p50 (ms)", "p99 (ms)", "max (ms)", "RSS/connection (KiB)", "missed");
    for (n, transport) in clients.iter().flat_map(|&n| transports.iter().map(move |t| (n, t.as_str()))) {
        let instances = (n + 64).to_string();
        let connections = (n + 64).to_string();
        let name = format!("live-bench-{transport}-{n}");
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
        let mut clients = open(&host, transport, &barista, n);
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
            for i in 0..clients.len() {
                // Skip what came before (the warm-up order's confirmation may reach the feed
                // after a client opened).
                let deadline = Instant::now() + Duration::from_secs(10);
                let found = std::iter::from_fn(|| clients.message(i, deadline.saturating_duration_since(Instant::now())))
                    .find(|(m, _)| m["order_id"] == order.as_str() && m["type"] == "OrderConfirmed");
                match found {
                    Some((m, at)) => {
                        let arrived = now_ms() - at.elapsed().as_secs_f64() * 1000.0;
                        latencies.push(arrived - parse_ms(m["time"].as_str().expect("time")));
                    }
                    None => missed += 1,
                }
            }
            assert!(opened.elapsed() < Duration::from_secs(24), "the round outlived a stream: use fewer orders");
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "{n:>8} {transport:>10} {:>12.1} {:>12.1} {:>12.1} {:>20.0} {:>10}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            per_stream,
            missed
        );
        assert_eq!(missed, 0, "every client got every order");
    }
}
