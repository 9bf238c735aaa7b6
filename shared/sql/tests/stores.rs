//! The SQL adapters against real databases: SQLite files (rusqlite) and a PostgreSQL server
//! (Debian's, started for the run), each scenario on both, including connections racing.

use std::sync::Mutex;

use gocoffee_app::memory::fixtures::{next, placed};
use gocoffee_app::ports::*;
use gocoffee_core::{OrderEvent, OrderStatus, Role, StoredEvent};
use gocoffee_sql::postgres::{LocalServer, Postgres};
use gocoffee_sql::rusqlite::Sqlite;
use gocoffee_sql::{Db, Publisher, SqliteOutboxRelay, SqliteStore, Value};
use pollster::block_on;

/// A connection of either kind.
type Conn = Box<dyn Db + Send + Sync>;

/// Where a scenario's database lives.
enum Backend<'a> {
    Sqlite,
    Postgres(&'a LocalServer),
}

/// One scenario's database, which any number of connections can open.
#[derive(Clone)]
enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Target {
    fn connect(&self) -> Conn {
        match self {
            Target::Sqlite(path) => Box::new(Sqlite::open(path)),
            Target::Postgres(address) => Box::new(Postgres::connect(address).expect("connect")),
        }
    }
}

impl Backend<'_> {
    /// A fresh, empty database named for the scenario.
    fn target(&self, name: &str) -> Target {
        match self {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("gocoffee-sql-{}-{name}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("dir");
                Target::Sqlite(dir.join("db.sqlite"))
            }
            Backend::Postgres(server) => Target::Postgres(server.database(name).expect("database")),
        }
    }

    fn store(&self, name: &str) -> SqliteStore<Conn> {
        SqliteStore::open(self.target(name).connect()).expect("schema")
    }
}

fn count<D: Db>(s: &SqliteStore<D>, table: &str) -> i64 {
    match s.db().execute(&format!("SELECT COUNT(*) FROM {table}"), &[]).expect("count").rows[0][0] {
        Value::Integer(n) => n,
        _ => panic!("count"),
    }
}

/// Each scenario as a test on SQLite, and all of them on one PostgreSQL server (each on a
/// database of its own), every failure named.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Backend::Sqlite)
                }
            )*
        }

        #[test]
        fn every_scenario_on_postgres() {
            let server = LocalServer::start().expect("PostgreSQL");
            let scenarios: Vec<(&str, fn(&Backend))> = vec![$((stringify!($name), $name)),*];
            let failed: Vec<&str> = scenarios
                .into_iter()
                .filter(|(_, scenario)| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&Backend::Postgres(&server)))).is_err())
                .map(|(name, _)| name)
                .collect();
            assert!(failed.is_empty(), "failed on PostgreSQL: {failed:?}");
        }
    };
}

scenarios!(
    the_schema_is_created_once_with_the_default_menu,
    emails_are_unique_and_refresh_tokens_work_once,
    menu_items_insert_once_and_replace_in_place,
    a_menu_write_from_a_stale_version_is_a_conflict_and_changes_nothing,
    an_upload_can_be_claimed_once_until_released,
    an_order_its_event_outbox_entry_and_idempotency_record_are_written_together,
    an_append_with_a_stale_version_changes_nothing,
    two_connections_appending_at_the_same_version_have_exactly_one_winner,
    order_lists_filter_and_page_newest_first,
    the_kitchen_queue_is_oldest_first_and_drops_ready_orders,
    the_relay_publishes_in_order_and_resumes_where_it_stopped,
    concurrent_relays_publish_each_event_once_and_each_order_in_version_order,
    the_analytics_store_keeps_the_newest_facts_per_order_and_reads_by_placement,
    the_live_feed_keeps_each_message_once_in_order_per_channel_and_forgets_old_ones,
    websocket_connections_keep_their_subscriptions_until_forgotten_or_expired,
    the_kitchen_starts_as_the_default_and_racing_writers_never_lose_or_double_a_version,
    racing_connections_admit_no_more_than_the_limit,
);

fn the_schema_is_created_once_with_the_default_menu(b: &Backend) {
    let target = b.target("schema");
    let a = SqliteStore::open(target.connect()).expect("first");
    let b = SqliteStore::open(target.connect()).expect("second");
    let menu = block_on(b.menu()).expect("menu");
    assert_eq!(menu, gocoffee_core::menu::default_menu());
    assert_eq!(count(&a, "menu_items") as usize, menu.len());
}

fn emails_are_unique_and_refresh_tokens_work_once(b: &Backend) {
    let s = b.store("users");
    let u = UserRecord { id: "u1".into(), email: "a@b.co".into(), name: None, role: Role::Customer, password_hash: "h".into(), created_at_ms: 1 };
    block_on(s.create_user(&u)).expect("created");
    assert_eq!(block_on(s.create_user(&UserRecord { id: "u2".into(), ..u.clone() })), Err(StoreError::Conflict));
    assert_eq!(block_on(s.user_by_email("a@b.co")).expect("read"), Some(u.clone()));
    assert_eq!(block_on(s.user_by_id("u1")).expect("read"), Some(u));
    let t = RefreshTokenRecord { token_hash: "th".into(), user_id: "u1".into(), expires_at_ms: 99 };
    block_on(s.save_refresh_token(&t)).expect("saved");
    assert_eq!(block_on(s.take_refresh_token("th")).expect("take"), Some(t));
    assert_eq!(block_on(s.take_refresh_token("th")).expect("take"), None);
}

fn menu_items_insert_once_and_replace_in_place(b: &Backend) {
    let s = b.store("menu");
    let mut item = gocoffee_core::menu::default_menu().remove(0);
    assert_eq!(block_on(s.insert_menu_item(&item)), Err(StoreError::Conflict));
    item.id = "new-thing".into();
    item.version = 1;
    block_on(s.insert_menu_item(&item)).expect("inserted");
    assert_eq!(block_on(s.menu()).expect("menu").last().map(|i| i.id.as_str()), Some("new-thing"));
    item.available = false;
    item.version = 2;
    assert!(block_on(s.replace_menu_item(&item, 1)).expect("replaced"));
    assert_eq!(block_on(s.menu_item("new-thing")).expect("read").map(|i| (i.available, i.version)), Some((false, 2)));
    item.id = "missing".into();
    assert!(!block_on(s.replace_menu_item(&item, 1)).expect("no such item"));
}

fn a_menu_write_from_a_stale_version_is_a_conflict_and_changes_nothing(b: &Backend) {
    let s = b.store("menu-versions");
    // A default item as stored before versions existed: its document has none, so it is at 0.
    let without_version = match b {
        Backend::Sqlite => "UPDATE menu_items SET doc = json_remove(doc, '$.version') WHERE id = 'latte'",
        Backend::Postgres(_) => "UPDATE menu_items SET doc = (doc::jsonb - 'version')::text WHERE id = 'latte'",
    };
    s.db().execute(without_version, &[]).expect("an old document");
    let latte = block_on(s.menu_item("latte")).expect("read").expect("latte");
    assert_eq!(latte.version, 0);
    let sold_out = gocoffee_core::MenuItem { available: false, version: 1, ..latte.clone() };
    assert!(block_on(s.replace_menu_item(&sold_out, 0)).expect("first writer wins"));
    let renamed = gocoffee_core::MenuItem { name: "Big Latte".into(), version: 1, ..latte };
    assert_eq!(block_on(s.replace_menu_item(&renamed, 0)), Err(StoreError::Conflict), "the second read version 0 too");
    let stored = block_on(s.menu_item("latte")).expect("read").expect("latte");
    assert_eq!((stored.available, stored.name.as_str(), stored.version), (false, "Caffè Latte", 1));
}

fn an_upload_can_be_claimed_once_until_released(b: &Backend) {
    let s = b.store("uploads");
    block_on(s.claim_upload("menu/latte/a.png", 1)).expect("first");
    assert_eq!(block_on(s.claim_upload("menu/latte/a.png", 2)), Err(StoreError::Conflict));
    block_on(s.claim_upload("menu/latte/b.png", 3)).expect("another key");
    block_on(s.release_upload("menu/latte/a.png")).expect("released");
    block_on(s.claim_upload("menu/latte/a.png", 4)).expect("again after a failed upload");
    let day = 24 * 3600 * 1000;
    block_on(s.claim_upload("menu/latte/c.png", 4 + day + 1)).expect("a day later");
    assert_eq!(count(&s, "image_uploads"), 1, "claims older than a day are dropped");
}

#[test]
/// SQLite only: PostgreSQL databases start at the current version.
fn a_version_1_database_is_upgraded_in_place() {
    let target = Backend::Sqlite.target("upgrade");
    let s = SqliteStore::open(target.connect()).expect("current");
    let (o, e) = placed("kept", "c", 1);
    block_on(s.create_order(&o, &e, None)).expect("created");
    for sql in ["DROP TABLE image_uploads", "DROP TABLE outbox_lease", "UPDATE gocoffee_schema SET version = 1"] {
        s.db().execute(sql, &[]).expect("downgrade");
    }
    drop(s);
    let s = SqliteStore::open(target.connect()).expect("upgraded");
    assert_eq!(s.db().execute("SELECT version FROM gocoffee_schema", &[]).expect("version").rows[0][0], Value::Integer(gocoffee_sql::schema::VERSION));
    block_on(s.claim_upload("menu/latte/a.png", 1)).expect("the new table is there");
    assert!(block_on(s.order("kept")).expect("read").is_some(), "data survives");
    assert_eq!(count(&s, "menu_items") as usize, gocoffee_core::menu::default_menu().len(), "not seeded twice");
}

fn an_order_its_event_outbox_entry_and_idempotency_record_are_written_together(b: &Backend) {
    let s = b.store("create");
    let (order, event) = placed("o1", "c1", 100);
    let rec = IdempotencyRecord {
        owner: "c1".into(),
        key: "k".into(),
        request_hash: "h".into(),
        status: 202,
        body: "{}".into(),
        location: Some("/x".into()),
        expires_at_ms: 1_000,
    };
    block_on(s.create_order(&order, &event, Some(&rec))).expect("created");
    assert_eq!(block_on(s.idempotency_record("c1", "k", 500)).expect("read"), Some(rec.clone()));
    assert_eq!(block_on(s.idempotency_record("c1", "k", 1_000)).expect("read"), None, "expired");

    // Same key again: nothing of the second order may be left behind.
    let (order2, event2) = placed("o2", "c1", 200);
    assert_eq!(block_on(s.create_order(&order2, &event2, Some(&rec))), Err(StoreError::Conflict));
    assert_eq!(block_on(s.order("o2")).expect("read"), None);
    assert_eq!((count(&s, "orders"), count(&s, "order_events"), count(&s, "outbox")), (1, 1, 1));

    // Once the record has expired the key can be used again.
    let (order3, event3) = placed("o3", "c1", 2_000);
    block_on(s.create_order(&order3, &event3, Some(&IdempotencyRecord { expires_at_ms: 5_000, ..rec }))).expect("expired key reused");
    assert_eq!(block_on(s.events("o1")).expect("events"), vec![event]);
}

fn an_append_with_a_stale_version_changes_nothing(b: &Backend) {
    let s = b.store("stale");
    let (order, event) = placed("o1", "c1", 100);
    block_on(s.create_order(&order, &event, None)).expect("created");
    let (confirmed, e2) = next(&order, OrderEvent::OrderConfirmed, 110);
    block_on(s.append(&confirmed, std::slice::from_ref(&e2), 1, Some(("consumer", "o1-1")))).expect("appended");
    assert_eq!(count(&s, "kitchen_tickets"), 1, "a confirmed order is on the kitchen board");

    let (late, e3) = next(&order, OrderEvent::OrderCancelled { reason: None }, 120);
    assert_eq!(block_on(s.append(&late, &[e3], 1, None)), Err(StoreError::Conflict));
    assert_eq!(block_on(s.order("o1")).expect("read").map(|o| o.status), Some(OrderStatus::Confirmed));
    assert_eq!((count(&s, "order_events"), count(&s, "outbox")), (2, 2));

    // The consumer's ledger entry is part of the same write: a replay conflicts and rolls back.
    let (again, e4) = next(&confirmed, OrderEvent::PreparationStarted, 130);
    assert_eq!(block_on(s.append(&again, &[e4], 2, Some(("consumer", "o1-1")))), Err(StoreError::Conflict));
    assert_eq!(block_on(s.order("o1")).expect("read").map(|o| o.version), Some(2));
    assert!(block_on(s.is_processed("consumer", "o1-1")).expect("ledger"));
}

fn two_connections_appending_at_the_same_version_have_exactly_one_winner(b: &Backend) {
    let target = b.target("race");
    let s = SqliteStore::open(target.connect()).expect("open");
    let (order, event) = placed("o1", "c1", 100);
    block_on(s.create_order(&order, &event, None)).expect("created");
    for round in 0..20u64 {
        let base = block_on(s.order("o1")).expect("read").expect("order");
        let results: Vec<StoreResult<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let target = target.clone();
                    let base = base.clone();
                    scope.spawn(move || {
                        let mine = SqliteStore::open(target.connect()).expect("open");
                        let reason = Some(format!("writer {i} round {round}"));
                        let (o, mut e) = next(&base, OrderEvent::OrderCancelled { reason }, 200);
                        e.event_id = format!("r{round}w{i}");
                        block_on(mine.append(&o, &[e], base.version, None))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(results.iter().all(|r| r.is_ok() || *r == Err(StoreError::Conflict)));
    }
    let events = block_on(s.events("o1")).expect("events");
    assert_eq!(events.len(), 21);
    assert!(events.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1), "no gaps, no duplicates");
}

fn order_lists_filter_and_page_newest_first(b: &Backend) {
    let s = b.store("list");
    for i in 0..7 {
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        let (o, e) = placed(&format!("o{i}"), customer, 1_000 + i);
        block_on(s.create_order(&o, &e, None)).expect("created");
    }
    let (o0, _) = placed("o0", "even", 1_000);
    let (c, e) = next(&o0, OrderEvent::OrderConfirmed, 2_000);
    block_on(s.append(&c, &[e], 1, None)).expect("confirm");

    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = block_on(s.orders(&OrderQuery { customer_id: Some("even".into()), status: None, limit: 3, after: after.clone() })).expect("page");
        seen.extend(page.items.iter().map(|o| o.id.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["o6", "o4", "o2", "o0"]);
    let confirmed = block_on(s.orders(&OrderQuery { status: Some(OrderStatus::Confirmed), limit: 10, ..Default::default() })).expect("by status");
    assert_eq!(confirmed.items.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["o0"]);
}

fn the_kitchen_queue_is_oldest_first_and_drops_ready_orders(b: &Backend) {
    let s = b.store("kitchen");
    let mut orders = vec![];
    for i in 0..3 {
        let (o, e) = placed(&format!("k{i}"), "c", 100 + i);
        block_on(s.create_order(&o, &e, None)).expect("created");
        let (c, e) = next(&o, OrderEvent::OrderConfirmed, 200);
        block_on(s.append(&c, &[e], 1, None)).expect("confirmed");
        orders.push(c);
    }
    let (p, e) = next(&orders[0], OrderEvent::PreparationStarted, 300);
    block_on(s.append(&p, &[e], 2, None)).expect("started");
    let (r, e) = next(&p, OrderEvent::OrderReady, 400);
    block_on(s.append(&r, &[e], 3, None)).expect("ready");
    let first = block_on(s.kitchen_queue(1, None)).expect("queue");
    assert_eq!(first.items[0].order_id, "k1");
    let rest = block_on(s.kitchen_queue(5, first.next)).expect("queue");
    assert_eq!(rest.items.iter().map(|t| t.order_id.as_str()).collect::<Vec<_>>(), ["k2"]);
}

struct Flaky {
    sent: std::cell::RefCell<Vec<String>>,
    fail_after: usize,
}

impl Publisher for Flaky {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        if self.sent.borrow().len() >= self.fail_after {
            return Err("broker down".into());
        }
        let e: StoredEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        self.sent.borrow_mut().push(format!("{channel}:{}", e.event_id));
        Ok(())
    }
}

fn the_relay_publishes_in_order_and_resumes_where_it_stopped(b: &Backend) {
    let s = b.store("relay");
    for i in 0..4 {
        let (o, e) = placed(&format!("o{i}"), "c", 100 + i);
        block_on(s.create_order(&o, &e, None)).expect("created");
    }
    // Each order event goes out on the orders channel, then the analytics one. The broker fails
    // between the two copies of o1's.
    let broken = SqliteOutboxRelay { db: s.db(), publisher: Flaky { sent: Default::default(), fail_after: 3 } };
    assert!(block_on(gocoffee_app::ports::EventRelay::relay(&broken)).is_err());
    assert_eq!(*broken.publisher.sent.borrow(), ["orders:o0-1", "analytics:o0-1", "orders:o1-1"]);
    assert_eq!(count(&s, "outbox"), 3, "what was not published on both is still queued");
    let working = SqliteOutboxRelay { db: s.db(), publisher: Flaky { sent: Default::default(), fail_after: usize::MAX } };
    assert_eq!(block_on(gocoffee_app::ports::EventRelay::relay(&working)), Ok(3));
    // o1 again on orders (at least once: its consumers are idempotent), then on analytics.
    assert_eq!(*working.publisher.sent.borrow(), ["orders:o1-1", "analytics:o1-1", "orders:o2-1", "analytics:o2-1", "orders:o3-1", "analytics:o3-1"]);
    assert_eq!(count(&s, "outbox"), 0);
}

/// Records what reached the stream, from any thread, slowly enough that overlapping relays
/// would interleave if nothing kept them apart.
struct Stream<'a>(&'a Mutex<Vec<(String, u64)>>);

impl Publisher for Stream<'_> {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        if channel != "orders" {
            return Ok(());
        }
        let e: StoredEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        std::thread::sleep(std::time::Duration::from_micros(300));
        self.0.lock().map_err(|_| "poisoned")?.push((e.order_id, e.version));
        Ok(())
    }
}

fn concurrent_relays_publish_each_event_once_and_each_order_in_version_order(b: &Backend) {
    let target = b.target("relays");
    let writer = SqliteStore::open(target.connect()).expect("schema");
    let stream = Mutex::new(Vec::new());
    let orders: Vec<String> = (0..6).map(|i| format!("o{i}")).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Four "requests" relaying over and over on their own connections, as components do.
        for _ in 0..4 {
            scope.spawn(|| {
                let db = target.connect();
                let relay = SqliteOutboxRelay { db: &db, publisher: Stream(&stream) };
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    block_on(gocoffee_app::ports::EventRelay::relay(&relay)).expect("relay");
                }
            });
        }
        // Meanwhile each order gets its life: placed, then four more events.
        let mut current: Vec<gocoffee_core::Order> = Vec::new();
        for (i, id) in orders.iter().enumerate() {
            let (o, e) = placed(id, "c", i as i64);
            block_on(writer.create_order(&o, &e, None)).expect("created");
            current.push(o);
        }
        for _ in 0..4 {
            for order in current.iter_mut() {
                let (o, e) = next(order, OrderEvent::OrderConfirmed, 10);
                block_on(writer.append(&o, &[e], order.version, None)).expect("appended");
                *order = o;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let last = SqliteOutboxRelay { db: writer.db(), publisher: Stream(&stream) };
    block_on(gocoffee_app::ports::EventRelay::relay(&last)).expect("final relay");
    let published = stream.into_inner().expect("stream");
    for id in &orders {
        let versions: Vec<u64> = published.iter().filter(|(o, _)| o == id).map(|(_, v)| *v).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5], "order {id}: each event once, in version order");
    }
    assert_eq!(count(&writer, "outbox"), 0);
}

fn the_analytics_store_keeps_the_newest_facts_per_order_and_reads_by_placement(b: &Backend) {
    use gocoffee_app::analytics::AnalyticsStore;
    use gocoffee_core::analytics::OrderFacts;
    use gocoffee_sql::analytics::SqlAnalyticsStore;
    let target = b.target("analytics");
    let a = SqlAnalyticsStore::open(target.connect()).expect("schema");
    let (o1, e1) = placed("o1", "c", 1_000);
    let (_, e2) = next(&o1, OrderEvent::OrderConfirmed, 1_500);
    let v1 = OrderFacts::apply(None, &e1).expect("fold").expect("facts");
    let v2 = OrderFacts::apply(Some(&v1), &e2).expect("fold").expect("facts");
    assert_eq!(block_on(a.facts("o1")), Ok(None));
    assert_eq!(block_on(a.save(&v2)), Ok(true));
    assert_eq!(block_on(a.save(&v1)), Ok(false), "an older fold never overwrites a newer one");
    assert_eq!(block_on(a.save(&v2)), Ok(true), "the same version is written over (a rebuild's fold)");
    assert_eq!(block_on(a.facts("o1")), Ok(Some(v2.clone())));
    // Every version saved at once from several connections: the newest stays.
    let mut versions = vec![v1.clone(), v2.clone()];
    for v in 3..12 {
        let mut f = v2.clone();
        f.version = v;
        versions.push(f);
    }
    std::thread::scope(|scope| {
        for chunk in versions.chunks(3) {
            let target = &target;
            scope.spawn(move || {
                let conn = SqlAnalyticsStore::open(target.connect()).expect("open");
                for f in chunk.iter().rev() {
                    block_on(conn.save(f)).expect("save");
                }
            });
        }
    });
    assert_eq!(block_on(a.facts("o1")).expect("read").map(|f| f.version), Some(11));
    for (i, at) in [(2, 2_000), (3, 3_000), (4, 4_000)] {
        let (_, e) = placed(&format!("o{i}"), "c", at);
        block_on(a.save(&OrderFacts::apply(None, &e).expect("fold").expect("facts"))).expect("save");
    }
    let ids = |from, to, limit| block_on(a.placed_between(from, to, limit)).expect("read").into_iter().map(|f| f.order_id).collect::<Vec<_>>();
    assert_eq!(ids(1_000, 4_000, 10), ["o1", "o2", "o3"], "from inclusive, to exclusive");
    assert_eq!(ids(0, 10_000, 2).len(), 2);
    while !block_on(a.clear_batch()).expect("clear") {}
    assert!(ids(0, 10_000, 10).is_empty());
}

fn the_live_feed_keeps_each_message_once_in_order_per_channel_and_forgets_old_ones(b: &Backend) {
    use gocoffee_app::live::LiveFeed;
    use gocoffee_core::live::envelopes;
    use gocoffee_sql::live::SqlLiveFeed;
    let target = b.target("live");
    let feed = SqlLiveFeed::open(target.connect()).expect("schema");
    assert_eq!(block_on(feed.head()), Ok(0));
    let (o1, placed1) = placed("01JABCDEFGHJKMNPQRSTVWXYZ1", "c", 1_000);
    let (_, confirmed1) = next(&o1, OrderEvent::OrderConfirmed, 1_500);
    let time = |ms: i64| ms.to_string();
    for e in [&placed1, &confirmed1, &confirmed1] {
        block_on(feed.append(&envelopes(e, time), 2_000, 0)).expect("append");
    }
    let order = vec!["order:01JABCDEFGHJKMNPQRSTVWXYZ1".to_owned()];
    let kitchen = vec!["kitchen".to_owned()];
    let read = |channels: &[String], after| block_on(feed.read(channels, after, 10)).expect("read");
    let versions = |entries: Vec<gocoffee_app::live::FeedEntry>| {
        entries.iter().map(|e| serde_json::from_str::<serde_json::Value>(&e.message).expect("json")["version"].as_u64().expect("version")).collect::<Vec<_>>()
    };
    assert_eq!(versions(read(&order, 0)), [1, 2], "the redelivered confirmation is there once");
    assert_eq!(versions(read(&kitchen, 0)), [2]);
    let head = block_on(feed.head()).expect("head");
    assert_eq!(read(&[order[0].clone(), kitchen[0].clone()], 0).last().map(|e| e.seq), Some(head));
    assert!(read(&order, head).is_empty());
    // Appenders racing on several connections: positions are visible in order, none skipped
    // by a reader that follows along.
    let events: Vec<StoredEvent> = (0..24).map(|i| placed(&format!("01JABCDEFGHJKMNPQRSTVWX{i:03}"), "c", 3_000 + i).1).collect();
    let all: Vec<String> = events.iter().map(|e| format!("order:{}", e.order_id)).collect();
    let followed = std::thread::scope(|scope| {
        let follower = scope.spawn(|| {
            let conn = SqlLiveFeed::open(target.connect()).expect("open");
            let (mut seen, mut after) = (Vec::new(), head);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while seen.len() < all.len() && std::time::Instant::now() < deadline {
                for entry in block_on(conn.read(&all, after, 5)).expect("read") {
                    after = entry.seq;
                    seen.push(entry.seq);
                }
            }
            seen
        });
        for chunk in events.chunks(6) {
            let target = &target;
            scope.spawn(move || {
                let conn = SqlLiveFeed::open(target.connect()).expect("open");
                for e in chunk {
                    block_on(conn.append(&envelopes(e, |ms| ms.to_string()), 3_000, 0)).expect("append");
                }
            });
        }
        follower.join().expect("follower")
    });
    assert_eq!(followed.len(), 24, "a reader following the appenders missed none");
    assert_eq!(read(&all, head).len(), 10, "a read stops at its limit");
    // Appending at 10 000 forgets what came before 2 500: the first order's messages.
    let (_, late) = placed("01JABCDEFGHJKMNPQRSTVWXYZ9", "c", 9_000);
    block_on(feed.append(&envelopes(&late, time), 10_000, 2_500)).expect("append");
    assert!(read(&order, 0).is_empty());
    assert!(block_on(feed.head()).expect("head") > head, "positions keep rising after old messages go");
}

fn websocket_connections_keep_their_subscriptions_until_forgotten_or_expired(b: &Backend) {
    use gocoffee_app::Caller;
    use gocoffee_app::live::sockets::{Connection, ConnectionStore};
    use gocoffee_sql::live::SqlConnections;
    let target = b.target("sockets");
    let store = SqlConnections::open(target.connect()).expect("schema");
    let connection = |id: &str, role: Role, expires_at_ms| Connection { id: id.into(), caller: Caller { user_id: format!("u-{id}"), role }, expires_at_ms };
    let (a, k) = (connection("a", Role::Customer, 10_000), connection("k", Role::Barista, 10_000));
    for c in [&a, &k] {
        block_on(store.save_connection(c)).expect("save");
    }
    assert_eq!(block_on(store.connection("a", 5_000)), Ok(Some(a.clone())));
    assert_eq!(block_on(store.connection("a", 10_000)), Ok(None), "expired");
    assert_eq!(block_on(store.connection("x", 0)), Ok(None));
    assert_eq!(block_on(store.subscribe(&a, "order:1", 2)), Ok(true));
    assert_eq!(block_on(store.subscribe(&a, "order:1", 2)), Ok(true), "twice is once");
    assert_eq!(block_on(store.subscribe(&a, "order:2", 2)), Ok(true));
    assert_eq!(block_on(store.subscribe(&a, "order:3", 2)), Ok(false), "over the limit");
    assert_eq!(block_on(store.subscribe(&k, "kitchen", 2)), Ok(true));
    assert_eq!(block_on(store.subscribe(&k, "order:1", 2)), Ok(true));
    assert_eq!(block_on(store.subscribers("order:1", 5_000)), Ok(vec!["a".to_owned(), "k".to_owned()]));
    assert_eq!(block_on(store.subscribers("order:1", 10_000)), Ok(vec![]), "expired connections follow nothing");
    block_on(store.unsubscribe("k", "order:1")).expect("unsubscribe");
    assert_eq!(block_on(store.subscribers("order:1", 5_000)), Ok(vec!["a".to_owned()]));
    block_on(store.forget("a")).expect("forget");
    block_on(store.forget("a")).expect("forgetting twice is fine");
    assert_eq!(block_on(store.connection("a", 5_000)), Ok(None));
    assert_eq!(block_on(store.subscribers("order:1", 5_000)), Ok(vec![]));
    assert_eq!(block_on(store.subscribers("kitchen", 5_000)), Ok(vec!["k".to_owned()]));
    // A connection saved once the others expired clears them away.
    block_on(store.save_connection(&connection("n", Role::Customer, 10_000 + gocoffee_app::live::sockets::CONNECTION_TTL_MS))).expect("save");
    assert_eq!(count_rows(&target, "live_subscriptions"), 0);
    assert_eq!(count_rows(&target, "live_connections"), 1);
}

fn count_rows(target: &Target, table: &str) -> i64 {
    match target.connect().execute(&format!("SELECT COUNT(*) FROM {table}"), &[]).expect("count").rows[0][0] {
        Value::Integer(n) => n,
        _ => panic!("count"),
    }
}

fn the_kitchen_starts_as_the_default_and_racing_writers_never_lose_or_double_a_version(b: &Backend) {
    use gocoffee_core::kitchen::{Kitchen, KitchenCommand, KitchenRecord};
    let target = b.target("kitchen");
    let store = SqliteStore::open(target.connect()).expect("schema");
    assert_eq!(block_on(store.kitchen()), Ok(Kitchen::initial()));
    // Each writer decides on the state it read and appends at that version.
    let change = |store: &SqliteStore<Conn>, user: &str| -> StoreResult<()> {
        let mut k = block_on(store.kitchen())?;
        let expected = k.version;
        let events = k.decide(&KitchenCommand::StartShift { user_id: user.into(), station: "espresso-bar".into() }).expect("valid");
        let records: Vec<KitchenRecord> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| KitchenRecord {
                event_id: format!("{user}-{i}"),
                version: expected + 1 + i as u64,
                occurred_at_ms: 1_000,
                actor: user.into(),
                event,
            })
            .collect();
        for r in &records {
            k.apply(r);
        }
        block_on(store.append_kitchen(&k, &records, expected))
    };
    let outcomes: Vec<StoreResult<()>> = std::thread::scope(|s| {
        let runs: Vec<_> = ["ann", "bob", "cy", "dee"]
            .into_iter()
            .map(|user| {
                let target = &target;
                s.spawn(move || change(&SqliteStore::open(target.connect()).expect("open"), user))
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("thread")).collect()
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(won >= 1 && outcomes.iter().all(|o| o.is_ok() || *o == Err(StoreError::Conflict)), "{outcomes:?}");
    let k = block_on(store.kitchen()).expect("read");
    assert_eq!(k.version, won as u64, "one version per winner, none lost or doubled");
    assert_eq!(k.staff_at("espresso-bar"), won);
    let log = block_on(store.kitchen_log(0, 10)).expect("log");
    assert_eq!(log.iter().map(|r| r.version).collect::<Vec<_>>(), (1..=won as u64).collect::<Vec<_>>());
    assert_eq!(block_on(store.kitchen_log(1, 10)).expect("log").len(), won - 1);
}

fn racing_connections_admit_no_more_than_the_limit(b: &Backend) {
    let target = b.target("rate");
    drop(SqliteStore::open(target.connect()).expect("schema"));
    let limit = RateLimit { requests: 5, per_ms: 3_600_000, burst: 5 };
    let admitted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let conn = SqliteStore::open(target.connect()).expect("open");
                for _ in 0..10 {
                    if block_on(conn.admit("credentials:addr:203.0.113.7", &limit, 1_000)).expect("admit") == Admission::Admitted {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 5, "80 racing requests, a burst of 5");
    let s = SqliteStore::open(target.connect()).expect("open");
    // The refusal says when the next request fits: one interval (12 minutes) after now.
    assert_eq!(block_on(s.admit("credentials:addr:203.0.113.7", &limit, 1_000)), Ok(Admission::Refused { retry_after_ms: 720_000 }));
    assert_eq!(block_on(s.admit("credentials:addr:203.0.113.7", &limit, 721_000)), Ok(Admission::Admitted));
    assert_eq!(block_on(s.admit("credentials:addr:198.51.100.1", &limit, 1_000)), Ok(Admission::Admitted), "keys are apart");
    // Keys whose arrival time has passed mean nothing and are forgotten.
    assert_eq!(block_on(s.forget_idle(10_000_000)), Ok(2));
    assert_eq!(count(&s, "rate_limits"), 0);
}
