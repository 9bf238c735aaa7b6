//! What the AI layer keeps: each session's recent turns (the conversation context, per caller)
//! and the insights its agents publish, which go out on the `ai` stream through the same
//! transactional outbox as order events. The usage ledger ([`crate::guard::UsageLedger`]) is the
//! third part; the SQL adapter ([`crate::sql`]) implements all three on one database.

use std::cell::RefCell;

use async_trait::async_trait;
use gocoffee_app::ports::StoreResult;
use serde::{Deserialize, Serialize};

use crate::model::{Speaker, Turn};

/// The stream insights are published on (Kinesis on AWS, a Redis channel on Spin, the host's log).
pub const AI_CHANNEL: &str = "ai";

/// One turn as a session keeps it: who said what, and which agent answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTurn {
    pub speaker: Speaker,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub at_ms: i64,
}

impl StoredTurn {
    pub fn turn(&self) -> Turn {
        Turn { speaker: self.speaker, text: self.text.clone() }
    }
}

/// The window an insight covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

/// The one envelope every agent's result is published in on the `ai` stream (README, "AI").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    /// Unique (a ULID): consumers drop a redelivery by it.
    pub id: String,
    pub agent: String,
    /// What sort of result: `search_results`, `answer`, `handoff`, `sales_answer`, `anomaly`, ...
    pub kind: String,
    /// What it is about: a menu item, `menu`, `knowledge`, `sales`, ...
    pub subject: String,
    pub summary: String,
    pub data: serde_json::Value,
    /// 0 to 1.
    pub confidence: f32,
    /// The model that produced it (`fallback` when none did).
    pub model: String,
    /// The period the data covers, when it covers one (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// When it was made (milliseconds since the epoch).
    pub time: i64,
    /// The request's W3C trace context, so a consumer continues its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[async_trait(?Send)]
pub trait AiStore {
    /// The session's turns, oldest first, if it is `user_id`'s (another caller's session id
    /// reads as a new, empty one).
    async fn turns(&self, user_id: &str, session_id: &str) -> StoreResult<Vec<StoredTurn>>;
    /// Replaces the session's turns with `turns` (the trimmed context) and queues `insight` on
    /// the `ai` stream, in one write.
    async fn save_exchange(&self, user_id: &str, session_id: &str, turns: &[StoredTurn], insight: &Insight) -> StoreResult<()>;
}

/// Everything the AI layer keeps, in one store: sessions and insights, and the models' usage.
pub trait AiState: AiStore + crate::guard::UsageLedger {}

impl<T: AiStore + crate::guard::UsageLedger> AiState for T {}

/// In memory, for unit tests of the agents and the orchestrator.
#[derive(Default)]
pub struct MemoryAiStore {
    pub sessions: RefCell<std::collections::HashMap<(String, String), Vec<StoredTurn>>>,
    pub published: RefCell<Vec<Insight>>,
}

#[async_trait(?Send)]
impl AiStore for MemoryAiStore {
    async fn turns(&self, user_id: &str, session_id: &str) -> StoreResult<Vec<StoredTurn>> {
        Ok(self.sessions.borrow().get(&(user_id.to_owned(), session_id.to_owned())).cloned().unwrap_or_default())
    }

    async fn save_exchange(&self, user_id: &str, session_id: &str, turns: &[StoredTurn], insight: &Insight) -> StoreResult<()> {
        self.sessions.borrow_mut().insert((user_id.to_owned(), session_id.to_owned()), turns.to_vec());
        self.published.borrow_mut().push(insight.clone());
        Ok(())
    }
}
