//! Live order status: the notifier that turns each order event into channel messages
//! ([`gocoffee_core::live::Envelope`]) in a feed, and the Server-Sent Events route that serves
//! the feed to clients. The shell puts a [`LiveContext`] in [`Services::extension`].
//!
//! Nothing in the order path waits on a client: the notifier consumes the orders stream like any
//! other consumer. A stream opens at the feed's head (or after the client's `Last-Event-ID`);
//! a shell that can stream keeps it open, polling the feed ([`poll`]), for a bounded time; one
//! that can't answers the first batch and the client reconnects. Either way the client fetches
//! the order (or the board) over REST once the stream is open, and drops messages whose version
//! it already has.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gocoffee_core::Role;
use gocoffee_core::live::{Channel, Envelope, envelopes, parse_channels};
use hmac::{Hmac, Mac};
use http::{HeaderValue, StatusCode, header};
use sha2::Sha256;

use crate::consumer::{ConsumerError, order_event, traced};
use crate::http::{ApiError, Response, json, query_pairs, query_param, rfc3339};
use crate::ports::StoreResult;
use crate::{Caller, Ctx, Function, Services, route};

pub mod sockets;

/// The notifier's name in logs, metrics and dead letters.
pub const NOTIFIER: &str = "notifier";
/// How long the feed keeps a message: a client away for longer resumes from the head, after
/// refetching the snapshot it needs anyway.
pub const RETENTION_MS: i64 = 15 * 60 * 1000;
/// Most messages one read of the feed returns; a stream reads again at once when it got this many.
pub const BATCH: usize = 100;
/// How long a client waits before reconnecting once a stream ends (the SSE `retry` field).
pub const RECONNECT_MS: u32 = 1000;

/// How long a ticket opens streams (and WebSocket connections) for.
pub const TICKET_TTL_MS: i64 = 60_000;

/// The key tickets are signed with: derived from the token secret, so one secret configures
/// both, and a ticket's MAC can never pass for a picture URL's, or the reverse.
fn ticket_mac(secret: &[u8]) -> Hmac<Sha256> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    derive.update(b"gocoffee live tickets v1");
    <Hmac<Sha256> as Mac>::new_from_slice(&derive.finalize().into_bytes()).expect("HMAC takes keys of any length")
}

/// A ticket for `caller` until `expires_at_ms`: what a browser puts in a URL where it can't set
/// an `Authorization` header (`EventSource`, `WebSocket`). `<claims>.<mac>`, both base64url; the
/// claims are `user id:role:expiry` (ids and roles hold no colon).
pub fn issue_ticket(secret: &[u8], caller: &Caller, expires_at_ms: i64) -> String {
    let claims = URL_SAFE_NO_PAD.encode(format!("{}:{}:{expires_at_ms}", caller.user_id, caller.role.as_str()));
    let mut mac = ticket_mac(secret);
    mac.update(claims.as_bytes());
    format!("{claims}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Who `ticket` was issued to, if it is genuine and unexpired at `now_ms`.
pub fn verify_ticket(secret: &[u8], ticket: &str, now_ms: i64) -> Option<Caller> {
    let (claims, signature) = ticket.split_once('.')?;
    let mut mac = ticket_mac(secret);
    mac.update(claims.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    let mut parts = claims.splitn(3, ':');
    let (user_id, role, expires_at_ms) = (parts.next()?, Role::parse(parts.next()?)?, parts.next()?.parse::<i64>().ok()?);
    (now_ms < expires_at_ms).then(|| Caller { user_id: user_id.to_owned(), role })
}

/// `POST /api/v1/live/tickets`: a ticket for the caller, good for [`TICKET_TTL_MS`], with the
/// transports this platform offers to open with it: `events_url` where the function serves the
/// event stream (it has the feed: Spin and the host), `socket_url` where the platform keeps
/// WebSocket connections (the host; API Gateway on AWS).
pub async fn ticket(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let expires_at_ms = ctx.now_ms + TICKET_TTL_MS;
    let ticket = issue_ticket(&ctx.svc.config.jwt_secret, &caller, expires_at_ms);
    let mut body = serde_json::json!({ "ticket": ticket, "expires_at": rfc3339(expires_at_ms), "expires_in": TICKET_TTL_MS / 1000 });
    if ctx.svc.extension::<LiveContext>().is_some() {
        body["events_url"] = "/api/v1/live/events".into();
    }
    if let Some(url) = &ctx.svc.config.live_socket_url {
        body["socket_url"] = url.as_str().into();
    }
    Ok(json(StatusCode::CREATED, &body))
}

/// The caller by their bearer token, or else by the `ticket` parameter.
fn stream_caller(ctx: &Ctx<'_>) -> Result<Caller, ApiError> {
    if ctx.req.headers().contains_key(header::AUTHORIZATION) {
        return ctx.caller();
    }
    let ticket = query_param(ctx.req, "ticket").ok_or_else(ApiError::unauthorized)?;
    verify_ticket(&ctx.svc.config.jwt_secret, &ticket, ctx.now_ms)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_ticket", "the ticket is invalid or expired; ask for a new one"))
}

/// One message in the feed, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Increasing with each message appended: the stream's event id, and where it resumes.
    pub seq: u64,
    /// The envelope, as JSON.
    pub message: String,
}

/// The live feed: every channel's messages in one sequence, kept for [`RETENTION_MS`].
#[async_trait(?Send)]
pub trait LiveFeed {
    /// Appends `messages` (one event's, on each of its channels) unless they are there already
    /// (the same event delivered again), and forgets messages appended before `forget_before_ms`.
    async fn append(&self, messages: &[Envelope], now_ms: i64, forget_before_ms: i64) -> StoreResult<()>;
    /// Up to `limit` messages on `channels` after position `after`, in order.
    async fn read(&self, channels: &[String], after: u64, limit: usize) -> StoreResult<Vec<FeedEntry>>;
    /// The position of the last message appended (0 for an empty feed).
    async fn head(&self) -> StoreResult<u64>;
}

/// What the live function and the notifier bring: the feed.
pub struct LiveContext {
    pub feed: Box<dyn LiveFeed>,
}

/// Handles one message from the orders stream: its messages go into the feed, once.
pub async fn notify(svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(NOTIFIER, payload)?;
    let live = svc.extension::<LiveContext>().ok_or_else(|| ConsumerError::Retryable("the notifier runs without its feed".into()))?;
    traced(svc, NOTIFIER, &event, async |_| {
        let now = svc.clock.now_ms();
        live.feed.append(&envelopes(&event, rfc3339), now, now - RETENTION_MS).await.map_err(ConsumerError::from)
    })
    .await
}

/// An open stream: what it follows and how far it got. In the first response's extensions, for
/// a shell that goes on streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStream {
    pub channels: Vec<String>,
    pub after: u64,
}

impl LiveStream {
    /// The next messages as SSE frames (empty when there are none), advancing the stream.
    pub async fn poll(&mut self, feed: &dyn LiveFeed) -> StoreResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let entries = feed.read(&self.channels, self.after, BATCH).await?;
            for entry in &entries {
                frame(&mut out, entry);
                self.after = entry.seq;
            }
            if entries.len() < BATCH {
                return Ok(out);
            }
        }
    }
}

/// One SSE event: its id is the feed position (what `Last-Event-ID` resumes from), its data
/// the envelope. No `event:` field, so a browser's `EventSource.onmessage` sees every message.
fn frame(out: &mut Vec<u8>, entry: &FeedEntry) {
    out.extend_from_slice(format!("id: {}\ndata: {}\n\n", entry.seq, entry.message).as_bytes());
}

/// An SSE comment that keeps idle connections (and the proxies between) open.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Where a stream resumes: the client's `Last-Event-ID` (a browser's `EventSource` sends it
/// when it reconnects), else the `last_event_id` query parameter.
fn resume_from(ctx: &Ctx<'_>) -> Result<Option<u64>, ApiError> {
    let header = ctx.req.headers().get("last-event-id").map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
    let raw = header.or_else(|| query_param(ctx.req, "last_event_id"));
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be an event id from this stream")),
    }
}

/// Whether `caller` may follow `channel`: the board needs staff; an order's channel its
/// customer or staff, and anyone else gets the 404 a missing order gets.
async fn authorize(svc: &Services<'_>, caller: &Caller, channel: &Channel) -> Result<(), ApiError> {
    if !channel.open_to(caller.role) {
        return Err(ApiError::forbidden(format!("`{channel}` needs the barista role or above")));
    }
    if let Channel::Order(id) = channel
        && !caller.role.is_staff()
    {
        let order = svc.orders.order(id).await?;
        if order.is_none_or(|o| o.customer_id != caller.user_id) {
            return Err(ApiError::not_found("order"));
        }
    }
    Ok(())
}

/// `GET /api/v1/live/events?channel=order:<id>&channel=kitchen`: the channels' messages as
/// Server-Sent Events, from the feed's head or after `Last-Event-ID`, for the bearer token's
/// caller or a ticket's (`?ticket=`: a browser's `EventSource` sends no headers). The body is
/// what the feed holds now, behind a `retry` and an `id` line (so a reconnect resumes here even
/// when nothing came); a shell that can stream goes on with [`LiveStream::poll`].
pub async fn events(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = stream_caller(ctx)?;
    let live = ctx.extension::<LiveContext>()?;
    let pairs = query_pairs(ctx.req);
    let channels = parse_channels(pairs.iter().filter(|(k, _)| k == "channel").map(|(_, v)| v.as_str()))?;
    for channel in &channels {
        authorize(ctx.svc, &caller, channel).await?;
    }
    let after = match resume_from(ctx)? {
        Some(after) => after,
        None => live.feed.head().await?,
    };
    let mut stream = LiveStream { channels: channels.iter().map(ToString::to_string).collect(), after };
    let mut body = format!("retry: {RECONNECT_MS}\nid: {after}\n\n").into_bytes();
    body.extend(stream.poll(&*live.feed).await?);
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (nginx) pass this one through as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    tracing::info!(request_id = %ctx.request_id, user_id = %caller.user_id, channels = ?stream.channels, after, "live stream opened");
    response.extensions_mut().insert(stream);
    Ok(response)
}

/// The live function: the event stream clients follow orders and the board on, and the tickets
/// browsers open it with.
pub static FUNCTION: Function = Function {
    name: "live",
    routes: &[route!(GET "/api/v1/live/events" => events), route!(POST "/api/v1/live/tickets" => ticket)],
    publishes: false,
    images: false,
};

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret a test secret a test secret";

    #[test]
    fn a_ticket_names_its_caller_until_it_expires_and_not_after_a_change() {
        let caller = Caller { user_id: "01JABCDEFGHJKMNPQRSTVWXYZ0".into(), role: Role::Barista };
        let ticket = issue_ticket(SECRET, &caller, 2_000);
        assert_eq!(verify_ticket(SECRET, &ticket, 1_999), Some(caller.clone()));
        assert_eq!(verify_ticket(SECRET, &ticket, 2_000), None, "expired");
        assert_eq!(verify_ticket(b"another secret another secret another", &ticket, 0), None);
        // Raising the role (or moving the expiry) breaks the MAC.
        let (_, mac) = ticket.split_once('.').expect("two parts");
        for claims in ["01JABCDEFGHJKMNPQRSTVWXYZ0:admin:2000", "01JABCDEFGHJKMNPQRSTVWXYZ0:barista:9999"] {
            assert_eq!(verify_ticket(SECRET, &format!("{}.{mac}", URL_SAFE_NO_PAD.encode(claims)), 0), None, "{claims}");
        }
        for junk in ["", ".", "x.y", "x", &format!("{ticket}x")] {
            assert_eq!(verify_ticket(SECRET, junk, 0), None, "{junk:?}");
        }
    }
}
