//! Payment verification benchmark, side by side in one run against real anvil nodes:
//! - one watcher scan over N open token intents and N/2 native-coin intents across 4 chains (RPC
//!   calls, wall time), against the baselines of polling each deposit address with its own
//!   `eth_getLogs` (tokens) or `eth_getBalance` (native coins);
//! - hint verification latency (read head, transaction, receipt, canonical block; judge), against
//!   the baseline of the bare `eth_getTransactionReceipt` round trip.
//!
//! `payments-bench [--intents 1000] [--hints 50]`; `--smoke` runs a small version (make test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use gocoffee_app::memory::ManualClock;
use gocoffee_app::ports::OsEntropy;
use gocoffee_payments::chains::{Asset, AssetKind, Chain, Chains, Finality};
use gocoffee_payments::reader::{ChainReader, Readers};
use gocoffee_payments::rpc::HttpPost;
use gocoffee_payments::service::{PaymentServices, Settings};
use gocoffee_payments::sql::SqlIntentStore;
use gocoffee_sql::SqliteStore;
use gocoffee_sql::rusqlite::Sqlite;
use gocoffee_tests::anvil::{Anvil, DEV};
use gocoffee_tests::payments::{Counting, NoPrices, create_direct, deposit_keys, direct_terms};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(default);
    let smoke = args.iter().any(|a| a == "--smoke");
    let n_intents = flag("--intents", if smoke { 40 } else { 1000 });
    let n_hints = flag("--hints", if smoke { 5 } else { 50 });
    let chain_ids = [1u64, 137, 56, 42161];

    let dir = std::env::temp_dir().join(format!("gocoffee-payments-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Sqlite::open(&dir.join("db.sqlite"));
    SqliteStore::open(&db).expect("schema");
    let store = SqlIntentStore::open(&db).expect("store");
    let keys = deposit_keys(5);

    let mut nodes = Vec::new();
    let mut chains = std::collections::BTreeMap::new();
    for id in chain_ids {
        let anvil = Anvil::start(id);
        let token = anvil.deploy_token("USDC", 6);
        anvil.mint(&token, DEV[1], u128::from(u64::MAX));
        anvil.install_multicall3();
        let chain = Chain {
            chain_id: id,
            rpc_urls: vec![anvil.url.clone()],
            finality: Finality::Confirmations(1),
            assets: [
                ("USDC".to_owned(), Asset { kind: AssetKind::Erc20(token.parse().expect("token")), decimals: 6, usd_pegged: true, price_feed: None }),
                ("ETH".to_owned(), Asset { kind: AssetKind::Native, decimals: 18, usd_pegged: false, price_feed: None }),
            ]
            .into(),
        };
        chains.insert(format!("chain{id}"), chain);
        nodes.push((anvil, token));
    }
    let chains = Chains(chains);

    // N open intents spread over the chains; every tenth is paid.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
    let mut paid = Vec::new();
    for i in 0..n_intents {
        let (anvil, token) = &nodes[i % nodes.len()];
        let chain = format!("chain{}", anvil.chain_id);
        let venue = ((chain.as_str(), anvil.chain_id), ("USDC", AssetKind::Erc20(token.parse().expect("token")), 6));
        let terms = direct_terms(&keys, i as u64, venue, U256::from(4_500_000u64), now, anvil.block_number());
        create_direct(&store, &terms).await;
        if i % 10 == 0 {
            let tx = anvil.transfer_token(token, DEV[1], &terms.deposit_address.to_string(), 4_500_000, None);
            paid.push((terms, tx));
        }
    }
    // N/2 native-coin intents after them; every tenth is paid with a plain value transfer.
    let n_native = n_intents / 2;
    let mut native_paid = 0;
    for k in 0..n_native {
        let i = n_intents + k;
        let (anvil, _) = &nodes[k % nodes.len()];
        let chain = format!("chain{}", anvil.chain_id);
        let venue = ((chain.as_str(), anvil.chain_id), ("ETH", AssetKind::Native, 18));
        let terms = direct_terms(&keys, i as u64, venue, U256::from(1_000_000_000_000_000u64), now, anvil.block_number());
        create_direct(&store, &terms).await;
        if k % 10 == 0 {
            anvil.send(DEV[1], Some(&terms.deposit_address.to_string()), "0x", 1_000_000_000_000_000, None);
            native_paid += 1;
        }
    }
    for (anvil, _) in &nodes {
        anvil.mine(1);
    }

    let counting = Arc::new(Counting::new());
    let http: Arc<dyn HttpPost> = counting.clone();
    let clock = ManualClock::new(now);
    let orders = SqliteStore::open(&db).expect("store");
    let readers = Readers::new(&chains, http.clone(), Duration::from_secs(10));
    let services = PaymentServices {
        intents: &store,
        orders: &orders,
        chains: &chains,
        keys: Some(&keys),
        prices: &NoPrices,
        readers: &readers,
        clock: &clock,
        entropy: &OsEntropy,
        settings: Settings::default(),
    };

    // Baseline: one eth_getLogs per deposit address (what polling each intent costs).
    let baseline_started = Instant::now();
    let before = counting.count();
    let mut baseline_found = 0;
    for (name, chain) in chains.iter() {
        let reader = ChainReader::new(chain, http.clone(), Duration::from_secs(10));
        let AssetKind::Erc20(token) = chain.assets["USDC"].kind else { continue };
        let head = nodes.iter().find(|(a, _)| a.chain_id == chain.chain_id).map(|(a, _)| a.block_number()).expect("node");
        let addresses: Vec<Address> =
            (0..n_intents).filter(|i| format!("chain{}", chain_ids[i % 4]) == name).map(|i| keys.address(i as u64).expect("a")).collect();
        for a in addresses {
            baseline_found += reader.transfer_logs(token, &[a], 0, head).await.expect("logs").len();
        }
    }
    let baseline_calls = counting.count() - before;
    let baseline_time = baseline_started.elapsed();

    // Baseline for native coins: one eth_getBalance per deposit address.
    let native_started = Instant::now();
    let before = counting.count();
    let mut native_found = 0;
    for (name, chain) in chains.iter() {
        let reader = ChainReader::new(chain, http.clone(), Duration::from_secs(10));
        let head = nodes.iter().find(|(a, _)| a.chain_id == chain.chain_id).map(|(a, _)| a.block_number()).expect("node");
        for k in (0..n_native).filter(|k| format!("chain{}", chain_ids[k % 4]) == name) {
            let address = keys.address((n_intents + k) as u64).expect("a");
            native_found += usize::from(!reader.balance(address, head).await.expect("balance").is_zero());
        }
    }
    let native_baseline_calls = counting.count() - before;
    let native_baseline_time = native_started.elapsed();

    // The watcher: one scan per chain.
    let started = Instant::now();
    let before = counting.count();
    let mut credited = 0;
    let mut blocks_read = 0;
    for (name, _) in chains.iter() {
        let report = services.scan(name).await.expect("scan");
        credited += report.credited;
        blocks_read += report.native_blocks_read;
    }
    let scan_calls = counting.count() - before;
    let scan_time = started.elapsed();
    assert_eq!(credited, paid.len() + native_paid, "every paid intent credited once");
    assert_eq!((baseline_found, native_found), (paid.len(), native_paid));

    // Hint verification latency (verify only: the intents are already credited by the scan).
    let mut hint_times = Vec::new();
    let mut receipt_times = Vec::new();
    for (terms, tx) in paid.iter().take(n_hints) {
        let chain = chains.get(&terms.chain).expect("chain");
        let reader = ChainReader::new(chain, http.clone(), Duration::from_secs(10));
        let hash = tx.parse().expect("hash");
        let (anvil, _) = nodes.iter().find(|(a, _)| a.chain_id == terms.chain_id).expect("node");
        let t = Instant::now();
        anvil.receipt(tx);
        receipt_times.push(t.elapsed());
        let t = Instant::now();
        reader.verify_hint(terms, hash).await.expect("chain").expect("verified");
        hint_times.push(t.elapsed());
    }
    hint_times.sort();
    receipt_times.sort();

    println!("payments-bench: {n_intents} open USDC intents ({} paid) and {n_native} native-coin intents ({native_paid} paid) on 4 anvil chains", paid.len());
    println!("| what | RPC calls | wall time |");
    println!("|---|---|---|");
    println!("| baseline: eth_getLogs per token deposit address | {baseline_calls} | {} |", ms(baseline_time));
    println!("| baseline: eth_getBalance per native deposit address | {native_baseline_calls} | {} |", ms(native_baseline_time));
    println!("| watcher: one scan per chain, tokens and native coins ({blocks_read} blocks read whole) | {scan_calls} | {} |", ms(scan_time));
    println!(
        "hint verification over {} hints: p50 {}, p95 {}, max {} (baseline: bare eth_getTransactionReceipt p50 {}, p95 {})",
        hint_times.len(),
        ms(percentile(&hint_times, 0.5)),
        ms(percentile(&hint_times, 0.95)),
        ms(*hint_times.last().expect("hints")),
        ms(percentile(&receipt_times, 0.5)),
        ms(percentile(&receipt_times, 0.95)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
