//! A WebSocket client for the tests, over a plain TCP stream (tungstenite's blocking client): the
//! live status's WebSocket transport as a browser uses it, the ticket in the URL.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message, WebSocket};

/// An open connection.
pub struct WsClient {
    socket: WebSocket<TcpStream>,
    pub opened: Instant,
}

/// What a refused upgrade answered: its status, and as much of its body as arrived with the head
/// (the handshake reads no further).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// What reading a connection gave.
#[derive(Debug)]
pub enum Read {
    Message(Value, Instant),
    /// The server closed the connection, with this frame.
    Closed(Option<CloseFrame>),
    /// The connection ended with no closing handshake.
    Reset,
    TimedOut,
}

impl WsClient {
    /// Opens `ws://` + `base`'s authority + `path` (with its query).
    pub fn connect(base: &str, path: &str) -> Result<WsClient, Refused> {
        let authority = base.trim_start_matches("http://").trim_end_matches('/');
        let request = format!("ws://{authority}{path}").into_client_request().expect("a WebSocket URL");
        let stream = TcpStream::connect(authority).expect("the host is listening");
        stream.set_nodelay(true).expect("nodelay");
        match tokio_tungstenite::tungstenite::client::client(request, stream) {
            Ok((socket, _)) => Ok(WsClient { socket, opened: Instant::now() }),
            Err(tokio_tungstenite::tungstenite::HandshakeError::Failure(Error::Http(response))) => Err(Refused {
                status: response.status().as_u16(),
                body: response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned(),
            }),
            Err(e) => panic!("the WebSocket handshake failed: {e}"),
        }
    }

    /// Sends a JSON text message.
    pub fn send(&mut self, message: &Value) {
        self.socket.send(Message::text(message.to_string())).expect("sent");
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.socket.send(Message::binary(bytes.to_vec())).expect("sent");
    }

    /// The next message (JSON), a close, or nothing within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Read {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read::TimedOut;
            }
            self.socket.get_ref().set_read_timeout(Some(left)).expect("timeout");
            match self.socket.read() {
                Ok(Message::Text(text)) => return Read::Message(serde_json::from_str(&text).expect("a JSON message"), Instant::now()),
                Ok(Message::Close(frame)) => return Read::Closed(frame),
                Ok(_) => {}
                Err(Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Read::TimedOut,
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Read::Closed(None),
                Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => return Read::Reset,
                Err(e) => panic!("reading the WebSocket: {e}"),
            }
        }
    }

    /// The next message, which must come within `timeout`.
    pub fn message(&mut self, timeout: Duration) -> Value {
        match self.read(timeout) {
            Read::Message(m, _) => m,
            other => panic!("expected a message within {timeout:?}, got {other:?}"),
        }
    }

    /// Sends `{"action", "channel"}` and returns the answer.
    pub fn act(&mut self, action: &str, channel: &str) -> Value {
        self.send(&serde_json::json!({ "action": action, "channel": channel }));
        self.message(Duration::from_secs(5))
    }

    /// Closes the connection from the client's side: the server must answer with its close.
    pub fn close(mut self) {
        self.socket.close(None).expect("the close sent");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.read(Duration::from_millis(200)) {
                Read::Closed(_) => return,
                Read::Reset => panic!("the server dropped the connection without answering its close"),
                _ => continue,
            }
        }
        panic!("the server never answered the close");
    }
}
