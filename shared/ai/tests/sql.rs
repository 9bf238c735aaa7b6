//! The AI layer's SQL adapter on real SQLite: sessions per caller, the usage ledger that adds up
//! across connections, the breaker, and insights that go out on the `ai` channel through the
//! orders' outbox relay.

use std::cell::RefCell;

use gocoffee_ai::guard::{Breaker, Usage, UsageLedger};
use gocoffee_ai::model::Speaker;
use gocoffee_ai::sql::SqlAiStore;
use gocoffee_ai::store::{AiStore, Insight, StoredTurn};
use gocoffee_app::ports::EventRelay;
use gocoffee_sql::rusqlite::Sqlite;
use gocoffee_sql::{Publisher, SqliteOutboxRelay};

fn db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gocoffee-ai-sql-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("default.db")
}

struct Recorded(RefCell<Vec<(String, Vec<u8>)>>);

impl Publisher for &Recorded {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        self.0.borrow_mut().push((channel.to_owned(), payload.to_vec()));
        Ok(())
    }
}

fn insight(id: &str) -> Insight {
    Insight {
        id: id.into(),
        agent: "search".into(),
        kind: "search_results".into(),
        subject: "menu".into(),
        summary: "Try Avocado Toast.".into(),
        data: serde_json::json!({"items": [{"id": "avocado-toast"}]}),
        confidence: 0.9,
        model: "all-minilm-l6-v2".into(),
        window: None,
        time: 1_000,
        traceparent: None,
    }
}

#[test]
fn sessions_belong_to_their_caller_and_insights_go_out_on_the_ai_channel() {
    let path = db("sessions");
    let store = SqlAiStore::open(Sqlite::open(&path)).expect("schema");
    let turns = vec![
        StoredTurn { speaker: Speaker::User, text: "vegan food?".into(), agent: None, at_ms: 1 },
        StoredTurn { speaker: Speaker::Assistant, text: "Try Avocado Toast.".into(), agent: Some("search".into()), at_ms: 2 },
    ];
    pollster::block_on(store.save_exchange("ada", "s1", &turns, &insight("i1"))).expect("saved");
    assert_eq!(pollster::block_on(store.turns("ada", "s1")).expect("turns"), turns);
    assert!(pollster::block_on(store.turns("bob", "s1")).expect("turns").is_empty(), "another caller's session reads as empty");
    // A later exchange replaces the session's turns with the trimmed ones it was given.
    pollster::block_on(store.save_exchange("ada", "s1", &turns[1..], &insight("i2"))).expect("saved");
    assert_eq!(pollster::block_on(store.turns("ada", "s1")).expect("turns"), turns[1..]);

    let db = Sqlite::open(&path);
    let sent = Recorded(RefCell::new(Vec::new()));
    let relay = SqliteOutboxRelay { db: &db, publisher: &sent };
    assert_eq!(pollster::block_on(relay.relay()).expect("relayed"), 2);
    let sent = sent.0.into_inner();
    assert!(sent.iter().all(|(channel, _)| channel == "ai"));
    let first: Insight = serde_json::from_slice(&sent[0].1).expect("an insight");
    assert_eq!(first, insight("i1"));
}

#[test]
fn usage_adds_up_across_connections_and_the_breaker_is_kept() {
    let path = db("usage");
    let a = SqlAiStore::open(Sqlite::open(&path)).expect("schema");
    let b = SqlAiStore::open(Sqlite::open(&path)).expect("schema");
    pollster::block_on(a.add(7, Usage { calls: 1, tokens: 100, cost_micros: 30 })).expect("added");
    pollster::block_on(b.add(7, Usage { calls: 2, tokens: 50, cost_micros: 20 })).expect("added");
    assert_eq!(pollster::block_on(a.usage(7)).expect("usage"), Usage { calls: 3, tokens: 150, cost_micros: 50 });
    assert_eq!(pollster::block_on(a.usage(8)).expect("usage"), Usage::default());
    let open = Breaker { failures: 3, open_until_ms: 99 };
    pollster::block_on(a.set_breaker("m", open)).expect("set");
    assert_eq!(pollster::block_on(b.breaker("m")).expect("breaker"), open);
    pollster::block_on(b.set_breaker("m", Breaker::default())).expect("set");
    assert_eq!(pollster::block_on(a.breaker("m")).expect("breaker"), Breaker::default());
}
