//! What Go Coffee counts, recorded once here through the `metrics` facade and exported by each
//! platform's shell: CloudWatch Embedded Metric Format on Lambda and on Spin (JSON lines on
//! stdout, which CloudWatch Logs turns into metrics and the local host into Prometheus series).
//! Without a recorder (unit tests) recording costs next to nothing.
//!
//! Names are platform-neutral; the unit says what a value is: `Count` series are counters,
//! `Milliseconds` series are distributions. Labels are few and bounded (event and outcome
//! names, consumers, route templates): never an id.

use gocoffee_core::OrderEvent;
use metrics::Unit;

/// Order events appended, by `event` (`OrderPlaced`, `OrderConfirmed`, `OrderCancelled`, ...).
pub const ORDER_EVENTS: &str = "order_events";
/// Payment outcomes, by `outcome` (`confirmed`, `expired`, `underpaid`, `cancelled`, `refunded`).
pub const PAYMENT_OUTCOMES: &str = "payment_outcomes";
/// From an event's occurrence to a consumer handling it, by `consumer`: the lag of the stream.
pub const CONSUMER_LAG: &str = "consumer_lag";
/// Messages a consumer failed, by `consumer` and `kind` (`retryable`: delivered again;
/// `poison`: never will succeed, dead-lettered).
pub const CONSUMER_FAILURES: &str = "consumer_failures";
/// Messages put in a dead-letter queue by the shell, by `consumer`.
pub const DEAD_LETTERS: &str = "dead_letters";
/// HTTP requests answered, by `route` (the template) and `status` class (`2xx`, ...), where the
/// platform doesn't measure them itself (Lambda behind an HTTP API: the local host and Spin do).
pub const HTTP_REQUESTS: &str = "http_requests";
/// Their latency, by `route`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration";
/// Requests the gateway refused for a rate limit, by `class` (`credentials`, `write`, `read`).
pub const RATE_LIMITED: &str = "rate_limited";
/// What the Lambda shell's EMF documents are filed under, and the Prometheus prefix on the host.
pub const NAMESPACE: &str = "GoCoffee";

/// Gives every series its unit and meaning; the shells call it once their recorder is in place.
pub fn describe() {
    metrics::describe_counter!(ORDER_EVENTS, Unit::Count, "order events appended, by event");
    metrics::describe_counter!(PAYMENT_OUTCOMES, Unit::Count, "payment outcomes, by outcome");
    metrics::describe_histogram!(CONSUMER_LAG, Unit::Milliseconds, "from an event's occurrence to its handling, by consumer");
    metrics::describe_counter!(CONSUMER_FAILURES, Unit::Count, "messages a consumer failed, by consumer and kind");
    metrics::describe_counter!(DEAD_LETTERS, Unit::Count, "messages dead-lettered, by consumer");
    metrics::describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests, by route and status class");
    metrics::describe_histogram!(HTTP_REQUEST_DURATION, Unit::Milliseconds, "HTTP request latency, by route");
    metrics::describe_counter!(RATE_LIMITED, Unit::Count, "requests refused for a rate limit, by class");
}

/// An order event was appended (placed, changed by a person or by the saga).
pub fn order_event(event: &OrderEvent) {
    metrics::counter!(ORDER_EVENTS, "event" => event.name()).increment(1);
}

/// A payment ended `outcome`.
pub fn payment_outcome(outcome: &'static str) {
    metrics::counter!(PAYMENT_OUTCOMES, "outcome" => outcome).increment(1);
}

/// `consumer` handled (or tried) an event that occurred at `occurred_at_ms`.
pub fn consumed(consumer: &'static str, occurred_at_ms: i64, now_ms: i64) {
    metrics::histogram!(CONSUMER_LAG, "consumer" => consumer).record((now_ms - occurred_at_ms).max(0) as f64);
}

/// `consumer` failed a message; `poison` ones are dead-lettered, the rest come back.
pub fn consumer_failed(consumer: &'static str, poison: bool) {
    metrics::counter!(CONSUMER_FAILURES, "consumer" => consumer, "kind" => if poison { "poison" } else { "retryable" }).increment(1);
}

/// The shell put one of `consumer`'s messages in its dead-letter queue.
pub fn dead_lettered(consumer: &'static str) {
    metrics::counter!(DEAD_LETTERS, "consumer" => consumer).increment(1);
}

/// One answered request on `route` (a template from the route table, or `none`).
pub fn http_request(route: &str, status: u16, elapsed_ms: f64) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "status" => class).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route.to_owned()).record(elapsed_ms);
}

/// The gateway refused a request of `class` for its client's rate limit.
pub fn rate_limited(class: &'static str) {
    metrics::counter!(RATE_LIMITED, "class" => class).increment(1);
}
