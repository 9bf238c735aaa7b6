//! API Gateway's WebSocket API played for the Lambda stack (moto has none that connects): the
//! REQUEST authorizer on `$connect` (no `ticket` in the query string is a 401 without any
//! invocation; the function's `Unauthorized` error a 401; a Deny a 403), the `$connect`
//! integration (a non-2xx answer refuses the handshake with that status), each text message
//! to `$default` with the function's answer sent back on the connection (the route response),
//! binary frames refused with close code 1003, and `$disconnect` once either side closes. The
//! stage's management API is on the same address, `/{stage}/@connections/{id}`, SigV4-signed
//! for `execute-api`: POST sends, DELETE closes, GET describes, and an unknown connection is
//! 410 `GoneException`, which moto's never answers. Idle and lifetime limits are not played.

use std::collections::HashMap;
use std::io::{BufReader, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::lambda::{HttpRequest, LambdaFunction, read_request, write_response};

/// What the management API hands a connection's thread.
enum Push {
    Text(String),
    Close,
}

/// One WebSocket API stage, its function (behind the authorizer and every route) and the
/// connections open on it.
pub struct SocketGateway {
    pub api_id: String,
    pub stage: String,
    pub function: String,
    open: Mutex<HashMap<String, Sender<Push>>>,
    next: AtomicU64,
    /// Pushes the management API accepted, for tests to count.
    pub pushed: AtomicU64,
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn answer(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) {
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.push((JSON.0.into(), JSON.1.into()));
    let _ = write_response(stream, status, &all, body.as_bytes(), true);
}

impl SocketGateway {
    pub fn new(api_id: &str, stage: &str, function: &str) -> SocketGateway {
        SocketGateway {
            api_id: api_id.into(),
            stage: stage.into(),
            function: function.into(),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            pushed: AtomicU64::new(0),
        }
    }

    /// Listens on a port of its own; returns its base URL (`http://127.0.0.1:port`), where
    /// clients connect at `/{stage}` and the management API is at `/{stage}/@connections`.
    pub fn serve(self: Arc<Self>, functions: Arc<HashMap<String, LambdaFunction>>, stop: Arc<AtomicBool>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("socket front port");
        self.serve_on(listener, functions, stop)
    }

    /// As [`SocketGateway::serve`], on a listener bound before the functions started (their
    /// environment names its address).
    pub fn serve_on(self: Arc<Self>, listener: TcpListener, functions: Arc<HashMap<String, LambdaFunction>>, stop: Arc<AtomicBool>) -> String {
        let base = format!("http://{}", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let (gateway, functions) = (self.clone(), functions.clone());
                std::thread::spawn(move || gateway.connection(stream, &functions));
            }
        });
        base
    }

    fn connection(&self, stream: TcpStream, functions: &HashMap<String, LambdaFunction>) {
        let Ok(mut writer) = stream.try_clone() else { return };
        let mut reader = BufReader::new(stream);
        let Some(req) = read_request(&mut reader) else { return };
        let path = req.target.split('?').next().unwrap_or_default().to_owned();
        let management = format!("/{}/@connections/", self.stage);
        if let Some(id) = path.strip_prefix(&management) {
            return self.manage(&mut writer, &req, &percent_encoding::percent_decode_str(id).decode_utf8_lossy());
        }
        let upgrade = req.headers.iter().any(|(k, v)| k == "upgrade" && v.eq_ignore_ascii_case("websocket"));
        if path != format!("/{}", self.stage) || !upgrade {
            return answer(&mut writer, 403, &[], r#"{"message":"Forbidden"}"#);
        }
        self.open_connection(writer, &req, &functions[&self.function]);
    }

    /// The management API, checked to be signed for `execute-api` as the SDK signs it.
    fn manage(&self, stream: &mut TcpStream, req: &HttpRequest, id: &str) {
        let signed = req.headers.iter().any(|(k, v)| k == "authorization" && v.starts_with("AWS4-HMAC-SHA256") && v.contains("/execute-api/aws4_request"));
        if !signed {
            return answer(stream, 403, &[("x-amzn-errortype", "ForbiddenException")], r#"{"message":"Missing Authentication Token"}"#);
        }
        let sender = self.open.lock().expect("lock").get(id).cloned();
        let Some(sender) = sender else {
            return answer(stream, 410, &[("x-amzn-errortype", "GoneException")], r#"{"message":null}"#);
        };
        match req.method.as_str() {
            "POST" => match String::from_utf8(req.body.clone()).map(|text| sender.send(Push::Text(text))) {
                Ok(Ok(())) => {
                    self.pushed.fetch_add(1, Ordering::Relaxed);
                    answer(stream, 200, &[], "")
                }
                // The connection closed since it was looked up.
                Ok(Err(_)) => answer(stream, 410, &[("x-amzn-errortype", "GoneException")], r#"{"message":null}"#),
                Err(_) => answer(stream, 400, &[("x-amzn-errortype", "BadRequestException")], r#"{"message":"text frames only"}"#),
            },
            "DELETE" => {
                let _ = sender.send(Push::Close);
                answer(stream, 204, &[], "")
            }
            "GET" => answer(stream, 200, &[], &json!({"connectedAt": "", "identity": {"sourceIp": "127.0.0.1"}}).to_string()),
            _ => answer(stream, 405, &[], r#"{"message":"Method Not Allowed"}"#),
        }
    }

    /// The request context every event of `connection_id` carries.
    fn context(&self, event_type: &str, route_key: &str, connection_id: &str, connected_at: i64) -> Value {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        json!({
            "routeKey": route_key,
            "eventType": event_type,
            "connectionId": connection_id,
            "connectedAt": connected_at,
            "requestTimeEpoch": now_ms(),
            "apiId": self.api_id,
            "stage": self.stage,
            "domainName": format!("{}.execute-api.us-east-1.amazonaws.com", self.api_id),
            "requestId": format!("ws-{request}"),
            "extendedRequestId": format!("ws-{request}"),
            "messageDirection": "IN",
            "identity": {"sourceIp": "127.0.0.1"},
        })
    }

    fn open_connection(&self, mut stream: TcpStream, req: &HttpRequest, function: &LambdaFunction) {
        let query: Vec<(String, String)> =
            req.target.split_once('?').map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        if !query.iter().any(|(k, v)| k == "ticket" && !v.is_empty()) {
            // The identity source is missing: refused before anything runs.
            return answer(&mut stream, 401, &[], r#"{"message":"Unauthorized"}"#);
        }
        let id = format!("{}=", BASE64.encode(self.next.fetch_add(1, Ordering::Relaxed).to_be_bytes().map(|b| b ^ 0xa5)));
        let connected_at = now_ms();
        let headers: serde_json::Map<String, Value> = req.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let parameters: serde_json::Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let method_arn = format!("arn:aws:execute-api:us-east-1:123456789012:{}/{}/$connect", self.api_id, self.stage);
        let authorized = function.invoke(&json!({
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": headers,
            "queryStringParameters": parameters,
            "requestContext": self.context("CONNECT", "$connect", &id, connected_at),
        }));
        let policy = match authorized {
            Ok(policy) => policy,
            Err(e) if e.contains("Unauthorized") => return answer(&mut stream, 401, &[], r#"{"message":"Unauthorized"}"#),
            Err(e) => {
                eprintln!("the authorizer failed: {e}");
                return answer(&mut stream, 500, &[], r#"{"message":"Internal Server Error"}"#);
            }
        };
        let allowed = policy["policyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["Effect"] == "Allow" && s["Action"] == "execute-api:Invoke" && s["Resource"] == method_arn.as_str());
        if !allowed {
            return answer(&mut stream, 403, &[], r#"{"message":"Forbidden"}"#);
        }
        let mut authorizer = policy["context"].as_object().cloned().unwrap_or_default();
        authorizer.insert("principalId".into(), policy["principalId"].clone());
        let mut context = self.context("CONNECT", "$connect", &id, connected_at);
        context["authorizer"] = Value::Object(authorizer);
        let connected = function.invoke(&json!({
            "headers": headers,
            "queryStringParameters": parameters,
            "requestContext": context,
            "isBase64Encoded": false,
        }));
        match connected {
            Ok(r) if (200..300).contains(&r["statusCode"].as_u64().unwrap_or(500)) => {}
            Ok(r) => {
                let status = r["statusCode"].as_u64().unwrap_or(500) as u16;
                return answer(&mut stream, status, &[], r["body"].as_str().unwrap_or_default());
            }
            Err(e) => {
                eprintln!("$connect failed: {e}");
                return answer(&mut stream, 500, &[], r#"{"message":"Internal Server Error"}"#);
            }
        }
        let key = req.headers.iter().find(|(k, _)| k == "sec-websocket-key").map(|(_, v)| v.clone()).unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let head = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n");
        if std::io::Write::write_all(&mut stream, head.as_bytes()).is_err() {
            return self.disconnect(function, &id, connected_at);
        }
        let (sender, pushes) = channel();
        self.open.lock().expect("lock").insert(id.clone(), sender);
        self.relay(stream, function, &id, connected_at, &pushes);
        self.open.lock().expect("lock").remove(&id);
        self.disconnect(function, &id, connected_at);
    }

    /// The open connection: its messages to `$default` and their answers back, the management
    /// API's pushes, until either side closes.
    fn relay(&self, stream: TcpStream, function: &LambdaFunction, id: &str, connected_at: i64, pushes: &Receiver<Push>) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
        let mut socket = WebSocket::from_raw_socket(stream, Role::Server, None);
        loop {
            while let Ok(push) = pushes.try_recv() {
                let sent = match push {
                    Push::Text(text) => socket.send(Message::text(text)),
                    Push::Close => socket.close(None).and_then(|()| socket.flush()),
                };
                if sent.is_err() {
                    return;
                }
            }
            match socket.read() {
                Ok(Message::Text(text)) => {
                    let mut context = self.context("MESSAGE", "$default", id, connected_at);
                    context["messageId"] = json!(format!("m-{}", self.next.fetch_add(1, Ordering::Relaxed)));
                    let reply = function.invoke(&json!({"requestContext": context, "body": text.as_str(), "isBase64Encoded": false}));
                    let body = match reply {
                        Ok(r) => r["body"].as_str().unwrap_or_default().to_owned(),
                        Err(e) => {
                            eprintln!("$default failed: {e}");
                            r#"{"message": "Internal server error"}"#.to_owned()
                        }
                    };
                    if !body.is_empty() && socket.send(Message::text(body)).is_err() {
                        return;
                    }
                }
                Ok(Message::Binary(_)) => {
                    let _ = socket.close(Some(CloseFrame { code: CloseCode::Unsupported, reason: "binary frames are not supported".into() }));
                    let _ = socket.flush();
                    return;
                }
                Ok(Message::Close(_)) => {
                    // The reply to the client's close goes out with the flush.
                    let _ = socket.flush();
                    return;
                }
                Ok(_) => {}
                Err(Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let _ = socket.flush();
                }
                Err(_) => return,
            }
        }
    }

    fn disconnect(&self, function: &LambdaFunction, id: &str, connected_at: i64) {
        let event = json!({"requestContext": self.context("DISCONNECT", "$disconnect", id, connected_at), "isBase64Encoded": false});
        if let Err(e) = function.invoke(&event) {
            eprintln!("$disconnect failed: {e}");
        }
    }
}
