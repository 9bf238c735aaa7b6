//! The host side of `fermyon:spin/llm@2.0.0`, as Spin implements it: a component may use only
//! the models its `ai_models` lists (any other is `invalid-input`, Spin's words); embeddings
//! with all-MiniLM-L6-v2 run natively ([`crate::minilm`], loaded on first use from
//! `<ai-models>/all-minilm-l6-v2/`); inference, and embeddings with any other model, go to a
//! remote service when one is configured (`--llm-url`: Spin's `remote_http` engine, in its
//! `default` or `open_ai` API), and are `model-not-supported` otherwise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::minilm::{MODEL, MiniLm};
use crate::runtime::HostState;
use crate::spin::fermyon::spin2_0_0::llm;

/// How long a remote model may take to answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(25);
/// The largest answer read from a remote model.
const MAX_REMOTE_BYTES: usize = 16 << 20;
/// Texts whose vectors are kept, so a component that embeds the same catalogue on every request
/// (Spin components keep no state) pays once. A full cache is emptied, not evicted piecemeal.
const CACHE_TEXTS: usize = 8_192;

/// The API a remote inference service speaks (Spin's `api_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiType {
    /// Spin's own: `POST /infer`, `POST /embed`.
    Default,
    /// OpenAI-compatible: `POST /v1/chat/completions`, `POST /v1/embeddings`.
    OpenAi,
}

impl std::str::FromStr for ApiType {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<ApiType> {
        match s {
            "default" => Ok(ApiType::Default),
            "open_ai" => Ok(ApiType::OpenAi),
            other => anyhow::bail!("--llm-api-type must be default or open_ai, not {other}"),
        }
    }
}

/// A remote inference service.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: url::Url,
    pub api: ApiType,
    pub auth_token: Option<String>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Spin's inferencing parameters with these limits, and its defaults for the rest.
pub fn params_with(max_tokens: u32, temperature: f32) -> llm::InferencingParams {
    llm::InferencingParams { max_tokens, repeat_penalty: 1.1, repeat_penalty_last_n_token_count: 64, temperature, top_k: 40, top_p: 0.9 }
}

/// The models every component shares.
pub struct Llm {
    dir: PathBuf,
    minilm: OnceCell<Result<Arc<MiniLm>, String>>,
    cache: Mutex<HashMap<String, Vec<f32>>>,
    remote: Option<(Remote, HttpsClient)>,
}

impl Llm {
    /// `dir` holds the models in Spin's layout (`<dir>/all-minilm-l6-v2/...`).
    pub fn new(dir: PathBuf, remote: Option<Remote>) -> anyhow::Result<Llm> {
        let remote = match remote {
            None => None,
            Some(r) => {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Some((r, Client::builder(TokioExecutor::new()).build(https)))
            }
        };
        Ok(Llm { dir, minilm: OnceCell::new(), cache: Mutex::new(HashMap::new()), remote })
    }

    async fn minilm(&self) -> Result<Arc<MiniLm>, llm::Error> {
        let dir = self.dir.join(MODEL);
        self.minilm
            .get_or_init(|| async move {
                if !dir.is_dir() {
                    return Err(format!("The directory expected to house the embeddings models '{}' does not exist.", dir.display()));
                }
                tokio::task::spawn_blocking(move || MiniLm::load(&dir).map(Arc::new).map_err(|e| format!("{e:#}"))).await.map_err(|e| e.to_string())?
            })
            .await
            .clone()
            .map_err(llm::Error::RuntimeError)
    }

    /// Vectors for `texts` from the native model: cached ones as they are, the rest in one batch.
    pub async fn embed_native(&self, texts: Vec<String>) -> Result<llm::EmbeddingsResult, llm::Error> {
        let model = self.minilm().await?;
        let missing: Vec<String> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut m: Vec<String> = texts.iter().filter(|t| !cache.contains_key(*t)).cloned().collect();
            m.sort();
            m.dedup();
            m
        };
        let mut tokens = 0;
        if !missing.is_empty() {
            let batch = missing.clone();
            let embedded = tokio::task::spawn_blocking(move || model.embed(&batch))
                .await
                .map_err(|e| llm::Error::RuntimeError(e.to_string()))?
                .map_err(|e| llm::Error::RuntimeError(format!("{e:#}")))?;
            tokens = embedded.tokens;
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() + missing.len() > CACHE_TEXTS {
                cache.clear();
            }
            cache.extend(missing.into_iter().zip(embedded.vectors));
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let embeddings = texts.iter().map(|t| cache.get(t).cloned().unwrap_or_default()).collect();
        Ok(llm::EmbeddingsResult { embeddings, usage: llm::EmbeddingsUsage { prompt_token_count: tokens } })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, llm::Error> {
        let Some((remote, client)) = &self.remote else { return Err(llm::Error::ModelNotSupported) };
        // An absolute path replaces the base URL's own, as Spin joins it.
        let url = remote.url.join(path).map_err(|e| llm::Error::RuntimeError(e.to_string()))?;
        let mut request = http::Request::post(url.as_str()).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &remote.auth_token {
            request = request.header(http::header::AUTHORIZATION, format!("bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| llm::Error::RuntimeError(e.to_string()))?;
        let exchange = async {
            let response = client.request(request).await.map_err(|e| llm::Error::RuntimeError(format!("the inference service: {e}")))?;
            let body = Limited::new(response.into_body(), MAX_REMOTE_BYTES).collect().await.map_err(|e| llm::Error::RuntimeError(e.to_string()))?;
            serde_json::from_slice::<Value>(&body.to_bytes()).map_err(|e| llm::Error::RuntimeError(format!("the inference service's answer: {e}")))
        };
        let answer = tokio::time::timeout(REMOTE_TIMEOUT, exchange).await.map_err(|_| llm::Error::RuntimeError("the inference service timed out".into()))??;
        if let Some(message) = answer.pointer("/error/message").and_then(Value::as_str) {
            return Err(llm::Error::RuntimeError(message.to_owned()));
        }
        Ok(answer)
    }

    fn api(&self) -> Option<ApiType> {
        self.remote.as_ref().map(|(r, _)| r.api)
    }

    pub async fn infer(&self, model: String, prompt: String, params: Option<llm::InferencingParams>) -> Result<llm::InferencingResult, llm::Error> {
        let p = params.unwrap_or(params_with(100, 0.8));
        let u32_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0).min(u32::MAX.into()) as u32;
        match self.api() {
            None => Err(llm::Error::ModelNotSupported),
            Some(ApiType::OpenAi) => {
                let answer = self
                    .post(
                        "/v1/chat/completions",
                        json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_completion_tokens": p.max_tokens,
                               "temperature": p.temperature, "top_p": p.top_p}),
                    )
                    .await?;
                let text = answer
                    .pointer("/choices/0/message/content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| llm::Error::RuntimeError("no choices in the answer".into()))?;
                Ok(llm::InferencingResult {
                    text: text.to_owned(),
                    usage: llm::InferencingUsage {
                        prompt_token_count: u32_at(&answer, "/usage/prompt_tokens"),
                        generated_token_count: u32_at(&answer, "/usage/completion_tokens"),
                    },
                })
            }
            Some(ApiType::Default) => {
                let answer = self
                    .post(
                        "/infer",
                        json!({"model": model, "prompt": prompt, "options": {"maxTokens": p.max_tokens, "repeatPenalty": p.repeat_penalty,
                               "repeatPenaltyLastNTokenCount": p.repeat_penalty_last_n_token_count, "temperature": p.temperature, "topK": p.top_k, "topP": p.top_p}}),
                    )
                    .await?;
                let text = answer.get("text").and_then(Value::as_str).ok_or_else(|| llm::Error::RuntimeError("no text in the answer".into()))?;
                Ok(llm::InferencingResult {
                    text: text.to_owned(),
                    usage: llm::InferencingUsage {
                        prompt_token_count: u32_at(&answer, "/usage/promptTokenCount"),
                        generated_token_count: u32_at(&answer, "/usage/generatedTokenCount"),
                    },
                })
            }
        }
    }

    pub async fn embed(&self, model: String, texts: Vec<String>) -> Result<llm::EmbeddingsResult, llm::Error> {
        if model == MODEL {
            return self.embed_native(texts).await;
        }
        let vectors = |v: &Value, p: &str| -> Vec<Vec<f32>> {
            v.pointer(p)
                .and_then(Value::as_array)
                .map(|rows| {
                    rows.iter().map(|r| r.as_array().map(|xs| xs.iter().filter_map(Value::as_f64).map(|x| x as f32).collect()).unwrap_or_default()).collect()
                })
                .unwrap_or_default()
        };
        let tokens = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0).min(u32::MAX.into()) as u32;
        match self.api() {
            None => Err(llm::Error::ModelNotSupported),
            Some(ApiType::OpenAi) => {
                let answer = self.post("/v1/embeddings", json!({"model": model, "input": texts})).await?;
                let embeddings = answer
                    .get("data")
                    .and_then(Value::as_array)
                    .map(|d| {
                        d.iter()
                            .map(|e| {
                                e.get("embedding")
                                    .and_then(Value::as_array)
                                    .map(|xs| xs.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(llm::EmbeddingsResult { embeddings, usage: llm::EmbeddingsUsage { prompt_token_count: tokens(&answer, "/usage/prompt_tokens") } })
            }
            Some(ApiType::Default) => {
                let answer = self.post("/embed", json!({"model": model, "input": texts})).await?;
                Ok(llm::EmbeddingsResult {
                    embeddings: vectors(&answer, "/embeddings"),
                    usage: llm::EmbeddingsUsage { prompt_token_count: tokens(&answer, "/usage/promptTokenCount") },
                })
            }
        }
    }
}

/// Spin's refusal of a model the component wasn't given.
fn not_granted(model: &str) -> llm::Error {
    llm::Error::InvalidInput(format!(
        "The component does not have access to use '{model}'. To give the component access, add '{model}' to the 'ai_models' key for the component in your spin.toml manifest"
    ))
}

impl llm::Host for HostState {
    async fn infer(
        &mut self,
        model: String,
        prompt: String,
        params: Option<llm::InferencingParams>,
    ) -> wasmtime::Result<Result<llm::InferencingResult, llm::Error>> {
        if !self.component.ai_models.contains(&model) {
            return Ok(Err(not_granted(&model)));
        }
        let started = std::time::Instant::now();
        let result = self.shared.llm.infer(model.clone(), prompt, params).await;
        tracing::debug!(component = %self.component.id, model, ok = result.is_ok(), ms = started.elapsed().as_millis() as u64, "llm infer");
        Ok(result)
    }

    async fn generate_embeddings(&mut self, model: String, text: Vec<String>) -> wasmtime::Result<Result<llm::EmbeddingsResult, llm::Error>> {
        if !self.component.ai_models.contains(&model) {
            return Ok(Err(not_granted(&model)));
        }
        let started = std::time::Instant::now();
        let n = text.len();
        let result = self.shared.llm.embed(model.clone(), text).await;
        tracing::debug!(component = %self.component.id, model, texts = n, ok = result.is_ok(), ms = started.elapsed().as_millis() as u64, "llm embeddings");
        Ok(result)
    }
}
