//! Events and schedules where the platform runs HTTP triggers alone (the Fermyon profiles, made
//! by `gocoffee-host profile`): the outbox relay delivers each event to the components subscribed
//! to its channel over Spin's service chaining, at `http://<component>.spin.internal/events/<channel>`,
//! a private route of the consumer's (Fermyon Wasm Functions), or runs their handlers itself where
//! there is no chaining (Fermyon Cloud); and the cron components answer on an HTTP route that the
//! platform's scheduled jobs call with the `cron_secret`.
//!
//! Delivery keeps the Redis profile's guarantees: the relay deletes an outbox entry only when
//! every subscriber took it, and stops at the first that didn't, so a failed delivery is retried
//! by the next relay (the next write, or the reconciler's schedule) and nothing overtakes it.
//! Subscribers that took it before see it again, and are idempotent.

use std::cell::OnceCell;
use std::time::Duration;

use gocoffee_app::{ApiError, Request, Response};
use gocoffee_sql::Publisher;
use http::StatusCode;

use crate::outbound::{PostFailure, post_json};
use crate::{Entry, SpinRedisPublisher, variable};

/// The variable naming each channel's subscribers: `channel:component,component` entries
/// separated by spaces, written by `gocoffee-host profile` from the Redis triggers it replaces.
pub const SUBSCRIBERS_VARIABLE: &str = "event_subscribers";

/// How long one chained delivery may take: the consumer's whole handling of one event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(8);

/// The variable saying how `event_subscribers` are reached: `chained` (the default: service
/// chaining) or `in-process` (the relaying component runs the consumers' handlers itself, where
/// the platform has no service chaining: Fermyon Cloud).
pub const DELIVERY_VARIABLE: &str = "event_delivery";

/// Where this component's outbox goes: Redis channels, or the subscribers the profile names,
/// chained or in process. Read from the variables on the first publish, so the many invocations
/// that publish nothing (reads, whose relay finds the outbox empty) never look them up.
#[derive(Default)]
pub struct SpinPublisher(OnceCell<Result<Route, String>>);

enum Route {
    Redis(SpinRedisPublisher),
    Chained(ChainedPublisher),
    #[cfg(feature = "in-process")]
    InProcess(InProcessPublisher),
}

impl Route {
    /// By `event_subscribers` and `event_delivery` when the profile sets them, else Redis at
    /// `redis_address`.
    fn from_variables() -> Result<Route, String> {
        let Some(spec) = variable(SUBSCRIBERS_VARIABLE).filter(|s| !s.trim().is_empty()) else {
            return Ok(Route::Redis(SpinRedisPublisher::new(variable("redis_address").unwrap_or_else(|| "redis://127.0.0.1:6379".into()))));
        };
        let subscribers = Subscribers::parse(&spec)?;
        match variable(DELIVERY_VARIABLE).as_deref().unwrap_or("") {
            "" | "chained" => Ok(Route::Chained(ChainedPublisher(subscribers))),
            #[cfg(feature = "in-process")]
            "in-process" => InProcessPublisher::new(&subscribers).map(Route::InProcess),
            #[cfg(not(feature = "in-process"))]
            "in-process" => Err(format!("{DELIVERY_VARIABLE} is in-process, and this build has no consumers to run (its in-process-consumers feature)")),
            other => Err(format!("{DELIVERY_VARIABLE}: `{other}` is neither chained nor in-process")),
        }
    }
}

impl Publisher for SpinPublisher {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        match self.0.get_or_init(Route::from_variables) {
            Ok(Route::Redis(p)) => p.publish(channel, payload),
            Ok(Route::Chained(p)) => p.publish(channel, payload),
            #[cfg(feature = "in-process")]
            Ok(Route::InProcess(p)) => p.publish(channel, payload),
            Err(why) => Err(why.clone()),
        }
    }
}

/// Whether a consumer's error says the message can never succeed: Go Coffee's consumers start
/// their errors `poison message:` or `retryable:` ([`gocoffee_app::consumer::ConsumerError`]).
fn is_poison(why: &str) -> bool {
    why.starts_with("poison")
}

/// A consumer's whole handling of one event, as its own component runs it: its Redis trigger, its
/// private delivery route ([`serve_delivery`]), or a publisher running it in process.
pub type Consumer = for<'a> fn(&'a [u8]) -> Entry<'a, anyhow::Result<()>>;

/// Consumers a component brings along to run in process, besides the three this crate has
/// (`order-consumer`, `analytics-consumer`, `notifier`): the payment service's, registered by the components
/// built for in-process delivery ([`run_in_process`]).
static EXTRA_CONSUMERS: std::sync::OnceLock<&'static [(&'static str, Consumer)]> = std::sync::OnceLock::new();

/// Makes `consumers` available to this invocation's in-process delivery. Called by a component's
/// entry point before it serves, in builds for platforms without service chaining.
pub fn run_in_process(consumers: &'static [(&'static str, Consumer)]) {
    let _ = EXTRA_CONSUMERS.set(consumers);
}

/// Delivers each channel's events by running its subscribers' handlers in this component, one
/// after another, with the same outcomes as a chained delivery: handled, poison (logged, not
/// retried), or retryable (the entry stays for the next relay). Each handler opens its own
/// services, as its component would, and runs on a nested executor: publishing is synchronous,
/// and spin-sdk's executor runs a future to completion wherever it is called. Only in builds with
/// the `in-process` feature, so the other builds don't carry the consumers' code.
#[cfg(feature = "in-process")]
pub struct InProcessPublisher {
    /// Each channel's subscribers, with their handlers.
    channels: Vec<(String, Vec<(String, Consumer)>)>,
}

#[cfg(feature = "in-process")]
impl InProcessPublisher {
    /// Finds every subscriber's handler, or says which this component wasn't built with.
    fn new(subscribers: &Subscribers) -> Result<Self, String> {
        let builtin: [(&str, Consumer); 3] =
            [("order-consumer", crate::consume), ("analytics-consumer", crate::consume_analytics), ("notifier", crate::live::notify)];
        let extra = EXTRA_CONSUMERS.get().copied().unwrap_or(&[]);
        let handler = |component: &String| {
            let found = builtin.iter().chain(extra).find(|(name, _)| name == component).map(|(_, f)| (component.clone(), *f));
            found.ok_or_else(|| format!("{SUBSCRIBERS_VARIABLE} names `{component}`, whose handler this component was not built with"))
        };
        let channels = subscribers
            .0
            .iter()
            .map(|(channel, components)| Ok((channel.clone(), components.iter().map(handler).collect::<Result<_, String>>()?)))
            .collect::<Result<_, String>>()?;
        Ok(InProcessPublisher { channels })
    }
}

#[cfg(feature = "in-process")]
impl Publisher for InProcessPublisher {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        let consumers = self.channels.iter().find(|(c, _)| c == channel).map_or(&[][..], |(_, list)| list);
        for (component, consume) in consumers {
            if let Err(e) = spin_sdk::http::run(consume(payload)) {
                let why = format!("{e:#}");
                if !is_poison(&why) {
                    return Err(format!("{component} could not handle an event on {channel}: {why}"));
                }
                tracing::error!(component = %component, channel, error = %why, "poison message: not delivered again");
            }
        }
        Ok(())
    }
}

/// Each channel's subscribers, in [`SUBSCRIBERS_VARIABLE`]'s order.
#[derive(Debug, PartialEq, Eq)]
pub struct Subscribers(Vec<(String, Vec<String>)>);

impl Subscribers {
    /// Reads [`SUBSCRIBERS_VARIABLE`]'s format.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut subscribers: Vec<(String, Vec<String>)> = Vec::new();
        for entry in spec.split_whitespace() {
            let (channel, components) = entry.split_once(':').ok_or_else(|| format!("{SUBSCRIBERS_VARIABLE}: `{entry}` is not channel:component,..."))?;
            let components: Vec<String> = components.split(',').map(str::to_owned).collect();
            let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid(channel) || !components.iter().all(|c| valid(c)) {
                return Err(format!("{SUBSCRIBERS_VARIABLE}: `{entry}` names a channel or component that isn't lowercase letters, digits and dashes"));
            }
            match subscribers.iter_mut().find(|(c, _)| c == channel) {
                Some((_, list)) => list.extend(components),
                None => subscribers.push((channel.to_owned(), components)),
            }
        }
        Ok(Subscribers(subscribers))
    }

    /// The components subscribed to `channel` (none: the channel takes the event, as Redis does).
    fn of(&self, channel: &str) -> &[String] {
        self.0.iter().find(|(c, _)| c == channel).map_or(&[], |(_, list)| list)
    }
}

/// Delivers each channel's events to its subscribers by service chaining, in the order given.
pub struct ChainedPublisher(Subscribers);

impl Publisher for ChainedPublisher {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        for component in self.0.of(channel) {
            let url = format!("http://{component}.spin.internal/events/{channel}");
            match post_json(&url, payload, DELIVERY_TIMEOUT, 64 * 1024) {
                Ok(posted) if (200..300).contains(&posted.status) => {}
                // The consumer says the message can never succeed: it logged and counted it, and
                // retrying would hold every later event back forever (Redis would have dropped it).
                Ok(posted) if posted.status == StatusCode::UNPROCESSABLE_ENTITY.as_u16() => {
                    tracing::error!(component = %component, channel, body = %String::from_utf8_lossy(&posted.body), "poison message: not delivered again");
                }
                Ok(posted) => {
                    return Err(format!("{component} answered {} to an event on {channel}: {}", posted.status, String::from_utf8_lossy(&posted.body)));
                }
                Err(PostFailure::Timeout) => return Err(format!("{component} took over {DELIVERY_TIMEOUT:?} with an event on {channel}")),
                Err(PostFailure::Io(why)) => return Err(format!("delivering an event on {channel} to {component}: {why}")),
            }
        }
        Ok(())
    }
}

/// A consumer's private route, the chained delivery of one event: `POST` with the event as the
/// body (what the Redis trigger would have passed), answered 204 when handled (or already
/// handled), 422 when it can never be (poison), 503 when it may be later (the relay retries).
pub fn serve_delivery(req: Request, consume: Consumer) -> Entry<'static, Response> {
    Box::pin(async move {
        if req.method() != http::Method::POST {
            return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "events are delivered with POST").into_response();
        }
        match consume(req.body()).await {
            Ok(()) => gocoffee_app::http::no_content(),
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!(error = %why, path = %req.uri().path(), "delivery not handled");
                if is_poison(&why) { ApiError::unprocessable("poison_message", why).into_response() } else { ApiError::unavailable().into_response() }
            }
        }
    })
}

/// The variable holding the key the platform's scheduled jobs present.
pub const CRON_SECRET_VARIABLE: &str = "cron_secret";

/// A cron component's HTTP route, for platforms whose schedules are HTTP requests to the app
/// (Fermyon Wasm Functions' `spin aka cron`, or any outside scheduler): `GET` or `POST`, with the
/// `cron_secret` as `?key=` (a scheduled job can't set headers) or a bearer token. Runs one pass
/// of `run`: 200 when it finished, 503 when it didn't. With no `cron_secret` set the route is off
/// (404), so a deployment never exposes it by accident.
pub fn serve_scheduled(req: Request, run: fn() -> Entry<'static, Result<(), String>>) -> Entry<'static, Response> {
    Box::pin(async move {
        let Some(secret) = variable(CRON_SECRET_VARIABLE).filter(|s| !s.is_empty()) else {
            return ApiError::not_found("route").into_response();
        };
        if req.method() != http::Method::GET && req.method() != http::Method::POST {
            return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "a scheduled run is GET or POST").into_response();
        }
        if !presented_keys(&req).any(|key| gocoffee_app::auth::constant_time_eq(key.as_bytes(), secret.as_bytes())) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a scheduled run needs the cron_secret as ?key= or a bearer token").into_response();
        }
        match run().await {
            Ok(()) => gocoffee_app::http::json(StatusCode::OK, &serde_json::json!({ "ran": true })),
            Err(cause) => {
                tracing::error!(%cause, "scheduled run failed");
                ApiError::unavailable().into_response()
            }
        }
    })
}

/// The keys a request presents: its `key` query parameters and its bearer token.
fn presented_keys(req: &Request) -> impl Iterator<Item = String> + '_ {
    let from_query = gocoffee_app::http::query_pairs(req).into_iter().filter(|(k, _)| k == "key").map(|(_, v)| v);
    let bearer = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
    from_query.chain(bearer)
}
