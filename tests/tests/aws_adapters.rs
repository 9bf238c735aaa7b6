//! The AWS adapters on the AWS wire protocol (moto server), with the table, stream and queues
//! created from `sam-template.yaml`.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use gocoffee_app::memory::fixtures::{next, placed};
use gocoffee_app::ports::*;
use gocoffee_aws::kinesis::Record;
use gocoffee_aws::{DynamoOutboxRelay, KinesisPublisher};
use gocoffee_core::{OrderEvent, OrderStatus, Role, StoredEvent};
use gocoffee_tests::aws::Stack;

fn idempotency(key: &str, expires_at_ms: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        owner: "cust".into(),
        key: key.into(),
        request_hash: "h".into(),
        status: 202,
        body: "{}".into(),
        location: Some("/x".into()),
        expires_at_ms,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn emails_are_unique_and_refresh_tokens_work_once() {
    let s = Stack::create("users").await.store();
    let u = UserRecord { id: "u1".into(), email: "a@b.co".into(), name: Some("Ada".into()), role: Role::Barista, password_hash: "h".into(), created_at_ms: 1 };
    s.create_user(&u).await.expect("created");
    assert_eq!(s.create_user(&UserRecord { id: "u2".into(), ..u.clone() }).await, Err(StoreError::Conflict), "email taken");
    assert_eq!(s.user_by_id("u2").await.expect("read"), None, "the failed transaction wrote nothing");
    assert_eq!(s.user_by_email("a@b.co").await.expect("read"), Some(u.clone()));
    assert_eq!(s.user_by_id("u1").await.expect("read"), Some(u));
    let t = RefreshTokenRecord { token_hash: "th".into(), user_id: "u1".into(), expires_at_ms: 99 };
    s.save_refresh_token(&t).await.expect("saved");
    assert_eq!(s.take_refresh_token("th").await.expect("take"), Some(t));
    assert_eq!(s.take_refresh_token("th").await.expect("take"), None, "a refresh token works once");
}

#[tokio::test(flavor = "current_thread")]
async fn the_menu_is_the_defaults_overlaid_with_what_was_written() {
    let s = Stack::create("menu").await.store();
    let defaults = gocoffee_core::menu::default_menu();
    assert_eq!(s.menu().await.expect("menu"), defaults, "a fresh table serves the default menu");
    let mut item = defaults[0].clone();
    assert_eq!(s.insert_menu_item(&item).await, Err(StoreError::Conflict), "default ids are taken");
    item.id = "new-thing".into();
    s.insert_menu_item(&item).await.expect("inserted");
    assert_eq!(s.insert_menu_item(&item).await, Err(StoreError::Conflict));
    let mut changed = defaults[3].clone();
    changed.name = "Renamed".into();
    changed.version = 1;
    assert!(s.replace_menu_item(&changed, 0).await.expect("replace"));
    let mut missing = item.clone();
    missing.id = "missing".into();
    assert!(!s.replace_menu_item(&missing, 0).await.expect("replace"), "only existing items are replaced");
    let menu = s.menu().await.expect("menu");
    assert_eq!(menu.len(), defaults.len() + 1);
    assert_eq!(menu[3].name, "Renamed", "a replaced default keeps its place");
    assert_eq!(menu.last().map(|i| i.id.as_str()), Some("new-thing"), "added items come after the defaults");
    assert_eq!(s.menu_item("new-thing").await.expect("item"), Some(item));
    assert_eq!(s.menu_item(&defaults[3].id).await.expect("item"), Some(changed));
    assert_eq!(s.menu_item("missing").await.expect("item"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn the_kitchen_starts_as_the_default_and_a_stale_write_is_a_conflict_that_changes_nothing() {
    use gocoffee_core::kitchen::{Kitchen, KitchenCommand, KitchenRecord};
    let s = Stack::create("kitchen").await.store();
    assert_eq!(s.kitchen().await, Ok(Kitchen::initial()));
    // Applies a command to the kitchen as read at `from`, and appends it there.
    let change = |from: &Kitchen, command: KitchenCommand, id: &str| {
        let mut k = from.clone();
        let records: Vec<KitchenRecord> = k
            .decide(&command)
            .expect("valid")
            .into_iter()
            .enumerate()
            .map(|(i, event)| KitchenRecord {
                event_id: format!("{id}-{i}"),
                version: from.version + 1 + i as u64,
                occurred_at_ms: 5,
                actor: "m".into(),
                event,
            })
            .collect();
        for r in &records {
            k.apply(r);
        }
        (k, records)
    };
    let initial = Kitchen::initial();
    let (first, records) = change(&initial, KitchenCommand::StartShift { user_id: "ann".into(), station: "food".into() }, "a");
    s.append_kitchen(&first, &records, 0).await.expect("the first write");
    let (stale, stale_records) = change(&initial, KitchenCommand::StartShift { user_id: "bob".into(), station: "food".into() }, "b");
    assert_eq!(s.append_kitchen(&stale, &stale_records, 0).await, Err(StoreError::Conflict), "it read version 0 too");
    let (second, records) = change(&first, KitchenCommand::EndShift { user_id: "ann".into() }, "c");
    s.append_kitchen(&second, &records, 1).await.expect("the second write");
    assert_eq!(s.kitchen().await, Ok(second.clone()));
    let log = s.kitchen_log(0, 10).await.expect("log");
    assert_eq!(log.iter().map(|r| (r.version, r.event.name())).collect::<Vec<_>>(), [(1, "ShiftStarted"), (2, "ShiftEnded")]);
    assert_eq!(s.kitchen_log(1, 10).await.expect("log").len(), 1);
    assert_eq!(s.kitchen_log(0, 1).await.expect("log").len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_menu_write_from_a_stale_version_is_a_conflict_and_changes_nothing() {
    let s = Stack::create("menu-versions").await.store();
    // A default item never written is at version 0; so is an added item stored without one.
    let latte = s.menu_item("latte").await.expect("read").expect("latte");
    assert_eq!(latte.version, 0);
    let sold_out = gocoffee_core::MenuItem { available: false, version: 1, ..latte.clone() };
    assert!(s.replace_menu_item(&sold_out, 0).await.expect("first writer wins"));
    let renamed = gocoffee_core::MenuItem { name: "Big Latte".into(), version: 1, ..latte };
    assert_eq!(s.replace_menu_item(&renamed, 0).await, Err(StoreError::Conflict), "the second read version 0 too");
    let stored = s.menu_item("latte").await.expect("read").expect("latte");
    assert_eq!((stored.available, stored.name.as_str(), stored.version), (false, "Caffè Latte", 1));

    let mut added = gocoffee_core::MenuItem { id: "iced-tea".into(), version: 1, ..stored.clone() };
    s.insert_menu_item(&added).await.expect("inserted");
    added.version = 2;
    assert_eq!(s.replace_menu_item(&added, 0).await, Err(StoreError::Conflict));
    assert!(s.replace_menu_item(&added, 1).await.expect("from the version read"));
    assert_eq!(s.menu_item("iced-tea").await.expect("read").map(|i| i.version), Some(2));
}

#[tokio::test(flavor = "current_thread")]
async fn an_upload_can_be_claimed_once_until_released() {
    let s = Stack::create("uploads").await.store();
    s.claim_upload("menu/latte/a.png", 1).await.expect("first");
    assert_eq!(s.claim_upload("menu/latte/a.png", 2).await, Err(StoreError::Conflict));
    s.release_upload("menu/latte/a.png").await.expect("released");
    s.claim_upload("menu/latte/a.png", 3).await.expect("again after a failed upload");
}

#[tokio::test(flavor = "current_thread")]
async fn appends_are_conditional_on_the_expected_version_and_all_or_nothing() {
    let s = Stack::create("append").await.store();
    let (order, e1) = placed("o1", "cust", 100);
    s.create_order(&order, &e1, None).await.expect("created");
    assert_eq!(s.create_order(&order, &e1, None).await, Err(StoreError::Conflict), "an order id is created once");

    let (confirmed, e2) = next(&order, OrderEvent::OrderConfirmed, 110);
    s.append(&confirmed, std::slice::from_ref(&e2), 1, Some(("consumer", "o1-1"))).await.expect("appended");
    // A second writer that read version 1 loses, and writes nothing at all.
    let (cancelled, e2b) = next(&order, OrderEvent::OrderCancelled { reason: None }, 111);
    assert_eq!(s.append(&cancelled, &[e2b], 1, None).await, Err(StoreError::Conflict));
    // The processed marker is part of the transaction: the same event can't be processed twice.
    let (started, e3) = next(&confirmed, OrderEvent::PreparationStarted, 120);
    assert_eq!(s.append(&started, std::slice::from_ref(&e3), 2, Some(("consumer", "o1-1"))).await, Err(StoreError::Conflict));
    // The order item's version guards on its own, even when the event's version slot is free.
    let (ready, e4) = next(&started, OrderEvent::OrderReady, 130);
    assert_eq!(s.append(&ready, &[e4], 3, None).await, Err(StoreError::Conflict), "the table is at version 2, not 3");
    assert!(s.is_processed("consumer", "o1-1").await.expect("read"));
    assert!(!s.is_processed("consumer", "o1-2").await.expect("read"));
    s.mark_processed("consumer", "o1-2").await.expect("mark");
    s.mark_processed("consumer", "o1-2").await.expect("marking twice is fine");
    assert!(s.is_processed("consumer", "o1-2").await.expect("read"));

    assert_eq!(s.order("o1").await.expect("read"), Some(confirmed.clone()));
    let log = s.events("o1").await.expect("events");
    assert_eq!(log.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2], "only the winning writes are in the log");
    assert_eq!(gocoffee_core::Order::from_events(&log), Some(confirmed), "the order is the fold of its log");
    assert_eq!(s.kitchen_queue(10, None).await.expect("queue").items.len(), 1, "a confirmed order is on the kitchen board");
}

#[tokio::test(flavor = "current_thread")]
async fn lists_come_from_the_indexes_newest_first_in_pages() {
    let s = Stack::create("lists").await.store();
    let mut orders = Vec::new();
    for i in 0..7 {
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        let (order, e) = placed(&format!("o{i}"), customer, 1_000 + i);
        s.create_order(&order, &e, None).await.expect("created");
        orders.push(order);
    }
    // o0, o2 and o4 are confirmed, so they are on the kitchen board; o4 then starts.
    for i in [0, 2, 4] {
        let (c, e) = next(&orders[i], OrderEvent::OrderConfirmed, 2_000);
        s.append(&c, &[e], 1, None).await.expect("confirmed");
        orders[i] = c;
    }
    let (started, e) = next(&orders[4], OrderEvent::PreparationStarted, 3_000);
    s.append(&started, &[e], 2, None).await.expect("started");

    let ids = |p: &Page<gocoffee_core::Order>| p.items.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.orders(&OrderQuery { limit: 3, after: after.clone(), ..Default::default() }).await.expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(ids(&page));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["o6", "o5", "o4", "o3", "o2", "o1", "o0"], "every order once, newest first, across pages");

    let even = s.orders(&OrderQuery { customer_id: Some("even".into()), limit: 2, ..Default::default() }).await.expect("by customer");
    assert_eq!(ids(&even), ["o6", "o4"]);
    let rest = s.orders(&OrderQuery { customer_id: Some("even".into()), limit: 2, after: even.next.clone(), ..Default::default() }).await.expect("page 2");
    assert_eq!((ids(&rest), rest.next.is_some()), (vec!["o2".to_owned(), "o0".to_owned()], false));

    let confirmed = s.orders(&OrderQuery { status: Some(OrderStatus::Confirmed), limit: 10, ..Default::default() }).await.expect("by status");
    assert_eq!(ids(&confirmed), ["o2", "o0"]);
    let even_pending =
        s.orders(&OrderQuery { customer_id: Some("even".into()), status: Some(OrderStatus::Pending), limit: 1, ..Default::default() }).await.expect("both");
    assert_eq!((ids(&even_pending), even_pending.next.is_none()), (vec!["o6".to_owned()], true), "the filter reads past non-matching items");

    let board = s.kitchen_queue(2, None).await.expect("board");
    assert_eq!(board.items.iter().map(|t| t.order_id.as_str()).collect::<Vec<_>>(), ["o0", "o2"], "oldest first");
    let more = s.kitchen_queue(2, board.next.clone()).await.expect("board page 2");
    assert_eq!(more.items.iter().map(|t| (t.order_id.as_str(), t.status)).collect::<Vec<_>>(), [("o4", OrderStatus::Preparing)]);
    assert!(more.next.is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn idempotency_records_guard_until_they_expire() {
    let s = Stack::create("idempotency").await.store();
    let (a, ea) = placed("a", "cust", 1_000);
    s.create_order(&a, &ea, Some(&idempotency("k", 5_000))).await.expect("created");
    assert_eq!(s.idempotency_record("cust", "k", 4_999).await.expect("read").map(|r| r.location), Some(Some("/x".into())));
    assert_eq!(s.idempotency_record("cust", "k", 5_000).await.expect("read"), None, "expired records are ignored before TTL deletes them");
    assert_eq!(s.idempotency_record("other", "k", 1_000).await.expect("read"), None, "keys are per owner");

    // While live, the key blocks a second order (and that order is not written).
    let (b, eb) = placed("b", "cust", 4_000);
    assert_eq!(s.create_order(&b, &eb, Some(&idempotency("k", 9_000))).await, Err(StoreError::Conflict));
    assert_eq!(s.order("b").await.expect("read"), None);
    // Once expired, the key can be used again.
    let (c, ec) = placed("c", "cust", 6_000);
    s.create_order(&c, &ec, Some(&idempotency("k", 9_000))).await.expect("reused after expiry");
    assert_eq!(s.idempotency_record("cust", "k", 6_000).await.expect("read").map(|r| r.expires_at_ms), Some(9_000));

    let ttl = s.client().describe_time_to_live().table_name(s.table()).send().await.expect("ttl");
    assert_eq!(ttl.time_to_live_description.and_then(|d| d.attribute_name), Some(gocoffee_aws::dynamo::keys::TTL.to_owned()));
}

/// Every record on the stream, per partition key, in shard order.
async fn read_stream(stack: &Stack) -> HashMap<String, Vec<Vec<u8>>> {
    let mut by_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (_, r) in stack.stream_records().await {
        by_key.entry(r.partition_key().unwrap_or_default().to_owned()).or_default().push(r.data().as_ref().to_vec());
    }
    by_key
}

#[tokio::test(flavor = "current_thread")]
async fn the_outbox_relay_publishes_each_orders_events_in_order_on_its_partition() {
    let stack = Stack::create("relay").await;
    let s = stack.store();
    // Three orders, each with three events queued before any relay.
    for i in 0..3 {
        let (o, e1) = placed(&format!("r{i}"), "cust", 10 + i);
        s.create_order(&o, &e1, None).await.expect("created");
        let (o2, e2) = next(&o, OrderEvent::OrderConfirmed, 10 + i);
        let (o3, e3) = next(&o2, OrderEvent::PreparationStarted, 10 + i);
        s.append(&o3, &[e2, e3], 1, None).await.expect("appended");
    }
    // As deployed: every order event on the orders stream and its copy on the analytics stream.
    let publisher = KinesisPublisher::new(stack.clients.kinesis.clone(), &stack.stream_arn).with_copy_to(stack.streams["AnalyticsStream"].1.clone());
    let relay = DynamoOutboxRelay { store: &s, outbox: gocoffee_aws::dynamo::ORDERS_OUTBOX, publisher: &publisher };
    let mut sent = 0;
    for _ in 0..5 {
        sent += relay.relay().await.expect("relay");
    }
    assert_eq!(sent, 9);
    assert_eq!(relay.relay().await.expect("relay"), 0, "the outbox is empty once published");

    let stream = read_stream(&stack).await;
    assert_eq!(stream.len(), 3);
    for (key, records) in &stream {
        let events: Vec<StoredEvent> = records.iter().map(|d| serde_json::from_slice(d).expect("event")).collect();
        assert!(events.iter().all(|e| &e.order_id == key), "partition key = order id");
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3], "{key}: in order");
    }
    let mut copy: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (_, r) in stack.records_of("AnalyticsStream").await {
        copy.entry(r.partition_key().unwrap_or_default().to_owned()).or_default().push(r.data().as_ref().to_vec());
    }
    assert_eq!(copy, stream, "the analytics stream carries the same records, each order's in order");
}

#[tokio::test(flavor = "current_thread")]
async fn the_analytics_table_keeps_the_newest_facts_and_reads_them_day_by_day() {
    use gocoffee_app::analytics::AnalyticsStore;
    use gocoffee_aws::analytics::DynamoAnalyticsStore;
    use gocoffee_core::analytics::OrderFacts;
    let stack = Stack::create("analytics").await;
    let a = DynamoAnalyticsStore::new(stack.clients.dynamodb.clone(), stack.tables["AnalyticsTable"].clone());
    const DAY: i64 = 86_400_000;
    let t0 = 1_764_115_200_000; // 2025-11-26T00:00Z
    let facts = |id: &str, at: i64| {
        let (_, e) = placed(id, "cust", at);
        OrderFacts::apply(None, &e).expect("fold").expect("facts")
    };
    let first = facts("a1", t0 + 3_600_000);
    let (o1, _) = placed("a1", "cust", t0 + 3_600_000);
    let (_, confirmed) = next(&o1, OrderEvent::OrderConfirmed, t0 + 3_600_500);
    let second = OrderFacts::apply(Some(&first), &confirmed).expect("fold").expect("facts");
    assert_eq!(a.save(&second).await, Ok(true));
    assert_eq!(a.save(&first).await, Ok(false), "an older fold never overwrites a newer one");
    assert_eq!(a.save(&second).await, Ok(true), "the same version is written over (a rebuild's fold)");
    assert_eq!(a.facts("a1").await, Ok(Some(second.clone())));
    // Orders on three days, the range cutting into the first and the last.
    for (id, at) in [("a0", t0 - 1), ("a2", t0 + DAY + 5), ("a3", t0 + 2 * DAY), ("a4", t0 + 2 * DAY + 10)] {
        assert_eq!(a.save(&facts(id, at)).await, Ok(true));
    }
    let ids = |mut v: Vec<OrderFacts>| {
        v.sort_by_key(|f| f.placed_at_ms);
        v.into_iter().map(|f| f.order_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(a.placed_between(t0, t0 + 2 * DAY + 10, 100).await.expect("read")), ["a1", "a2", "a3"], "from inclusive, to exclusive");
    assert_eq!(a.placed_between(t0 - DAY, t0 + 3 * DAY, 2).await.expect("read").len(), 2, "at most the limit");
    // More than one clearing step's worth (a Scan page of 500 keys).
    for i in 0..600 {
        a.save(&facts(&format!("b{i}"), t0 + i)).await.expect("save");
    }
    let mut steps = 1;
    while !a.clear_batch().await.expect("clear") {
        steps += 1;
    }
    assert!(steps >= 2, "{steps} steps");
    assert_eq!(a.placed_between(t0 - DAY, t0 + 3 * DAY, 100).await, Ok(vec![]));
    assert_eq!(a.facts("a1").await, Ok(None));
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_relays_publish_each_event_once_and_each_order_in_version_order() {
    let stack = Stack::create("relays").await;
    let s = stack.store();
    let publisher = KinesisPublisher::new(stack.clients.kinesis.clone(), &stack.stream_arn);
    let done = std::cell::Cell::new(false);
    // Three relays (three functions' requests) running over and over while the orders are written.
    let relay_until_done = || async {
        let relay = DynamoOutboxRelay { store: &s, outbox: gocoffee_aws::dynamo::ORDERS_OUTBOX, publisher: &publisher };
        while !done.get() {
            relay.relay().await.expect("relay");
            tokio::task::yield_now().await;
        }
    };
    let write = async {
        let mut orders = Vec::new();
        for i in 0..4 {
            let (o, e) = placed(&format!("c{i}"), "cust", 1_000 - i);
            s.create_order(&o, &e, None).await.expect("created");
            orders.push(o);
        }
        for step in 0..3 {
            for order in orders.iter_mut() {
                // The writers' clocks disagree: later versions carry earlier times.
                let (o, e) = next(order, OrderEvent::OrderConfirmed, 900 - step);
                s.append(&o, &[e], order.version, None).await.expect("appended");
                *order = o;
            }
        }
        done.set(true);
    };
    tokio::join!(relay_until_done(), relay_until_done(), relay_until_done(), write);
    DynamoOutboxRelay { store: &s, outbox: gocoffee_aws::dynamo::ORDERS_OUTBOX, publisher: &publisher }.relay().await.expect("final relay");

    let stream = read_stream(&stack).await;
    assert_eq!(stream.len(), 4);
    for (key, records) in stream {
        let versions: Vec<u64> = records.iter().map(|d| serde_json::from_slice::<StoredEvent>(d).expect("event").version).collect();
        assert_eq!(versions, [1, 2, 3, 4], "{key}: each event once, in version order");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_publisher_keeps_per_key_order_across_batches() {
    let stack = Stack::create("publisher").await;
    let publisher = KinesisPublisher::new(stack.clients.kinesis.clone(), &stack.stream);
    let records: Vec<Record> = (0..1_200).map(|i| Record { partition_key: format!("k{}", i % 7), data: i.to_string().into_bytes() }).collect();
    assert!(publisher.publish(&records).await.into_iter().all(|ok| ok), "every record taken (three PutRecords calls)");
    let stream = read_stream(&stack).await;
    for (key, data) in stream {
        let numbers: Vec<u32> = data.iter().map(|d| String::from_utf8_lossy(d).parse().expect("number")).collect();
        let k: u32 = key[1..].parse().expect("key");
        assert_eq!(numbers, (0..1_200).filter(|i| i % 7 == k).collect::<Vec<_>>(), "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_kitchen_ticket_that_keeps_failing_is_redriven_to_the_dead_letter_queue() {
    let stack = Stack::create("redrive").await;
    let sqs = &stack.clients.sqs;
    let queue = &stack.queues["KitchenQueue"];
    let dlq = &stack.queues["KitchenDeadLetterQueue"];
    let attrs = sqs.get_queue_attributes().queue_url(queue).attribute_names(QueueAttributeName::All).send().await.expect("attributes");
    let attrs = attrs.attributes.expect("attributes");
    let policy: serde_json::Value = serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).expect("redrive policy");
    let max_receives: u32 = policy["maxReceiveCount"].to_string().trim_matches('"').parse().expect("count");
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "60", "created with the template's visibility timeout");

    let queue_port = gocoffee_aws::SqsKitchenQueue::new(sqs.clone(), queue);
    let (_, placed_event) = placed("t1", "cust", 1);
    queue_port.send(&placed_event).await.expect("sent");
    // Each receive without a delete is a failed attempt; the message comes back at once.
    for attempt in 1..=max_receives {
        let got = sqs.receive_message().queue_url(queue).max_number_of_messages(1).send().await.expect("receive");
        let message = got.messages().first().unwrap_or_else(|| panic!("attempt {attempt}: the message is back"));
        let body: StoredEvent = serde_json::from_str(message.body().expect("body")).expect("a placed order");
        assert_eq!(body, placed_event);
        sqs.change_message_visibility()
            .queue_url(queue)
            .receipt_handle(message.receipt_handle().expect("handle"))
            .visibility_timeout(0)
            .send()
            .await
            .expect("release");
    }
    let after = sqs.receive_message().queue_url(queue).send().await.expect("receive");
    assert!(after.messages().is_empty(), "after {max_receives} receives the message left the queue");
    let dead = sqs.receive_message().queue_url(dlq).send().await.expect("receive dlq");
    assert_eq!(dead.messages().len(), 1, "and is in the dead-letter queue");
}

#[tokio::test(flavor = "current_thread")]
async fn presigned_urls_upload_and_download_a_menu_image_over_plain_http() {
    use gocoffee_app::ports::ImageUrls;
    let stack = Stack::create("images").await;
    let images = stack.images();
    let key = "menu/latte/01JD8Z3Q4Y7K2M5P8R1T4V6X9Z.png";
    let image = b"\x89PNG\r\n\x1a\n not really a picture".to_vec();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let upload = images.upload_url(key, "image/png", image.len() as u64, now_ms, 900).expect("upload url");
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Expires=900",
        "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost",
        "X-Amz-Signature=",
        "X-Amz-Security-Token=",
    ] {
        assert!(upload.contains(part), "{part} missing from {upload}");
    }
    assert!(upload.starts_with(&format!("{}/{}/{key}?", gocoffee_tests::aws::moto(), stack.bucket)), "{upload}");
    let put = ureq::put(&upload).header("content-type", "image/png").send(&image[..]).expect("upload");
    assert_eq!(put.status(), 200);

    // Signed at the start of a window: the same URL for every request in it.
    let window_start = now_ms - now_ms % 600_000;
    let download = images.download_url(key, window_start, 3600).expect("download url");
    assert_eq!(download, images.download_url(key, window_start, 3600).expect("again"));
    assert!(download.contains("X-Amz-Expires=3600") && download.contains("X-Amz-SignedHeaders=host"), "{download}");
    let mut got = ureq::get(&download).call().expect("download");
    assert_eq!(got.body_mut().read_to_vec().expect("body"), image, "the same bytes come back");

    assert!(images.upload_url("../escape", "image/png", 1, now_ms, 60).is_err(), "keys are checked before signing");
    let aws = gocoffee_aws::S3Images::new("bucket", "eu-west-1", aws_credential_types::Credentials::new("a", "b", None, None, "t"), None);
    assert!(aws.download_url(key, now_ms, 60).expect("url").starts_with("https://bucket.s3.eu-west-1.amazonaws.com/menu/latte/"));
}

/// Kinesis answers PutRecords per record: a throttled record comes back with an error code while
/// the rest of the call succeeds. moto never throttles, so this stands in for Kinesis on the JSON
/// protocol: its first PutRecords throttles the second record.
#[tokio::test(flavor = "current_thread")]
async fn throttled_records_are_retried_alone_after_a_backoff() {
    use std::io::BufReader;
    use std::sync::{Arc, Mutex};

    use gocoffee_tests::lambda::{read_request, write_response};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let calls: Arc<Mutex<Vec<(std::time::Instant, serde_json::Value)>>> = Arc::default();
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut writer = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            while let Some(req) = read_request(&mut reader) {
                let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
                let n = body["Records"].as_array().map(Vec::len).unwrap_or(0);
                let first = seen.lock().expect("lock").is_empty();
                seen.lock().expect("lock").push((std::time::Instant::now(), body));
                let records: Vec<serde_json::Value> = (0..n)
                    .map(|i| {
                        if first && i == 1 {
                            serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"})
                        } else {
                            serde_json::json!({"SequenceNumber": format!("4960{i}"), "ShardId": "shardId-000000000000"})
                        }
                    })
                    .collect();
                let answer = serde_json::json!({"FailedRecordCount": if first { 1 } else { 0 }, "Records": records});
                let headers = [("content-type".to_owned(), "application/x-amz-json-1.1".to_owned())];
                if write_response(&mut writer, 200, &headers, answer.to_string().as_bytes(), false).is_err() {
                    break;
                }
            }
        }
    });
    let env: HashMap<&str, String> = [
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint),
    ]
    .into_iter()
    .collect();
    let config = gocoffee_aws::AwsEnvironment::from_lookup(|name| env.get(name).cloned()).map(|aws| aws.sdk_config()).expect("config");
    let publisher = KinesisPublisher::new(gocoffee_aws::Clients::new(&config).kinesis, "orders");
    let records: Vec<Record> = ["a", "b", "c"].iter().map(|k| Record { partition_key: k.to_string(), data: k.as_bytes().to_vec() }).collect();
    assert_eq!(publisher.publish(&records).await, [true, true, true], "every record taken in the end");

    let calls = calls.lock().expect("lock");
    assert_eq!(calls.len(), 2, "one retry");
    let keys = |b: &serde_json::Value| {
        b["Records"].as_array().expect("records").iter().map(|r| r["PartitionKey"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(
        (keys(&calls[0].1), keys(&calls[1].1)),
        (vec!["a".to_owned(), "b".into(), "c".into()], vec!["b".to_owned()]),
        "only the throttled record is sent again"
    );
    assert!(calls[1].0.duration_since(calls[0].0) >= std::time::Duration::from_millis(50), "after a backoff");
}

/// DynamoDB in front of moto, for what moto lacks: `ClientRequestToken` on `TransactWriteItems`
/// (a retry with a token seen in the last 10 minutes and the same parameters succeeds without
/// running again, as DynamoDB documents), and a network that loses the answer to the first
/// transaction after it committed, so the SDK retries it. Everything else passes through.
/// With `strip_tokens`, tokens are dropped on the way in: what a client sending none gets. With
/// `lose_first_put`, the answer to the first `PutItem` that committed is lost too.
struct LostAnswerDynamo {
    base: String,
    transactions: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// `PutItem`s that committed.
    puts: std::sync::Arc<std::sync::Mutex<usize>>,
}

impl LostAnswerDynamo {
    fn start(moto: &str, strip_tokens: bool, lose_first_put: bool) -> LostAnswerDynamo {
        use gocoffee_tests::lambda::{read_request, write_response};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let transactions = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
        let tokens = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, serde_json::Value>::new()));
        let puts = std::sync::Arc::new(std::sync::Mutex::new(0usize));
        let (moto, seen, put_count) = (moto.to_owned(), transactions.clone(), puts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (moto, seen, tokens, puts) = (moto.clone(), seen.clone(), tokens.clone(), put_count.clone());
                std::thread::spawn(move || {
                    let Ok(mut writer) = stream.try_clone() else { return };
                    let mut reader = std::io::BufReader::new(stream);
                    while let Some(req) = read_request(&mut reader) {
                        let target = req.headers.iter().find(|(k, _)| k == "x-amz-target").map(|(_, v)| v.clone()).unwrap_or_default();
                        let json = vec![("content-type".to_owned(), "application/x-amz-json-1.0".to_owned())];
                        if target.ends_with(".TransactWriteItems") {
                            let mut body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
                            if strip_tokens {
                                body.as_object_mut().expect("object").remove("ClientRequestToken");
                            }
                            let token = body["ClientRequestToken"].as_str().map(str::to_owned);
                            let first = {
                                let mut seen = seen.lock().expect("lock");
                                seen.push(token.clone());
                                seen.len() == 1
                            };
                            if let Some(t) = &token {
                                let mut params = body.clone();
                                params.as_object_mut().expect("object").remove("ClientRequestToken");
                                if let Some(earlier) = tokens.lock().expect("lock").get(t) {
                                    let (status, answer) = if *earlier == params {
                                        (200, "{}".to_owned())
                                    } else {
                                        (
                                            400,
                                            r#"{"__type":"com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException","message":"changed"}"#
                                                .to_owned(),
                                        )
                                    };
                                    let _ = write_response(&mut writer, status, &json, answer.as_bytes(), false);
                                    continue;
                                }
                                tokens.lock().expect("lock").insert(t.clone(), params);
                            }
                            let req = gocoffee_tests::lambda::HttpRequest { body: serde_json::to_vec(&body).expect("json"), ..req };
                            let (status, headers, answer) = forward(&moto, &req);
                            if first && status == 200 {
                                // Committed, but the answer never reaches the client.
                                let lost = br#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost"}"#;
                                let _ = write_response(&mut writer, 500, &json, lost, false);
                            } else {
                                let _ = write_response(&mut writer, status, &headers, &answer, false);
                            }
                        } else {
                            let (status, headers, answer) = forward(&moto, &req);
                            let lose = target.ends_with(".PutItem") && status == 200 && lose_first_put && {
                                let mut puts = puts.lock().expect("lock");
                                *puts += 1;
                                *puts == 1
                            };
                            if lose {
                                let lost = br#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost"}"#;
                                let _ = write_response(&mut writer, 500, &json, lost, false);
                            } else {
                                let _ = write_response(&mut writer, status, &headers, &answer, false);
                            }
                        }
                    }
                });
            }
        });
        LostAnswerDynamo { base, transactions, puts }
    }
}

fn forward(moto: &str, req: &gocoffee_tests::lambda::HttpRequest) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut builder = ureq::http::Request::builder().method(req.method.as_str()).uri(format!("{moto}{}", req.target));
    for (k, v) in &req.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    let mut resp = agent.run(builder.body(req.body.clone()).expect("request")).expect("moto answers");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, resp.body_mut().read_to_vec().expect("body"))
}

/// A store whose DynamoDB calls go through [`LostAnswerDynamo`].
fn store_behind(dynamo: &LostAnswerDynamo, table: &str) -> gocoffee_aws::DynamoStore {
    let env: HashMap<String, String> =
        gocoffee_tests::aws::moto_env().into_iter().map(|(k, v)| if k == "AWS_ENDPOINT_URL" { (k, dynamo.base.clone()) } else { (k, v) }).collect();
    let config = gocoffee_aws::AwsEnvironment::from_lookup(|name| env.get(name).cloned()).expect("environment").sdk_config();
    gocoffee_aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table)
}

#[tokio::test(flavor = "current_thread")]
async fn a_committed_transaction_whose_answer_is_lost_is_not_reported_as_a_conflict() {
    let stack = Stack::create("token").await;
    let dynamo = LostAnswerDynamo::start(gocoffee_tests::aws::moto(), false, false);
    let s = store_behind(&dynamo, stack.store().table());
    let (order, first) = placed("lost-answer", "cust", 5);
    // The SDK retries the transaction it never heard back from; with the token, DynamoDB answers
    // the retry with success instead of failing its conditions against the committed write.
    assert_eq!(s.create_order(&order, &first, Some(&idempotency("k-lost", 10_000))).await, Ok(()));
    let tokens = dynamo.transactions.lock().expect("lock").clone();
    assert_eq!(tokens.len(), 2, "the SDK retried once: {tokens:?}");
    assert!(tokens[0].is_some() && tokens[0] == tokens[1], "the retry carries the same token: {tokens:?}");
    assert_eq!(s.order("lost-answer").await.expect("read"), Some(order.clone()));
    assert_eq!(s.events("lost-answer").await.expect("read").len(), 1, "written once");
    // A deliberate second attempt by the app is a new transaction, and conflicts as it should.
    assert_eq!(s.create_order(&order, &first, None).await, Err(StoreError::Conflict));

    // The same lost answer without a token: the committed order comes back as a conflict, the
    // defect the token prevents (and what this test would catch if the token went missing).
    let tokenless = LostAnswerDynamo::start(gocoffee_tests::aws::moto(), true, false);
    let s = store_behind(&tokenless, stack.store().table());
    let (order, first) = placed("lost-answer-2", "cust", 6);
    assert_eq!(s.create_order(&order, &first, None).await, Err(StoreError::Conflict));
    assert!(s.order("lost-answer-2").await.expect("read").is_some(), "yet it was committed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_conditional_put_whose_answer_is_lost_is_not_reported_as_a_conflict() {
    let stack = Stack::create("lost-put").await;
    let table = stack.store().table().to_owned();
    // A manager's edit commits, its answer is lost, the SDK retries: the retry's condition fails
    // against the edit itself, which is recognised as this put's own write.
    let dynamo = LostAnswerDynamo::start(gocoffee_tests::aws::moto(), false, true);
    let s = store_behind(&dynamo, &table);
    let latte = s.menu_item("latte").await.expect("read").expect("latte");
    let sold_out = gocoffee_core::MenuItem { available: false, version: 1, ..latte.clone() };
    assert_eq!(s.replace_menu_item(&sold_out, 0).await, Ok(true));
    assert_eq!(*dynamo.puts.lock().expect("lock"), 1, "the put committed once");
    // Another writer's put at that version is still a conflict.
    let renamed = gocoffee_core::MenuItem { name: "Big Latte".into(), version: 1, ..latte };
    assert_eq!(s.replace_menu_item(&renamed, 0).await, Err(StoreError::Conflict));

    // The same for an upload claim: the claim whose answer was lost is still this request's.
    let dynamo = LostAnswerDynamo::start(gocoffee_tests::aws::moto(), false, true);
    let s = store_behind(&dynamo, &table);
    assert_eq!(s.claim_upload("menu/latte/lost.png", 7).await, Ok(()));
    assert_eq!(s.claim_upload("menu/latte/lost.png", 7).await, Err(StoreError::Conflict), "a second claim, even in the same millisecond");
}

#[tokio::test(flavor = "current_thread")]
async fn racing_admissions_on_the_table_admit_no_more_than_the_limit() {
    let s = Stack::create("rates").await.store();
    let limit = RateLimit { requests: 5, per_ms: 3_600_000, burst: 5 };
    let now = 1_700_000_000_000;
    let key = "credentials:addr:203.0.113.7";
    // Twenty admissions in flight at once, each its own conditional updates on the one item.
    let race = |at: i64| {
        let s = s.clone();
        async move {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let tasks: Vec<_> = (0..20)
                        .map(|_| {
                            let s = s.clone();
                            tokio::task::spawn_local(async move { s.admit(key, &limit, at).await })
                        })
                        .collect();
                    let mut admitted = 0;
                    for t in tasks {
                        if t.await.expect("task").expect("admit") == Admission::Admitted {
                            admitted += 1;
                        }
                    }
                    admitted
                })
                .await
        }
    };
    assert_eq!(race(now).await, 5, "twenty racing requests, a burst of five");
    assert_eq!(s.admit(key, &limit, now).await, Ok(Admission::Refused { retry_after_ms: 720_000 }), "one interval to wait");
    assert_eq!(s.admit(key, &limit, now + 720_000).await, Ok(Admission::Admitted));
    assert_eq!(s.admit("credentials:addr:198.51.100.1", &limit, now).await, Ok(Admission::Admitted), "keys are apart");

    // The item expires (TTL) a minute after its arrival time, when it no longer matters.
    let item = s.get(gocoffee_aws::dynamo::key(format!("{}{key}", gocoffee_aws::ratelimit::PREFIX), "RATE")).await.expect("read").expect("item");
    let tat = gocoffee_aws::dynamo::get_n(&item, "tat").expect("tat");
    let expires_s = gocoffee_aws::dynamo::get_n(&item, gocoffee_aws::dynamo::keys::TTL).expect("ttl");
    assert_eq!(tat, now + 6 * 720_000);
    assert!(expires_s * 1000 >= tat && expires_s * 1000 <= tat + 61_000, "expires at {expires_s} s, tat {tat} ms");

    // Idle past its arrival time, the key starts afresh with its whole burst.
    assert_eq!(race(now + 10 * 3_600_000).await, 5);
}

/// Live status's connections on their own table, with the SQL store's semantics, and a push to a
/// connection API Gateway no longer has: `GoneException`, which the notifier forgets it for.
#[tokio::test(flavor = "current_thread")]
async fn connections_follow_channels_until_forgotten_and_a_closed_one_is_gone() {
    use gocoffee_app::Caller;
    use gocoffee_app::live::sockets::{Connection, ConnectionStore, PushError, Pusher};
    use gocoffee_aws::live::{DynamoConnections, ManagementApi};
    let stack = Stack::create("connections").await;
    let store = DynamoConnections::new(stack.clients.dynamodb.clone(), stack.tables["ConnectionsTable"].clone());
    let connection = |id: &str, role: Role, expires_at_ms| Connection { id: id.into(), caller: Caller { user_id: format!("u-{id}"), role }, expires_at_ms };
    // API Gateway's ids are base64: `=`, `+` and `/` among them.
    let (a, k) = (connection("a+/=", Role::Customer, 10_000), connection("k", Role::Barista, 10_000));
    for c in [&a, &k] {
        store.save_connection(c).await.expect("save");
    }
    assert_eq!(store.connection("a+/=", 5_000).await, Ok(Some(a.clone())));
    assert_eq!(store.connection("a+/=", 10_000).await, Ok(None), "expired");
    assert_eq!(store.connection("x", 0).await, Ok(None));
    assert_eq!(store.subscribe(&a, "order:1", 2).await, Ok(true));
    assert_eq!(store.subscribe(&a, "order:1", 2).await, Ok(true), "twice is once");
    assert_eq!(store.subscribe(&a, "order:2", 2).await, Ok(true));
    assert_eq!(store.subscribe(&a, "order:3", 2).await, Ok(false), "over the limit");
    assert_eq!(store.subscribe(&k, "kitchen", 2).await, Ok(true));
    assert_eq!(store.subscribe(&k, "order:1", 2).await, Ok(true));
    let mut followers = store.subscribers("order:1", 5_000).await.expect("followers");
    followers.sort();
    assert_eq!(followers, ["a+/=", "k"]);
    assert_eq!(store.subscribers("order:1", 10_000).await, Ok(vec![]), "expired connections follow nothing");
    store.unsubscribe("k", "order:1").await.expect("unsubscribe");
    assert_eq!(store.subscribers("order:1", 5_000).await, Ok(vec!["a+/=".to_owned()]));
    store.forget("a+/=").await.expect("forget");
    store.forget("a+/=").await.expect("forgetting twice is fine");
    assert_eq!(store.connection("a+/=", 5_000).await, Ok(None));
    assert_eq!(store.subscribers("order:1", 5_000).await, Ok(vec![]));
    assert_eq!(store.subscribers("kitchen", 5_000).await, Ok(vec!["k".to_owned()]));

    // The management API of a stage with no connection open.
    let gateway = std::sync::Arc::new(gocoffee_tests::apigw_ws::SocketGateway::new("api", "live", "live"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base = gateway.clone().serve(std::sync::Arc::new(HashMap::new()), stop);
    let sdk = gocoffee_aws::AwsEnvironment::from_lookup(|name| gocoffee_tests::aws::moto_env().into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
        .expect("environment")
        .sdk_config();
    let pusher = ManagementApi::new(&sdk, &format!("{base}/live"));
    assert_eq!(pusher.push("a+/=", b"{}").await, Err(PushError::Gone));
    let unreachable = ManagementApi::new(&sdk, "http://127.0.0.1:9/live");
    assert!(matches!(unreachable.push("k", b"{}").await, Err(PushError::Unavailable(_))));
}

/// The AI function's store on the table: each caller's sessions apart, the day's usage added up
/// by concurrent callers, the breaker kept, and each exchange's insight queued with the session
/// and relayed to the `ai` stream.
#[tokio::test(flavor = "current_thread")]
async fn the_ai_store_keeps_sessions_per_caller_adds_usage_atomically_and_relays_insights() {
    use gocoffee_ai::guard::{Breaker, Usage, UsageLedger};
    use gocoffee_ai::model::Speaker;
    use gocoffee_ai::store::{AiStore, Insight, StoredTurn};

    let stack = Stack::create("ai-store").await;
    let store = gocoffee_ai::aws::DynamoAiStore::new(stack.store());
    let turn = |speaker, text: &str, at_ms| StoredTurn { speaker, text: text.into(), agent: Some("search".into()), at_ms };
    let insight = |id: &str| Insight {
        id: id.into(),
        agent: "search".into(),
        kind: "search_results".into(),
        subject: "menu".into(),
        summary: "3 items".into(),
        data: serde_json::json!({"items": ["flat-white"]}),
        confidence: 0.8,
        model: "fallback".into(),
        window: None,
        time: 1_000,
        traceparent: None,
    };
    let turns = [turn(Speaker::User, "vegan?", 1), turn(Speaker::Assistant, "Avocado toast.", 2)];
    store.save_exchange("ada", "s1", &turns, &insight("i1")).await.expect("saved");
    store.save_exchange("ada", "s1", &turns[1..], &insight("i2")).await.expect("replaced");
    assert_eq!(store.turns("ada", "s1").await.expect("turns"), turns[1..], "the session holds the last save's turns");
    assert_eq!(store.turns("bob", "s1").await.expect("turns"), [], "another caller's session id reads as a new session");

    // Usage from ten callers at once: every one counts.
    let day = 20_420;
    let adds = (0..10).map(|_| store.add(day, Usage { calls: 1, tokens: 30, cost_micros: 7 }));
    for r in futures_util::future::join_all(adds).await {
        r.expect("added");
    }
    assert_eq!(store.usage(day).await.expect("usage"), Usage { calls: 10, tokens: 300, cost_micros: 70 });
    assert_eq!(store.usage(day + 1).await.expect("usage"), Usage::default());
    assert_eq!(store.breaker("m").await.expect("breaker"), Breaker::default());
    store.set_breaker("m", Breaker { failures: 3, open_until_ms: 99 }).await.expect("set");
    assert_eq!(store.breaker("m").await.expect("breaker"), Breaker { failures: 3, open_until_ms: 99 });

    // Both insights go out on the ai stream, keyed by their ids.
    let publisher = KinesisPublisher::new(stack.clients.kinesis.clone(), stack.streams["AiStream"].1.clone());
    let relay = DynamoOutboxRelay { store: &stack.store(), outbox: gocoffee_aws::dynamo::AI_OUTBOX, publisher: &publisher };
    assert_eq!(relay.relay().await.expect("relay"), 2);
    assert_eq!(relay.relay().await.expect("relay"), 0);
    let mut published: Vec<(String, Insight)> = stack
        .records_of("AiStream")
        .await
        .into_iter()
        .map(|(_, r)| (r.partition_key().unwrap_or_default().to_owned(), serde_json::from_slice(r.data().as_ref()).expect("an insight")))
        .collect();
    published.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(published, [("i1".to_owned(), insight("i1")), ("i2".to_owned(), insight("i2"))]);
}
