//! Test support: start the real `gocoffee-host` on the real components in a fresh state folder
//! and talk to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// base64url without padding, as JWTs encode their parts.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One JSON part of a JWT (0: the header, 1: the claims), decoded.
pub fn jwt_part(token: &str, index: usize) -> Option<Value> {
    use base64::Engine as _;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(index)?).ok()?).ok()
}

/// A JWT signed by `signer`, with this header (its kid filled in unless the header names one) and
/// these claims, already base64url-encoded (so a test can sign exactly the bytes it means).
pub fn signed_token(signer: &dyn gocoffee_app::ports::TokenSigner, header: Value, claims: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut header = header;
        if header.get("kid").is_none() {
            header["kid"] = signer.kid().await.expect("kid").into();
        }
        let message = format!("{}.{claims}", b64(&serde_json::to_vec(&header).expect("json")));
        let signature = signer.sign(message.as_bytes()).await.expect("signs");
        format!("{message}.{}", b64(&signature))
    })
}

pub mod anvil;
pub mod apigw_ws;
pub mod aws;
pub mod bedrock;
pub mod lambda;
pub mod payments;
pub mod sse;
pub mod terraform;
pub mod ws;

pub const ADMIN_EMAIL: &str = "admin@gocoffee.test";
pub const ADMIN_PASSWORD: &str = "admin password 1";
/// The key test deployments sign tokens with where no KMS does (the host, Spin): a test key,
/// which nothing deployed trusts.
pub const TOKEN_SIGNING_KEY: &str = include_str!("../../shared/app/tests/keys/current.pem");
/// The keys test deployments trust: the signing key's and a retired one's.
pub const TOKEN_PUBLIC_KEYS: &str =
    concat!(include_str!("../../shared/app/tests/keys/current.pub.pem"), include_str!("../../shared/app/tests/keys/retired.pub.pem"));
/// A key a test deployment trusted before the current one: its tokens are still live.
pub const RETIRED_SIGNING_KEY: &str = include_str!("../../shared/app/tests/keys/retired.pem");
/// A key no deployment trusts.
pub const STRANGER_SIGNING_KEY: &str = include_str!("../../shared/app/tests/keys/stranger.pem");

/// The rate limits every test deployment runs with unless a test sets its own: on (so every
/// request goes through the limiter's store), but far above what a test sends from its one
/// address. The defaults (10 credential attempts a minute) would refuse a test's fifth login.
pub const TEST_RATE_LIMITS: &str = r#"{"credentials": {"requests": 1000, "per_seconds": 1, "burst": 1000}, "write": {"requests": 1000, "per_seconds": 1, "burst": 1000}, "read": {"requests": 1000, "per_seconds": 1, "burst": 1000}}"#;

/// Every deployed function with HTTP routes: the registry the agreement tests (openapi.yaml,
/// spin.toml, sam-template.yaml, sample events) read. A new function registers here.
pub fn functions() -> Vec<&'static gocoffee_app::Function> {
    let mut all = gocoffee_app::FUNCTIONS.to_vec();
    all.push(&gocoffee_payments::routes::FUNCTION);
    all.push(&gocoffee_ai::orchestrator::FUNCTION);
    all
}

/// Functions whose spin.toml prefix API Gateway's HTTP API doesn't mirror: live status streams as
/// Server-Sent Events on Spin and the host and goes over the WebSocket API on AWS, so the HTTP API
/// carries only live's tickets route, by its method.
pub const SPIN_ONLY: &[&str] = &["live"];

/// The routes API Gateway's HTTP API doesn't carry (see [`SPIN_ONLY`]): `(method, path)`.
pub const SPIN_ONLY_ROUTES: &[(&str, &str)] = &[("GET", "/api/v1/live/events")];

/// Whether API Gateway's HTTP API carries `route`.
pub fn on_aws(route: &gocoffee_app::Route) -> bool {
    !SPIN_ONLY_ROUTES.contains(&(route.method.as_str(), route.path))
}

/// Every API route with the function that serves it.
pub fn routes() -> Vec<(&'static str, &'static gocoffee_app::Route)> {
    functions().into_iter().flat_map(|f| f.routes.iter().map(move |r| (f.name, r))).collect()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn host_binary() -> PathBuf {
    std::env::var_os("GOCOFFEE_HOST_BIN").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/release/gocoffee-host"))
}

/// A running host with its own state folder. Killed when dropped.
pub struct Host {
    child: Option<Child>,
    pub base: String,
    pub state: PathBuf,
    port: u16,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Host {
    /// Starts a host on a fresh state folder named after the test.
    pub fn start(name: &str) -> Host {
        let state = fresh_state(name);
        Host::start_in(state, 0)
    }

    /// Starts a host on an existing state folder (a restart), on `port` (0: any free port).
    pub fn start_in(state: PathBuf, port: u16) -> Host {
        Host::launch(state, &format!("127.0.0.1:{port}"), &["--max-attempts", "3", "--retry-base-ms", "50"])
    }

    /// Starts a host on a fresh state folder named after the test, with these flags.
    pub fn start_with(name: &str, listen: &str, flags: &[&str]) -> Host {
        let state = fresh_state(name);
        Host::launch(state, listen, flags)
    }

    /// Starts a host on a fresh state folder named after the test, with these variables in its
    /// environment (`SPIN_VARIABLE_...`).
    pub fn start_env(name: &str, env: &[(&str, &str)]) -> Host {
        let state = fresh_state(name);
        Host::launch_env(state, "127.0.0.1:0", &["--max-attempts", "3", "--retry-base-ms", "50"], env)
    }

    /// Starts a host on a fresh state folder named after the test whose components keep their
    /// state in PostgreSQL instead of SQLite: a database of their own on a throwaway local server,
    /// which the caller keeps for the test.
    pub fn start_on_postgres(name: &str) -> (Host, gocoffee_sql::postgres::LocalServer) {
        let server = gocoffee_sql::postgres::LocalServer::start().expect("PostgreSQL");
        let url = server.database("gocoffee").expect("database");
        let origin = format!("postgres://127.0.0.1:{}", server.port);
        let host = Host::start_env(name, &[("SPIN_VARIABLE_DATABASE_URL", &url), ("SPIN_VARIABLE_DATABASE_ORIGIN", &origin)]);
        (host, server)
    }

    /// Starts a host serving the Fermyon Wasm Functions profile (spin.fermyon-wasm-functions.toml,
    /// generated from spin.toml) under that platform's rules: HTTP triggers alone, events over
    /// service chaining, state in PostgreSQL on a throwaway local server the caller keeps.
    pub fn start_on_wasm_functions(name: &str) -> (Host, gocoffee_sql::postgres::LocalServer) {
        let server = gocoffee_sql::postgres::LocalServer::start().expect("PostgreSQL");
        server.database("gocoffee").expect("database");
        let state = fresh_state(name);
        (Host::relaunch_on_wasm_functions(state, 0, &server), server)
    }

    /// [`Host::start_on_wasm_functions`] on an existing state folder and database (a restart), on
    /// `port` (0: any free port).
    pub fn relaunch_on_wasm_functions(state: PathBuf, port: u16, server: &gocoffee_sql::postgres::LocalServer) -> Host {
        let url = server.address("gocoffee");
        let origin = format!("postgres://127.0.0.1:{}", server.port);
        let flags = ["--max-attempts", "3", "--retry-base-ms", "50", "-f", WASM_FUNCTIONS_PROFILE, "--platform", "fermyon-wasm-functions"];
        let env =
            [("SPIN_VARIABLE_DATABASE_URL", url.as_str()), ("SPIN_VARIABLE_DATABASE_ORIGIN", origin.as_str()), ("SPIN_VARIABLE_CRON_SECRET", CRON_SECRET)];
        Host::launch_env(state, &format!("127.0.0.1:{port}"), &flags, &env)
    }

    /// Starts a host serving the Fermyon Cloud profile (spin.fermyon-cloud.toml, generated from
    /// spin.toml) under that platform's rules: HTTP triggers alone, no service chaining (each
    /// component runs its events' consumers itself), state in SQLite.
    pub fn start_on_cloud(name: &str) -> Host {
        let state = fresh_state(name);
        Host::relaunch_on_cloud(state, 0)
    }

    /// [`Host::start_on_cloud`] on an existing state folder (a restart), on `port` (0: any).
    pub fn relaunch_on_cloud(state: PathBuf, port: u16) -> Host {
        let flags = ["--max-attempts", "3", "--retry-base-ms", "50", "-f", FERMYON_CLOUD_PROFILE, "--platform", "fermyon-cloud"];
        Host::launch_env(state, &format!("127.0.0.1:{port}"), &flags, &[("SPIN_VARIABLE_CRON_SECRET", CRON_SECRET)])
    }

    /// One scheduled run of a cron component on its route, as the platform's cron job makes it
    /// (the Fermyon profiles): its status.
    pub fn scheduled_run(&self, component: &str) -> u16 {
        self.request("GET", &format!("/cron/{component}?key={CRON_SECRET}"), None, &[], None).status
    }

    /// Starts a host on `state`, listening on `listen`, with these flags.
    pub fn launch(state: PathBuf, listen: &str, flags: &[&str]) -> Host {
        Host::launch_env(state, listen, flags, &[])
    }

    /// [`Host::launch`] with extra environment variables.
    pub fn launch_env(state: PathBuf, listen: &str, flags: &[&str], env: &[(&str, &str)]) -> Host {
        let bin = host_binary();
        assert!(bin.exists(), "{} is missing: run `make test` (it builds the host and components first)", bin.display());
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(state.join("host.log")).expect("log file");
        let mut child = Command::new(bin)
            .current_dir(workspace())
            .args(["--listen", listen, "--state-dir"])
            .arg(&state)
            .args(["--cache-dir"])
            .arg(workspace().join("target/test-cache"))
            .args(["--ai-models"])
            .arg(workspace().join("target/ai-models"))
            .args(flags)
            .env("SPIN_VARIABLE_JWT_SECRET", "contract-tests-secret-contract-tests")
            .env("SPIN_VARIABLE_TOKEN_SIGNING_KEY", TOKEN_SIGNING_KEY)
            .env("SPIN_VARIABLE_TOKEN_PUBLIC_KEYS", TOKEN_PUBLIC_KEYS)
            .env("SPIN_VARIABLE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("SPIN_VARIABLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SPIN_VARIABLE_RATE_LIMITS", TEST_RATE_LIMITS)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start host");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("Listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let log = std::fs::read_to_string(state.join("host.log")).unwrap_or_default();
                    panic!("host exited before listening:\n{log}");
                }
            }
        };
        // Keep draining stdout so the host never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port = base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        // A host on every interface is still reached on loopback by default.
        let base = base.replace("0.0.0.0", "127.0.0.1");
        Host { child: Some(child), base, state, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) -> PathBuf {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.state.clone()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> (PathBuf, std::process::ExitStatus) {
        let mut c = self.child.take().expect("running");
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let status = c.wait().expect("wait");
        (self.state.clone(), status)
    }

    /// Runs a `gocoffee-host` subcommand against this host's state folder; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(host_binary()).args(args).arg("--state-dir").arg(&self.state).output().expect("run gocoffee-host");
        assert!(out.status.success(), "gocoffee-host {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    }
}

/// An empty state folder for a test's host, named after the test, this process and a count of
/// the folders it made: every host gets its own, even when one test name runs on several
/// deployments at once (the contract tests' four Spin profiles, which once shared a folder and
/// each other's SQLite files, and a starting host emptied a running one's).
pub fn fresh_state(name: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = workspace().join("target/test-state").join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    state
}

/// The Fermyon Wasm Functions profile, generated from spin.toml by `gocoffee-host profile`.
pub const WASM_FUNCTIONS_PROFILE: &str = "spin.fermyon-wasm-functions.toml";

/// The Fermyon Cloud profile, generated from spin.toml by `gocoffee-host profile`.
pub const FERMYON_CLOUD_PROFILE: &str = "spin.fermyon-cloud.toml";

/// The `cron_secret` the hosts serving a Fermyon profile are given.
pub const CRON_SECRET: &str = "contract-tests-cron-secret-contract-tests";

/// A running Go Coffee, on either shell: the helpers every contract test talks through.
/// Which of a deployment's token keys to sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentKey {
    /// The key its identity signs with now.
    Current,
    /// A key it still trusts though it signs with another (rotated out, or the other KMS slot).
    Retired,
}

pub trait Api: Sync {
    /// The base URL requests go to.
    fn base(&self) -> &str;

    /// One of this deployment's token keys, to sign with as its identity would. `None` where a
    /// test can't reach the keys.
    fn token_signer(&self, _key: DeploymentKey) -> Option<Box<dyn gocoffee_app::ports::TokenSigner>> {
        None
    }

    /// Whether a gateway checks bearer tokens before the functions do (API Gateway's JWT
    /// authorizer), answering a refused token with its own 401 `{"message":"Unauthorized"}`.
    fn gateway_checks_tokens(&self) -> bool {
        false
    }

    /// Whether `reply` is the refusal of a bad bearer token: the app's `401 invalid_token`, or,
    /// behind a gateway that checks tokens, the gateway's own 401.
    fn refused_token(&self, reply: &Reply) -> bool {
        let app = reply.code() == "invalid_token" && reply.body["error"]["message"].is_string();
        reply.status == 401 && (app || self.gateway_checks_tokens() && reply.body == serde_json::json!({"message": "Unauthorized"}))
    }
    /// What the platform logged, for failure messages.
    fn log(&self) -> String;

    fn request(&self, method: &str, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<(&str, Vec<u8>)>) -> Reply {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
        let url = format!("{}{}", self.base(), path);
        let mut req = http_request(method, &url);
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (ct, bytes) = body.unwrap_or(("", Vec::new()));
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let req = req.body(bytes).expect("request");
        let mut resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, body, headers }
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, &[], None)
    }

    fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request("POST", path, token, &[], Some(("application/json", serde_json::to_vec(&body).expect("json"))))
    }

    fn register(&self, email: &str) -> String {
        let r = self.post("/api/v1/auth/register", None, serde_json::json!({"email": email, "password": "password 123"}));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    fn login(&self, email: &str, password: &str) -> Reply {
        self.post("/api/v1/auth/login", None, serde_json::json!({"email": email, "password": password}))
    }

    /// An account with `role`, created by the bootstrap admin; returns its access token.
    fn staff(&self, email: &str, role: &str) -> String {
        let admin = self.login(ADMIN_EMAIL, ADMIN_PASSWORD);
        assert_eq!(admin.status, 200, "{}", admin.body);
        let admin = admin.body["access_token"].as_str().expect("token").to_owned();
        let r = self.post("/api/v1/auth/users", Some(&admin), serde_json::json!({"email": email, "password": "staff password", "role": role}));
        assert_eq!(r.status, 201, "{}", r.body);
        self.login(email, "staff password").body["access_token"].as_str().expect("token").to_owned()
    }

    fn place(&self, token: &str) -> String {
        let r = self.post("/api/v1/orders", Some(token), serde_json::json!({"lines": [{"item_id": "cappuccino", "size": "medium", "quantity": 1}]}));
        assert_eq!(r.status, 202, "{}", r.body);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// Polls the order until it has `status` (the consumer works asynchronously).
    fn wait_for_status(&self, id: &str, token: &str, status: &str) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(&format!("/api/v1/orders/{id}"), Some(token));
            if r.body["status"] == status || Instant::now() > deadline {
                assert_eq!(r.body["status"], status, "order {id} never became {status}; host log:\n{}", self.log());
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn event_types(&self, id: &str, token: &str) -> Vec<String> {
        let r = self.get(&format!("/api/v1/orders/{id}/events"), Some(token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().expect("type").to_owned()).collect()
    }
}

impl Api for Host {
    fn base(&self) -> &str {
        &self.base
    }

    fn token_signer(&self, key: DeploymentKey) -> Option<Box<dyn gocoffee_app::ports::TokenSigner>> {
        let pem = match key {
            DeploymentKey::Current => TOKEN_SIGNING_KEY,
            DeploymentKey::Retired => RETIRED_SIGNING_KEY,
        };
        Some(Box::new(gocoffee_app::auth::PemSigner::from_pem(pem).expect("a test key")))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("host.log")).unwrap_or_default()
    }
}

/// A running Go Coffee reached at another address: what a client on the LAN sees of a host.
pub struct Remote(pub String);

impl Api for Remote {
    fn base(&self) -> &str {
        &self.0
    }

    fn log(&self) -> String {
        String::new()
    }
}

fn http_request(method: &str, url: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder().method(method).uri(url)
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Messages still waiting in the host's durable log (read from its SQLite file).
pub fn pending_deliveries(state: &Path) -> i64 {
    let conn = rusqlite::Connection::open(state.join("log.db")).expect("log db");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)).expect("count")
}

/// Appends a message for the order consumer straight into a stopped host's log, as a broker
/// redelivering after a crash would.
pub fn inject_delivery(state: &Path, payload: &[u8]) {
    let conn = rusqlite::Connection::open(state.join("log.db")).expect("log db");
    conn.execute(
        "INSERT INTO deliveries (subscriber, channel, payload, published_at, next_attempt_at) VALUES ('order-consumer', 'orders', ?, 0, 0)",
        [payload],
    )
    .expect("inject");
}

/// A stand-in OpenTelemetry Collector: accepts OTLP/HTTP JSON exports on loopback and keeps
/// every span it is sent.
pub fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = spans.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let (mut line, mut length, mut path) = (String::new(), 0usize, String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if path.is_empty() {
                    path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let export: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(path, "/v1/traces");
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    kept.lock().expect("lock").extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            let _ = (&conn).write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    (endpoint, spans)
}

/// One HTTP/1.1 request read off `stream` by a test's stand-in server (one request per
/// connection): its request line and headers as sent, and its body (by `content-length`).
pub fn read_request(stream: &std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut reader = BufReader::new(stream);
    let (mut head, mut length) = (String::new(), 0);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    (head, body)
}
