//! On-chain verification against real EVM nodes (anvil): alloy's provider over our RPC
//! transport reads what happened, `verify` judges it, the intent decides. The attack battery:
//! every way a payment can look right and not be.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use gocoffee_payments::chains::{Asset, AssetKind, Chain, Finality};
use gocoffee_payments::deposit::DepositKeys;
use gocoffee_payments::intent::{IntentEvent, Terms};
use gocoffee_payments::native::HyperPost;
use gocoffee_payments::reader::{ChainError, ChainReader};
use gocoffee_payments::verify::Rejection;
use gocoffee_tests::anvil::{Anvil, DEV};
use gocoffee_tests::payments::Counting;

const USDC_DUE: u128 = 4_500_000;

fn addr(s: &str) -> Address {
    s.parse().expect("address")
}

fn hash(s: &str) -> B256 {
    s.parse().expect("hash")
}

fn deposit_keys() -> DepositKeys {
    gocoffee_tests::payments::deposit_keys(42)
}

fn chain(anvil: &Anvil, token: &str, finality: Finality) -> Chain {
    Chain {
        chain_id: anvil.chain_id,
        rpc_urls: vec![anvil.url.clone()],
        finality,
        assets: [
            ("USDC".to_owned(), Asset { kind: AssetKind::Erc20(addr(token)), decimals: 6, usd_pegged: true, price_feed: None }),
            ("ETH".to_owned(), Asset { kind: AssetKind::Native, decimals: 18, usd_pegged: false, price_feed: None }),
        ]
        .into(),
    }
}

fn reader(chain: &Chain) -> ChainReader {
    ChainReader::new(chain, Arc::new(HyperPost::new()), Duration::from_secs(5))
}

/// An intent for 4.5 USDC (or `native` wei) on `anvil`, made now, at deposit index `index`.
fn terms(anvil: &Anvil, chain: &Chain, asset: &str, index: u64) -> Terms {
    let a = chain.asset(asset).expect("asset");
    let amount_due = if a.kind == AssetKind::Native { U256::from(1_500_000_000_000_000u64) } else { U256::from(USDC_DUE) };
    Terms {
        intent_id: format!("pi-{index}"),
        order_id: format!("o-{index}"),
        customer_id: "c".into(),
        chain: "test".into(),
        chain_id: anvil.chain_id,
        asset: asset.into(),
        asset_kind: a.kind,
        decimals: a.decimals,
        amount_cents: 450,
        amount_due,
        quote: None,
        deposit_address: deposit_keys().address(index).expect("address"),
        derivation_index: index,
        payment_uri: String::new(),
        created_at_ms: 0,
        expires_at_ms: i64::MAX / 2,
        monitor_until_ms: i64::MAX / 2,
        created_block: anvil.block_number(),
    }
}

struct Setup {
    anvil: Anvil,
    token: String,
    chain: Chain,
}

fn setup(chain_id: u64, finality: Finality) -> Setup {
    let anvil = Anvil::start(chain_id);
    let token = anvil.deploy_token("USDC", 6);
    anvil.mint(&token, DEV[1], 1_000_000_000);
    let chain = chain(&anvil, &token, finality);
    Setup { anvil, token, chain }
}

fn deposit(t: &Terms) -> String {
    t.deposit_address.to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn an_exact_final_token_payment_pays_the_intent() {
    let s = setup(137, Finality::Finalized);
    let t = terms(&s.anvil, &s.chain, "USDC", 1);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &deposit(&t), USDC_DUE, None);
    let r = reader(&s.chain);
    // Mined, not yet final (finalized = head - 2).
    let v = r.verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    assert_eq!(v.transfers.len(), 1);
    assert!(!v.transfers[0].1, "not final yet");
    s.anvil.mine(3);
    let v = r.verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    let (transfer, is_final) = &v.transfers[0];
    assert!(is_final);
    assert_eq!((transfer.amount, transfer.from, transfer.to), (U256::from(USDC_DUE), addr(DEV[1]), t.deposit_address));
    let intent = gocoffee_payments::intent::Intent::from_events(&[created(&t)]).expect("intent");
    let events = intent.decide_credit(transfer).expect("credit");
    assert!(matches!(events.as_slice(), [IntentEvent::TransferCredited { .. }, IntentEvent::PaymentConfirmed { .. }]), "{events:?}");
}

fn created(t: &Terms) -> gocoffee_payments::intent::StoredIntentEvent {
    gocoffee_payments::intent::StoredIntentEvent {
        event_id: "e1".into(),
        intent_id: t.intent_id.clone(),
        order_id: t.order_id.clone(),
        version: 1,
        occurred_at_ms: 0,
        actor: "system".into(),
        correlation_id: None,
        traceparent: None,
        event: IntentEvent::IntentCreated { terms: t.clone() },
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_native_coin_payment_is_the_transactions_value() {
    let s = setup(1, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "ETH", 2);
    let tx = s.anvil.pay_native(DEV[1], &deposit(&t), 1_500_000_000_000_000);
    let v = reader(&s.chain).verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    assert_eq!(v.transfers[0].0.amount, U256::from(1_500_000_000_000_000u64));
    assert_eq!(v.transfers[0].0.key.log_index, None);
    assert!(v.transfers[0].1, "one confirmation is final under this policy");
}

#[tokio::test(flavor = "current_thread")]
async fn attack_wrong_recipient() {
    let s = setup(137, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "USDC", 3);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], DEV[2], USDC_DUE, None);
    assert_eq!(reader(&s.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::NotToDepositAddress)));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_underpayment_is_credited_but_does_not_pay() {
    let s = setup(137, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "USDC", 4);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &deposit(&t), USDC_DUE - 1, None);
    let v = reader(&s.chain).verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    let intent = gocoffee_payments::intent::Intent::from_events(&[created(&t)]).expect("intent");
    let events = intent.decide_credit(&v.transfers[0].0).expect("credit");
    assert_eq!(events.len(), 1, "credited, not confirmed: {events:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn attack_a_different_token_with_the_same_symbol() {
    let s = setup(137, Finality::Confirmations(1));
    let impostor = s.anvil.deploy_token("USDC", 6);
    s.anvil.mint(&impostor, DEV[1], USDC_DUE);
    let t = terms(&s.anvil, &s.chain, "USDC", 5);
    let tx = s.anvil.transfer_token(&impostor, DEV[1], &deposit(&t), USDC_DUE, None);
    assert!(matches!(reader(&s.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::WrongAsset(_)))));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_a_fake_transfer_event_from_a_contract_that_is_not_the_token() {
    let s = setup(137, Finality::Confirmations(1));
    let fake = s.anvil.deploy("FakeTransfer", "");
    let t = terms(&s.anvil, &s.chain, "USDC", 6);
    // fake(address,uint256)
    let selector = alloy_primitives::hex::encode(&alloy_primitives::keccak256("fake(address,uint256)")[..4]);
    let data = format!("0x{selector}{:0>64}{:064x}", deposit(&t).trim_start_matches("0x"), USDC_DUE);
    let tx = s.anvil.send(DEV[1], Some(&fake), &data, 0, None);
    assert_eq!(s.anvil.receipt(&tx)["logs"].as_array().map(Vec::len), Some(1), "the fake event was emitted");
    assert!(matches!(reader(&s.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::WrongAsset(_)))));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_the_right_payment_on_the_wrong_chain() {
    let polygon = setup(137, Finality::Confirmations(1));
    let ethereum = setup(1, Finality::Confirmations(1));
    let t = terms(&polygon.anvil, &polygon.chain, "USDC", 7);
    // Paid on Ethereum (same token contract address: both chains deployed it first).
    assert_eq!(polygon.token, ethereum.token);
    let tx = ethereum.anvil.transfer_token(&ethereum.token, DEV[1], &deposit(&t), USDC_DUE, None);
    assert_eq!(reader(&polygon.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::NotFound)), "not on the intent's chain");
    // A misconfigured or lying endpoint for "polygon" that is really Ethereum is never used.
    let mut lying = polygon.chain.clone();
    lying.rpc_urls = vec![ethereum.anvil.url.clone()];
    match reader(&lying).verify_hint(&t, hash(&tx)).await {
        Err(ChainError::Unavailable(u)) => assert!(u.detail.contains("not on chain 137"), "{u}"),
        other => panic!("the wrong chain's node answered: {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn attack_a_reverted_transaction() {
    let s = setup(137, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "USDC", 8);
    // More than DEV[2] holds (nothing): mined with status 0 because the gas is given.
    let tx = s.anvil.transfer_token(&s.token, DEV[2], &deposit(&t), USDC_DUE, Some(100_000));
    assert_eq!(s.anvil.receipt(&tx)["status"], "0x0");
    assert_eq!(reader(&s.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::Reverted)));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_an_unconfirmed_transaction_is_only_seen() {
    let s = setup(137, Finality::Confirmations(6));
    let t = terms(&s.anvil, &s.chain, "USDC", 9);
    let r = reader(&s.chain);
    s.anvil.set_automine(false);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &deposit(&t), USDC_DUE, Some(100_000));
    assert_eq!(r.verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::Unmined)), "in the mempool");
    s.anvil.mine(1);
    let v = r.verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    assert!(!v.transfers[0].1, "one block of six");
    s.anvil.mine(5);
    let v = r.verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    assert!(v.transfers[0].1, "six confirmations");
}

#[tokio::test(flavor = "current_thread")]
async fn attack_a_transaction_reorged_out_after_it_was_seen() {
    let s = setup(137, Finality::Finalized);
    let t = terms(&s.anvil, &s.chain, "USDC", 10);
    let r = reader(&s.chain);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &deposit(&t), USDC_DUE, None);
    let seen = r.verify_hint(&t, hash(&tx)).await.expect("chain").expect("verified");
    assert!(!seen.transfers[0].1, "seen, not final");
    let intent = gocoffee_payments::intent::Intent::from_events(&[created(&t)]).expect("intent");
    let seen_event = intent.decide_seen(&seen.transfers[0].0).expect("seen");
    let mut log = vec![created(&t)];
    log.extend(seen_event.into_iter().map(|e| gocoffee_payments::intent::StoredIntentEvent { version: 2, event: e, ..created(&t) }));
    let confirming = gocoffee_payments::intent::Intent::from_events(&log).expect("intent");
    assert_eq!(confirming.status, gocoffee_payments::intent::IntentStatus::Confirming);
    // The block with the payment is replaced before it is final.
    s.anvil.set_automine(false);
    s.anvil.reorg(1);
    match r.verify_hint(&t, hash(&tx)).await.expect("chain") {
        Err(Rejection::NotFound | Rejection::Unmined | Rejection::NotCanonical) => {}
        other => panic!("a reorged-out payment still verifies: {other:?}"),
    }
    let dropped = confirming.decide_dropped(&seen.transfers[0].0.key);
    log.extend(dropped.into_iter().map(|e| gocoffee_payments::intent::StoredIntentEvent { version: 3, event: e, ..created(&t) }));
    let intent = gocoffee_payments::intent::Intent::from_events(&log).expect("intent");
    assert_eq!(intent.status, gocoffee_payments::intent::IntentStatus::AwaitingPayment);
}

#[tokio::test(flavor = "current_thread")]
async fn attack_money_sent_before_the_intent_existed() {
    let s = setup(137, Finality::Confirmations(1));
    let address = deposit_keys().address(11).expect("address").to_string();
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &address, USDC_DUE, None);
    let t = terms(&s.anvil, &s.chain, "USDC", 11);
    assert_eq!(reader(&s.chain).verify_hint(&t, hash(&tx)).await, Ok(Err(Rejection::BeforeIntent)));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_a_hash_that_does_not_exist() {
    let s = setup(137, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "USDC", 12);
    assert_eq!(reader(&s.chain).verify_hint(&t, B256::repeat_byte(0x5a)).await, Ok(Err(Rejection::NotFound)));
}

#[tokio::test(flavor = "current_thread")]
async fn attack_the_rpc_down_fails_fast_and_falls_back() {
    let s = setup(137, Finality::Confirmations(1));
    let t = terms(&s.anvil, &s.chain, "USDC", 13);
    let tx = s.anvil.transfer_token(&s.token, DEV[1], &deposit(&t), USDC_DUE, None);
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let counting = Arc::new(Counting::new());
    let mut down = s.chain.clone();
    down.rpc_urls = vec![dead.clone()];
    let r = ChainReader::new(&down, counting.clone(), Duration::from_secs(2));
    for _ in 0..3 {
        assert!(matches!(r.verify_hint(&t, hash(&tx)).await, Err(ChainError::Unavailable(_))));
    }
    let before = counting.count();
    let started = Instant::now();
    match r.verify_hint(&t, hash(&tx)).await {
        Err(ChainError::Unavailable(u)) => assert!(u.detail.contains("circuit is open"), "{u}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(counting.count(), before, "an open circuit makes no call");
    assert!(started.elapsed() < Duration::from_millis(50), "and answers at once");
    // With a second URL that works, the dead one is skipped.
    let mut fallback = s.chain.clone();
    fallback.rpc_urls = vec![dead, s.anvil.url.clone()];
    let v = reader(&fallback).verify_hint(&t, hash(&tx)).await.expect("the fallback answers").expect("verified");
    assert_eq!(v.transfers[0].0.amount, U256::from(USDC_DUE));
}

#[tokio::test(flavor = "current_thread")]
async fn one_log_query_finds_transfers_into_many_deposit_addresses() {
    let s = setup(137, Finality::Confirmations(1));
    let keys = deposit_keys();
    let from = s.anvil.block_number() + 1;
    let addresses: Vec<Address> = (100..400).map(|i| keys.address(i).expect("address")).collect();
    for a in addresses.iter().step_by(50) {
        s.anvil.transfer_token(&s.token, DEV[1], &a.to_string(), 1_000, None);
    }
    // A transfer elsewhere is not returned.
    s.anvil.transfer_token(&s.token, DEV[1], DEV[2], 1_000, None);
    let counting = Arc::new(Counting::new());
    let r = ChainReader::new(&s.chain, counting.clone(), Duration::from_secs(5));
    let logs = r.transfer_logs(addr(&s.token), &addresses, from, s.anvil.block_number()).await.expect("logs");
    assert_eq!(logs.len(), 6);
    assert_eq!(counting.count(), 2, "eth_chainId once, then one eth_getLogs for 300 addresses");
}

#[tokio::test(flavor = "current_thread")]
async fn native_coins_are_priced_from_the_chains_own_price_feed_and_a_stale_one_is_refused() {
    use gocoffee_payments::amount::{AmountError, amount_due};
    use gocoffee_payments::prices::ChainlinkPrices;
    use gocoffee_payments::service::Prices;
    let s = setup(1, Finality::Confirmations(1));
    // constructor(uint8 decimals, int256 answer): $3,000.00 with 8 decimals.
    let feed = s.anvil.deploy("TestPriceFeed", &format!("{:064x}{:064x}", 8, 300_000_000_000u64));
    let mut chain = s.chain.clone();
    chain.assets.get_mut("ETH").expect("eth").price_feed = Some(addr(&feed));
    let prices = ChainlinkPrices {
        chains: gocoffee_payments::chains::Chains([("ethereum".to_owned(), chain.clone())].into()),
        http: Arc::new(HyperPost::new()),
        timeout: Duration::from_secs(5),
    };
    let quote = prices.quote("ethereum", "ETH").await.expect("read").expect("quote");
    assert_eq!(quote.usd_cents_per_coin, 300_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
    let eth = chain.asset("ETH").expect("eth");
    assert_eq!(amount_due(450, eth, Some(quote), now, 300_000), Ok(U256::from(1_500_000_000_000_000u64)), "$4.50 at $3,000");
    // A feed that stopped updating an hour ago.
    let stale_at = (now / 1000 - 3600) as u64;
    s.anvil.send(
        DEV[0],
        Some(&feed),
        &format!("0x{}{:064x}{:064x}", alloy_primitives::hex::encode(&alloy_primitives::keccak256("set(int256,uint256)")[..4]), 300_000_000_000u64, stale_at),
        0,
        None,
    );
    let stale = prices.quote("ethereum", "ETH").await.expect("read").expect("quote");
    assert!(matches!(amount_due(450, eth, Some(stale), now, 300_000), Err(AmountError::StalePrice { .. })));
    assert_eq!(prices.quote("ethereum", "USDC").await, Ok(None), "stablecoins have no feed");
}
