//! The live function's shell: Server-Sent Events streamed from the feed, WebSocket connections'
//! events where the platform keeps sockets (the local host: `gocoffee_app::live::sockets`), and
//! the notifier that fills the feed and pushes to the connections. A stream answers the route's
//! first response (authorized, with what the feed holds after the client's position), then polls
//! the feed and writes each new message as it comes, with a heartbeat while idle, for a bounded
//! time: Fermyon Cloud ends a request after 30 s, and an open stream holds an instance. The client
//! reconnects with `Last-Event-ID`.

use std::time::{Duration, Instant};

use futures::SinkExt;
use gocoffee_app::live::sockets::{self, PushError, Pusher, SocketsContext};
use gocoffee_app::live::{HEARTBEAT, LiveContext, LiveStream};
use gocoffee_app::{ApiError, Request, Response};
use gocoffee_sql::live::{SqlConnections, SqlLiveFeed};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

use crate::{Entry, open_db, variable, with_services};

/// How long a stream stays open by default (`live_stream_seconds`): under Fermyon Cloud's 30 s.
const STREAM_SECONDS: u64 = 25;
/// How often a stream looks for new messages by default (`live_poll_ms`).
const POLL_MS: u64 = 250;
/// How long a stream may be silent before it writes a heartbeat.
const HEARTBEAT_AFTER: Duration = Duration::from_secs(15);

fn live_context() -> Result<LiveContext, String> {
    let db = open_db("default")?;
    let feed = SqlLiveFeed::open(db).map_err(|e| format!("preparing the live feed: {e}"))?;
    Ok(LiveContext { feed: Box::new(feed) })
}

/// A number of this component's variable `name` within `range`, else `default`.
fn setting(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    variable(name).and_then(|v| v.trim().parse().ok()).filter(|v| range.contains(v)).unwrap_or(default)
}

/// The whole body of the live HTTP component.
pub fn serve(incoming: IncomingRequest, out: ResponseOutparam) -> Entry<'static, ()> {
    Box::pin(async move {
        let mut req: Request = match <Request as spin_sdk::http::conversions::TryFromIncomingRequest>::try_from_incoming_request(incoming).await {
            Ok(req) => req,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable request");
                return send(out, ApiError::bad_request("bad_request", "the request could not be read").into_response()).await;
            }
        };
        if let Some(addr) = req.headers().get("spin-client-addr").and_then(|v| v.to_str().ok()).and_then(gocoffee_app::ClientAddr::parse) {
            req.extensions_mut().insert(addr);
        }
        if sockets::is_event(&req) {
            return send(out, socket_event(&req).await).await;
        }
        let live = match live_context() {
            Ok(live) => live,
            Err(cause) => {
                tracing::error!(%cause, "service unavailable");
                return send(out, ApiError::unavailable().into_response()).await;
            }
        };
        let limit = Duration::from_secs(setting("live_stream_seconds", STREAM_SECONDS, 1..=3600));
        let poll = Duration::from_millis(setting("live_poll_ms", POLL_MS, 10..=60_000));
        let served = with_services(Some(&gocoffee_app::live::FUNCTION), Some(&live), async |svc| {
            let started = Instant::now();
            let mut response = gocoffee_app::handle(svc, &[&gocoffee_app::live::FUNCTION], req).await;
            let Some(mut stream) = response.extensions_mut().remove::<LiveStream>() else { return send(out, response).await };
            let Some(mut body) = start(out, response).await else { return };
            let mut last_write = Instant::now();
            while started.elapsed() + poll < limit {
                sleep(poll);
                let frames = match stream.poll(&*live.feed).await {
                    Ok(frames) => frames,
                    Err(e) => {
                        // The client reconnects and resumes where it was.
                        tracing::warn!(error = %e, "the live feed is out of reach; ending the stream");
                        break;
                    }
                };
                let chunk = if !frames.is_empty() {
                    frames
                } else if last_write.elapsed() >= HEARTBEAT_AFTER {
                    HEARTBEAT.to_vec()
                } else {
                    continue;
                };
                if body.send(chunk).await.is_err() {
                    // The client went away.
                    return;
                }
                last_write = Instant::now();
            }
            tracing::debug!(after = stream.after, "live stream ended; the client resumes from there");
        })
        .await;
        if let Err(cause) = served {
            tracing::error!(%cause, "service unavailable");
        }
    })
}

/// The open connections, in the same database as the feed.
fn connections() -> Result<SqlConnections<Box<dyn gocoffee_sql::Db>>, String> {
    SqlConnections::open(open_db("default")?).map_err(|e| format!("preparing the connections table: {e}"))
}

/// One of a WebSocket connection's events (`CONNECT`, `MESSAGE`, `DISCONNECT`).
async fn socket_event(req: &Request) -> Response {
    let served = with_services(Some(&gocoffee_app::live::FUNCTION), None, async |svc| {
        let connections = connections()?;
        Ok::<_, String>(sockets::event(svc, &SocketsContext { connections: &connections, pusher: None }, req).await)
    })
    .await
    .and_then(|r| r);
    served.unwrap_or_else(|cause| {
        tracing::error!(%cause, "service unavailable");
        ApiError::unavailable().into_response()
    })
}

/// Pushes over the platform's management API (`POST {base}/@connections/{id}`, API Gateway's
/// `PostToConnection`; the local host serves it at `http://live.spin.internal`).
struct ManagementApi {
    base: String,
}

/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait::async_trait(?Send)]
impl Pusher for ManagementApi {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        let url = format!("{}/@connections/{connection_id}", self.base.trim_end_matches('/'));
        match crate::outbound::post_json(&url, message, PUSH_TIMEOUT, 4096) {
            Ok(posted) if (200..300).contains(&posted.status) => Ok(()),
            // 410 is API Gateway's GoneException; a 404 means nothing there keeps connections,
            // so no connection it names can be open either.
            Ok(posted) if posted.status == 410 || posted.status == 404 => Err(PushError::Gone),
            Ok(posted) => Err(PushError::Unavailable(format!("the management API answered {}: {}", posted.status, String::from_utf8_lossy(&posted.body)))),
            Err(e) => Err(PushError::Unavailable(format!("the management API is out of reach: {e:?}"))),
        }
    }
}

/// Sends `response`'s head and its body so far, and returns the body to go on writing, or
/// `None` when the client is gone.
async fn start(out: ResponseOutparam, response: Response) -> Option<impl futures::Sink<Vec<u8>, Error = wasi::io::streams::StreamError>> {
    let (parts, bytes) = response.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect();
    // Header names and values from `http` are valid fields, and its status codes valid codes:
    // neither fallback is expected, and with them the response is always set.
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(parts.status.as_u16());
    let mut body = outgoing.take_body();
    out.set(outgoing);
    body.send(bytes).await.ok()?;
    Some(body)
}

/// Sends a whole response.
async fn send(out: ResponseOutparam, response: Response) {
    drop(start(out, response).await);
}

/// Waits `d`. Blocking is right here: the stream has nothing else in flight while it waits.
fn sleep(d: Duration) {
    wasi::clocks::monotonic_clock::subscribe_duration(d.as_nanos() as u64).block();
}

/// The whole body of the notifier on the orders channel (Redis-triggered, or a chained or
/// in-process delivery): the feed the streams read, then, where the platform keeps WebSocket
/// connections (`live_connections_url`, its management API), a push to each follower. Errors
/// read as [`crate::consume`]'s do.
pub fn notify(payload: &[u8]) -> Entry<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let live = live_context().map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?;
        let pusher = variable("live_connections_url").filter(|url| !url.trim().is_empty()).map(|base| ManagementApi { base });
        with_services(None, Some(&live), async |svc| {
            gocoffee_app::live::notify(svc, payload).await?;
            let Some(pusher) = &pusher else { return Ok(()) };
            let connections = connections().map_err(gocoffee_app::consumer::ConsumerError::Retryable)?;
            sockets::fan_out(svc, &SocketsContext { connections: &connections, pusher: Some(pusher) }, payload).await
        })
        .await
        .map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?
        .map_err(anyhow::Error::from)
    })
}
