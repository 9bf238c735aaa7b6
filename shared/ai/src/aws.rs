//! The AI function on AWS. The model ports on Amazon Bedrock: text through the Converse API (any
//! model Converse serves: the prompt's instructions and passages as the system text, the
//! session's turns as messages), embeddings through InvokeModel with Amazon Titan Text
//! Embeddings (`amazon.titan-embed-text-v2:0`, one text per call). Both give up after their
//! timeout, and every failure becomes a [`ModelError`] the guard and the agents understand.
//! Its store on the main DynamoDB table ([`DynamoAiStore`]: sessions, the usage ledger, the
//! breakers, insights through the `ai` outbox to the `ai` Kinesis stream), and its Lambda entry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message, StopReason, SystemContentBlock};
use futures_util::{StreamExt, TryStreamExt};
use gocoffee_app::ports::StoreResult;
use gocoffee_aws::analytics::DynamoAnalyticsStore;
use gocoffee_aws::dynamo::{AI_OUTBOX, DynamoStore, Item, doc, get_n, key, keys, n, now_s, outbox_entry, sdk, to_doc};
use gocoffee_aws::lambda::{block_on, http_with_extension, init};
use serde::Deserialize;

use crate::guard::{Breaker, Policy, Usage, UsageLedger};
use crate::model::{Embedder, Embeddings, Generation, LanguageModel, Limits, ModelError, Prompt, Speaker};
use crate::orchestrator::{AiContext, FUNCTION};
use crate::store::{AiStore, Insight, StoredTurn};

/// Titan's text embedding model, version 2 (1,024 dimensions unless asked for fewer).
pub const TITAN_EMBED_V2: &str = "amazon.titan-embed-text-v2:0";

/// How many embedding calls run at once.
const EMBED_CONCURRENCY: usize = 8;

/// How many vectors a container keeps: the agents' descriptions, the menu and the knowledge
/// base (a few hundred texts) are embedded once per container, not once per request.
const EMBED_CACHE: usize = 4_096;

/// A Bedrock error as the ports see it, from its error code (`x-amzn-errortype`).
fn model_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> ModelError {
    match &e {
        SdkError::TimeoutError(_) => ModelError::Timeout,
        SdkError::ServiceError(service) => {
            let err = service.err();
            let message = err.message().unwrap_or("no message").to_owned();
            match err.code().unwrap_or_default() {
                "ThrottlingException" | "ModelNotReadyException" | "ServiceQuotaExceededException" => ModelError::Throttled,
                "ValidationException" => ModelError::InvalidInput(message),
                // No access to the model in this account and region, or no such model.
                "AccessDeniedException" | "ResourceNotFoundException" => ModelError::NotSupported(message),
                "ModelTimeoutException" => ModelError::Timeout,
                code => ModelError::Unavailable(format!("{code}: {message}")),
            }
        }
        _ => ModelError::Unavailable(format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e))),
    }
}

/// A text model on Bedrock's Converse API.
pub struct BedrockModel {
    client: Client,
    model_id: String,
}

impl BedrockModel {
    pub fn new(client: Client, model_id: impl Into<String>) -> BedrockModel {
        BedrockModel { client, model_id: model_id.into() }
    }
}

/// Converse's system text: the instructions, then the numbered passages to cite.
fn system(prompt: &Prompt) -> Vec<SystemContentBlock> {
    let text = prompt.instructions();
    if text.is_empty() { vec![] } else { vec![SystemContentBlock::Text(text)] }
}

/// Converse's messages: the conversation, then the request. Converse wants them to start with
/// the user and to alternate, so a leading answer is dropped and turns of one speaker in a row
/// (a session cut mid-exchange) are joined.
fn messages(prompt: &Prompt) -> Result<Vec<Message>, ModelError> {
    let mut turns: Vec<(ConversationRole, String)> = Vec::new();
    let all = prompt.history.iter().map(|t| (t.speaker, t.text.as_str())).chain([(Speaker::User, prompt.request.as_str())]);
    for (speaker, text) in all {
        let role = match speaker {
            Speaker::User => ConversationRole::User,
            Speaker::Assistant => ConversationRole::Assistant,
        };
        match turns.last_mut() {
            None if role == ConversationRole::Assistant => {}
            Some((last, joined)) if *last == role => {
                joined.push_str("\n\n");
                joined.push_str(text);
            }
            _ => turns.push((role, text.to_owned())),
        }
    }
    turns
        .into_iter()
        .map(|(role, text)| Message::builder().role(role).content(ContentBlock::Text(text)).build().map_err(|e| ModelError::InvalidInput(e.to_string())))
        .collect()
}

#[async_trait(?Send)]
impl LanguageModel for BedrockModel {
    fn name(&self) -> &str {
        &self.model_id
    }

    async fn generate(&self, prompt: &Prompt, limits: &Limits) -> Result<Generation, ModelError> {
        let config = InferenceConfiguration::builder().max_tokens(i32::try_from(limits.max_tokens).unwrap_or(i32::MAX)).temperature(limits.temperature).build();
        let call = self
            .client
            .converse()
            .model_id(&self.model_id)
            .set_system(Some(system(prompt)))
            .set_messages(Some(messages(prompt)?))
            .inference_config(config)
            .send();
        let out = tokio::time::timeout(limits.timeout, call).await.map_err(|_| ModelError::Timeout)?.map_err(model_error)?;
        // A filtered answer is no answer: the agent falls back to its grounded template.
        if matches!(out.stop_reason, StopReason::ContentFiltered | StopReason::GuardrailIntervened) {
            return Err(ModelError::InvalidInput(format!("the answer was stopped: {}", out.stop_reason.as_str())));
        }
        let text = match &out.output {
            Some(ConverseOutput::Message(m)) => m.content.iter().filter_map(|c| c.as_text().ok()).map(String::as_str).collect::<Vec<_>>().join(""),
            _ => String::new(),
        };
        if text.trim().is_empty() {
            return Err(ModelError::Unavailable("the model answered no text".into()));
        }
        let (prompt_tokens, completion_tokens) = out
            .usage
            .as_ref()
            .map_or((prompt.estimated_tokens(), crate::model::estimate_tokens(&text)), |u| (u.input_tokens.max(0) as u32, u.output_tokens.max(0) as u32));
        Ok(Generation { text, model: self.model_id.clone(), prompt_tokens, completion_tokens })
    }
}

/// Amazon Titan Text Embeddings through InvokeModel, one call per text (the model takes one),
/// [`EMBED_CONCURRENCY`] at a time, with the container's vectors kept by text.
pub struct TitanEmbedder {
    client: Client,
    model_id: String,
    /// 1024 (the model's default), 512 or 256.
    dimensions: Option<u32>,
    timeout: Duration,
    cache: RefCell<HashMap<String, Vec<f32>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: u32,
}

impl TitanEmbedder {
    pub fn new(client: Client, model_id: impl Into<String>, dimensions: Option<u32>, timeout: Duration) -> TitanEmbedder {
        TitanEmbedder { client, model_id: model_id.into(), dimensions, timeout, cache: RefCell::new(HashMap::new()) }
    }

    async fn one(&self, text: &str) -> Result<TitanAnswer, ModelError> {
        let mut body = serde_json::json!({ "inputText": text, "normalize": true });
        if let Some(d) = self.dimensions {
            body["dimensions"] = d.into();
        }
        let call = self
            .client
            .invoke_model()
            .model_id(&self.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(serde_json::to_vec(&body).map_err(|e| ModelError::InvalidInput(e.to_string()))?))
            .send();
        let out = tokio::time::timeout(self.timeout, call).await.map_err(|_| ModelError::Timeout)?.map_err(model_error)?;
        serde_json::from_slice(out.body.as_ref()).map_err(|e| ModelError::Unavailable(format!("the embedding answer is not Titan's: {e}")))
    }
}

#[async_trait(?Send)]
impl Embedder for TitanEmbedder {
    fn name(&self) -> &str {
        &self.model_id
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, ModelError> {
        let missing: Vec<&String> = {
            let cache = self.cache.borrow();
            let mut m: Vec<&String> = texts.iter().filter(|t| !cache.contains_key(*t)).collect();
            m.sort();
            m.dedup();
            m
        };
        let answers: Vec<(&String, TitanAnswer)> = futures_util::stream::iter(missing.into_iter().map(|t| async move { self.one(t).await.map(|a| (t, a)) }))
            .buffered(EMBED_CONCURRENCY)
            .try_collect()
            .await?;
        let prompt_tokens = answers.iter().map(|(_, a)| a.input_text_token_count).sum();
        let mut cache = self.cache.borrow_mut();
        if cache.len() + answers.len() > EMBED_CACHE {
            cache.clear();
        }
        let mut fresh: HashMap<&String, Vec<f32>> = HashMap::new();
        for (text, answer) in answers {
            cache.insert(text.clone(), answer.embedding.clone());
            fresh.insert(text, answer.embedding);
        }
        let vectors = texts.iter().map(|t| fresh.get(t).or_else(|| cache.get(t)).cloned().unwrap_or_default()).collect();
        Ok(Embeddings { vectors, model: self.model_id.clone(), prompt_tokens })
    }
}

// ------------------------------------------------------------------ the store

/// How long an idle session is kept (DynamoDB's TTL removes it after).
const SESSION_TTL_S: i64 = 7 * 24 * 3600;
/// How long a day's usage is kept: the month's bill, and some.
const USAGE_TTL_S: i64 = 40 * 24 * 3600;

/// The AI layer's items on the main table, each in its own partition:
/// - `AISESSION#{user id}` / `SESSION#{session id}`: the session's turns, one document (at most
///   [`crate::orchestrator::CONTEXT_TURNS`] of them), expiring a week after the last;
/// - `AIUSAGE#{day}` / `USAGE`: the day's calls, tokens and cost, added with `ADD`;
/// - `AIBREAKER#{model}` / `BREAKER`: the model's consecutive failures and open-until;
/// - insights in the `ai` outbox (`OUTBOX#ai`), written in the session's transaction and relayed
///   to the `ai` stream after the request, keyed by their id.
#[derive(Clone, Debug)]
pub struct DynamoAiStore {
    table: DynamoStore,
}

impl DynamoAiStore {
    pub fn new(table: DynamoStore) -> DynamoAiStore {
        DynamoAiStore { table }
    }
}

fn session_key(user_id: &str, session_id: &str) -> Item {
    key(format!("AISESSION#{user_id}"), &format!("SESSION#{session_id}"))
}

fn usage_key(day: i64) -> Item {
    key(format!("AIUSAGE#{day}"), "USAGE")
}

fn breaker_key(model: &str) -> Item {
    key(format!("AIBREAKER#{model}"), "BREAKER")
}

/// A counter attribute, absent as zero.
fn count(item: &Item, name: &str) -> StoreResult<u64> {
    if !item.contains_key(name) {
        return Ok(0);
    }
    Ok(get_n(item, name)?.max(0) as u64)
}

#[async_trait(?Send)]
impl AiStore for DynamoAiStore {
    async fn turns(&self, user_id: &str, session_id: &str) -> StoreResult<Vec<StoredTurn>> {
        match self.table.get(session_key(user_id, session_id)).await? {
            Some(item) => doc(&item),
            None => Ok(vec![]),
        }
    }

    async fn save_exchange(&self, user_id: &str, session_id: &str, turns: &[StoredTurn], insight: &Insight) -> StoreResult<()> {
        let mut session = session_key(user_id, session_id);
        session.insert("doc".into(), to_doc(&turns)?);
        session.insert(keys::TTL.into(), n(now_s() + SESSION_TTL_S));
        let put = |item| aws_sdk_dynamodb::types::TransactWriteItem::builder().put(self.table.put(item)).build();
        let entry = outbox_entry(AI_OUTBOX, &insight.id, 1, to_doc(insight)?);
        self.table.transact(vec![put(session), put(entry)]).await
    }
}

#[async_trait(?Send)]
impl UsageLedger for DynamoAiStore {
    async fn usage(&self, day: i64) -> StoreResult<Usage> {
        let Some(item) = self.table.get(usage_key(day)).await? else { return Ok(Usage::default()) };
        Ok(Usage { calls: count(&item, "calls")?, tokens: count(&item, "tokens")?, cost_micros: count(&item, "cost_micros")? })
    }

    /// One `ADD` of all three counters: concurrent calls from any container both count.
    async fn add(&self, day: i64, usage: Usage) -> StoreResult<()> {
        let value = |v: u64| n(v.min(i64::MAX as u64));
        self.table
            .client()
            .update_item()
            .table_name(self.table.table())
            .set_key(Some(usage_key(day)))
            .update_expression("ADD calls :calls, tokens :tokens, cost_micros :cost SET #ttl = :ttl")
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":calls", value(usage.calls))
            .expression_attribute_values(":tokens", value(usage.tokens))
            .expression_attribute_values(":cost", value(usage.cost_micros))
            .expression_attribute_values(":ttl", n(now_s() + USAGE_TTL_S))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn breaker(&self, model: &str) -> StoreResult<Breaker> {
        let Some(item) = self.table.get(breaker_key(model)).await? else { return Ok(Breaker::default()) };
        Ok(Breaker { failures: count(&item, "failures")?.min(u32::MAX.into()) as u32, open_until_ms: get_n(&item, "open_until")? })
    }

    async fn set_breaker(&self, model: &str, state: Breaker) -> StoreResult<()> {
        let mut item = breaker_key(model);
        item.insert("failures".into(), n(state.failures));
        item.insert("open_until".into(), n(state.open_until_ms));
        self.table.client().put_item().table_name(self.table.table()).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(())
    }
}

// ------------------------------------------------------------------ the Lambda entry

/// The function's settings from its environment: the `ai_*` variables in upper case
/// (`AI_MODEL`, a Bedrock model id for Converse, empty for none; `AI_EMBEDDING_MODEL`, Titan's
/// for embeddings, empty for none; `AI_LLM_ROUTING`; the guard's limits, see
/// [`Policy::from_lookup`]), `ANALYTICS_TABLE`, the analytics read model, and
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, Bedrock's endpoint where it isn't the region's.
fn context(shell: &gocoffee_aws::lambda::Shell, lookup: impl Fn(&str) -> Option<String>) -> Result<AiContext, String> {
    let get = |name: &str| lookup(&name.to_ascii_uppercase()).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let policy = Policy::from_lookup(get).map_err(|e| e.to_string())?;
    let analytics = get("analytics_table").ok_or("ANALYTICS_TABLE is not set")?;
    // Bedrock Runtime's own endpoint when set (the SDKs' service-specific variable), else the
    // function's (`AWS_ENDPOINT_URL`, or the region's).
    let mut bedrock = aws_sdk_bedrockruntime::config::Builder::from(shell.sdk_config());
    if let Some(url) = get("aws_endpoint_url_bedrock_runtime") {
        bedrock = bedrock.endpoint_url(url);
    }
    let bedrock = Client::from_conf(bedrock.build());
    Ok(AiContext {
        store: Box::new(DynamoAiStore::new(shell.store().clone())),
        language: get("ai_model").map(|m| Box::new(BedrockModel::new(bedrock.clone(), m)) as Box<dyn LanguageModel>),
        embedder: get("ai_embedding_model").map(|m| Box::new(TitanEmbedder::new(bedrock.clone(), m, None, policy.timeout)) as Box<dyn Embedder>),
        llm_routing: get("ai_llm_routing").is_some_and(|v| v == "true"),
        analytics: Some(Box::new(DynamoAnalyticsStore::new(shell.store().client().clone(), analytics))),
        policy,
    })
}

/// `main` of the AI function: `POST /api/v1/ai/ask` behind API Gateway. The models' clients
/// and the embeddings they made are kept for the container's life.
pub fn http() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let shell = init(FUNCTION.name)?;
        let ai = context(&shell, |name| std::env::var(name).ok()).map_err(|e| {
            tracing::error!(function = FUNCTION.name, error = %e, "cannot start");
            lambda_runtime::Error::from(e)
        })?;
        http_with_extension(&shell, &FUNCTION, &ai).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Turn;

    fn turn(speaker: Speaker, text: &str) -> Turn {
        Turn { speaker, text: text.into() }
    }

    #[test]
    fn converse_gets_alternating_messages_that_start_with_the_user() {
        let prompt = Prompt {
            history: vec![turn(Speaker::Assistant, "left over"), turn(Speaker::User, "a"), turn(Speaker::User, "b"), turn(Speaker::Assistant, "c")],
            request: "d".into(),
            ..Prompt::default()
        };
        let m = messages(&prompt).expect("messages");
        let roles: Vec<_> = m.iter().map(|m| m.role.clone()).collect();
        assert_eq!(roles, [ConversationRole::User, ConversationRole::Assistant, ConversationRole::User]);
        assert_eq!(m[0].content[0].as_text().expect("text"), "a\n\nb");
        assert_eq!(m[2].content[0].as_text().expect("text"), "d");
        assert!(system(&Prompt::default()).is_empty(), "no empty system block");
    }
}
