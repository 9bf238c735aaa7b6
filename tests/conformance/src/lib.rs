//! What a guest sees of its host, for the conformance tests (`tests/tests/conformance.rs`) to
//! hold the local host to Spin's behaviour:
//! - `GET /conformance/headers/...`: the `spin-*` headers it was given, as a JSON object;
//! - `GET /conformance/tcp?addr=HOST:PORT`: `200 connected` when a `wasi:sockets` TCP connection
//!   to the address opens, `403` with the error when the host refuses it;
//! - `GET /conformance/redis?addr=redis://...`: every outbound Redis call (set, get, incr, del,
//!   sadd, smembers, srem, execute, publish) on that server, and what each returned, as JSON;
//! - `GET /conformance/postgres?addr=...`: a round of `spin:postgres/postgres@3.0.0` calls on that
//!   connection string (typed parameters and columns, a constraint error, transactions, a
//!   transaction left open when the connection is dropped), and what each returned, as JSON;
//! - `GET /conformance/chain?url=...`: a GET of that URL through outbound HTTP (service chaining
//!   when it names `<component>.spin.internal`), answered as `{"status", "body"}`, or `403` with
//!   the error when the host refuses it;
//! - `POST /conformance/llm?op=embed|infer&model=M` with a JSON array of texts (embed) or a
//!   prompt (infer): the `fermyon:spin/llm@2.0.0` call's result or error, as JSON.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

use http::StatusCode;

fn reply(status: StatusCode, body: impl Into<Vec<u8>>) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = status;
    r
}

#[spin_sdk::http_component]
fn handle(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let path = req.uri().path();
    if path.starts_with("/conformance/headers") {
        let spin: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("spin-"))
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned().into()))
            .collect();
        return reply(StatusCode::OK, serde_json::Value::Object(spin).to_string());
    }
    if path == "/conformance/tcp" {
        let addr = req.uri().query().and_then(|q| q.strip_prefix("addr=")).unwrap_or_default();
        let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
            return reply(StatusCode::BAD_REQUEST, "addr=HOST:PORT");
        };
        return match std::net::TcpStream::connect(addr) {
            Ok(_) => reply(StatusCode::OK, "connected"),
            Err(e) => reply(StatusCode::FORBIDDEN, format!("{e} ({:?})", e.kind())),
        };
    }
    if path == "/conformance/redis" {
        let addr = req.uri().query().and_then(|q| q.strip_prefix("addr=")).unwrap_or_default();
        return match redis_calls(addr) {
            Ok(seen) => reply(StatusCode::OK, seen.to_string()),
            Err(e) => reply(StatusCode::BAD_GATEWAY, e),
        };
    }
    if path == "/conformance/postgres" {
        let addr = req.uri().query().and_then(|q| q.strip_prefix("addr=")).unwrap_or_default();
        return match postgres_calls(addr) {
            Ok(seen) => reply(StatusCode::OK, seen.to_string()),
            Err(e) => reply(StatusCode::BAD_GATEWAY, e),
        };
    }
    if path == "/conformance/chain" {
        let url = req.uri().query().and_then(|q| q.strip_prefix("url=")).unwrap_or_default().to_owned();
        let sent = spin_sdk::http::run(spin_sdk::http::send::<_, spin_sdk::http::Response>(spin_sdk::http::Request::get(url)));
        return match sent {
            Ok(resp) => {
                let seen = serde_json::json!({ "status": resp.status(), "body": String::from_utf8_lossy(resp.body()) });
                reply(StatusCode::OK, seen.to_string())
            }
            Err(e) => reply(StatusCode::FORBIDDEN, format!("{e:?}")),
        };
    }
    if path == "/conformance/llm" {
        return reply(StatusCode::OK, llm_call(req.uri().query().unwrap_or_default(), req.body()).to_string());
    }
    reply(StatusCode::NOT_FOUND, "")
}

/// One llm call, as the query names it, and what it returned.
fn llm_call(query: &str, body: &[u8]) -> serde_json::Value {
    use serde_json::json;
    use spin_sdk::llm;
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).unwrap_or_default().to_owned();
    let model = param("model");
    let error = |e: llm::Error| match e {
        llm::Error::ModelNotSupported => json!({"error": "model-not-supported"}),
        llm::Error::RuntimeError(m) => json!({"error": "runtime-error", "message": m}),
        llm::Error::InvalidInput(m) => json!({"error": "invalid-input", "message": m}),
    };
    match param("op").as_str() {
        "embed" => {
            let texts: Vec<String> = serde_json::from_slice(body).unwrap_or_default();
            match llm::generate_embeddings(llm::EmbeddingModel::Other(&model), &texts) {
                Ok(r) => json!({"embeddings": r.embeddings, "prompt_token_count": r.usage.prompt_token_count}),
                Err(e) => error(e),
            }
        }
        "infer" => {
            let prompt = String::from_utf8_lossy(body);
            let params = llm::InferencingParams { max_tokens: 42, ..Default::default() };
            match llm::infer_with_options(llm::InferencingModel::Other(&model), &prompt, params) {
                Ok(r) => json!({"text": r.text, "prompt_token_count": r.usage.prompt_token_count, "generated_token_count": r.usage.generated_token_count}),
                Err(e) => error(e),
            }
        }
        other => json!({"error": format!("unknown op {other}")}),
    }
}

fn redis_calls(addr: &str) -> Result<serde_json::Value, String> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let e = |what: &'static str| move |err: spin_sdk::redis::Error| format!("{what}: {err:?}");
    let conn = Connection::open(addr).map_err(e("open"))?;
    conn.set("greeting", &b"hello"[..].to_vec()).map_err(e("set"))?;
    let got = conn.get("greeting").map_err(e("get"))?;
    let missing = conn.get("no-such-key").map_err(e("get missing"))?;
    let counted = [conn.incr("counter").map_err(e("incr"))?, conn.incr("counter").map_err(e("incr"))?];
    let deleted = conn.del(&["greeting".to_owned(), "no-such-key".to_owned()]).map_err(e("del"))?;
    let added = conn.sadd("set", &["a".to_owned(), "b".to_owned(), "a".to_owned()]).map_err(e("sadd"))?;
    let removed = conn.srem("set", &["b".to_owned(), "z".to_owned()]).map_err(e("srem"))?;
    let members = conn.smembers("set").map_err(e("smembers"))?;
    conn.publish("news", &b"extra"[..].to_vec()).map_err(e("publish"))?;
    let results = conn
        .execute(
            "MSET",
            &[RedisParameter::Binary(b"k1".to_vec()), RedisParameter::Binary(b"v1".to_vec()), RedisParameter::Binary(b"k2".to_vec()), RedisParameter::Int64(7)],
        )
        .map_err(e("execute MSET"))?;
    let listed = conn
        .execute("MGET", &[RedisParameter::Binary(b"k1".to_vec()), RedisParameter::Binary(b"k2".to_vec()), RedisParameter::Binary(b"k3".to_vec())])
        .map_err(e("execute MGET"))?;
    let shown = |rs: Vec<RedisResult>| -> Vec<serde_json::Value> {
        rs.into_iter()
            .map(|r| match r {
                RedisResult::Nil => serde_json::Value::Null,
                RedisResult::Status(s) => serde_json::json!({ "status": s }),
                RedisResult::Int64(n) => n.into(),
                RedisResult::Binary(b) => String::from_utf8_lossy(&b).into_owned().into(),
            })
            .collect()
    };
    let wrong_type = conn.sadd("counter", &["x".to_owned()]).err().map(|err| format!("{err:?}"));
    Ok(serde_json::json!({
        "get": got.map(|b| String::from_utf8_lossy(&b).into_owned()),
        "get_missing": missing.is_none(),
        "incr": counted,
        "del": deleted,
        "sadd": added,
        "srem": removed,
        "smembers": members,
        "mset": shown(results),
        "mget": shown(listed),
        "sadd_on_a_number": wrong_type,
    }))
}

fn postgres_calls(addr: &str) -> Result<serde_json::Value, String> {
    use spin_sdk::pg3::{Connection, ParameterValue as P};
    let seen = |r: &dyn std::fmt::Debug| format!("{r:?}");
    let db = Connection::open(addr).map_err(|e| format!("open: {e:?}"))?;
    db.execute("DROP TABLE IF EXISTS conformance", &[]).map_err(|e| format!("drop: {e:?}"))?;
    db.execute(
        "CREATE TABLE conformance (id BIGINT PRIMARY KEY, name TEXT, price INT, small SMALLINT, ok BOOLEAN, data BYTEA, at TIMESTAMP, day DATE, note VARCHAR(10))",
        &[],
    )
    .map_err(|e| format!("create: {e:?}"))?;
    let insert = "INSERT INTO conformance (id, name, price, small, ok, data, at, day, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    let row = |id: i64| {
        vec![
            P::Int64(id),
            P::Str("latte".into()),
            P::Int32(450),
            P::Int16(-2),
            P::Boolean(true),
            P::Binary(vec![0, 1, 255]),
            P::Datetime((2026, 11, 27, 9, 30, 15, 500_000_000)),
            P::Date((2026, 2, 28)),
            P::DbNull,
        ]
    };
    let inserted = db.execute(insert, &row(1));
    let selected =
        db.query("SELECT id, name, price, small, ok, data, at, day, note, 2.5::float8 AS f, '{}'::jsonb AS j FROM conformance WHERE id = $1", &[P::Int64(1)]);
    let columns = selected.as_ref().map(|r| r.columns.iter().map(|c| format!("{}:{:?}", c.name, c.data_type)).collect::<Vec<_>>());
    let duplicate = db.execute(insert, &row(1));
    let wrong_type = db.execute("INSERT INTO conformance (id, price) VALUES ($1, $2)", &[P::Int64(9), P::Int64(1)]);
    let empty = db.query("SELECT id FROM conformance WHERE id = $1", &[P::Int64(404)]);
    // A transaction rolled back, then one left open when the connection goes away.
    let _ = db.execute("BEGIN", &[]);
    let _ = db.execute(insert, &row(2));
    let _ = db.execute("ROLLBACK", &[]);
    let _ = db.execute("BEGIN", &[]);
    let _ = db.execute(insert, &row(3));
    drop(db);
    let db = Connection::open(addr).map_err(|e| format!("reopen: {e:?}"))?;
    // Whatever connection this is, it runs outside any transaction: this insert stays.
    let _ = db.execute(insert, &row(4));
    drop(db);
    let db = Connection::open(addr).map_err(|e| format!("reopen: {e:?}"))?;
    let ids = db.query("SELECT id FROM conformance ORDER BY id", &[]);
    Ok(serde_json::json!({
        "inserted": seen(&inserted),
        "columns": seen(&columns),
        "row": seen(&selected.map(|r| r.rows)),
        "duplicate": seen(&duplicate),
        "wrong_type": seen(&wrong_type),
        "empty": seen(&empty),
        "ids": seen(&ids.map(|r| r.rows)),
    }))
}
