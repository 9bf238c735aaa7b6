//! Live status over WebSocket, in API Gateway's terms: a connection opens (`$connect`, with a
//! ticket), sends `{"action": "subscribe" | "unsubscribe", "channel": "..."}` messages, each
//! answered on the connection, and closes (`$disconnect`); the notifier pushes each channel's
//! envelopes to the connections subscribed to it, and forgets a connection the platform says
//! is gone. The platform keeps the sockets (API Gateway on AWS, the local host); this keeps the
//! connections and their subscriptions ([`ConnectionStore`]) and pushes through a [`Pusher`],
//! both of which the shell hands over in a [`SocketsContext`].

use async_trait::async_trait;
use gocoffee_core::live::{Channel, MAX_CHANNELS, envelopes};
use serde::Deserialize;
use serde_json::json;

use super::{authorize, verify_ticket};
use crate::consumer::{ConsumerError, order_event, traced};
use crate::http::{ApiError, Request, Response, query_param, rfc3339};
use crate::ports::StoreResult;
use crate::{Caller, Services};

/// How long the platform keeps a connection open at most (API Gateway: 2 hours): what the
/// store keeps its records for, so an abandoned one expires on its own.
pub const CONNECTION_TTL_MS: i64 = 2 * 60 * 60 * 1000;
/// The notifier's name on this path, in logs and metrics.
pub const FAN_OUT: &str = "notifier-sockets";

/// One open connection: who opened it, until when it may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub caller: Caller,
    pub expires_at_ms: i64,
}

/// The open connections and what each follows.
#[async_trait(?Send)]
pub trait ConnectionStore {
    async fn save_connection(&self, connection: &Connection) -> StoreResult<()>;
    /// The connection, if it is open (unexpired at `now_ms`).
    async fn connection(&self, id: &str, now_ms: i64) -> StoreResult<Option<Connection>>;
    /// Adds `channel` to what `connection` follows, unless it already follows `limit` channels
    /// (then `false`). Subscribing twice is one subscription.
    async fn subscribe(&self, connection: &Connection, channel: &str, limit: usize) -> StoreResult<bool>;
    async fn unsubscribe(&self, connection_id: &str, channel: &str) -> StoreResult<()>;
    /// The connections following `channel` (unexpired at `now_ms`).
    async fn subscribers(&self, channel: &str, now_ms: i64) -> StoreResult<Vec<String>>;
    /// Forgets the connection and its subscriptions; forgetting an unknown one is not an error.
    async fn forget(&self, connection_id: &str) -> StoreResult<()>;
}

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The client is gone (API Gateway's `GoneException`, HTTP 410): forget the connection.
    #[error("the connection is gone")]
    Gone,
    #[error("push failed: {0}")]
    Unavailable(String),
}

/// The header that says which of a connection's events a request is, where a platform hands
/// them over as HTTP requests (the local host: `CONNECT`, `MESSAGE`, `DISCONNECT`, API
/// Gateway's `eventType`), and the one that names the connection. The platform sets both and
/// drops them from what clients send.
pub const EVENT_HEADER: &str = "websocket-event-type";
pub const CONNECTION_HEADER: &str = "websocket-connection-id";

/// Sends a message down an open connection (API Gateway's `PostToConnection`).
#[async_trait(?Send)]
pub trait Pusher {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError>;
}

/// What the socket handlers and the fanning-out notifier bring.
pub struct SocketsContext<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub pusher: Option<&'a dyn Pusher>,
}

/// Whether `req` is one of a connection's events rather than an ordinary request.
pub fn is_event(req: &Request) -> bool {
    req.headers().contains_key(EVENT_HEADER)
}

/// One of a connection's events, handed over as a request: `CONNECT` (the upgrade request, its
/// `ticket` in the query) is accepted with `101 Switching Protocols` or refused with the error;
/// `MESSAGE` (the message as the body) is answered with the reply to send down the connection;
/// `DISCONNECT` with 204.
pub async fn event(svc: &Services<'_>, sockets: &SocketsContext<'_>, req: &Request) -> Response {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let Some(connection_id) = header(CONNECTION_HEADER) else {
        return ApiError::bad_request("no_connection", format!("a connection's event names it in `{CONNECTION_HEADER}`")).into_response();
    };
    let answer = |status: http::StatusCode, body: Vec<u8>| {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if !response.body().is_empty() {
            response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        }
        response
    };
    let outcome = match header(EVENT_HEADER) {
        Some("CONNECT") => match authenticate(svc, query_param(req, "ticket").as_deref()) {
            Ok(caller) => connect(svc, sockets, connection_id, caller).await.map(|()| answer(http::StatusCode::SWITCHING_PROTOCOLS, Vec::new())),
            Err(e) => Err(e),
        },
        Some("MESSAGE") => Ok(answer(http::StatusCode::OK, message(svc, sockets, connection_id, req.body()).await)),
        Some("DISCONNECT") => disconnect(sockets, connection_id).await.map(|()| answer(http::StatusCode::NO_CONTENT, Vec::new())),
        _ => Err(ApiError::bad_request("unknown_event", "a connection's events are CONNECT, MESSAGE and DISCONNECT")),
    };
    outcome.unwrap_or_else(ApiError::into_response)
}

/// `$connect`: who a ticket names, or 401 (the authorizer's answer). The ticket comes in the
/// URL, since browsers can't set headers on a WebSocket.
pub fn authenticate(svc: &Services<'_>, ticket: Option<&str>) -> Result<Caller, ApiError> {
    let ticket = ticket.filter(|t| !t.is_empty()).ok_or_else(ApiError::unauthorized)?;
    verify_ticket(&svc.config.jwt_secret, ticket, svc.clock.now_ms())
        .ok_or_else(|| ApiError::new(http::StatusCode::UNAUTHORIZED, "invalid_ticket", "the ticket is invalid or expired; ask for a new one"))
}

/// `$connect`, once authorized: the connection is recorded for its caller.
pub async fn connect(svc: &Services<'_>, sockets: &SocketsContext<'_>, connection_id: &str, caller: Caller) -> Result<(), ApiError> {
    let connection = Connection { id: connection_id.to_owned(), caller, expires_at_ms: svc.clock.now_ms() + CONNECTION_TTL_MS };
    sockets.connections.save_connection(&connection).await?;
    tracing::info!(connection_id, user_id = %connection.caller.user_id, "live connection opened");
    Ok(())
}

/// `$disconnect`: the connection and its subscriptions are forgotten.
pub async fn disconnect(sockets: &SocketsContext<'_>, connection_id: &str) -> Result<(), ApiError> {
    sockets.connections.forget(connection_id).await?;
    tracing::info!(connection_id, "live connection closed");
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    action: String,
    #[serde(default)]
    channel: Option<String>,
}

/// One message from a connection, and the answer to send back on it:
/// `{"action", "channel", "ok": true}`, or `"ok": false` with the `error` a REST call would get.
pub async fn message(svc: &Services<'_>, sockets: &SocketsContext<'_>, connection_id: &str, body: &[u8]) -> Vec<u8> {
    let request = serde_json::from_slice::<Action>(body);
    let outcome = match &request {
        Err(_) => Err(ApiError::bad_request("invalid_message", "send {\"action\": \"subscribe\" or \"unsubscribe\", \"channel\": \"...\"}")),
        Ok(r) => act(svc, sockets, connection_id, &r.action, r.channel.as_deref()).await,
    };
    let (action, channel) = match &request {
        Ok(r) => (r.action.as_str(), r.channel.as_deref()),
        Err(_) => ("", None),
    };
    let reply = match outcome {
        Ok(()) => json!({ "action": action, "channel": channel, "ok": true }),
        Err(e) => json!({ "action": action, "channel": channel, "ok": false, "error": { "code": e.code, "message": e.message } }),
    };
    reply.to_string().into_bytes()
}

async fn act(svc: &Services<'_>, sockets: &SocketsContext<'_>, connection_id: &str, action: &str, channel: Option<&str>) -> Result<(), ApiError> {
    let connection = sockets.connections.connection(connection_id, svc.clock.now_ms()).await?.ok_or_else(ApiError::unauthorized)?;
    let channel = Channel::parse(channel.unwrap_or_default())?;
    match action {
        "subscribe" => {
            authorize(svc, &connection.caller, &channel).await?;
            if !sockets.connections.subscribe(&connection, &channel.to_string(), MAX_CHANNELS).await? {
                return Err(ApiError::unprocessable("too_many_channels", format!("a connection follows at most {MAX_CHANNELS} channels")));
            }
            Ok(())
        }
        "unsubscribe" => Ok(sockets.connections.unsubscribe(connection_id, &channel.to_string()).await?),
        _ => Err(ApiError::bad_request("unknown_action", "the actions are subscribe and unsubscribe")),
    }
}

/// The notifier's fan-out: each of the event's envelopes to every connection following its
/// channel. A gone connection is forgotten; any other failed push makes the event retryable once
/// the rest are sent (a retry sends again to those that got it: clients drop what they have).
pub async fn fan_out(svc: &Services<'_>, sockets: &SocketsContext<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = order_event(FAN_OUT, payload)?;
    let pusher = sockets.pusher.ok_or_else(|| ConsumerError::Retryable("the fan-out runs without a pusher".into()))?;
    traced(svc, FAN_OUT, &event, async |_| {
        let mut failed = None;
        for envelope in envelopes(&event, rfc3339) {
            let message = serde_json::to_vec(&envelope).map_err(|e| ConsumerError::Poison(e.to_string()))?;
            for connection in sockets.connections.subscribers(&envelope.channel, svc.clock.now_ms()).await? {
                match pusher.push(&connection, &message).await {
                    Ok(()) => {}
                    Err(PushError::Gone) => sockets.connections.forget(&connection).await?,
                    Err(PushError::Unavailable(why)) => failed = Some(why),
                }
            }
        }
        failed.map_or(Ok(()), |why| Err(ConsumerError::Retryable(why)))
    })
    .await
}
