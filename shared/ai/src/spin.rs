//! The AI function as a Spin component: the models through Spin's `fermyon:spin/llm@2.0.0`
//! (the component must list them in `ai_models`), its stores in the orders' database, and the
//! analytics read model in its own (`analytics`). Opened per request, as Spin keeps no state.
//! Built without the `llm` feature (Fermyon Wasm Functions), it has no models at all.
#![cfg(target_arch = "wasm32")]

#[cfg(feature = "llm")]
use async_trait::async_trait;
use gocoffee_app::{ApiError, Request, Response};
use gocoffee_spin::{Entry, open_db, variable};
use gocoffee_sql::analytics::SqlAnalyticsStore;
#[cfg(feature = "llm")]
use spin_sdk::llm;

use crate::guard::Policy;
use crate::model::{Embedder, LanguageModel};
#[cfg(feature = "llm")]
use crate::model::{Embeddings, Generation, Limits, ModelError, Prompt};
use crate::orchestrator::{AiContext, FUNCTION};
use crate::sql::SqlAiStore;

/// The embedding model every Spin platform with `llm` offers.
pub const SPIN_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

#[cfg(feature = "llm")]
fn model_error(e: llm::Error) -> ModelError {
    match e {
        llm::Error::ModelNotSupported => ModelError::NotSupported("the platform has no such model".into()),
        llm::Error::InvalidInput(m) => ModelError::InvalidInput(m),
        llm::Error::RuntimeError(m) => ModelError::Unavailable(m),
    }
}

/// A language model through Spin's `infer`. The call blocks the component until the host
/// answers: the host's own timeout bounds it (Spin's `remote_http` engine, the local host's 25 s).
#[cfg(feature = "llm")]
pub struct SpinLlm(pub String);

#[cfg(feature = "llm")]
#[async_trait(?Send)]
impl LanguageModel for SpinLlm {
    fn name(&self) -> &str {
        &self.0
    }

    async fn generate(&self, prompt: &Prompt, limits: &Limits) -> Result<Generation, ModelError> {
        let params = llm::InferencingParams { max_tokens: limits.max_tokens, temperature: limits.temperature, ..Default::default() };
        let r = llm::infer_with_options(llm::InferencingModel::Other(&self.0), &prompt.render(), params).map_err(model_error)?;
        Ok(Generation { text: r.text, model: self.0.clone(), prompt_tokens: r.usage.prompt_token_count, completion_tokens: r.usage.generated_token_count })
    }
}

/// An embedding model through Spin's `generate-embeddings`.
#[cfg(feature = "llm")]
pub struct SpinEmbedder(pub String);

#[cfg(feature = "llm")]
#[async_trait(?Send)]
impl Embedder for SpinEmbedder {
    fn name(&self) -> &str {
        &self.0
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, ModelError> {
        let r = llm::generate_embeddings(llm::EmbeddingModel::Other(&self.0), texts).map_err(model_error)?;
        Ok(Embeddings { vectors: r.embeddings, model: self.0.clone(), prompt_tokens: r.usage.prompt_token_count })
    }
}

/// The variables that choose the models: `ai_model` (a language model the platform serves;
/// empty for none, so every agent answers from retrieval and templates), `ai_embedding_model`
/// (empty for none), `ai_llm_routing` (`true` lets the language model pick the agent).
fn context() -> Result<AiContext, String> {
    let policy = Policy::from_lookup(variable).map_err(|e| e.to_string())?;
    let store = SqlAiStore::open(open_db("default")?).map_err(|e| format!("preparing the schema: {e}"))?;
    let analytics = SqlAnalyticsStore::open(open_db(gocoffee_spin::ANALYTICS_DATABASE)?).map_err(|e| format!("preparing the analytics schema: {e}"))?;
    let named = |name: &str| variable(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    #[cfg(feature = "llm")]
    let (language, embedder) = (
        named("ai_model").map(|m| Box::new(SpinLlm(m)) as Box<dyn LanguageModel>),
        named("ai_embedding_model").map(|m| Box::new(SpinEmbedder(m)) as Box<dyn Embedder>),
    );
    #[cfg(not(feature = "llm"))]
    let (language, embedder): (Option<Box<dyn LanguageModel>>, Option<Box<dyn Embedder>>) = (None, None);
    Ok(AiContext {
        store: Box::new(store),
        policy,
        language,
        embedder,
        llm_routing: named("ai_llm_routing").is_some_and(|v| v == "true"),
        analytics: Some(Box::new(analytics)),
    })
}

/// The whole body of the AI HTTP component.
pub fn serve(req: Request) -> Entry<'static, Response> {
    Box::pin(async move {
        match context() {
            Ok(ai) => gocoffee_spin::serve_with(&FUNCTION, Some(&ai), req).await,
            Err(cause) => {
                tracing::error!(%cause, "the AI function is unavailable");
                ApiError::unavailable().into_response()
            }
        }
    })
}
