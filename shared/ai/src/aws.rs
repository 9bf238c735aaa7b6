//! The model ports on Amazon Bedrock, for the AI function as a Lambda: text through the Converse
//! API (any model Converse serves: the prompt's instructions and passages as the system text, the
//! session's turns as messages), embeddings through InvokeModel with Amazon Titan Text
//! Embeddings (`amazon.titan-embed-text-v2:0`, one text per call). Both give up after their
//! timeout, and every failure becomes a [`ModelError`] the guard and the agents understand.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message, StopReason, SystemContentBlock};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::model::{Embedder, Embeddings, Generation, LanguageModel, Limits, ModelError, Prompt, Speaker};

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
    let mut text = prompt.system.clone();
    if !prompt.context.is_empty() {
        text.push_str("\n\nPassages:\n");
        for s in &prompt.context {
            text.push_str(&format!("[{}] {}: {}\n", s.id, s.title, s.text));
        }
    }
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
