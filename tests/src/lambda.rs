//! The AWS shell run locally, the way Lambda runs it: each function's real `bootstrap` binary
//! under a Lambda Runtime API emulator, an HTTP front that turns requests into API Gateway HTTP
//! API (payload 2.0) events by the template's routes, and event source mapping pollers that hand
//! real Kinesis and SQS batches to the consumers, with the template's batch settings. State is on
//! moto (see [`crate::aws`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::aws::{Stack, logical_id, template_resources};
use crate::workspace;

pub const FUNCTIONS: [&str; 16] = [
    "health",
    "web",
    "identity",
    "menu",
    "orders",
    "kitchen",
    "order-consumer",
    "payments",
    "payments-consumer",
    "payments-watcher",
    "reconciler",
    "analytics",
    "analytics-consumer",
    "live",
    "notifier",
    "ai",
];

/// Where the native bootstrap binaries are (`make test` builds them).
pub fn binary(function: &str) -> PathBuf {
    let dir = std::env::var_os("GOCOFFEE_LAMBDA_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/release"));
    dir.join(function)
}

// ------------------------------------------------------------------ a minimal HTTP/1.1

/// One request as [`read_request`] parsed it; header names are lower case.
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body); `None` at end of stream.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(HttpRequest { method, target, headers, body })
}

/// Writes one HTTP/1.1 response with a Content-Length.
pub fn write_response(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8], close: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

// ------------------------------------------------------------------ the Runtime API emulator

/// Where an invocation's outcome goes: the response body, or the error the function reported.
type Reply = Sender<Result<Vec<u8>, String>>;

struct Invocation {
    payload: Vec<u8>,
    reply: Reply,
}

struct RuntimeState {
    queue: Mutex<Receiver<Invocation>>,
    in_flight: Mutex<HashMap<String, Reply>>,
    first_next: OnceLock<Instant>,
    init_error: Mutex<Option<String>>,
    next_id: AtomicU64,
    function: String,
}

/// One function's process, serving invocations one at a time like one Lambda execution
/// environment. Killed when dropped.
pub struct LambdaFunction {
    pub name: String,
    child: Mutex<Child>,
    invoke: Mutex<Sender<Invocation>>,
    state: Arc<RuntimeState>,
    pub started: Instant,
    pub log: PathBuf,
}

impl LambdaFunction {
    /// Starts `function`'s binary with `env` under a fresh Runtime API; its stdout and stderr
    /// (the logs Lambda sends to CloudWatch) go to `log`.
    pub fn start(function: &str, env: &[(String, String)], log: PathBuf) -> LambdaFunction {
        LambdaFunction::start_binary(function, &binary(function), env, log)
    }

    /// Starts the bootstrap at `bin` as `function`.
    pub fn start_binary(function: &str, bin: &std::path::Path, env: &[(String, String)], log: PathBuf) -> LambdaFunction {
        let listener = TcpListener::bind("127.0.0.1:0").expect("runtime api port");
        let address = listener.local_addr().expect("address");
        let (tx, rx) = channel();
        let state = Arc::new(RuntimeState {
            queue: Mutex::new(rx),
            in_flight: Mutex::new(HashMap::new()),
            first_next: OnceLock::new(),
            init_error: Mutex::new(None),
            next_id: AtomicU64::new(1),
            function: function.to_owned(),
        });
        let server = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = server.clone();
                std::thread::spawn(move || serve_runtime_api(stream, &state));
            }
        });
        assert!(bin.exists(), "{} is missing: run `make test` (it builds the Lambda binaries first)", bin.display());
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let started = Instant::now();
        let child = Command::new(bin)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("_HANDLER", "bootstrap")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the function");
        LambdaFunction { name: function.to_owned(), child: Mutex::new(child), invoke: Mutex::new(tx), state, started, log }
    }

    /// Waits for the function's first `GET /runtime/invocation/next` (the end of its init) and
    /// returns how long after the process started that came.
    pub fn wait_ready(&self, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.state.first_next.get() {
                return at.duration_since(self.started);
            }
            if let Some(e) = self.state.init_error.lock().expect("lock").clone() {
                panic!("{} failed its init: {e}", self.name);
            }
            assert!(Instant::now() < deadline, "{} did not ask for an invocation within {timeout:?}; log:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// One synchronous invocation: the function's response, or its reported error.
    pub fn invoke(&self, payload: &Value) -> Result<Value, String> {
        let (reply, answer) = channel();
        let payload = serde_json::to_vec(payload).expect("json");
        self.invoke.lock().expect("lock").send(Invocation { payload, reply }).expect("runtime api running");
        match answer.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(body)) => serde_json::from_slice(&body).map_err(|e| format!("the response is not JSON: {e}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{} did not answer within 60 s; log:\n{}", self.name, self.log_text())),
        }
    }

    /// How many invocations the function has taken so far.
    pub fn invocations(&self) -> u64 {
        self.state.next_id.load(Ordering::Relaxed) - 1
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl LambdaFunction {
    pub fn kill(&self) {
        let mut child = self.child.lock().expect("lock");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve_runtime_api(stream: TcpStream, state: &RuntimeState) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let path = req.target.as_str();
        let ok = if req.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let _ = state.first_next.set(Instant::now());
            let invocation = match state.queue.lock().expect("lock").recv() {
                Ok(i) => i,
                Err(_) => return,
            };
            let id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), state.next_id.fetch_add(1, Ordering::Relaxed));
            state.in_flight.lock().expect("lock").insert(id.clone(), invocation.reply);
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() + 30_000).unwrap_or_default();
            let headers = vec![
                ("content-type".into(), "application/json".into()),
                ("lambda-runtime-aws-request-id".into(), id),
                ("lambda-runtime-deadline-ms".into(), deadline.to_string()),
                ("lambda-runtime-invoked-function-arn".into(), format!("arn:aws:lambda:us-east-1:123456789012:function:{}", state.function)),
                ("lambda-runtime-trace-id".into(), "Root=1-00000000-000000000000000000000000;Sampled=0".into()),
            ];
            write_response(&mut writer, 200, &headers, &invocation.payload, false)
        } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let reply = state.in_flight.lock().expect("lock").remove(id);
            if let Some(reply) = reply {
                let _ = reply.send(match kind {
                    "response" => Ok(req.body),
                    _ => Err(String::from_utf8_lossy(&req.body).into_owned()),
                });
            }
            write_response(&mut writer, 202, &[], b"{\"status\":\"OK\"}", false)
        } else if path == "/2018-06-01/runtime/init/error" {
            *state.init_error.lock().expect("lock") = Some(String::from_utf8_lossy(&req.body).into_owned());
            write_response(&mut writer, 202, &[], b"{\"status\":\"OK\"}", false)
        } else {
            write_response(&mut writer, 404, &[], b"{}", false)
        };
        if ok.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------ events, as AWS makes them

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

/// An API Gateway HTTP API (payload format 2.0) event for one request on `route_key` of the API
/// `api_id`.
pub fn apigw_event(api_id: &str, route_key: &str, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut joined: Vec<(String, String)> = Vec::new();
    let mut cookies = Vec::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        if k == "cookie" {
            cookies.extend(v.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        match joined.iter_mut().find(|(name, _)| *name == k) {
            Some(existing) => existing.1 = format!("{},{v}", existing.1),
            None => joined.push((k, v.clone())),
        }
    }
    let header_map: serde_json::Map<String, Value> = joined.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut query_map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query_map
            .entry(k.to_owned())
            .and_modify(|e| *e = Value::String(format!("{},{v}", e.as_str().unwrap_or_default())))
            .or_insert(Value::String(v.to_owned()));
    }
    let route_path = route_key.split_once(' ').map(|(_, p)| p).unwrap_or("");
    let mut path_parameters = serde_json::Map::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, part) in route_path.split('/').enumerate() {
        if part == "{proxy+}" {
            path_parameters.insert("proxy".into(), Value::String(segments.get(i..).map(|rest| rest.join("/")).unwrap_or_default()));
        } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            path_parameters.insert(name.into(), Value::String(segments.get(i).copied().unwrap_or_default().to_owned()));
        }
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (BASE64.encode(body), true),
    };
    let request_id = format!("{:x}", now_ms());
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": format!("{api_id}.execute-api.us-east-1.amazonaws.com"),
            "domainPrefix": api_id,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": joined.iter().find(|(k, _)| k == "user-agent").map(|(_, v)| v.as_str()).unwrap_or("")},
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "24/Nov/2026:00:00:00 +0000",
            "timeEpoch": now_ms() as u64,
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query_map.is_empty() {
        event["queryStringParameters"] = Value::Object(query_map);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(path_parameters);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// A Kinesis event record as the event source mapping delivers it.
pub fn kinesis_record(stream_arn: &str, shard_id: &str, partition_key: &str, sequence_number: &str, data: &[u8], arrival_s: f64) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": BASE64.encode(data),
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/order-consumer",
        "awsRegion": "us-east-1",
        "eventSourceARN": stream_arn,
    })
}

/// An SQS event record as the event source mapping delivers it.
pub fn sqs_record(queue_arn: &str, message: &aws_sdk_sqs::types::Message) -> Value {
    let attributes: serde_json::Map<String, Value> =
        message.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect()).unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

// ------------------------------------------------------------------ routes and mappings from the template

/// One route of the HTTP API: its key (`ANY /api/v1/orders/{proxy+}`, `$default`), the function
/// its integration invokes, and whether the JWT authorizer checks its bearer token first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub key: String,
    pub function: String,
    pub authorized: bool,
}

/// A JWT authorizer's settings: the `iss` it requires (whose OpenID discovery document names the
/// keys) and the `aud` values it accepts.
#[derive(Clone, Debug)]
pub struct JwtAuthorizer {
    pub issuer: String,
    pub audience: Vec<String>,
}

/// The function whose `Arn` an integration's `IntegrationUri` names (`!GetAtt Orders.Arn`).
fn function_of_logical_id(id: &str) -> String {
    FUNCTIONS.iter().find(|f| logical_id(f) == id).unwrap_or_else(|| panic!("{id} is not a function")).to_string()
}

fn tagged<'a>(v: &'a serde_yaml::Value, tag: &str) -> Option<&'a serde_yaml::Value> {
    match v {
        serde_yaml::Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

/// Every `AWS::ApiGatewayV2::Route` of the HTTP API in the template.
pub fn template_routes() -> Vec<Route> {
    let resources = template_resources();
    let mut routes: Vec<Route> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::ApiGatewayV2::Route" && tagged(&r["Properties"]["ApiId"], "!Ref").and_then(|v| v.as_str()) == Some("HttpApi"))
        .map(|r| {
            let p = &r["Properties"];
            let target = tagged(&p["Target"], "!Sub").and_then(|v| v.as_str()).expect("a route's Target is !Sub integrations/${...}");
            let integration = target.trim_start_matches("integrations/${").trim_end_matches('}');
            let uri = &resources[integration]["Properties"]["IntegrationUri"];
            let arn = tagged(uri, "!GetAtt").and_then(|v| v.as_str()).expect("an integration's IntegrationUri is !GetAtt Function.Arn");
            Route {
                key: p["RouteKey"].as_str().expect("RouteKey").to_owned(),
                function: function_of_logical_id(arn.trim_end_matches(".Arn")),
                authorized: p["AuthorizationType"] == "JWT",
            }
        })
        .collect();
    routes.sort();
    routes
}

/// The template's JWT authorizer for an API with id `api_id` in us-east-1. `parameters` are
/// given as the stack's are (by the environment variable the template sets from each: `TOKEN_ISSUER`
/// for `TokenIssuer`); the rest keep their defaults.
pub fn template_authorizer(api_id: &str, parameters: &[(&str, &str)]) -> Option<JwtAuthorizer> {
    let text = std::fs::read_to_string(workspace().join("sam-template.yaml")).expect("sam-template.yaml");
    let template: serde_yaml::Value = serde_yaml::from_str(&text).expect("the template is YAML");
    let resources = template["Resources"].as_mapping()?;
    // A parameter's value: the one given for the variable a function's environment takes from it.
    let parameter = |name: &str| {
        let from = |v: &serde_yaml::Value| tagged(v, "!Ref").and_then(|r| r.as_str()) == Some(name);
        let envs = resources.values().filter_map(|r| r["Properties"]["Environment"]["Variables"].as_mapping());
        let variable: Vec<&str> = envs.flat_map(|vars| vars.iter().filter(|(_, v)| from(v)).filter_map(|(k, _)| k.as_str())).collect();
        parameters
            .iter()
            .find(|(k, _)| variable.contains(k))
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| template["Parameters"][name]["Default"].as_str().unwrap_or_default().to_owned())
    };
    let resolve = |v: &serde_yaml::Value| -> String {
        if let Some(name) = tagged(v, "!Ref").and_then(|v| v.as_str()) {
            return parameter(name);
        }
        let text = tagged(v, "!Sub").and_then(|v| v.as_str()).unwrap_or_else(|| v.as_str().unwrap_or_default());
        text.replace("${HttpApi}", api_id).replace("${AWS::Region}", "us-east-1").replace("${AWS::URLSuffix}", "amazonaws.com")
    };
    let authorizer = resources.values().find(|r| r["Type"] == "AWS::ApiGatewayV2::Authorizer")?;
    let jwt = &authorizer["Properties"]["JwtConfiguration"];
    let issuer = match tagged(&jwt["Issuer"], "!If").and_then(|v| v.as_sequence()) {
        // `!If [HasTokenIssuer, !Ref TokenIssuer, <the API's own URL>]`
        Some(branches) => {
            let condition = &template["Conditions"][branches[0].as_str().expect("a condition's name")];
            let not_equals = tagged(condition, "!Not").and_then(|n| tagged(&n[0], "!Equals")).expect("the condition is !Not [!Equals [...]]");
            let holds = resolve(&not_equals[0]) != resolve(&not_equals[1]);
            resolve(&branches[if holds { 1 } else { 2 }])
        }
        None => resolve(&jwt["Issuer"]),
    };
    let audience = jwt["Audience"].as_sequence().expect("Audience").iter().map(resolve).collect();
    Some(JwtAuthorizer { issuer, audience })
}

/// API Gateway's route selection, for the shapes the template uses: exact paths, paths with
/// `{name}` segments, and `/prefix/{proxy+}` (one or more segments). A route naming the method
/// wins over `ANY`, a route without a greedy segment over one with, and `$default` takes the rest.
pub fn select_route<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<&'a Route> {
    let matches = |key: &str, method_of: &dyn Fn(&str) -> bool| {
        let (m, p) = key.split_once(' ').unwrap_or(("", key));
        let path_ok = match p.strip_suffix("/{proxy+}") {
            Some(prefix) => path.strip_prefix(prefix).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
            None => {
                let (want, got): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), path.split('/').collect());
                want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| w == g || (w.starts_with('{') && !g.is_empty()))
            }
        };
        method_of(m) && path_ok
    };
    let named = |m: &str| m.eq_ignore_ascii_case(method);
    let any = |m: &str| m == "ANY";
    let candidates = || routes.iter().filter(|r| r.key != "$default");
    let exact = |r: &&Route| !r.key.contains("{proxy+}");
    candidates()
        .filter(exact)
        .find(|r| matches(&r.key, &named))
        .or_else(|| candidates().filter(exact).find(|r| matches(&r.key, &any)))
        .or_else(|| candidates().find(|r| matches(&r.key, &named)))
        .or_else(|| candidates().find(|r| matches(&r.key, &any)))
        .or_else(|| routes.iter().find(|r| r.key == "$default"))
}

/// The environment variables of `function` that the template sets from a parameter (`!Ref` of
/// something that is not a resource).
fn template_parameters_of(function: &str) -> Vec<String> {
    let resources = template_resources();
    let vars = resources[logical_id(function).as_str()]["Properties"]["Environment"]["Variables"].as_mapping().cloned().unwrap_or_default();
    vars.iter()
        .filter(|(_, v)| match v {
            serde_yaml::Value::Tagged(t) if t.tag == "!Ref" => t.value.as_str().is_some_and(|target| !resources.contains_key(target)),
            _ => false,
        })
        .filter_map(|(k, _)| k.as_str().map(str::to_owned))
        .collect()
}

/// A setting of one function's event source mapping in the template.
fn mapping_setting(function: &str, kind: &str, name: &str) -> Option<i64> {
    let resources = template_resources();
    let events = resources[logical_id(function).as_str()]["Properties"]["Events"].as_mapping()?.clone();
    events.values().find(|e| e["Type"] == kind).and_then(|e| e["Properties"][name].as_i64())
}

// ------------------------------------------------------------------ the whole stack

/// What reaches each function: the HTTP API's routes, the Kinesis mappings and the kitchen
/// queue's batch size. Read from the template, or from what Terraform created
/// ([`crate::terraform`]).
#[derive(Clone, Debug)]
pub struct Wiring {
    /// The id the HTTP API has (what events carry as `requestContext.apiId`).
    pub api_id: String,
    pub routes: Vec<Route>,
    /// The JWT authorizer in front of the routes that name it; `None` plays the functions with
    /// nothing in front.
    pub authorizer: Option<JwtAuthorizer>,
    pub kinesis: Vec<KinesisMapping>,
    pub kitchen_batch_size: i32,
    /// The WebSocket API: its id, its stage's name and the function behind it.
    pub socket: Option<SocketWiring>,
}

/// A WebSocket API's stage and its function (behind the authorizer and every route).
#[derive(Clone, Debug)]
pub struct SocketWiring {
    pub api_id: String,
    pub stage: String,
    pub function: String,
}

/// The template's WebSocket API: the stage of the API whose protocol is WEBSOCKET, and the
/// function its integration invokes.
pub fn template_socket_api() -> Option<SocketWiring> {
    let resources = template_resources();
    let api =
        resources.iter().find(|(_, r)| r["Type"] == "AWS::ApiGatewayV2::Api" && r["Properties"]["ProtocolType"] == "WEBSOCKET").map(|(id, _)| text(id))?;
    let of_api = |r: &&serde_yaml::Value| tagged(&r["Properties"]["ApiId"], "!Ref").and_then(|v| v.as_str()) == Some(api.as_str());
    let stage = resources.values().filter(of_api).find(|r| r["Type"] == "AWS::ApiGatewayV2::Stage")?["Properties"]["StageName"].as_str()?.to_owned();
    let uri = resources.values().filter(of_api).find(|r| r["Type"] == "AWS::ApiGatewayV2::Integration")?;
    let uri = tagged(&uri["Properties"]["IntegrationUri"], "!Sub").and_then(|v| v.as_str())?;
    let function = uri.split("${").find_map(|part| part.strip_suffix("}/invocations")?.strip_suffix(".Arn"))?;
    Some(SocketWiring { api_id: format!("{}-ws", API_ID), stage, function: function_of_logical_id(function) })
}

fn text(v: &serde_yaml::Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

impl Wiring {
    /// The template's wiring, with these values for its parameters (`TOKEN_ISSUER`, ...).
    pub fn from_template(parameters: &[(&str, &str)]) -> Wiring {
        Wiring {
            api_id: API_ID.to_owned(),
            routes: template_routes(),
            authorizer: template_authorizer(API_ID, parameters),
            kinesis: kinesis_mappings(),
            kitchen_batch_size: mapping_setting("kitchen", "SQS", "BatchSize").unwrap_or(10) as i32,
            socket: template_socket_api(),
        }
    }
}

/// The id of the API the stack's HTTP front plays for the template: what the functions derive the
/// tokens' issuer from, so a token from another API (a sample event's `abcdef1234`) is refused.
pub const API_ID: &str = "local";

pub const JWT_SECRET: &str = "lambda-tests-secret-lambda-tests-secret";

/// Every function on moto behind an HTTP front, with the stream and queue pollers running.
pub struct LambdaStack {
    pub stack: Arc<Stack>,
    pub functions: Arc<HashMap<String, LambdaFunction>>,
    pub base: String,
    pub wiring: Wiring,
    /// The WebSocket API's base URL (clients connect at `/{stage}`) and its gateway.
    pub sockets: Option<(String, Arc<crate::apigw_ws::SocketGateway>)>,
    stop: Arc<AtomicBool>,
    pub dir: PathBuf,
}

impl LambdaStack {
    /// Every function with the stream and queue pollers running, as deployed.
    pub fn start(name: &str) -> LambdaStack {
        LambdaStack::start_with(name, true)
    }

    /// Every function; with `pollers: false`, nothing moves stream records or queue messages
    /// unless the test hands them to a function itself.
    pub fn start_with(name: &str, pollers: bool) -> LambdaStack {
        LambdaStack::start_env(name, pollers, &[])
    }

    /// As [`LambdaStack::start_with`], with values for the template's parameters (`PAYMENT_XPUB`,
    /// ...) in every function's environment that names them.
    pub fn start_env(name: &str, pollers: bool, parameters: &[(&str, &str)]) -> LambdaStack {
        LambdaStack::start_wired(name, pollers, parameters, Wiring::from_template(parameters))
    }

    /// Every function with nothing checking tokens in front of them: the template's routes with
    /// no JWT authorizer, so every request reaches its function and the functions' own checks
    /// meet whatever it carries.
    pub fn start_without_authorizer(name: &str) -> LambdaStack {
        let mut wiring = Wiring::from_template(&[]);
        wiring.authorizer = None;
        for r in &mut wiring.routes {
            r.authorized = false;
        }
        LambdaStack::start_wired(name, true, &[], wiring)
    }

    fn start_wired(name: &str, pollers: bool, parameters: &[(&str, &str)], wiring: Wiring) -> LambdaStack {
        let stack = runtime().block_on(Stack::create(name));
        let dir = workspace().join("target/test-state").join(format!("lambda-{name}-{}", std::process::id()));
        let extra = [
            ("JWT_SECRET", JWT_SECRET),
            ("ADMIN_EMAIL", crate::ADMIN_EMAIL),
            ("ADMIN_PASSWORD", crate::ADMIN_PASSWORD),
            ("RATE_LIMITS", crate::TEST_RATE_LIMITS),
        ];
        let environments = FUNCTIONS
            .iter()
            .map(|f| {
                let mut env = stack.function_env(f, &extra);
                // Only the parameters the template gives this function, and any service's own
                // endpoint (`AWS_ENDPOINT_URL_<SERVICE>`: a service moto doesn't play).
                let declared = template_parameters_of(f);
                let given = |k: &str| declared.iter().any(|d| d == k) || k.starts_with("AWS_ENDPOINT_URL_");
                env.extend(parameters.iter().filter(|(k, _)| given(k)).map(|(k, v)| (k.to_string(), v.to_string())));
                (f.to_string(), env)
            })
            .collect();
        LambdaStack::launch(stack, environments, wiring, pollers, dir)
    }

    /// Every function of `environments` (function -> its whole environment) on `stack`, wired
    /// by `wiring`, with its state and logs in `dir`.
    pub fn launch(stack: Stack, mut environments: Vec<(String, Vec<(String, String)>)>, wiring: Wiring, pollers: bool, dir: PathBuf) -> LambdaStack {
        let stack = Arc::new(stack);
        // The WebSocket API's address is known before the functions start: the notifier's
        // LIVE_CONNECTIONS_URL (the stage's management API) names it.
        let socket_listener = wiring.socket.as_ref().map(|s| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("socket front port");
            let address = listener.local_addr().expect("address");
            for (_, env) in &mut environments {
                for (k, v) in env.iter_mut() {
                    match k.as_str() {
                        "LIVE_CONNECTIONS_URL" => *v = format!("http://{address}/{}", s.stage),
                        "LIVE_SOCKET_URL" => *v = format!("ws://{address}/{}", s.stage),
                        _ => {}
                    }
                }
            }
            listener
        });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("state dir");
        let functions: HashMap<String, LambdaFunction> =
            environments.into_iter().map(|(f, env)| (f.clone(), LambdaFunction::start(&f, &env, dir.join(format!("{f}.log"))))).collect();
        for f in functions.values() {
            f.wait_ready(Duration::from_secs(20));
        }
        let functions = Arc::new(functions);
        let stop = Arc::new(AtomicBool::new(false));
        let base =
            serve_front(functions.clone(), stop.clone(), Arc::new(Gateway::new(wiring.api_id.clone(), wiring.routes.clone(), wiring.authorizer.clone())));
        let sockets = wiring.socket.as_ref().zip(socket_listener).map(|(s, listener)| {
            let gateway = Arc::new(crate::apigw_ws::SocketGateway::new(&s.api_id, &s.stage, &s.function));
            (gateway.clone().serve_on(listener, functions.clone(), stop.clone()), gateway)
        });
        if pollers {
            for mapping in wiring.kinesis.clone() {
                spawn_kinesis_poller(stack.clone(), functions.clone(), stop.clone(), mapping);
            }
            spawn_sqs_poller(stack.clone(), functions.clone(), stop.clone(), wiring.kitchen_batch_size);
        }
        LambdaStack { stack, functions, base, wiring, sockets, stop, dir }
    }

    pub fn function(&self, name: &str) -> &LambdaFunction {
        &self.functions[name]
    }

    pub fn logs(&self) -> String {
        self.functions.values().map(|f| format!("--- {}\n{}", f.name, f.log_text())).collect()
    }
}

impl crate::Api for LambdaStack {
    fn base(&self) -> &str {
        &self.base
    }

    /// The stack's KMS keys on moto: slot A signs (the template's default), slot B is trusted too.
    fn token_signer(&self, key: crate::DeploymentKey) -> Option<Box<dyn gocoffee_app::ports::TokenSigner>> {
        let slot = match key {
            crate::DeploymentKey::Current => "TokenKeyA",
            crate::DeploymentKey::Retired => "TokenKeyB",
        };
        Some(Box::new(gocoffee_aws::tokens::KmsSigner::new(crate::aws::kms(), self.stack.keys[slot].clone()).expect("a key ARN")))
    }

    fn gateway_checks_tokens(&self) -> bool {
        self.wiring.authorizer.is_some()
    }

    fn log(&self) -> String {
        self.logs()
    }
}

impl Drop for LambdaStack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for f in self.functions.values() {
            f.kill();
        }
        // Wake the front's accept loop so it sees the stop.
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}

/// API Gateway's part: route selection, the JWT authorizer and the Lambda proxy integration.
struct Gateway {
    api_id: String,
    routes: Vec<Route>,
    authorizer: Option<JwtAuthorizer>,
    /// The key set the authorizer last fetched, as API Gateway caches it.
    keys: Mutex<Option<Arc<gocoffee_app::auth::KeySet>>>,
}

const JSON: (&str, &str) = ("content-type", "application/json");

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

impl Gateway {
    fn new(api_id: String, routes: Vec<Route>, authorizer: Option<JwtAuthorizer>) -> Gateway {
        Gateway { api_id, routes, authorizer, keys: Mutex::new(None) }
    }

    fn handle(&self, functions: &HashMap<String, LambdaFunction>, req: &HttpRequest) -> Answer {
        let path = req.target.split('?').next().unwrap_or("");
        let Some(route) = select_route(&self.routes, &req.method, path) else {
            return (404, vec![(JSON.0.into(), JSON.1.into())], br#"{"message":"Not Found"}"#.to_vec());
        };
        let mut event = apigw_event(&self.api_id, &route.key, &req.method, &req.target, &req.headers, &req.body);
        if route.authorized {
            let Some(authorizer) = &self.authorizer else { panic!("{} names an authorizer the API doesn't have", route.key) };
            match self.authorize(functions, authorizer, req) {
                Some(claims) => event["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}}),
                // What API Gateway answers for a refused token, before any function runs.
                None => {
                    let headers = vec![(JSON.0.into(), JSON.1.into()), ("www-authenticate".into(), r#"Bearer error="invalid_token""#.into())];
                    return (401, headers, br#"{"message":"Unauthorized"}"#.to_vec());
                }
            }
        }
        self.invoke(functions, route, &event)
    }

    fn invoke(&self, functions: &HashMap<String, LambdaFunction>, route: &Route, event: &Value) -> Answer {
        match functions[&route.function].invoke(event) {
            Ok(response) => from_apigw_response(&response),
            Err(e) => {
                eprintln!("{} failed: {e}", route.function);
                (500, vec![(JSON.0.into(), JSON.1.into())], br#"{"message":"Internal Server Error"}"#.to_vec())
            }
        }
    }

    /// The JWT authorizer: the bearer token's claims (as strings, as API Gateway passes them) if
    /// it is RS256, signed by a key of the JWKS the issuer's OpenID discovery document names,
    /// for one of the audiences and within its times.
    fn authorize(&self, functions: &HashMap<String, LambdaFunction>, authorizer: &JwtAuthorizer, req: &HttpRequest) -> Option<serde_json::Map<String, Value>> {
        let header = req.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str())?;
        let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
        let kid = crate::jwt_part(token, 0)?["kid"].as_str()?.to_owned();
        let cached = self.keys.lock().expect("lock").clone();
        // A kid the cached set lacks: the keys may have rotated since.
        let keys = match cached.filter(|k| k.get(&kid).is_some()) {
            Some(keys) => keys,
            None => {
                let fetched = Arc::new(self.fetch_keys(functions, &authorizer.issuer)?);
                *self.keys.lock().expect("lock") = Some(fetched.clone());
                fetched
            }
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
        let verified = authorizer.audience.iter().any(|audience| {
            let audience = gocoffee_app::auth::Audience { issuer: &authorizer.issuer, audience };
            gocoffee_app::auth::verify_access_token(&keys, audience, token, now_ms).is_some()
        });
        if !verified {
            return None;
        }
        let claims = crate::jwt_part(token, 1)?;
        Some(claims.as_object()?.iter().map(|(k, v)| (k.clone(), Value::String(v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))).collect())
    }

    /// What API Gateway fetches: `{issuer}/.well-known/openid-configuration`, then its
    /// `jwks_uri`. The issuer is this API's own URL, so both come through its routes.
    fn fetch_keys(&self, functions: &HashMap<String, LambdaFunction>, issuer: &str) -> Option<gocoffee_app::auth::KeySet> {
        let own = format!("https://{}.execute-api.us-east-1.amazonaws.com", self.api_id);
        let get = |url: &str| -> Option<Value> {
            let path = url.strip_prefix(&own).filter(|p| p.starts_with('/'))?;
            let route = select_route(&self.routes, "GET", path)?;
            let event = apigw_event(&self.api_id, &route.key, "GET", path, &[], b"");
            let (status, _, body) = self.invoke(functions, route, &event);
            if status != 200 {
                return None;
            }
            serde_json::from_slice(&body).ok()
        };
        let discovery = get(&format!("{issuer}/.well-known/openid-configuration"))?;
        if discovery["issuer"] != issuer {
            return None;
        }
        gocoffee_app::auth::KeySet::from_jwks(&get(discovery["jwks_uri"].as_str()?)?).ok()
    }
}

/// The HTTP front: API Gateway's part. Returns its base URL.
fn serve_front(functions: Arc<HashMap<String, LambdaFunction>>, stop: Arc<AtomicBool>, gateway: Arc<Gateway>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("front port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (functions, gateway) = (functions.clone(), gateway.clone());
            std::thread::spawn(move || front_connection(stream, &functions, &gateway));
        }
    });
    base
}

fn front_connection(stream: TcpStream, functions: &HashMap<String, LambdaFunction>, gateway: &Gateway) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let Some(req) = read_request(&mut reader) else { return };
    let (status, headers, body) = gateway.handle(functions, &req);
    let _ = write_response(&mut writer, status, &headers, &body, true);
}

/// What API Gateway sends back for a payload 2.0 response.
fn from_apigw_response(response: &Value) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = response["statusCode"].as_u64().unwrap_or(500) as u16;
    let mut headers: Vec<(String, String)> =
        response["headers"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
    for (k, values) in response["multiValueHeaders"].as_object().into_iter().flatten() {
        for v in values.as_array().into_iter().flatten() {
            headers.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
        }
    }
    for c in response["cookies"].as_array().into_iter().flatten() {
        headers.push(("set-cookie".into(), c.as_str().unwrap_or_default().to_owned()));
    }
    let text = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) { BASE64.decode(text).unwrap_or_default() } else { text.as_bytes().to_vec() };
    (status, headers, body)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// One Kinesis event source mapping of the template: which function reads which stream, with
/// which settings.
#[derive(Clone, Debug)]
pub struct KinesisMapping {
    pub function: String,
    /// The stream's logical id.
    pub stream: String,
    pub batch_size: i32,
    /// -1: forever.
    pub max_retries: i64,
    /// The on-failure destination's logical id.
    pub on_failure: Option<String>,
}

/// Every Kinesis event of every function in the template.
pub fn kinesis_mappings() -> Vec<KinesisMapping> {
    let resources = template_resources();
    let target = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::Tagged(t) if t.tag == "!GetAtt" => t.value.as_str().map(|s| s.split('.').next().unwrap_or(s).to_owned()),
        _ => None,
    };
    let mut mappings = Vec::new();
    for function in FUNCTIONS {
        let events = &resources[logical_id(function).as_str()]["Properties"]["Events"];
        for (_, event) in events.as_mapping().into_iter().flatten() {
            if event["Type"] != "Kinesis" {
                continue;
            }
            let p = &event["Properties"];
            mappings.push(KinesisMapping {
                function: function.to_owned(),
                stream: target(&p["Stream"]).expect("a Kinesis event names its stream with !GetAtt"),
                batch_size: p["BatchSize"].as_i64().unwrap_or(100) as i32,
                max_retries: p["MaximumRetryAttempts"].as_i64().unwrap_or(-1),
                on_failure: target(&p["DestinationConfig"]["OnFailure"]["Destination"]),
            });
        }
    }
    mappings
}

/// A Kinesis event source mapping: batches of up to `BatchSize` records per shard, in order;
/// a reported failure resumes from that record, up to `MaximumRetryAttempts` retries, then the
/// batch's metadata goes to the on-failure destination and the shard moves on. Each mapping has
/// its own iterators, as each consumer of a stream does.
fn spawn_kinesis_poller(stack: Arc<Stack>, functions: Arc<HashMap<String, LambdaFunction>>, stop: Arc<AtomicBool>, mapping: KinesisMapping) {
    std::thread::spawn(move || {
        let rt = runtime();
        let k = &stack.clients.kinesis;
        let (stream, stream_arn) = stack.streams[&mapping.stream].clone();
        // shard id -> (next iterator, retries of the current batch)
        let mut shards: HashMap<String, (Option<String>, i64)> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let listed = rt.block_on(k.list_shards().stream_name(&stream).send()).map(|o| o.shards.unwrap_or_default()).unwrap_or_default();
            for shard in listed {
                let id = shard.shard_id().to_owned();
                if let std::collections::hash_map::Entry::Vacant(slot) = shards.entry(id) {
                    let it = rt.block_on(
                        k.get_shard_iterator()
                            .stream_name(&stream)
                            .shard_id(slot.key())
                            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                            .send(),
                    );
                    slot.insert((it.ok().and_then(|o| o.shard_iterator), 0));
                }
            }
            let mut idle = true;
            for (shard_id, (iterator, retries)) in shards.iter_mut() {
                let Some(it) = iterator.clone() else { continue };
                let Ok(out) = rt.block_on(k.get_records().shard_iterator(it).limit(mapping.batch_size).send()) else { continue };
                if out.records().is_empty() {
                    *iterator = out.next_shard_iterator;
                    continue;
                }
                idle = false;
                let records: Vec<Value> = out
                    .records()
                    .iter()
                    .map(|r| {
                        let arrival = r.approximate_arrival_timestamp().map(|t| t.as_secs_f64()).unwrap_or_default();
                        kinesis_record(&stream_arn, shard_id, r.partition_key().unwrap_or_default(), r.sequence_number(), r.data().as_ref(), arrival)
                    })
                    .collect();
                let response = functions[&mapping.function].invoke(&json!({ "Records": records }));
                let failed_at = match &response {
                    Ok(r) => r["batchItemFailures"].as_array().and_then(|f| f.iter().filter_map(|x| x["itemIdentifier"].as_str()).min().map(str::to_owned)),
                    Err(_) => out.records().first().map(|r| r.sequence_number().to_owned()),
                };
                match failed_at {
                    None => {
                        *iterator = out.next_shard_iterator;
                        *retries = 0;
                    }
                    Some(_) if mapping.max_retries >= 0 && *retries >= mapping.max_retries => {
                        if let Some(dlq) = mapping.on_failure.as_ref().map(|q| &stack.queues[q]) {
                            let first = out.records().first().map(|r| r.sequence_number().to_owned());
                            let last = out.records().last().map(|r| r.sequence_number().to_owned());
                            let meta = json!({"requestContext": {"condition": "RetryAttemptsExhausted"}, "KinesisBatchInfo": {"shardId": shard_id, "startSequenceNumber": first, "endSequenceNumber": last, "streamArn": stream_arn, "batchSize": records.len()}});
                            let _ = rt.block_on(stack.clients.sqs.send_message().queue_url(dlq).message_body(meta.to_string()).send());
                        }
                        *iterator = out.next_shard_iterator;
                        *retries = 0;
                    }
                    Some(sequence) => {
                        *retries += 1;
                        std::thread::sleep(Duration::from_millis(100 * *retries as u64));
                        let it = rt.block_on(
                            k.get_shard_iterator()
                                .stream_name(&stream)
                                .shard_id(shard_id)
                                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::AtSequenceNumber)
                                .starting_sequence_number(sequence)
                                .send(),
                        );
                        if let Ok(o) = it {
                            *iterator = o.shard_iterator;
                        }
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
}

/// The SQS event source mapping of the kitchen queue: batches of up to `BatchSize`; messages the
/// function reports as failed stay (made visible again after a second, instead of the queue's
/// visibility timeout, to keep tests quick) and the rest are deleted.
fn spawn_sqs_poller(stack: Arc<Stack>, functions: Arc<HashMap<String, LambdaFunction>>, stop: Arc<AtomicBool>, batch_size: i32) {
    std::thread::spawn(move || {
        let rt = runtime();
        let sqs = &stack.clients.sqs;
        let queue = stack.queues["KitchenQueue"].clone();
        let arn = rt
            .block_on(sqs.get_queue_attributes().queue_url(&queue).attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn).send())
            .ok()
            .and_then(|o| o.attributes)
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        while !stop.load(Ordering::Relaxed) {
            let received = rt.block_on(
                sqs.receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(batch_size)
                    .wait_time_seconds(1)
                    .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                    .send(),
            );
            let Ok(received) = received else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            let messages = received.messages();
            if messages.is_empty() {
                continue;
            }
            let records: Vec<Value> = messages.iter().map(|m| sqs_record(&arn, m)).collect();
            let failed: Vec<String> = match functions["kitchen"].invoke(&json!({ "Records": records })) {
                Ok(r) => r["batchItemFailures"].as_array().into_iter().flatten().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned)).collect(),
                Err(_) => messages.iter().filter_map(|m| m.message_id().map(str::to_owned)).collect(),
            };
            for m in messages {
                let handle = m.receipt_handle().unwrap_or_default();
                if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                    let _ = rt.block_on(sqs.change_message_visibility().queue_url(&queue).receipt_handle(handle).visibility_timeout(1).send());
                } else {
                    let _ = rt.block_on(sqs.delete_message().queue_url(&queue).receipt_handle(handle).send());
                }
            }
        }
    });
}
