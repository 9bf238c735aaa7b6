//! The local host against Spin's behaviour where a guest can see it, with a component that
//! reports what it sees (`tests/conformance`): the `spin-*` headers, and which TCP connections
//! `allowed_outbound_hosts` lets it open (Spin's rules: `crates/outbound-networking-config`).

use std::net::TcpListener;

use gocoffee_tests::{Host, workspace};

fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().expect("request");
    (resp.status().as_u16(), resp.body_mut().read_to_string().expect("body"))
}

/// The host on the conformance manifest, with its variables.
fn host(name: &str, variables: &[(&str, &str)]) -> Host {
    let state = gocoffee_tests::fresh_state(name);
    let manifest = workspace().join("tests/conformance/spin.toml");
    let env: Vec<(String, String)> = variables.iter().map(|(k, v)| (format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v.to_string())).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Host::launch_env(state, "127.0.0.1:0", &["-f", manifest.to_str().expect("path")], &env)
}

#[test]
fn route_parameters_and_the_client_address_reach_the_guest_as_spin_names_them() {
    let h = host("conformance-headers", &[("tcp_port", "1"), ("range_start", "1"), ("range_end", "2")]);
    let (status, body) = get(&h.base, "/conformance/headers/one/two/rest/of", &[("spin-client-addr", "6.6.6.6:66")]);
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["spin-path-match-path-segment"], "one", "upper-cased and `_` to `-`, then a header name: {seen}");
    assert_eq!(seen["spin-path-match-mixed-case"], "two", "{seen}");
    assert_eq!(seen["spin-path-info"], "/rest/of", "{seen}");
    let client = seen["spin-client-addr"].as_str().expect("client addr");
    assert!(client.starts_with("127.0.0.1:"), "the socket's address, not the client's header: {client}");
}

#[test]
fn tcp_connections_open_exactly_where_allowed_outbound_hosts_allows() {
    let listen = |ip: &str, port: u16| TcpListener::bind((ip, port)).expect("listen");
    let allowed = listen("127.0.0.1", 0);
    let other_port = listen("127.0.0.1", 0);
    let in_network = listen("127.0.0.3", 0);
    let port = in_network.local_addr().expect("addr").port();
    // The same port on an address outside 127.0.0.2/31 (skipped if it can't be had).
    let outside = TcpListener::bind(("127.0.0.4", port)).ok();
    let allowed_port = allowed.local_addr().expect("addr").port().to_string();
    let (start, end) = (port.to_string(), (port + 1).to_string());
    let h = host("conformance-tcp", &[("tcp_port", &allowed_port), ("range_start", &start), ("range_end", &end)]);
    let connect = |addr: String| get(&h.base, &format!("/conformance/tcp?addr={addr}"), &[]);

    let (status, body) = connect(format!("127.0.0.1:{allowed_port}"));
    assert_eq!((status, body.as_str()), (200, "connected"), "`*://127.0.0.1:{{{{ tcp_port }}}}` allows tcp");
    let (status, body) = connect(format!("127.0.0.3:{port}"));
    assert_eq!((status, body.as_str()), (200, "connected"), "an address in a network, a port in a range");

    let (status, body) = connect(other_port.local_addr().expect("addr").to_string());
    assert_eq!(status, 403, "another port: {body}");
    assert!(!body.contains("ConnectionRefused"), "refused by the host, not by the listener: {body}");
    if let Some(outside) = &outside {
        let (status, body) = connect(outside.local_addr().expect("addr").to_string());
        assert_eq!(status, 403, "outside the network: {body}");
    }
    let (status, body) = connect(format!("127.0.0.3:{}", port + 1));
    assert_eq!(status, 403, "a range excludes its end: {body}");
}

/// Service chaining and private routes as Spin has them (SIP 017; Spin's
/// `crates/trigger-http/src/outbound_http.rs` and `crates/routes`): `http://<component>.spin.internal`
/// runs that component in process when `allowed_outbound_hosts` allows it, even on a private route
/// no outside request reaches; the callee sees the request as matched by `/...`, with no `Host`
/// and the client `0.0.0.0:0`.
#[test]
fn service_chaining_reaches_private_routes_only_where_allowed() {
    let h = host("conformance-chain", &[("tcp_port", "1"), ("range_start", "1"), ("range_end", "2")]);
    let chain = |url: &str| get(&h.base, &format!("/conformance/chain?url={url}"), &[]);

    let (status, body) = chain("http://echo.spin.internal/conformance/headers/a/b/c?x=1");
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["status"], 200, "{seen}");
    let headers: serde_json::Value = serde_json::from_str(seen["body"].as_str().expect("body")).expect("the callee's JSON");
    assert_eq!(headers["spin-matched-route"], "/...", "{headers}");
    assert_eq!(headers["spin-raw-component-route"], "/...");
    assert_eq!(headers["spin-component-route"], "");
    assert_eq!(headers["spin-path-info"], "/conformance/headers/a/b/c", "the whole path");
    assert_eq!(headers["spin-full-url"], "http://localhost/conformance/headers/a/b/c?x=1", "no Host, so localhost, as Spin");
    assert_eq!(headers["spin-client-addr"], "0.0.0.0:0");
    assert!(headers.get("spin-path-match-path-segment").is_none(), "the callee's own routes aren't matched: {headers}");

    // The same path from outside goes to the public route's component, never the private one.
    let (status, body) = get(&h.base, "/conformance/headers/a/b/c", &[]);
    assert_eq!(status, 200, "{body}");
    let outside: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(outside["spin-matched-route"], "/conformance/headers/:path_segment/:Mixed_Case/...", "{outside}");

    // A component allowed_outbound_hosts doesn't name, or one that doesn't exist: HttpRequestDenied.
    for url in ["http://unchainable.spin.internal/unchainable/x", "http://nowhere.spin.internal/", "http://echo.spin.internal:8080/"] {
        let (status, body) = chain(url);
        assert_eq!(status, 403, "{url}: {body}");
        assert!(body.contains("HttpRequestDenied"), "{url}: {body}");
    }
}

/// `spin:postgres/postgres@3.0.0` against a real PostgreSQL (Debian's), as Spin's outbound-pg
/// factor converts and fails: typed parameters in, typed columns out (a type the interface lacks
/// as `unsupported`; columns from the first row, so none for an empty result), the server's
/// errors as `query-failed` with its text, transactions on one connection, and a transaction
/// left open when the guest drops its connection never reaching the next one.
#[test]
fn outbound_postgres_works_against_a_real_server_where_allowed() {
    let server = gocoffee_sql::postgres::LocalServer::start().expect("PostgreSQL");
    let port = server.port.to_string();
    let h = host("conformance-postgres", &[("tcp_port", "1"), ("range_start", "1"), ("range_end", "2"), ("pg_port", &port)]);
    let (status, body) = get(&h.base, &format!("/conformance/postgres?addr=postgres://postgres@127.0.0.1:{port}/postgres"), &[]);
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    // What the guest saw, in Rust's Debug form less the WIT types' names.
    let field = |name: &str| seen[name].as_str().unwrap_or_default().replace("DbValue::", "").replace("DbDataType::", "").replace("Error::", "");
    assert_eq!(field("inserted"), "Ok(1)");
    assert_eq!(
        field("columns"),
        r#"Ok(["id:Int64", "name:Str", "price:Int32", "small:Int16", "ok:Boolean", "data:Binary", "at:Datetime", "day:Date", "note:Str", "f:Floating64", "j:Other"])"#
    );
    assert_eq!(
        field("row"),
        r#"Ok([[Int64(1), Str("latte"), Int32(450), Int16(-2), Boolean(true), Binary([0, 1, 255]), Datetime((2026, 11, 27, 9, 30, 15, 500000000)), Date((2026, 2, 28)), DbNull, Floating64(2.5), Unsupported]])"#
    );
    let duplicate = field("duplicate");
    assert!(duplicate.starts_with("Err(QueryFailed(") && duplicate.contains("duplicate key value violates unique constraint"), "{duplicate}");
    assert!(field("wrong_type").starts_with("Err(QueryFailed("), "an int8 for an int4 column, refused as by Spin: {}", field("wrong_type"));
    assert_eq!(field("empty"), "Ok(RowSet { columns: [], rows: [] })");
    assert_eq!(field("ids"), "Ok([[Int64(1)], [Int64(4)]])", "2 rolled back; 3 left open at drop and rolled back; 4 committed");

    // An address allowed_outbound_hosts doesn't list is refused before anything is dialled.
    let (status, body) = get(&h.base, "/conformance/postgres?addr=postgres://postgres@127.0.0.1:3/postgres", &[]);
    assert_eq!((status, body.replace("Error::", "")), (502, r#"open: ConnectionFailed("address postgres://127.0.0.1:3 is not permitted")"#.to_owned()));
}

/// A real Redis server (Debian's `redis-server`, installed by `tests/tools.sh`) on a free port,
/// with nothing saved to disk. Stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is missing: run tests/tools.sh apt");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn outbound_redis_works_against_a_real_server_at_any_address_but_the_triggers() {
    use std::io::{Read, Write};
    let redis = RedisServer::start();
    // A subscriber of our own sees what the component publishes reach the real server.
    let mut subscriber = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    subscriber.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    subscriber.write_all(b"SUBSCRIBE news\r\n").expect("subscribe");
    let mut confirmed = [0u8; 256];
    let n = subscriber.read(&mut confirmed).expect("confirmation");
    assert!(String::from_utf8_lossy(&confirmed[..n]).contains("subscribe"));

    let port = redis.port.to_string();
    let h = host("conformance-redis", &[("tcp_port", "1"), ("range_start", "1"), ("range_end", "2"), ("redis_port", &port)]);
    let (status, body) = get(&h.base, &format!("/conformance/redis?addr=redis://127.0.0.1:{port}"), &[]);
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["get"], "hello", "{seen}");
    assert_eq!(seen["get_missing"], true);
    assert_eq!(seen["incr"], serde_json::json!([1, 2]));
    assert_eq!(seen["del"], 1, "one of the two keys existed");
    assert_eq!((seen["sadd"].as_u64(), seen["srem"].as_u64()), (Some(2), Some(1)), "{seen}");
    assert_eq!(seen["smembers"], serde_json::json!(["a"]));
    assert_eq!(seen["mset"], serde_json::json!([{"status": "OK"}]));
    assert_eq!(seen["mget"], serde_json::json!(["v1", "7", null]), "an array reply is the list of its items");
    // The server's WRONGTYPE reply is an `other` error with its text, as Spin (redis-rs) gives it:
    // `type-error` is for a reply the client couldn't convert.
    assert!(seen["sadd_on_a_number"].as_str().is_some_and(|e| e.starts_with("Error::Other") && e.contains("WRONGTYPE")), "{seen}");

    let mut message = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&message).contains("extra") {
        let n = subscriber.read(&mut buf).expect("the published message");
        assert!(n > 0, "the server closed the subscription");
        message.extend_from_slice(&buf[..n]);
    }

    // An address allowed_outbound_hosts doesn't list is refused before anything is dialled.
    let (status, body) = get(&h.base, "/conformance/redis?addr=redis://127.0.0.1:3", &[]);
    assert_eq!((status, body.as_str()), (502, "open: Error::InvalidAddress"));
}

fn post(base: &str, path: &str, body: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.post(format!("{base}{path}")).send(body).expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json")
}

/// A one-answer-per-connection server speaking OpenAI's chat completions, recording what it was
/// sent (request line, headers and body, as text).
fn openai_server(answer: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (head, body) = gocoffee_tests::read_request(&stream);
            let _ = tx.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
            let mut stream = &stream;
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len());
        }
    });
    (url, rx)
}

/// The llm interface as Spin's `factor-llm` has it: only the models in `ai_models` (any other
/// is invalid-input, in Spin's words), all-MiniLM-L6-v2 embeddings computed by the host, and
/// inference forwarded to the configured service or refused as model-not-supported.
#[test]
fn the_llm_interface_serves_granted_models_only_embeds_natively_and_forwards_inference() {
    let vars = [("tcp_port", "1"), ("range_start", "1"), ("range_end", "2")];
    let h = host("conformance-llm", &vars);
    let seen = post(&h.base, "/conformance/llm?op=embed&model=all-minilm-l6-v2", r#"["a flat white", "an oat latte, please", "a flat white"]"#);
    let vectors = seen["embeddings"].as_array().expect("embeddings");
    assert_eq!(vectors.len(), 3, "{seen}");
    let v: Vec<f64> = vectors[0].as_array().expect("vector").iter().map(|x| x.as_f64().expect("number")).collect();
    assert_eq!(v.len(), 384);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4, "unit length");
    assert_eq!(vectors[0], vectors[2], "the same text, the same vector");
    assert_ne!(vectors[0], vectors[1]);

    let refused = post(&h.base, "/conformance/llm?op=embed&model=other-model", r#"["x"]"#);
    assert_eq!(refused["error"], "invalid-input", "{refused}");
    assert!(refused["message"].as_str().expect("message").contains("add 'other-model' to the 'ai_models' key"), "{refused}");
    let refused = post(&h.base, "/conformance/llm?op=infer&model=other-model", "hi");
    assert_eq!(refused["error"], "invalid-input", "{refused}");
    let unsupported = post(&h.base, "/conformance/llm?op=infer&model=test-chat", "hi");
    assert_eq!(unsupported["error"], "model-not-supported", "no inference service configured: {unsupported}");
    drop(h);

    let (url, sent) =
        openai_server(r#"{"choices":[{"message":{"role":"assistant","content":"Hello from the model"}}],"usage":{"prompt_tokens":7,"completion_tokens":4}}"#);
    let state = gocoffee_tests::fresh_state("conformance-llm-remote");
    let manifest = workspace().join("tests/conformance/spin.toml");
    let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v.to_string())).collect();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("GOCOFFEE_LLM_AUTH_TOKEN", "sekrit"));
    let h = gocoffee_tests::Host::launch_env(state, "127.0.0.1:0", &["-f", manifest.to_str().expect("path"), "--llm-url", &url], &env);
    let answer = post(&h.base, "/conformance/llm?op=infer&model=test-chat", "Say hello");
    assert_eq!(answer["text"], "Hello from the model", "{answer}");
    assert_eq!((answer["prompt_token_count"].as_u64(), answer["generated_token_count"].as_u64()), (Some(7), Some(4)));
    let request = sent.recv_timeout(std::time::Duration::from_secs(5)).expect("the service was called");
    assert!(request.starts_with("POST /v1/chat/completions "), "{request}");
    assert!(request.to_ascii_lowercase().contains("authorization: bearer sekrit"), "{request}");
    let body: serde_json::Value = serde_json::from_str(request.split_once("\n\n").expect("body").1.trim()).expect("json body");
    assert_eq!(body["model"], "test-chat");
    assert_eq!(body["messages"][0]["content"], "Say hello");
    assert_eq!(body["max_completion_tokens"], 42);
}
