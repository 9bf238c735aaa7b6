//! The gateway's rate limits: how many requests one client may make, by the class of route it
//! calls. A client is the caller a valid bearer token names, else the address the request came
//! from; logging in, registering and refreshing always count by address, under the strictest
//! limit, since that is where credentials get stuffed.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one number):
//! each key stores its theoretical arrival time `tat`. A request at `now` is admitted when
//! `max(tat, now) - now <= tolerance`, and then `tat` moves to `max(tat, now) + interval`. Each
//! adapter applies that in one atomic step (a conditional upsert on SQLite, conditional updates
//! on DynamoDB), so concurrent requests can never let more than the limit through.

use std::net::IpAddr;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::{ApiError, Caller, Request, Services};

/// What a route costs its caller: one request of its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Login, register, refresh: counted by address, strictest.
    Credentials,
    /// Any other change (POST, PUT, PATCH, DELETE).
    Write,
    /// GET and HEAD.
    Read,
    /// Never limited: liveness probes.
    Exempt,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Credentials => "credentials",
            RateClass::Write => "write",
            RateClass::Read => "read",
            RateClass::Exempt => "exempt",
        }
    }
}

/// `requests` per `per_ms`, of which up to `burst` may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per_ms: i64,
    pub burst: u32,
}

/// What a limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the limit: the earliest a request could be admitted is this far away.
    Refused {
        retry_after_ms: i64,
    },
}

impl RateLimit {
    /// The steady spacing between requests (GCRA's emission interval), at least 1 ms.
    pub fn interval_ms(&self) -> i64 {
        (self.per_ms / i64::from(self.requests.max(1))).max(1)
    }

    /// How far ahead of now a key's `tat` may be for a request to still be admitted.
    pub fn tolerance_ms(&self) -> i64 {
        self.interval_ms() * i64::from(self.burst.max(1) - 1)
    }

    /// GCRA: given a key's stored `tat` (none for a new or forgotten key), the `tat` to store
    /// when a request at `now_ms` is admitted, or how long until one would be.
    pub fn step(&self, tat: Option<i64>, now_ms: i64) -> Result<i64, i64> {
        let from = tat.map_or(now_ms, |t| t.max(now_ms));
        let early = from - now_ms - self.tolerance_ms();
        if early > 0 { Err(early) } else { Ok(from + self.interval_ms()) }
    }

    /// How long a key stays meaningful after `now_ms`: once its `tat` has passed, it is the
    /// same as no key. Adapters let it expire after this.
    pub fn horizon_ms(&self) -> i64 {
        self.tolerance_ms() + self.interval_ms()
    }
}

/// The configured limit of each class; `None` leaves a class unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub credentials: Option<RateLimit>,
    pub write: Option<RateLimit>,
    pub read: Option<RateLimit>,
}

impl Default for RateLimits {
    /// Per client: 10 credential attempts a minute (5 at once), 60 changes a minute (20 at
    /// once), 300 reads a minute (100 at once).
    fn default() -> Self {
        RateLimits {
            credentials: Some(RateLimit { requests: 10, per_ms: 60_000, burst: 5 }),
            write: Some(RateLimit { requests: 60, per_ms: 60_000, burst: 20 }),
            read: Some(RateLimit { requests: 300, per_ms: 60_000, burst: 100 }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitDoc {
    requests: u32,
    per_seconds: u32,
    burst: Option<u32>,
}

/// Each class is absent (its default), `null` (unlimited) or a limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsDoc {
    #[serde(default, deserialize_with = "present")]
    credentials: Option<Option<LimitDoc>>,
    #[serde(default, deserialize_with = "present")]
    write: Option<Option<LimitDoc>>,
    #[serde(default, deserialize_with = "present")]
    read: Option<Option<LimitDoc>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<LimitDoc>>, D::Error> {
    Option::<LimitDoc>::deserialize(d).map(Some)
}

impl RateLimits {
    /// No limits at all (`rate_limits = "off"`).
    pub const OFF: RateLimits = RateLimits { credentials: None, write: None, read: None };

    /// The `rate_limits` variable: `off`, or JSON such as
    /// `{"credentials": {"requests": 10, "per_seconds": 60, "burst": 5}, "read": null}`, where a
    /// class left out keeps its default and `null` lifts its limit. `burst` defaults to 1.
    pub fn parse(text: &str) -> Result<RateLimits, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid { name: "rate_limits", why };
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(RateLimits::OFF);
        }
        let doc: LimitsDoc = serde_json::from_str(text).map_err(|e| invalid(format!("{e} (expected `off` or a JSON object of classes)")))?;
        let defaults = RateLimits::default();
        let limit = |class: &str, given: Option<Option<LimitDoc>>, default: Option<RateLimit>| -> Result<Option<RateLimit>, ConfigError> {
            let Some(given) = given else { return Ok(default) };
            let Some(l) = given else { return Ok(None) };
            let burst = l.burst.unwrap_or(1);
            if l.requests == 0 || !(1..=86_400).contains(&l.per_seconds) || !(1..=100_000).contains(&burst) {
                return Err(invalid(format!("`{class}`: requests must be at least 1, per_seconds between 1 and 86400, burst between 1 and 100000")));
            }
            if u64::from(l.requests) > u64::from(l.per_seconds) * 1000 {
                return Err(invalid(format!("`{class}`: at most 1000 requests a second")));
            }
            Ok(Some(RateLimit { requests: l.requests, per_ms: i64::from(l.per_seconds) * 1000, burst }))
        };
        Ok(RateLimits {
            credentials: limit("credentials", doc.credentials, defaults.credentials)?,
            write: limit("write", doc.write, defaults.write)?,
            read: limit("read", doc.read, defaults.read)?,
        })
    }

    pub fn of(&self, class: RateClass) -> Option<&RateLimit> {
        match class {
            RateClass::Credentials => self.credentials.as_ref(),
            RateClass::Write => self.write.as_ref(),
            RateClass::Read => self.read.as_ref(),
            RateClass::Exempt => None,
        }
    }
}

/// Where a request came from, as its platform saw it (Spin's `spin-client-addr`, API Gateway's
/// `sourceIp`, the host's socket): put in the request's extensions by the shell, never taken from
/// a header a client could set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
    pub fn parse(text: &str) -> Option<ClientAddr> {
        let text = text.trim();
        text.parse::<std::net::SocketAddr>().map(|s| s.ip()).or_else(|_| text.parse::<IpAddr>()).ok().map(|ip| ClientAddr(ip.to_canonical()))
    }

    /// The client as a limit counts it: an IPv4 address, or an IPv6 address's /64 (one
    /// subscriber's network: any host in it can take a fresh address at will).
    pub fn key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// The gateway's check before a route runs: `Err` is the 429 to answer instead. `caller` is who
/// a valid token names (ignored for credentials, which count by address). A limiter that fails
/// lets the request through, logged: a store outage must not take the API down with it, and the
/// route needs the same store anyway.
pub async fn gate(svc: &Services<'_>, req: &Request, class: RateClass, caller: Option<&Caller>, now_ms: i64) -> Result<(), ApiError> {
    let (Some(limiter), Some(limit)) = (svc.limiter, svc.config.rate_limits.of(class)) else { return Ok(()) };
    let key = client_key(req, class, caller);
    match limiter.admit(&key, limit, now_ms).await {
        Ok(Admission::Admitted) => Ok(()),
        Ok(Admission::Refused { retry_after_ms }) => {
            crate::telemetry::rate_limited(class.as_str());
            tracing::info!(class = class.as_str(), retry_after_ms, "rate limited");
            Err(ApiError::too_many_requests(class.as_str(), retry_after_ms))
        }
        Err(e) => {
            tracing::warn!(error = %e, class = class.as_str(), "rate limiter unavailable; the request goes through");
            Ok(())
        }
    }
}

/// `credentials:addr:203.0.113.9`, `read:user:{id}`: the class, then who.
fn client_key(req: &Request, class: RateClass, caller: Option<&Caller>) -> String {
    match caller.filter(|_| class != RateClass::Credentials) {
        Some(c) => format!("{}:user:{}", class.as_str(), c.user_id),
        None => {
            let addr = req.extensions().get::<ClientAddr>().map_or_else(|| "unknown".to_owned(), ClientAddr::key);
            format!("{}:addr:{addr}", class.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_at_once_and_then_one_request_per_interval() {
        let limit = RateLimit { requests: 10, per_ms: 60_000, burst: 3 };
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(limit.step(tat, 1_000).expect("within the burst"));
        }
        assert_eq!(limit.step(tat, 1_000), Err(6_000), "the fourth waits one interval");
        assert_eq!(limit.step(tat, 6_999), Err(1));
        let tat = limit.step(tat, 7_000).expect("one interval later");
        assert_eq!(limit.step(Some(tat), 7_000), Err(6_000));
        // Idle long enough, the whole burst is back.
        let mut tat = Some(tat);
        for _ in 0..3 {
            tat = Some(limit.step(tat, 100_000).expect("a fresh burst"));
        }
        assert!(limit.step(tat, 100_000).is_err());
    }

    #[test]
    fn a_burst_of_one_spaces_every_request() {
        let limit = RateLimit { requests: 2, per_ms: 1_000, burst: 1 };
        let tat = limit.step(None, 0).expect("first");
        assert_eq!(limit.step(Some(tat), 499), Err(1));
        assert!(limit.step(Some(tat), 500).is_ok());
        assert_eq!(limit.horizon_ms(), 500);
    }

    #[test]
    fn limits_are_configured_per_class_with_defaults_and_off() {
        assert_eq!(RateLimits::parse("off"), Ok(RateLimits::OFF));
        let l = RateLimits::parse(r#"{"credentials": {"requests": 3, "per_seconds": 3600, "burst": 3}, "read": null}"#).expect("valid");
        assert_eq!(l.credentials, Some(RateLimit { requests: 3, per_ms: 3_600_000, burst: 3 }));
        assert_eq!((l.write, l.read), (RateLimits::default().write, None));
        assert_eq!(RateLimits::parse("{}"), Ok(RateLimits::default()));
        for bad in [
            "on",
            r#"{"reads": null}"#,
            r#"{"write": {"requests": 0, "per_seconds": 1}}"#,
            r#"{"write": {"requests": 5000, "per_seconds": 1}}"#,
            r#"{"write": {"requests": 1, "per_seconds": 1, "burst": 0}}"#,
            r#"{"write": {"requests": 1, "per_seconds": 1, "rate": 2}}"#,
        ] {
            assert!(matches!(RateLimits::parse(bad), Err(ConfigError::Invalid { name: "rate_limits", .. })), "{bad}");
        }
    }

    #[test]
    fn clients_are_addresses_with_ipv6_counted_by_network() {
        assert_eq!(ClientAddr::parse("203.0.113.9:51234").map(|c| c.key()), Some("203.0.113.9".into()));
        assert_eq!(ClientAddr::parse("203.0.113.9").map(|c| c.key()), Some("203.0.113.9".into()));
        assert_eq!(ClientAddr::parse("[2001:db8:1:2:aaaa::1]:443").map(|c| c.key()), Some("2001:db8:1:2::/64".into()));
        assert_eq!(ClientAddr::parse("2001:db8:1:2:bbbb::7").map(|c| c.key()), Some("2001:db8:1:2::/64".into()));
        assert_eq!(ClientAddr::parse("::ffff:10.0.0.1").map(|c| c.key()), Some("10.0.0.1".into()));
        assert_eq!(ClientAddr::parse("localhost"), None);
    }
}
