//! The model ports every agent goes through: a language model that generates text within a token
//! limit and a timeout, and an embedding model. Adapters: Spin's `fermyon:spin/llm@2.0.0` (Spin
//! and the local host), Amazon Bedrock on Lambda, and [`Fallback`], which needs no model service
//! at all and always answers from the passages it is given.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::retrieve::{Bm25, Document, ranked};

/// Who said a turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// A passage an answer may be grounded in, cited by its id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// What a language model is asked: instructions, the conversation so far, the new request, and
/// the passages it must ground its answer in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prompt {
    pub system: String,
    pub history: Vec<Turn>,
    pub request: String,
    pub context: Vec<Source>,
}

impl Prompt {
    /// The prompt as one text, for models that take a single string (Spin's `infer`): the
    /// instructions, the numbered passages, the conversation, and the request.
    pub fn render(&self) -> String {
        let mut out = self.instructions();
        for t in &self.history {
            let who = match t.speaker {
                Speaker::User => "User",
                Speaker::Assistant => "Assistant",
            };
            out.push_str(&format!("\n{who}: {}", t.text));
        }
        out.push_str(&format!("\nUser: {}\nAssistant:", self.request));
        out
    }

    /// The instructions, then the numbered passages to cite: the system text of models that
    /// take one (Bedrock's Converse), the start of [`Prompt::render`].
    pub fn instructions(&self) -> String {
        let mut out = self.system.clone();
        if !self.context.is_empty() {
            out.push_str("\n\nPassages:\n");
            for s in &self.context {
                out.push_str(&format!("[{}] {}: {}\n", s.id, s.title, s.text));
            }
        }
        out
    }

    /// A rough count of the tokens the prompt costs (four characters a token, the usual rule of
    /// thumb for English), for budgets checked before a call.
    pub fn estimated_tokens(&self) -> u32 {
        estimate_tokens(&self.render())
    }
}

/// About how many tokens `text` is: a quarter of its characters, rounded up.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4)
}

/// How much a call may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The most tokens the answer may have.
    pub max_tokens: u32,
    /// How long the call may take; an adapter abandons it after this, and a slower answer
    /// counts as a failure for the circuit breaker.
    pub timeout: std::time::Duration,
    pub temperature: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_tokens: 256, timeout: std::time::Duration::from_secs(10), temperature: 0.2 }
    }
}

/// What a language model answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    /// The model that answered (`fallback` for [`Fallback`]).
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Vectors, one per input text, and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
    pub prompt_tokens: u32,
}

/// Why a model call gave no answer. Every kind leaves the agent to fall back; none reaches the
/// caller as a 500.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The platform has no such model, or this function may not use it (`ai_models`).
    #[error("model not supported: {0}")]
    NotSupported(String),
    /// The model service refused the input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No answer within the call's timeout.
    #[error("timed out")]
    Timeout,
    /// The service is throttling this account.
    #[error("throttled")]
    Throttled,
    /// The service failed or is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call would take the request or the day over its budget.
    #[error("over budget: {0}")]
    OverBudget(String),
    /// Recent calls failed; the breaker stays open until its cool-down ends.
    #[error("circuit open")]
    CircuitOpen,
}

impl ModelError {
    /// A short label for logs, metrics and the `fallback` field of answers.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::NotSupported(_) => "not_supported",
            ModelError::InvalidInput(_) => "invalid_input",
            ModelError::Timeout => "timeout",
            ModelError::Throttled => "throttled",
            ModelError::Unavailable(_) => "unavailable",
            ModelError::OverBudget(_) => "over_budget",
            ModelError::CircuitOpen => "circuit_open",
        }
    }

    /// Whether the failure says something about the model service's health (and so counts
    /// toward opening the breaker). A refused input or a budget says nothing about it.
    pub fn is_service_failure(&self) -> bool {
        matches!(self, ModelError::Timeout | ModelError::Throttled | ModelError::Unavailable(_))
    }
}

/// A model that generates text.
#[async_trait(?Send)]
pub trait LanguageModel {
    /// The model's name as its platform knows it.
    fn name(&self) -> &str;
    async fn generate(&self, prompt: &Prompt, limits: &Limits) -> Result<Generation, ModelError>;
}

/// A model that turns texts into vectors.
#[async_trait(?Send)]
pub trait Embedder {
    fn name(&self) -> &str;
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, ModelError>;
}

/// The model of last resort: no service, no randomness. It answers with the passage of its
/// prompt's context that best matches the request (BM25), in a fixed template, or says it has
/// nothing to go on. Agents use it when no model is configured or the configured one fails, and
/// say so in their answer.
pub struct Fallback;

pub const FALLBACK_MODEL: &str = "fallback";

impl Fallback {
    /// The answer, without the async trait around it.
    pub fn answer(prompt: &Prompt) -> Generation {
        let docs: Vec<Document> =
            prompt.context.iter().map(|s| Document { id: s.id.clone(), title: s.title.clone(), body: s.text.clone(), tags: vec![] }).collect();
        let best = ranked(&Bm25::new(&docs).scores(&prompt.request), 0.0).first().copied().or(if docs.is_empty() { None } else { Some(0) });
        let text = match best {
            Some(i) => format!("{} [{}]", prompt.context[i].text, prompt.context[i].id),
            None => "I don't have anything on that, sorry.".to_owned(),
        };
        Generation { text, model: FALLBACK_MODEL.to_owned(), prompt_tokens: 0, completion_tokens: 0 }
    }
}

#[async_trait(?Send)]
impl LanguageModel for Fallback {
    fn name(&self) -> &str {
        FALLBACK_MODEL
    }

    async fn generate(&self, prompt: &Prompt, _limits: &Limits) -> Result<Generation, ModelError> {
        Ok(Fallback::answer(prompt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str, title: &str, text: &str) -> Source {
        Source { id: id.into(), title: title.into(), text: text.into() }
    }

    #[test]
    fn the_fallback_answers_from_the_best_passage_and_cites_it() {
        let prompt = Prompt {
            request: "when do you open on sunday?".into(),
            context: vec![source("milk", "Milk", "We have oat, soy and almond milk."), source("hours", "Opening hours", "Sunday 8am to 4pm.")],
            ..Prompt::default()
        };
        let answer = pollster::block_on(Fallback.generate(&prompt, &Limits::default())).expect("always answers");
        assert_eq!(answer.text, "Sunday 8am to 4pm. [hours]");
        assert_eq!(answer.model, FALLBACK_MODEL);
        let nothing = Fallback::answer(&Prompt { request: "hi".into(), ..Prompt::default() });
        assert!(nothing.text.contains("don't have"));
    }

    #[test]
    fn a_prompt_renders_passages_history_and_request_in_order() {
        let prompt = Prompt {
            system: "Be brief.".into(),
            history: vec![Turn { speaker: Speaker::User, text: "hi".into() }, Turn { speaker: Speaker::Assistant, text: "hello".into() }],
            request: "latte?".into(),
            context: vec![source("latte", "Caffè Latte", "Espresso and milk.")],
        };
        let text = prompt.render();
        let at = |s: &str| text.find(s).unwrap_or(usize::MAX);
        assert!(at("Be brief.") < at("[latte]") && at("[latte]") < at("User: hi") && at("Assistant: hello") < at("User: latte?"));
        assert!(text.ends_with("Assistant:"));
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
