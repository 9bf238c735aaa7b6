//! WebSocket connections, kept as API Gateway's WebSocket APIs keep them, so a component written
//! for that contract runs here unchanged:
//!
//! - A WebSocket upgrade on any route is the route's component's to accept: the host invokes it
//!   with the upgrade request and `websocket-event-type: CONNECT` (API Gateway's `$connect`,
//!   query string and all), and completes the handshake only if it answers `101`. Any other
//!   answer goes to the client as it is (a 401, say), and no connection opens.
//! - Each text message is an invocation (`MESSAGE`, the frame as a POST body, API Gateway's
//!   `$default` route); a non-empty answer goes back down the connection, as a two-way route's
//!   does. A connection's messages are handled one at a time, in order.
//! - When either side closes, the component hears it once (`DISCONNECT`).
//! - Components push with API Gateway's management API, at the owning component's chaining
//!   address: `POST http://<component>.spin.internal/@connections/{id}` sends the body as a text
//!   message, `DELETE` closes the connection, and a connection that isn't open is `410 Gone`,
//!   as `GoneException` is. Only components whose `allowed_outbound_hosts` list that address
//!   reach it, the way only roles with `execute-api:ManageConnections` do.
//! - API Gateway's limits: idle connections close after 10 minutes, every connection after 2
//!   hours, messages over 128 KiB close the connection (1009).
//!
//! Every invocation carries `websocket-connection-id` as well; the host drops both headers from
//! the requests clients send, so only it can say a request is a connection's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The header that says which of a connection's events an invocation is.
pub const EVENT_HEADER: &str = "websocket-event-type";
/// The header that names the connection an invocation is for.
pub const CONNECTION_HEADER: &str = "websocket-connection-id";
/// API Gateway's idle timeout.
pub const IDLE: Duration = Duration::from_secs(10 * 60);
/// API Gateway's longest connection.
pub const LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// API Gateway's largest message.
pub const MAX_MESSAGE: usize = 128 << 10;
/// Messages waiting to go down one connection before the pusher hears it is too slow (the
/// push fails as unavailable; the client reconnects and refetches).
const QUEUE: usize = 256;
/// The management API's path prefix.
pub const MANAGEMENT_PREFIX: &str = "/@connections/";

/// What the host tells a connection's task to do.
#[derive(Debug)]
pub enum Command {
    Send(Utf8Bytes),
    Close(CloseCode, &'static str),
}

struct Open {
    component: String,
    commands: mpsc::Sender<Command>,
    /// A close asked for through the management API: apart from the queue, so it takes effect
    /// even when the queue is full of messages the client isn't reading.
    closing: Arc<Notify>,
}

/// What a connection's task carries out: queued messages, and a close that overtakes them.
pub struct Commands {
    queue: mpsc::Receiver<Command>,
    closing: Arc<Notify>,
}

impl Commands {
    /// The next command; `None` once the registry has dropped the connection's sender.
    pub async fn next(&mut self) -> Option<Command> {
        tokio::select! {
            biased;
            () = self.closing.notified() => Some(Command::Close(CloseCode::Normal, "closed by the server")),
            command = self.queue.recv() => command,
        }
    }

    /// The next queued message, if one is waiting (for tests).
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Result<Command, mpsc::error::TryRecvError> {
        self.queue.try_recv()
    }
}

/// Why a push didn't go.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// No such open connection (410).
    Gone,
    /// The connection's queue is full: the client reads too slowly (503).
    Full,
}

/// The open connections, by id.
#[derive(Default)]
pub struct Sockets {
    open: Mutex<HashMap<String, Open>>,
}

impl Sockets {
    /// Records a new connection of `component`'s, and returns its id and the commands it is to
    /// carry out; `None` if the OS had no randomness for an id.
    pub fn open(&self, component: &str) -> Option<(String, Commands)> {
        let (commands, queue) = mpsc::channel(QUEUE);
        let closing = Arc::new(Notify::new());
        let id = connection_id()?;
        let mut open = self.lock();
        open.insert(id.clone(), Open { component: component.to_owned(), commands, closing: closing.clone() });
        crate::metrics::websockets(open.len());
        Some((id, Commands { queue, closing }))
    }

    /// Forgets a connection once its task has ended.
    pub fn closed(&self, id: &str) {
        let mut open = self.lock();
        open.remove(id);
        crate::metrics::websockets(open.len());
    }

    /// How many connections are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        // A panic while holding the map can't leave it half-changed: every change is one call.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sender(&self, component: &str, id: &str) -> Option<mpsc::Sender<Command>> {
        self.lock().get(id).filter(|o| o.component == component).map(|o| o.commands.clone())
    }

    /// Queues `message` for connection `id` of `component`'s.
    pub fn push(&self, component: &str, id: &str, message: Utf8Bytes) -> Result<(), PushError> {
        let sender = self.sender(component, id).ok_or(PushError::Gone)?;
        sender.try_send(Command::Send(message)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::Full,
            mpsc::error::TrySendError::Closed(_) => PushError::Gone,
        })
    }

    /// Asks connection `id` of `component`'s to close; false if it isn't open.
    pub fn close(&self, component: &str, id: &str) -> bool {
        // `notify_one` keeps the close for the task if it isn't waiting right now.
        self.lock().get(id).filter(|o| o.component == component).map(|o| o.closing.notify_one()).is_some()
    }

    /// Asks every connection to close, when the host stops.
    pub fn close_all(&self) {
        for open in self.lock().values() {
            let _ = open.commands.try_send(Command::Close(CloseCode::Away, "the server is stopping"));
        }
    }

    /// The management API (`/@connections/{id}`, reached by chaining to `component`): the
    /// status and body to answer with.
    pub fn manage(&self, component: &str, method: &http::Method, path: &str, body: Bytes) -> (u16, String) {
        let Some(id) = path.strip_prefix(MANAGEMENT_PREFIX).filter(|id| !id.is_empty() && !id.contains('/')) else {
            return (404, management_error("NotFoundException", "no such resource"));
        };
        match *method {
            http::Method::POST => {
                let Ok(text) = Utf8Bytes::try_from(body) else {
                    return (400, management_error("BadRequestException", "the host sends text messages: the body must be UTF-8"));
                };
                if text.len() > MAX_MESSAGE {
                    return (413, management_error("PayloadTooLargeException", "the message is over 128 KiB"));
                }
                match self.push(component, id, text) {
                    Ok(()) => (200, String::new()),
                    Err(PushError::Gone) => (410, management_error("GoneException", "the connection is not open")),
                    Err(PushError::Full) => (503, management_error("LimitExceededException", "the connection is not keeping up")),
                }
            }
            http::Method::DELETE if self.close(component, id) => (204, String::new()),
            http::Method::DELETE => (410, management_error("GoneException", "the connection is not open")),
            _ => (405, management_error("MethodNotAllowedException", "POST sends a message, DELETE closes the connection")),
        }
    }
}

fn management_error(kind: &str, message: &str) -> String {
    serde_json::json!({ "__type": kind, "message": message }).to_string()
}

/// A fresh, unguessable connection id (16 random bytes in hex): knowing one is what lets a
/// request speak for a connection, as on API Gateway.
fn connection_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).inspect_err(|e| tracing::error!(error = %e, "no randomness for a connection id")).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `req` asks for a WebSocket (RFC 6455 section 4.2.1).
pub fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(http::header::UPGRADE, "websocket") && has(http::header::CONNECTION, "upgrade")
}

/// The configuration every connection runs with.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

/// What a connection's task runs the component with: one invocation per event.
pub trait Invoke: Send + Sync + 'static {
    /// Invokes the component with a `MESSAGE` (the frame's text) or a `DISCONNECT` (no body),
    /// and returns the answer's body if it was a success, or `None`.
    fn invoke(&self, event: &'static str, connection_id: &str, body: Bytes) -> impl std::future::Future<Output = Option<Bytes>> + Send;
}

/// Serves one accepted connection until either side closes it, then forgets it and tells the
/// component.
pub async fn run<S, I>(stream: tokio_tungstenite::WebSocketStream<S>, sockets: std::sync::Arc<Sockets>, id: String, mut commands: Commands, invoker: I)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    I: Invoke,
{
    let (mut sink, mut incoming) = stream.split();
    let deadline = tokio::time::sleep(LIFETIME);
    tokio::pin!(deadline);
    let close = |code: CloseCode, reason: &'static str| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    loop {
        tokio::select! {
            frame = tokio::time::timeout(IDLE, incoming.next()) => match frame {
                Err(_) => {
                    let _ = sink.send(close(CloseCode::Away, "idle for 10 minutes")).await;
                    break;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let reply = invoker.invoke("MESSAGE", &id, Bytes::from(text)).await;
                    if let Some(reply) = reply.filter(|r| !r.is_empty())
                        && let Ok(text) = Utf8Bytes::try_from(reply)
                        && sink.send(Message::Text(text)).await.is_err()
                    {
                        break;
                    }
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    let _ = sink.send(close(CloseCode::Unsupported, "send JSON text messages")).await;
                    break;
                }
                // Pings are answered by the protocol layer; pongs and raw frames need nothing.
                Ok(Some(Ok(_))) => {}
            },
            command = commands.next() => {
                let (code, reason) = match command {
                    Some(Command::Send(text)) => {
                        if sink.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Command::Close(code, reason)) => (code, reason),
                    None => (CloseCode::Away, "the server is stopping"),
                };
                let _ = sink.send(close(code, reason)).await;
                break;
            }
            () = &mut deadline => {
                let _ = sink.send(close(CloseCode::Away, "open for 2 hours")).await;
                break;
            }
        }
    }
    // The closing handshake: a close the client sent is answered, one we sent goes out.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    // Closed before the component hears it, as on API Gateway: a push from here on is 410.
    sockets.closed(&id);
    invoker.invoke("DISCONNECT", &id, Bytes::new()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_a_websocket_upgrade_and_nothing_else() {
        let request = |headers: &[(&str, &str)]| {
            let mut r = http::Request::get("/").body(()).expect("request");
            for (k, v) in headers {
                r.headers_mut().append(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), http::HeaderValue::from_str(v).expect("value"));
            }
            r
        };
        assert!(is_upgrade(&request(&[("upgrade", "websocket"), ("connection", "Upgrade")])));
        assert!(is_upgrade(&request(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")])), "tokens, in any case");
        assert!(!is_upgrade(&request(&[("upgrade", "h2c"), ("connection", "Upgrade")])));
        assert!(!is_upgrade(&request(&[("upgrade", "websocket")])), "without Connection: Upgrade");
        assert!(!is_upgrade(&request(&[])));
    }

    #[test]
    fn the_management_api_answers_as_api_gateways_does() {
        let sockets = Sockets::default();
        let (id, mut commands) = sockets.open("live").expect("an id");
        let (other, _other_commands) = sockets.open("live").expect("an id");
        assert_ne!(id, other, "ids are fresh");
        assert_eq!(id.len(), 32);
        let post = |path: &str, body: &'static [u8]| sockets.manage("live", &http::Method::POST, path, Bytes::from_static(body));
        assert_eq!(post(&format!("/@connections/{id}"), b"{\"a\":1}").0, 200);
        assert!(matches!(commands.try_recv(), Ok(Command::Send(t)) if t.as_str() == "{\"a\":1}"));
        assert_eq!(post(&format!("/@connections/{id}"), b"\xff").0, 400, "text messages only");
        let (status, body) = post("/@connections/nobody", b"{}");
        assert_eq!((status, body.contains("GoneException")), (410, true));
        assert_eq!(post("/@connections/", b"{}").0, 404);
        assert_eq!(post(&format!("/@connections/{id}/more"), b"{}").0, 404);
        assert_eq!(sockets.manage("kitchen", &http::Method::POST, &format!("/@connections/{id}"), Bytes::new()).0, 410, "another component's");
        assert_eq!(sockets.manage("live", &http::Method::GET, &format!("/@connections/{id}"), Bytes::new()).0, 405);

        // A client that doesn't read: pushes past its queue fail, and don't wait.
        for _ in 0..QUEUE {
            assert_eq!(post(&format!("/@connections/{id}"), b"{}").0, 200);
        }
        assert_eq!(post(&format!("/@connections/{id}"), b"{}").0, 503);
        // Its close overtakes what it hasn't read.
        assert_eq!(sockets.manage("live", &http::Method::DELETE, &format!("/@connections/{id}"), Bytes::new()).0, 204);
        let next = tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(commands.next());
        assert!(matches!(next, Some(Command::Close(CloseCode::Normal, _))), "{next:?}");

        assert_eq!(sockets.manage("live", &http::Method::DELETE, &format!("/@connections/{other}"), Bytes::new()).0, 204);
        sockets.closed(&id);
        assert_eq!(post(&format!("/@connections/{id}"), b"{}").0, 410, "closed is gone");
        assert_eq!(sockets.len(), 1, "the other stays until its task ends");
    }
}
