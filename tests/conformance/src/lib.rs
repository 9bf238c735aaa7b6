//! What a guest sees of its host, for the conformance tests (`tests/tests/conformance.rs`) to
//! hold the local host to Spin's behaviour:
//! - `GET /conformance/headers/...`: the `spin-*` headers it was given, as a JSON object;
//! - `GET /conformance/tcp?addr=HOST:PORT`: `200 connected` when a `wasi:sockets` TCP connection
//!   to the address opens, `403` with the error when the host refuses it.
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
    reply(StatusCode::NOT_FOUND, "")
}
