//! Every model call goes through a [`Guard`]: a circuit breaker per model, a timeout, and token
//! and cost budgets per request and per day, logged and counted in the metrics. The breaker and
//! the day's usage live in a [`UsageLedger`], so they hold across Spin's per-request instances
//! and across a Lambda function's containers.

use std::time::Duration;

use async_trait::async_trait;
use gocoffee_app::ports::{Clock, StoreResult};

use crate::model::{Embedder, Embeddings, Generation, LanguageModel, Limits, ModelError, Prompt, estimate_tokens};

/// Metric names (the shells export them: EMF on Lambda and Spin, Prometheus on the host).
pub const MODEL_CALLS: &str = "ai_model_calls_total";
pub const MODEL_TOKENS: &str = "ai_model_tokens_total";
pub const MODEL_LATENCY: &str = "ai_model_latency_ms";

/// What the models used on one day (UTC), across every function that shares the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub calls: u64,
    pub tokens: u64,
    /// In millionths of a US dollar.
    pub cost_micros: u64,
}

/// A model's circuit breaker: consecutive service failures, and while open, until when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub open_until_ms: i64,
}

/// Where usage and breaker state are kept.
#[async_trait(?Send)]
pub trait UsageLedger {
    async fn usage(&self, day: i64) -> StoreResult<Usage>;
    /// Adds `usage` to the day's (atomically: concurrent calls both count).
    async fn add(&self, day: i64, usage: Usage) -> StoreResult<()>;
    async fn breaker(&self, model: &str) -> StoreResult<Breaker>;
    async fn set_breaker(&self, model: &str, state: Breaker) -> StoreResult<()>;
}

/// The limits a deployment sets on its models (variables `ai_*`, see [`Policy::from_lookup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Prompt plus answer, per call.
    pub request_tokens: u32,
    pub daily_tokens: u64,
    pub daily_cost_micros: u64,
    /// Price per thousand tokens in, and out, in millionths of a dollar.
    pub prompt_price_micros: u64,
    pub completion_price_micros: u64,
    pub timeout: Duration,
    /// Consecutive service failures that open the breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            request_tokens: 2_000,
            daily_tokens: 1_000_000,
            daily_cost_micros: 5_000_000,
            prompt_price_micros: 250,
            completion_price_micros: 1_250,
            timeout: Duration::from_secs(8),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// A policy value that is not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be a non-negative integer, not {value:?}")]
pub struct PolicyError {
    pub name: &'static str,
    pub value: String,
}

impl Policy {
    /// The policy from the deployment's variables, each optional: `ai_request_tokens`,
    /// `ai_daily_tokens`, `ai_daily_cost_micros`, `ai_prompt_price_micros`,
    /// `ai_completion_price_micros` (per thousand tokens), `ai_timeout_ms`,
    /// `ai_breaker_failures`, `ai_breaker_cooldown_ms`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Policy, PolicyError> {
        let d = Policy::default();
        let num = |name: &'static str, default: u64| -> Result<u64, PolicyError> {
            match lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| PolicyError { name, value: v }),
            }
        };
        Ok(Policy {
            request_tokens: num("ai_request_tokens", d.request_tokens.into())?.min(u32::MAX.into()) as u32,
            daily_tokens: num("ai_daily_tokens", d.daily_tokens)?,
            daily_cost_micros: num("ai_daily_cost_micros", d.daily_cost_micros)?,
            prompt_price_micros: num("ai_prompt_price_micros", d.prompt_price_micros)?,
            completion_price_micros: num("ai_completion_price_micros", d.completion_price_micros)?,
            timeout: Duration::from_millis(num("ai_timeout_ms", d.timeout.as_millis() as u64)?),
            breaker_failures: num("ai_breaker_failures", d.breaker_failures.into())?.clamp(1, 1_000) as u32,
            breaker_cooldown: Duration::from_millis(num("ai_breaker_cooldown_ms", d.breaker_cooldown.as_millis() as u64)?),
        })
    }

    fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> u64 {
        (u64::from(prompt_tokens) * self.prompt_price_micros + u64::from(completion_tokens) * self.completion_price_micros).div_ceil(1000)
    }
}

/// A model behind the policy. Cheap to make: one per request.
pub struct Guard<'a> {
    pub ledger: &'a dyn UsageLedger,
    pub policy: &'a Policy,
    pub clock: &'a dyn Clock,
}

const DAY_MS: i64 = 86_400_000;

impl Guard<'_> {
    /// Generates with `model` if the breaker, the request's budget and the day's allow it.
    pub async fn generate(&self, model: &dyn LanguageModel, prompt: &Prompt, limits: &Limits) -> Result<Generation, ModelError> {
        let name = model.name().to_owned();
        let prompt_tokens = prompt.estimated_tokens();
        let room = self.policy.request_tokens.saturating_sub(prompt_tokens);
        if room < 16 {
            return self.refused(&name, ModelError::OverBudget(format!("the prompt (~{prompt_tokens} tokens) leaves no room in the request's budget")));
        }
        let limits = Limits { max_tokens: limits.max_tokens.min(room), timeout: limits.timeout.min(self.policy.timeout), ..*limits };
        self.admit(&name, u64::from(prompt_tokens + limits.max_tokens), self.policy.cost(prompt_tokens, limits.max_tokens)).await?;
        let started = std::time::Instant::now();
        let result = model.generate(prompt, &limits).await;
        let usage = result.as_ref().map(|g| (g.prompt_tokens, g.completion_tokens)).unwrap_or((prompt_tokens, 0));
        self.settle(&name, started.elapsed(), limits.timeout, result.as_ref().err(), usage).await;
        result
    }

    /// Embeds `texts` with `model` if the breaker and the budgets allow it.
    pub async fn embed(&self, model: &dyn Embedder, texts: &[String]) -> Result<Embeddings, ModelError> {
        let name = model.name().to_owned();
        let tokens: u32 = texts.iter().map(|t| estimate_tokens(t)).sum();
        self.admit(&name, tokens.into(), self.policy.cost(tokens, 0)).await?;
        let started = std::time::Instant::now();
        let result = model.embed(texts).await;
        let usage = (result.as_ref().map(|e| e.prompt_tokens).unwrap_or(tokens), 0);
        self.settle(&name, started.elapsed(), self.policy.timeout, result.as_ref().err(), usage).await;
        result
    }

    fn refused<T>(&self, model: &str, why: ModelError) -> Result<T, ModelError> {
        tracing::warn!(model, reason = why.kind(), detail = %why, "model call refused");
        metrics::counter!(MODEL_CALLS, "model" => model.to_owned(), "outcome" => why.kind()).increment(1);
        Err(why)
    }

    /// Refuses a call the breaker or the day's budget won't take. A ledger out of reach refuses
    /// too: spending without a record could overrun the budget unseen.
    async fn admit(&self, model: &str, tokens: u64, cost_micros: u64) -> Result<(), ModelError> {
        let now = self.clock.now_ms();
        let breaker = match self.ledger.breaker(model).await {
            Ok(b) => b,
            Err(e) => return self.refused(model, ModelError::Unavailable(format!("usage ledger: {e}"))),
        };
        if breaker.open_until_ms > now {
            return self.refused(model, ModelError::CircuitOpen);
        }
        let used = match self.ledger.usage(now.div_euclid(DAY_MS)).await {
            Ok(u) => u,
            Err(e) => return self.refused(model, ModelError::Unavailable(format!("usage ledger: {e}"))),
        };
        if used.tokens + tokens > self.policy.daily_tokens {
            return self.refused(model, ModelError::OverBudget(format!("the day's {} tokens are spent", self.policy.daily_tokens)));
        }
        if used.cost_micros + cost_micros > self.policy.daily_cost_micros {
            return self.refused(model, ModelError::OverBudget(format!("the day's {} µ$ are spent", self.policy.daily_cost_micros)));
        }
        Ok(())
    }

    /// Records what a call cost and what it says about the service's health.
    async fn settle(&self, model: &str, took: Duration, timeout: Duration, error: Option<&ModelError>, (prompt_tokens, completion_tokens): (u32, u32)) {
        let now = self.clock.now_ms();
        let late = took > timeout;
        let outcome = match error {
            Some(e) => e.kind(),
            None if late => "late",
            None => "ok",
        };
        let labels = [("model", model.to_owned())];
        metrics::counter!(MODEL_CALLS, "model" => model.to_owned(), "outcome" => outcome).increment(1);
        metrics::histogram!(MODEL_LATENCY, &labels).record(took.as_secs_f64() * 1000.0);
        metrics::counter!(MODEL_TOKENS, "model" => model.to_owned(), "kind" => "prompt").increment(prompt_tokens.into());
        metrics::counter!(MODEL_TOKENS, "model" => model.to_owned(), "kind" => "completion").increment(completion_tokens.into());
        let usage = Usage {
            calls: 1,
            tokens: u64::from(prompt_tokens) + u64::from(completion_tokens),
            cost_micros: self.policy.cost(prompt_tokens, completion_tokens),
        };
        if let Err(e) = self.ledger.add(now.div_euclid(DAY_MS), usage).await {
            tracing::warn!(model, error = %e, "model usage not recorded");
        }
        let failed = late || error.is_some_and(ModelError::is_service_failure);
        tracing::info!(model, outcome, took_ms = took.as_millis() as u64, prompt_tokens, completion_tokens, "model call");
        let Ok(before) = self.ledger.breaker(model).await else { return };
        let after = if failed {
            let failures = before.failures + 1;
            let open = failures >= self.policy.breaker_failures;
            if open {
                tracing::warn!(model, failures, cooldown_ms = self.policy.breaker_cooldown.as_millis() as u64, "model circuit opened");
            }
            Breaker { failures, open_until_ms: if open { now + self.policy.breaker_cooldown.as_millis() as i64 } else { before.open_until_ms } }
        } else {
            Breaker::default()
        };
        if after != before
            && let Err(e) = self.ledger.set_breaker(model, after).await
        {
            tracing::warn!(model, error = %e, "model breaker not recorded");
        }
    }
}

/// A ledger in memory: one Lambda container's, or a test's.
#[derive(Default)]
pub struct MemoryLedger {
    days: std::cell::RefCell<std::collections::HashMap<i64, Usage>>,
    breakers: std::cell::RefCell<std::collections::HashMap<String, Breaker>>,
}

#[async_trait(?Send)]
impl UsageLedger for MemoryLedger {
    async fn usage(&self, day: i64) -> StoreResult<Usage> {
        Ok(self.days.borrow().get(&day).copied().unwrap_or_default())
    }

    async fn add(&self, day: i64, usage: Usage) -> StoreResult<()> {
        let mut days = self.days.borrow_mut();
        let u = days.entry(day).or_default();
        u.calls += usage.calls;
        u.tokens += usage.tokens;
        u.cost_micros += usage.cost_micros;
        Ok(())
    }

    async fn breaker(&self, model: &str) -> StoreResult<Breaker> {
        Ok(self.breakers.borrow().get(model).copied().unwrap_or_default())
    }

    async fn set_breaker(&self, model: &str, state: Breaker) -> StoreResult<()> {
        self.breakers.borrow_mut().insert(model.to_owned(), state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    struct Fixed(Cell<i64>);
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            self.0.get()
        }
    }

    /// A model that answers or fails as told, counting its calls.
    struct Scripted {
        outcomes: RefCell<Vec<Result<Generation, ModelError>>>,
        calls: Cell<u32>,
    }

    #[async_trait(?Send)]
    impl LanguageModel for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn generate(&self, _: &Prompt, limits: &Limits) -> Result<Generation, ModelError> {
            self.calls.set(self.calls.get() + 1);
            assert!(limits.max_tokens > 0);
            self.outcomes.borrow_mut().remove(0)
        }
    }

    fn ok(tokens: u32) -> Result<Generation, ModelError> {
        Ok(Generation { text: "fine".into(), model: "scripted".into(), prompt_tokens: tokens, completion_tokens: tokens })
    }

    fn prompt() -> Prompt {
        Prompt { request: "hello there".into(), ..Prompt::default() }
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_closes_after_its_cooldown() {
        let ledger = MemoryLedger::default();
        let clock = Fixed(Cell::new(1_000));
        let policy = Policy { breaker_failures: 2, breaker_cooldown: Duration::from_secs(10), ..Policy::default() };
        let guard = Guard { ledger: &ledger, policy: &policy, clock: &clock };
        let model = Scripted { outcomes: RefCell::new(vec![Err(ModelError::Timeout), Err(ModelError::Unavailable("503".into())), ok(5)]), calls: Cell::new(0) };
        let call = || pollster::block_on(guard.generate(&model, &prompt(), &Limits::default()));
        assert_eq!(call(), Err(ModelError::Timeout));
        assert_eq!(call(), Err(ModelError::Unavailable("503".into())));
        // open: the model isn't called
        assert_eq!(call(), Err(ModelError::CircuitOpen));
        assert_eq!(model.calls.get(), 2);
        clock.0.set(1_000 + 10_001);
        assert!(call().is_ok());
        assert_eq!(pollster::block_on(ledger.breaker("scripted")), Ok(Breaker::default()));
    }

    #[test]
    fn an_invalid_input_does_not_count_against_the_service() {
        let ledger = MemoryLedger::default();
        let clock = Fixed(Cell::new(0));
        let policy = Policy { breaker_failures: 1, ..Policy::default() };
        let guard = Guard { ledger: &ledger, policy: &policy, clock: &clock };
        let model = Scripted { outcomes: RefCell::new(vec![Err(ModelError::InvalidInput("no".into())), ok(1)]), calls: Cell::new(0) };
        assert!(pollster::block_on(guard.generate(&model, &prompt(), &Limits::default())).is_err());
        assert!(pollster::block_on(guard.generate(&model, &prompt(), &Limits::default())).is_ok());
    }

    #[test]
    fn the_days_token_and_cost_budgets_refuse_before_calling() {
        let ledger = MemoryLedger::default();
        let clock = Fixed(Cell::new(5));
        let policy = Policy { daily_tokens: 300, ..Policy::default() };
        let guard = Guard { ledger: &ledger, policy: &policy, clock: &clock };
        let model = Scripted { outcomes: RefCell::new(vec![ok(100), ok(100)]), calls: Cell::new(0) };
        let limits = Limits { max_tokens: 50, ..Limits::default() };
        assert!(pollster::block_on(guard.generate(&model, &prompt(), &limits)).is_ok());
        // 200 spent; another ~3 + 50 fits
        assert!(pollster::block_on(guard.generate(&model, &prompt(), &limits)).is_ok());
        assert!(matches!(pollster::block_on(guard.generate(&model, &prompt(), &limits)), Err(ModelError::OverBudget(_))));
        assert_eq!(model.calls.get(), 2);
        let usage = pollster::block_on(ledger.usage(0)).expect("usage");
        assert_eq!((usage.calls, usage.tokens), (2, 400));
        // a new day
        clock.0.set(DAY_MS + 5);
        let cheap = Policy { daily_cost_micros: 1, ..Policy::default() };
        let guard = Guard { ledger: &ledger, policy: &cheap, clock: &clock };
        assert!(matches!(pollster::block_on(guard.generate(&model, &prompt(), &limits)), Err(ModelError::OverBudget(_))));
    }

    #[test]
    fn a_prompt_over_the_requests_budget_is_refused_and_answers_are_capped() {
        let ledger = MemoryLedger::default();
        let clock = Fixed(Cell::new(0));
        let policy = Policy { request_tokens: 40, ..Policy::default() };
        let guard = Guard { ledger: &ledger, policy: &policy, clock: &clock };
        let model = Scripted { outcomes: RefCell::new(vec![ok(1)]), calls: Cell::new(0) };
        let long = Prompt { request: "x".repeat(400), ..Prompt::default() };
        assert!(matches!(pollster::block_on(guard.generate(&model, &long, &Limits::default())), Err(ModelError::OverBudget(_))));
        assert_eq!(model.calls.get(), 0);
    }

    #[test]
    fn policy_variables_parse_or_name_the_bad_one() {
        let p = Policy::from_lookup(|k| (k == "ai_daily_tokens").then(|| "42".to_owned())).expect("valid");
        assert_eq!(p.daily_tokens, 42);
        assert_eq!(p.timeout, Policy::default().timeout);
        let e = Policy::from_lookup(|k| (k == "ai_timeout_ms").then(|| "soon".to_owned())).expect_err("invalid");
        assert_eq!(e.name, "ai_timeout_ms");
    }
}
