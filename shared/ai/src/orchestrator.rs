//! The orchestrator: `POST /api/v1/ai/ask`. It takes a natural-language request, routes it to a
//! registered agent (the caller may name one; else a language model's choice when one is
//! configured and names a registered agent; else BM25 + embeddings over the agents'
//! descriptions and examples; a short follow-up stays with the previous answer's agent), runs
//! the agent with the session's recent turns, keeps those turns within a token budget, and
//! answers with the agent's result and its sources. Every answer is also an insight on the `ai`
//! stream, queued in the same write as the session's turns (the outbox) and relayed after.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use gocoffee_app::analytics::AnalyticsStore;
use gocoffee_app::http::{ApiError, Response, json, parse_json};
use gocoffee_app::{Caller, Ctx, Function, route};
use gocoffee_core::MenuItem;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::agents::AGENTS;
use crate::guard::{Guard, Policy};
use crate::model::{Embedder, Fallback, Generation, LanguageModel, Limits, Prompt, Source, Speaker, Turn, estimate_tokens};
use crate::router::{AgentSpec, Router, Routing};
use crate::search::Filters;
use crate::store::{AiState, Insight, StoredTurn, Window};

/// The function: one route.
pub static FUNCTION: Function = Function { name: "ai", routes: &[route!(POST "/api/v1/ai/ask" => ask)], publishes: true, images: false };

/// The longest request taken.
pub const MAX_MESSAGE_CHARS: usize = 1_000;
/// The most of a session's recent turns kept as context, by estimated tokens, and by count.
pub const CONTEXT_TOKENS: u32 = 600;
pub const CONTEXT_TURNS: usize = 12;
/// A routing score below this leaves a short follow-up with the previous agent.
const WEAK_ROUTE: f32 = 0.6;

/// What the AI function brings to a request beyond the common services.
pub struct AiContext {
    /// Sessions, insights (through the outbox) and the models' usage ledger.
    pub store: Box<dyn AiState>,
    pub policy: Policy,
    /// The language model, when the platform has one configured (Bedrock, Spin's `llm`).
    pub language: Option<Box<dyn LanguageModel>>,
    pub embedder: Option<Box<dyn Embedder>>,
    /// Let the language model choose the agent (its choice still has to be a registered one).
    pub llm_routing: bool,
    /// The analytics read model, for the analytics agent.
    pub analytics: Option<Box<dyn AnalyticsStore>>,
}

/// The models of one request, behind the guard, with what they embedded kept for the request.
pub struct Models<'a> {
    pub guard: Guard<'a>,
    pub language: Option<&'a dyn LanguageModel>,
    pub embedder: Option<&'a dyn Embedder>,
    memo: RefCell<HashMap<String, Vec<f32>>>,
    /// Why the last call fell back, if it did (for the answer's `fallback`).
    pub embedding_fallback: RefCell<Option<String>>,
}

impl Models<'_> {
    /// One vector per text, or `None` when there is no embedding model or it failed (the caller
    /// then ranks by words alone, and the answer says so).
    pub async fn embed(&self, texts: &[String]) -> Option<Vec<Vec<f32>>> {
        let embedder = self.embedder?;
        let missing: Vec<String> = {
            let memo = self.memo.borrow();
            let mut m: Vec<String> = texts.iter().filter(|t| !memo.contains_key(*t)).cloned().collect();
            m.sort();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            match self.guard.embed(embedder, &missing).await {
                Ok(e) if e.vectors.len() == missing.len() => self.memo.borrow_mut().extend(missing.into_iter().zip(e.vectors)),
                Ok(e) => {
                    tracing::warn!(asked = missing.len(), got = e.vectors.len(), "the embedding model answered the wrong number of vectors");
                    *self.embedding_fallback.borrow_mut() = Some("invalid_answer".into());
                    return None;
                }
                Err(e) => {
                    *self.embedding_fallback.borrow_mut() = Some(e.kind().into());
                    return None;
                }
            }
        }
        let memo = self.memo.borrow();
        texts.iter().map(|t| memo.get(t).cloned()).collect()
    }

    /// The language model's answer, or [`Fallback`]'s when there is none or it failed, with why.
    pub async fn generate(&self, prompt: &Prompt, limits: &Limits) -> (Generation, Option<String>) {
        let Some(model) = self.language else { return (Fallback::answer(prompt), Some("no_model".into())) };
        match self.guard.generate(model, prompt, limits).await {
            Ok(g) if !g.text.trim().is_empty() => (g, None),
            Ok(_) => (Fallback::answer(prompt), Some("empty_answer".into())),
            Err(e) => (Fallback::answer(prompt), Some(e.kind().into())),
        }
    }
}

/// What an agent gets: the request, its context and the models.
pub struct AgentCtx<'a> {
    pub app: &'a Ctx<'a>,
    pub ai: &'a AiContext,
    pub models: &'a Models<'a>,
    pub caller: Caller,
    pub request: String,
    pub history: Vec<Turn>,
    pub filters: Filters,
    menu: RefCell<Option<Vec<MenuItem>>>,
}

impl AgentCtx<'_> {
    /// The menu, read once per request.
    pub async fn menu(&self) -> Result<Vec<MenuItem>, ApiError> {
        if let Some(m) = self.menu.borrow().as_ref() {
            return Ok(m.clone());
        }
        let menu = self.app.svc.menu.menu().await.map_err(|e| {
            tracing::error!(error = %e, "the menu is out of reach");
            ApiError::unavailable()
        })?;
        *self.menu.borrow_mut() = Some(menu.clone());
        Ok(menu)
    }
}

/// What an agent answers.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAnswer {
    pub answer: String,
    /// The insight's kind.
    pub kind: &'static str,
    pub subject: String,
    pub data: serde_json::Value,
    pub sources: Vec<Source>,
    pub confidence: f32,
    pub model: String,
    /// Why it answered without a model (or with less of one), when it did.
    pub fallback: Option<String>,
    pub window: Option<Window>,
}

/// An agent's entry point: borrows its context for as long as its future runs.
pub type AgentFn = for<'a, 'b> fn(&'b AgentCtx<'a>) -> Pin<Box<dyn Future<Output = Result<AgentAnswer, ApiError>> + 'b>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskRequest {
    message: String,
    #[serde(default)]
    session_id: Option<String>,
    /// Skip routing: this agent.
    #[serde(default)]
    agent: Option<String>,
    /// For the search agent.
    #[serde(default)]
    filters: Filters,
}

fn valid_session_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The turns that fit the context budget, newest kept.
pub fn trim(turns: Vec<StoredTurn>) -> Vec<StoredTurn> {
    let mut kept = Vec::new();
    let mut tokens = 0;
    for t in turns.into_iter().rev() {
        tokens += estimate_tokens(&t.text);
        if tokens > CONTEXT_TOKENS || kept.len() == CONTEXT_TURNS {
            break;
        }
        kept.push(t);
    }
    kept.reverse();
    kept
}

fn allowed(spec: &AgentSpec, caller: &Caller) -> bool {
    caller.role.at_least(spec.role)
}

/// Which agent takes `message`, and how that was decided.
async fn choose(router: &Router, models: &Models<'_>, ai: &AiContext, caller: &Caller, message: &str, previous: Option<&str>) -> Routing {
    let permitted: Vec<bool> = router.agents().iter().map(|a| allowed(a, caller)).collect();
    if ai.llm_routing && models.language.is_some() {
        let prompt = Prompt { request: router.choice_prompt(message), ..Prompt::default() };
        let (g, fallback) = models.generate(&prompt, &Limits { max_tokens: 8, temperature: 0.0, ..Limits::default() }).await;
        if fallback.is_none()
            && let Some(agent) = router.validate_choice(&g.text).filter(|name| router.agent(name).is_some_and(|a| allowed(a, caller)))
        {
            return Routing { agent, method: "llm", scores: vec![] };
        }
    }
    let mut texts = vec![message.to_owned()];
    texts.extend(router.embedding_texts());
    let vectors = models.embed(&texts).await;
    let mut routing = router.route_among(message, vectors.as_ref().map(|v| (v[0].as_slice(), &v[1..])), &permitted);
    let best = routing.scores.first().map(|s| s.1).unwrap_or(0.0);
    if best < WEAK_ROUTE
        && crate::text::terms(message).len() <= 4
        && let Some(agent) = previous.and_then(|p| router.agent(p)).filter(|a| allowed(a, caller))
    {
        routing.agent = agent.name;
        routing.method = "context";
    }
    routing
}

/// `POST /api/v1/ai/ask`.
pub async fn ask(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let body: AskRequest = parse_json(ctx.req)?;
    let message = body.message.trim().to_owned();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::bad_request("invalid_message", format!("message must be 1 to {MAX_MESSAGE_CHARS} characters")));
    }
    if let Some(s) = &body.session_id
        && !valid_session_id(s)
    {
        return Err(ApiError::bad_request("invalid_session_id", "session_id must be 1 to 64 letters, digits, '-' or '_'"));
    }
    let ai = ctx.extension::<AiContext>()?;
    let router = Router::new(AGENTS);
    let session_id = body.session_id.clone().unwrap_or_else(|| ctx.svc.new_id());
    let stored = ai.store.turns(&caller.user_id, &session_id).await.map_err(|e| {
        tracing::error!(error = %e, "the AI store is out of reach");
        ApiError::unavailable()
    })?;
    let models = Models {
        guard: Guard { ledger: ai.store.as_ref(), policy: &ai.policy, clock: ctx.svc.clock },
        language: ai.language.as_deref(),
        embedder: ai.embedder.as_deref(),
        memo: RefCell::new(HashMap::new()),
        embedding_fallback: RefCell::new(None),
    };
    let routing = match &body.agent {
        Some(name) => {
            let spec = router.agent(name).ok_or_else(|| ApiError::bad_request("unknown_agent", format!("no agent is called {name:?}")))?;
            if !allowed(spec, &caller) {
                return Err(ApiError::forbidden(format!("the {} agent needs the {} role or above", spec.name, spec.role)));
            }
            Routing { agent: spec.name, method: "requested", scores: vec![] }
        }
        None => {
            let previous = stored.iter().rev().find_map(|t| t.agent.as_deref());
            choose(&router, &models, ai, &caller, &message, previous).await
        }
    };
    let spec = router.agent(routing.agent).ok_or_else(ApiError::unavailable)?;
    let agent_ctx = AgentCtx {
        app: ctx,
        ai,
        models: &models,
        caller: caller.clone(),
        request: message.clone(),
        history: stored.iter().map(StoredTurn::turn).collect(),
        filters: body.filters.clone(),
        menu: RefCell::new(None),
    };
    let started = std::time::Instant::now();
    let mut answer = (spec.run)(&agent_ctx).await?;
    let took_ms = started.elapsed().as_millis() as u64;
    if answer.fallback.is_none()
        && let Some(why) = models.embedding_fallback.borrow().clone()
    {
        answer.fallback = Some(format!("embeddings_{why}"));
    }
    metrics::histogram!("ai_agent_latency_ms", "agent" => spec.name).record(took_ms as f64);
    metrics::counter!("ai_answers_total", "agent" => spec.name, "fallback" => if answer.fallback.is_some() { "yes" } else { "no" }).increment(1);
    tracing::info!(agent = spec.name, routing = routing.method, took_ms, fallback = answer.fallback.as_deref().unwrap_or(""), "ai answer");

    let mut turns = stored;
    turns.push(StoredTurn { speaker: Speaker::User, text: message, agent: None, at_ms: ctx.now_ms });
    turns.push(StoredTurn { speaker: Speaker::Assistant, text: answer.answer.clone(), agent: Some(spec.name.to_owned()), at_ms: ctx.now_ms });
    let insight = Insight {
        id: ctx.svc.new_id(),
        agent: spec.name.to_owned(),
        kind: answer.kind.to_owned(),
        subject: answer.subject.clone(),
        summary: answer.answer.chars().take(280).collect(),
        data: answer.data.clone(),
        confidence: answer.confidence,
        model: answer.model.clone(),
        window: answer.window,
        time: ctx.now_ms,
        traceparent: Some(ctx.trace.header()),
    };
    ai.store.save_exchange(&caller.user_id, &session_id, &trim(turns), &insight).await.map_err(|e| {
        tracing::error!(error = %e, "the AI store is out of reach");
        ApiError::unavailable()
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "session_id": session_id,
            "agent": spec.name,
            "routing": { "method": routing.method, "scores": routing.scores.iter().map(|(a, s)| json!({"agent": a, "score": s})).collect::<Vec<_>>() },
            "answer": answer.answer,
            "data": answer.data,
            "sources": answer.sources,
            "confidence": answer.confidence,
            "model": answer.model,
            "fallback": answer.fallback,
            "insight_id": insight.id,
        }),
    ))
}

/// The search agent: the menu searched with the request's words, its filters and constraints.
pub fn search_agent<'a, 'b>(a: &'b AgentCtx<'a>) -> Pin<Box<dyn Future<Output = Result<AgentAnswer, ApiError>> + 'b>> {
    Box::pin(async move {
        let menu = a.menu().await?;
        let catalogue = crate::search::Catalogue::from_menu(&menu);
        let mut texts = vec![a.request.clone()];
        texts.extend(catalogue.embedding_texts());
        let vectors = a.models.embed(&texts).await;
        let method = if vectors.is_some() { crate::search::Method::Hybrid } else { crate::search::Method::Lexical };
        let hits = catalogue.search(&a.request, &a.filters, method, vectors.as_ref().map(|v| (v[0].as_slice(), &v[1..])), 5);
        let answer = match hits.as_slice() {
            [] => "Nothing on the menu matches that.".to_owned(),
            [one] => format!("{} ({}).", one.name, gocoffee_core::Cents(one.price_cents)),
            many => format!("Try {}.", many.iter().map(|h| format!("{} ({})", h.name, gocoffee_core::Cents(h.price_cents))).collect::<Vec<_>>().join(", ")),
        };
        let sources = hits.iter().filter_map(|h| menu.iter().find(|m| m.id == h.id)).map(crate::service::item_passage).collect();
        Ok(AgentAnswer {
            answer,
            kind: "search_results",
            subject: "menu".into(),
            data: json!({ "method": method, "filters": crate::search::understand(&a.request, &a.filters), "items": hits }),
            sources,
            confidence: hits.first().map(|h| (h.score / 2.5).min(1.0)).unwrap_or(0.0),
            model: if vectors.is_some() { a.models.embedder.map(|e| e.name().to_owned()).unwrap_or_default() } else { crate::model::FALLBACK_MODEL.to_owned() },
            fallback: None,
            window: None,
        })
    })
}

/// The customer-service agent ([`crate::service`]).
pub fn service_agent<'a, 'b>(a: &'b AgentCtx<'a>) -> Pin<Box<dyn Future<Output = Result<AgentAnswer, ApiError>> + 'b>> {
    Box::pin(crate::service::run(a))
}

/// Words that ask for anomalies rather than a figure.
const ANOMALY_WORDS: &[&str] = &["anomaly", "anomalies", "unusual", "odd", "strange", "spike", "spikes", "outlier", "outliers", "weird", "abnormal"];
/// How far back anomalies are looked for, in days (eight weeks: enough weeks for the seasonal detector).
const ANOMALY_DAYS: i64 = 56;
const DAY_MS: i64 = 86_400_000;

const QUERY_INSTRUCTIONS: &str = "Turn the manager's question into one JSON object and nothing else: \
{\"measure\": revenue|orders|items_sold|average_order_value|average_preparation|average_wait|cancellation_rate|payment_failure_rate|crypto_share, \
\"by\": none|item|hour_of_day|weekday|day, \"range\": today|yesterday|this_week|last_week|last_7_days|last_30_days|this_month|last_month, \
optional \"top\" or \"bottom\": n, optional \"item\": a menu item id}.";

fn store_down(e: gocoffee_app::ports::StoreError) -> ApiError {
    tracing::error!(error = %e, "the analytics read model is out of reach");
    ApiError::unavailable()
}

/// The analytics agent: a question turned into a validated [`crate::analytics::Query`] (by rules,
/// or by the language model when the rules can't tell and one is configured: its answer is
/// parsed and validated like any input, never run as SQL), run on the analytics read model; or
/// anomaly flags on the daily sales.
pub fn analytics_agent<'a, 'b>(a: &'b AgentCtx<'a>) -> Pin<Box<dyn Future<Output = Result<AgentAnswer, ApiError>> + 'b>> {
    Box::pin(async move {
        use crate::analytics::{Query, anomalies, execute, parse, window};
        let store = a.ai.analytics.as_deref().ok_or_else(|| {
            tracing::error!("the AI function runs without the analytics read model");
            ApiError::unavailable()
        })?;
        let now = a.app.now_ms;
        if crate::text::words(&a.request).iter().any(|w| ANOMALY_WORDS.contains(&w.as_str())) {
            // Whole days only: today so far would look like a slump every morning.
            let to = now.div_euclid(DAY_MS) * DAY_MS;
            let from = to - ANOMALY_DAYS * DAY_MS;
            let facts = store.placed_between(from, to, gocoffee_app::analytics::MAX_FACTS).await.map_err(store_down)?;
            let days = gocoffee_core::analytics::sales(&facts, from, to, gocoffee_core::analytics::Bucket::Day);
            let series: Vec<(String, f64)> = days.iter().map(|d| (gocoffee_app::http::rfc3339(d.start_ms)[..10].to_owned(), d.revenue_cents as f64)).collect();
            let flags = anomalies(&series, 7);
            let answer = match flags.as_slice() {
                [] => format!("Nothing unusual in the daily sales of the last {ANOMALY_DAYS} whole days."),
                found => format!(
                    "Unusual days in the last {ANOMALY_DAYS}: {}.",
                    found
                        .iter()
                        .map(|f| format!("{} (${:.2} against ${:.2} expected)", f.key, f.value / 100.0, f.expected / 100.0))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            return Ok(AgentAnswer {
                answer,
                kind: "anomaly",
                subject: "sales".into(),
                data: json!({ "series": "daily_revenue_cents", "anomalies": flags }),
                sources: vec![],
                confidence: if flags.is_empty() { 0.5 } else { 0.8 },
                model: crate::model::FALLBACK_MODEL.into(),
                fallback: None,
                window: Some(Window { from, to }),
            });
        }
        let menu = a.menu().await?;
        let items: Vec<(&str, &str)> = menu.iter().map(|m| (m.id.as_str(), m.name.as_str())).collect();
        let ids: Vec<&str> = menu.iter().map(|m| m.id.as_str()).collect();
        let (query, model) = match parse(&a.request, &items) {
            Ok(q) => (Ok(q), crate::model::FALLBACK_MODEL.to_owned()),
            Err(why) => match a.models.language {
                None => (Err(why), crate::model::FALLBACK_MODEL.to_owned()),
                Some(_) => {
                    let prompt = Prompt { system: QUERY_INSTRUCTIONS.into(), request: a.request.clone(), ..Prompt::default() };
                    let (g, fallback) = a.models.generate(&prompt, &Limits { max_tokens: 80, temperature: 0.0, ..Limits::default() }).await;
                    let text = g.text.trim();
                    let json_part = text.find('{').zip(text.rfind('}')).map(|(s, e)| &text[s..=e]).unwrap_or(text);
                    match (fallback, serde_json::from_str::<Query>(json_part)) {
                        (None, Ok(q)) => (Ok(q), g.model),
                        _ => (Err(why), crate::model::FALLBACK_MODEL.to_owned()),
                    }
                }
            },
        };
        let query = match query.and_then(|q| q.validate(&ids).map(|()| q)) {
            Ok(q) => q,
            Err(why) => {
                return Ok(AgentAnswer {
                    answer: format!("I couldn't turn that into a question about the sales ({why}). Try \"what sold most last week\" or \"revenue yesterday\"."),
                    kind: "not_understood",
                    subject: "sales".into(),
                    data: json!({ "reason": why }),
                    sources: vec![],
                    confidence: 0.0,
                    model,
                    fallback: None,
                    window: None,
                });
            }
        };
        let (from, to) = window(query.range, now);
        let facts = store.placed_between(from, to, gocoffee_app::analytics::MAX_FACTS).await.map_err(store_down)?;
        if facts.len() >= gocoffee_app::analytics::MAX_FACTS {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "range_too_wide", "that period holds too many orders to answer at once"));
        }
        let answer = execute(&query, &facts, now);
        Ok(AgentAnswer {
            answer: answer.summary.clone(),
            kind: "sales_answer",
            subject: "sales".into(),
            data: serde_json::to_value(&answer).unwrap_or_default(),
            sources: vec![],
            confidence: 1.0,
            model,
            fallback: None,
            window: Some(Window { from: answer.from_ms, to: answer.to_ms }),
        })
    })
}
