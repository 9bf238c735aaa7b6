//! The payment saga on real parts, without the shells, on every store (SQLite, PostgreSQL, DynamoDB): the order consumer and the
//! payment service over one SQLite database (what Spin and the host use), and over DynamoDB with
//! the outboxes relayed to Kinesis (moto; what Lambda uses). The outboxes are relayed by hand
//! between them (what the triggers do), and anvil is the chain. Each test runs on both.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use alloy_primitives::U256;
use gocoffee_app::consumer::{handle_order_event, handle_payment_event};
use gocoffee_app::memory::ManualClock;
use gocoffee_app::ports::{Clock, EventRelay, KitchenStore, MenuStore, OrderStore, OsEntropy, StoreResult, UserStore};
use gocoffee_app::{Config, Services};
use gocoffee_aws::dynamo::{ORDERS_OUTBOX, PAYMENTS_OUTBOX};
use gocoffee_aws::{DynamoOutboxRelay, KinesisPublisher};
use gocoffee_core::{Cents, CryptoMethod, Order, OrderEvent, OrderStatus, PaymentMethod, PricedOrder, StoredEvent};
use gocoffee_payments::aws::DynamoIntentStore;
use gocoffee_payments::chains::{Asset, AssetKind, Chain, Chains, Finality};
use gocoffee_payments::deposit::DepositKeys;
use gocoffee_payments::intent::{IntentStatus, Outcome, StoredIntentEvent};
use gocoffee_payments::reader::Readers;
use gocoffee_payments::service::{PaymentError, PaymentServices, Settings};
use gocoffee_payments::sql::SqlIntentStore;
use gocoffee_payments::store::IntentStore;
use gocoffee_sql::rusqlite::Sqlite;
use gocoffee_sql::{Publisher, SqliteOutboxRelay, SqliteStore};
use gocoffee_tests::anvil::{Anvil, DEV};
use gocoffee_tests::aws::Stack;
use gocoffee_tests::payments::{Counting, NoPrices, create_direct, direct_terms};

/// Messages published, as (channel, payload).
type Published = Rc<RefCell<Vec<(String, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Capture(Published);

impl Publisher for Capture {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        self.0.borrow_mut().push((channel.to_owned(), payload.to_vec()));
        Ok(())
    }
}

/// Runs the test `$name(kind)` on SQLite, on PostgreSQL and on DynamoDB.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "current_thread")]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn dynamodb() {
                super::$name(super::Kind::Dynamo).await
            }
        }
    };
}

fn keys() -> DepositKeys {
    gocoffee_tests::payments::deposit_keys(9)
}

/// Where the state is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
    Dynamo,
}

enum Backend {
    /// A SQL database (SQLite, or PostgreSQL on its own local server, kept for the test).
    Sql { db: Box<dyn gocoffee_sql::Db>, _server: Option<gocoffee_sql::postgres::LocalServer> },
    /// The template's table and streams on moto, and the stream records already delivered.
    Dynamo { stack: Stack, delivered: RefCell<HashSet<String>> },
}

/// Every store port the order consumer's services take.
trait AppStores: UserStore + MenuStore + OrderStore + KitchenStore {}
impl<T: UserStore + MenuStore + OrderStore + KitchenStore> AppStores for T {}

/// The consumers relay nothing themselves here: [`World::pump`] does, as the shells do after a
/// batch.
struct ByHand;

#[async_trait::async_trait(?Send)]
impl EventRelay for ByHand {
    async fn relay(&self) -> StoreResult<usize> {
        Ok(0)
    }
}

struct World {
    backend: Backend,
    anvil: Anvil,
    token: String,
    chains: Chains,
    keys: DepositKeys,
    clock: ManualClock,
    config: Config,
    http: Arc<Counting>,
    readers: Readers,
}

impl World {
    async fn new(name: &str, kind: Kind) -> World {
        let backend = match kind {
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(format!("gocoffee-payments-{}-{name}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("dir");
                let db = Sqlite::open(&dir.join("db.sqlite"));
                SqliteStore::open(&db).expect("schema");
                Backend::Sql { db: Box::new(db), _server: None }
            }
            Kind::Postgres => {
                let server = gocoffee_sql::postgres::LocalServer::start().expect("PostgreSQL");
                let db = gocoffee_sql::postgres::Postgres::connect(&server.database(name).expect("database")).expect("connect");
                SqliteStore::open(&db).expect("schema");
                Backend::Sql { db: Box::new(db), _server: Some(server) }
            }
            Kind::Dynamo => Backend::Dynamo { stack: Stack::create(&format!("pay-{name}")).await, delivered: RefCell::default() },
        };
        let anvil = Anvil::start(137);
        let token = anvil.deploy_token("USDC", 6);
        anvil.mint(&token, DEV[1], 1_000_000_000);
        let chain = Chain {
            chain_id: 137,
            rpc_urls: vec![anvil.url.clone()],
            finality: Finality::Confirmations(1),
            assets: [
                ("USDC".to_owned(), Asset { kind: AssetKind::Erc20(token.parse().expect("token")), decimals: 6, usd_pegged: true, price_feed: None }),
                ("POL".to_owned(), Asset { kind: AssetKind::Native, decimals: 18, usd_pegged: false, price_feed: None }),
            ]
            .into(),
        };
        let config = Config {
            jwt_secret: b"payments-test-secret-payments-test".to_vec(),
            access_token_ttl_s: 900,
            refresh_token_ttl_s: 3600,
            bootstrap_admin: None,
            public_base_url: None,
            crypto_methods: vec![("polygon".into(), "USDC".into())],
            rate_limits: gocoffee_app::ratelimit::RateLimits::OFF,
            token_issuer: None,
            token_audience: gocoffee_app::auth::DEFAULT_AUDIENCE.into(),
            token_public_keys: None,
            live_socket_url: None,
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
        let chains = Chains([("polygon".to_owned(), chain)].into());
        let http = Arc::new(Counting::new());
        World {
            backend,
            anvil,
            token,
            readers: Readers::new(&chains, http.clone(), Settings::default().rpc_timeout),
            chains,
            keys: keys(),
            clock: ManualClock::new(now),
            config,
            http,
        }
    }

    fn orders(&self) -> Box<dyn AppStores + '_> {
        match &self.backend {
            Backend::Sql { db, .. } => Box::new(SqliteStore::open(db).expect("store")),
            Backend::Dynamo { stack, .. } => Box::new(stack.store()),
        }
    }

    fn intents(&self) -> Box<dyn IntentStore + '_> {
        match &self.backend {
            Backend::Sql { db, .. } => Box::new(SqlIntentStore::open(db).expect("store")),
            Backend::Dynamo { stack, .. } => Box::new(DynamoIntentStore::new(stack.store())),
        }
    }

    fn payments<'a>(&'a self, intents: &'a dyn IntentStore, orders: &'a dyn AppStores) -> PaymentServices<'a> {
        PaymentServices {
            intents,
            orders,
            chains: &self.chains,
            keys: Some(&self.keys),
            prices: &NoPrices,
            readers: &self.readers,
            clock: &self.clock,
            entropy: &OsEntropy,
            settings: Settings::default(),
        }
    }

    /// Relays the outboxes and returns what went out since the last call, as (channel, payload).
    async fn relay(&self) -> Vec<(String, Vec<u8>)> {
        match &self.backend {
            Backend::Sql { db, .. } => {
                let capture = Capture::default();
                SqliteOutboxRelay { db, publisher: capture.clone() }.relay().await.expect("relay");
                capture.0.borrow_mut().drain(..).collect()
            }
            Backend::Dynamo { stack, delivered } => {
                let store = stack.store();
                let mut out = Vec::new();
                for (channel, outbox, stream) in [("orders", ORDERS_OUTBOX, "OrdersStream"), ("payments", PAYMENTS_OUTBOX, "PaymentsStream")] {
                    let publisher = KinesisPublisher::new(stack.clients.kinesis.clone(), &stack.streams[stream].1);
                    DynamoOutboxRelay { store: &store, outbox, publisher: &publisher }.relay().await.expect("relay");
                    for (shard, record) in stack.records_of(stream).await {
                        // Sequence numbers are unique per shard.
                        if delivered.borrow_mut().insert(format!("{stream}/{shard}/{}", record.sequence_number())) {
                            out.push((channel.to_owned(), record.data().as_ref().to_vec()));
                        }
                    }
                }
                out
            }
        }
    }

    /// Places a crypto order for `cents` directly in the store (the orders route's write).
    async fn place(&self, id: &str, cents: u64) -> StoredEvent {
        let method = PaymentMethod::Crypto(CryptoMethod { chain: "polygon".into(), asset: "USDC".into() });
        let priced = PricedOrder { lines: vec![], total_cents: Cents(cents), note: None, payment_method: method };
        let now = self.clock.now_ms();
        let placed = StoredEvent {
            event_id: format!("{id}-placed"),
            order_id: id.into(),
            version: 1,
            occurred_at_ms: now,
            actor: "c1".into(),
            correlation_id: None,
            traceparent: None,
            event: OrderEvent::OrderPlaced { customer_id: "c1".into(), order: priced.clone() },
        };
        self.orders().create_order(&Order::open(id, "c1", &priced, now), &placed, None).await.expect("placed");
        placed
    }

    /// Relays the outbox and delivers every message to its consumers, until nothing is left:
    /// the orders stream to the order consumer and the payment service, the payments stream to
    /// the order consumer. Returns the payment events that went out.
    async fn pump(&self) -> Vec<StoredIntentEvent> {
        let orders = self.orders();
        let intents = self.intents();
        let svc = Services {
            users: &*orders,
            menu: &*orders,
            orders: &*orders,
            relay: &ByHand,
            kitchen_queue: None,
            kitchen: &*orders,
            images: None,
            limiter: None,
            tokens: &gocoffee_app::auth::ConfiguredKeys(&self.config),
            signer: None,
            clock: &self.clock,
            entropy: &OsEntropy,
            config: &self.config,
            extension: None,
        };
        let payments = self.payments(&*intents, &*orders);
        let mut out = Vec::new();
        loop {
            let batch = self.relay().await;
            if batch.is_empty() {
                return out;
            }
            for (channel, payload) in batch {
                match channel.as_str() {
                    "orders" => {
                        handle_order_event(&svc, &payload).await.expect("order consumer");
                        let event: StoredEvent = serde_json::from_slice(&payload).expect("order event");
                        payments.on_order_event(&event).await.expect("payments consumer");
                    }
                    "payments" => {
                        handle_payment_event(&svc, &payload).await.expect("order consumer, payments stream");
                        out.push(serde_json::from_slice(&payload).expect("intent event"));
                    }
                    // Every order event's copy for the analytics read model: not this saga's.
                    "analytics" => {}
                    other => panic!("unexpected channel {other}"),
                }
            }
        }
    }

    async fn order(&self, id: &str) -> Order {
        self.orders().order(id).await.expect("read").expect("order")
    }

    fn deposit(&self, intent: &gocoffee_payments::intent::Intent) -> String {
        intent.terms.deposit_address.to_string()
    }
}

on_both!(a_crypto_order_is_confirmed_only_once_its_payment_is_final);
async fn a_crypto_order_is_confirmed_only_once_its_payment_is_final(kind: Kind) {
    let w = World::new("paid", kind).await;
    w.place("o1", 450).await;
    w.pump().await;
    let order = w.order("o1").await;
    assert_eq!((order.status, order.payment_intent.as_deref()), (OrderStatus::Pending, Some("pi_o1")));
    let intent = w.intents().intent("pi_o1").await.expect("read").expect("intent made");
    assert_eq!(intent.terms.amount_due, U256::from(4_500_000u64));
    let token: alloy_primitives::Address = w.token.parse().expect("token");
    assert!(intent.terms.payment_uri.starts_with(&format!("ethereum:{}@137/transfer?address=", token.to_checksum(None))), "{}", intent.terms.payment_uri);
    let tx = w.anvil.transfer_token(&w.token, DEV[1], &w.deposit(&intent), 4_500_000, None);
    let (orders, intents) = (w.orders(), w.intents());
    let paid = w.payments(&*intents, &*orders).hint("pi_o1", tx.parse().expect("hash"), "c1").await.expect("hint");
    assert_eq!((paid.status, paid.outcome), (IntentStatus::Paid, Some(Outcome::Paid)));
    // The same hint again: one effect.
    let again = w.payments(&*intents, &*orders).hint("pi_o1", tx.parse().expect("hash"), "c1").await.expect("hint");
    assert_eq!(again.version, paid.version);
    let published = w.pump().await;
    assert!(published.iter().any(|e| e.event.name() == "PaymentConfirmed"));
    assert_eq!(w.order("o1").await.status, OrderStatus::Confirmed, "paid, so on the kitchen board");
}

on_both!(one_transaction_can_not_refund_two_intents_and_refunds_never_go_to_a_deposit_address);
async fn one_transaction_can_not_refund_two_intents_and_refunds_never_go_to_a_deposit_address(kind: Kind) {
    let w = World::new("claims", kind).await;
    w.place("oa", 450).await;
    w.place("ob", 450).await;
    w.pump().await;
    let (orders, intents) = (w.orders(), w.intents());
    let p = w.payments(&*intents, &*orders);
    let a = intents.intent("pi_oa").await.expect("read").expect("a");
    let b = intents.intent("pi_ob").await.expect("read").expect("b");
    assert_ne!(a.terms.deposit_address, b.terms.deposit_address, "an address per intent");
    // Both overpaid by 0.5 USDC.
    for i in [&a, &b] {
        let tx = w.anvil.transfer_token(&w.token, DEV[1], &w.deposit(i), 5_000_000, None);
        assert_eq!(p.hint(&i.terms.intent_id, tx.parse().expect("hash"), "c1").await.expect("paid").status, IntentStatus::RefundDue);
    }
    // A refund may not go to any deposit address (it would pay another intent).
    assert!(matches!(p.set_refund_address("pi_oa", b.terms.deposit_address, "c1").await, Err(PaymentError::Intent(_))));
    let customer: alloy_primitives::Address = DEV[2].parse().expect("address");
    p.set_refund_address("pi_oa", customer, "c1").await.expect("refund address");
    p.set_refund_address("pi_ob", customer, "c1").await.expect("refund address");
    // Fixed while the refund is owed: a switch can't void a refund already on its way.
    assert!(matches!(p.set_refund_address("pi_oa", DEV[0].parse().expect("address"), "c1").await, Err(PaymentError::Intent(_))));
    // The café refunds A once; the same transaction can't also count as B's refund.
    w.anvil.mint(&w.token, DEV[0], 500_000);
    let refund = w.anvil.transfer_token(&w.token, DEV[0], DEV[2], 500_000, None);
    assert_eq!(p.record_refund("pi_oa", refund.parse().expect("hash"), "manager").await.expect("refund").status, IntentStatus::Refunded);
    assert_eq!(p.record_refund("pi_ob", refund.parse().expect("hash"), "manager").await.map(|_| ()), Err(PaymentError::AlreadyClaimed));
    // And A's payment offered for B: not to B's address.
    let a_payment = intents.intent("pi_oa").await.expect("read").expect("a").credited[0].key.tx_hash;
    assert!(matches!(p.hint("pi_ob", a_payment, "c1").await, Err(PaymentError::Rejected(_))));
}

on_both!(an_order_cancelled_before_its_intent_was_made_gets_none);
async fn an_order_cancelled_before_its_intent_was_made_gets_none(kind: Kind) {
    let w = World::new("cancelled-first", kind).await;
    let placed = w.place("oc", 450).await;
    // The order consumer asks for payment, but the customer cancels before the payment
    // service gets to it (its message waited for a retry).
    let (orders, intents) = (w.orders(), w.intents());
    let order = w.order("oc").await;
    let (requested_order, requested) = gocoffee_app::memory::fixtures::next(&order, order.decide_request_payment().expect("request"), 1);
    orders.append(&requested_order, std::slice::from_ref(&requested), 1, None).await.expect("requested");
    let (cancelled, cancel) = gocoffee_app::memory::fixtures::next(&requested_order, OrderEvent::OrderCancelled { reason: None }, 2);
    orders.append(&cancelled, std::slice::from_ref(&cancel), 2, None).await.expect("cancelled");
    let p = w.payments(&*intents, &*orders);
    p.on_order_event(&cancel).await.expect("cancel first");
    p.on_order_event(&requested).await.expect("then the request");
    assert_eq!(intents.intent("pi_oc").await.expect("read"), None, "no address handed out for a cancelled order");
    let _ = placed;
}

on_both!(the_watcher_finds_payments_with_one_log_query_and_expiry_cancels_the_unpaid);
async fn the_watcher_finds_payments_with_one_log_query_and_expiry_cancels_the_unpaid(kind: Kind) {
    let w = World::new("watcher", kind).await;
    for (id, _) in [("w1", 0), ("w2", 0), ("w3", 0)] {
        w.place(id, 450).await;
    }
    w.pump().await;
    let (orders, intents) = (w.orders(), w.intents());
    let p = w.payments(&*intents, &*orders);
    let w1 = intents.intent("pi_w1").await.expect("read").expect("w1");
    let w2 = intents.intent("pi_w2").await.expect("read").expect("w2");
    w.anvil.transfer_token(&w.token, DEV[1], &w.deposit(&w1), 4_500_000, None);
    w.anvil.transfer_token(&w.token, DEV[1], &w.deposit(&w2), 1_000_000, None);
    let before = w.http.count();
    // Two watchers at once: one effect.
    let (r1, r2) = tokio::join!(p.scan("polygon"), p.scan("polygon"));
    let (r1, r2) = (r1.expect("scan"), r2.expect("scan"));
    assert_eq!(r1.intents, 3);
    let made = w.http.count() - before;
    assert!(made <= 2 * 8, "a scan makes a handful of calls, not one per intent: {made}");
    assert_eq!(intents.intent("pi_w1").await.expect("read").expect("w1").status, IntentStatus::Paid);
    let w2_now = intents.intent("pi_w2").await.expect("read").expect("w2");
    assert_eq!((w2_now.status, w2_now.received), (IntentStatus::PartiallyPaid, U256::from(1_000_000u64)));
    assert_eq!(w2_now.credited.len(), 1, "credited once by two watchers: {r1:?} {r2:?}");
    w.pump().await;
    assert_eq!(w.order("w1").await.status, OrderStatus::Confirmed);
    // Past the expiry, on the clock and on the chain.
    w.clock.advance(16 * 60_000);
    w.anvil.rpc("evm_increaseTime", serde_json::json!([16 * 60]));
    w.anvil.mine(2);
    let report = p.scan("polygon").await.expect("scan");
    assert_eq!(report.expired, 2, "{report:?}");
    let w2_failed = intents.intent("pi_w2").await.expect("read").expect("w2");
    assert_eq!((w2_failed.outcome, w2_failed.status), (Some(Outcome::Failed(gocoffee_payments::intent::FailReason::Underpaid)), IntentStatus::RefundDue));
    w.pump().await;
    let cancelled = w.order("w2").await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(w.order("w3").await.status, OrderStatus::Cancelled, "nothing paid: cancelled by expiry");
    // Money for w3 after it expired: credited late, owed back.
    let w3 = intents.intent("pi_w3").await.expect("read").expect("w3");
    w.anvil.transfer_token(&w.token, DEV[1], &w.deposit(&w3), 4_500_000, None);
    p.scan("polygon").await.expect("scan");
    let late = intents.intent("pi_w3").await.expect("read").expect("w3");
    assert_eq!((late.status, late.received_late), (IntentStatus::RefundDue, U256::from(4_500_000u64)));
    assert_eq!(intents.refunds_due(10, None).await.expect("refunds").len(), 2);
}

on_both!(native_coin_payments_are_found_by_the_watcher_with_a_balance_read_for_all_intents);
async fn native_coin_payments_are_found_by_the_watcher_with_a_balance_read_for_all_intents(kind: Kind) {
    let w = World::new("native", kind).await;
    w.anvil.install_multicall3();
    let (orders, intents) = (w.orders(), w.intents());
    let now = w.clock.now_ms();
    // Twenty open intents for 0.01 POL each (made directly: the price port isn't the point here).
    let due = U256::from(10_000_000_000_000_000u128);
    let mut made = Vec::new();
    for i in 0..20u64 {
        let terms = direct_terms(&w.keys, 1000 + i, (("polygon", 137), ("POL", AssetKind::Native, 18)), due, now, w.anvil.block_number());
        create_direct(&*intents, &terms).await;
        made.push(terms);
    }
    let p = w.payments(&*intents, &*orders);
    // A first pass over new blocks with nothing paid: the balances of all twenty are read in one
    // call at each end of the window, and no block is read.
    w.anvil.mine(2);
    p.scan("polygon").await.expect("scan");
    w.anvil.mine(2);
    let before = w.http.count();
    let idle = p.scan("polygon").await.expect("scan");
    let idle_calls = w.http.count() - before;
    assert_eq!((idle.credited, idle.native_blocks_read), (0, 0), "{idle:?}");
    assert!(idle.from_block <= idle.to_block, "the window has blocks: {idle:?}");
    assert!(idle_calls <= 6, "the head, two balance reads and the final block, however many intents: {idle_calls}");
    // One paid in full, one short; plain value transfers.
    let value = |v: U256| u128::try_from(v).expect("fits");
    w.anvil.send(DEV[1], Some(&made[3].deposit_address.to_string()), "0x", value(due), None);
    w.anvil.send(DEV[1], Some(&made[7].deposit_address.to_string()), "0x", value(due) / 2, None);
    w.anvil.mine(1);
    let before = w.http.count();
    let report = p.scan("polygon").await.expect("scan");
    let calls = w.http.count() - before;
    assert_eq!(report.credited, 2, "{report:?}");
    assert!(report.native_blocks_read <= 3, "only the window's blocks: {report:?}");
    // Beyond the idle pass: the window's blocks and a check of each of the two payments.
    assert!(calls <= idle_calls + report.native_blocks_read + 2 * 5, "{calls} calls: {report:?}");
    assert_eq!(intents.intent(&made[3].intent_id).await.expect("read").expect("n3").status, IntentStatus::Paid);
    let short = intents.intent(&made[7].intent_id).await.expect("read").expect("n7");
    assert_eq!((short.status, short.received), (IntentStatus::PartiallyPaid, due / U256::from(2u8)));
    // Nothing new: no block read again, nothing credited twice.
    w.anvil.mine(1);
    let again = p.scan("polygon").await.expect("scan");
    assert_eq!((again.credited, again.native_blocks_read), (0, 0), "{again:?}");
}
