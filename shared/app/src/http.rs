//! Platform-neutral HTTP plumbing: the one mapping from errors to status + JSON body, request
//! body and query parsing, cursors, and JSON responses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gocoffee_core::{DomainError, ErrorKind};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ports::StoreError;

pub type Request = http::Request<Vec<u8>>;
pub type Response = http::Response<Vec<u8>>;

/// Largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error as the client sees it: a status, a stable code and a short message. Causes are
/// logged where they happen, never put here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a 503's or 429's `Retry-After` asks for (1 unless said otherwise).
    pub retry_after_s: u32,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_s: 1 }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is temporarily unavailable; retry shortly")
    }

    /// A 503 for a dependency that is down for a while: retry after `seconds`.
    pub fn unavailable_for(code: &'static str, message: impl Into<String>, seconds: u32) -> Self {
        ApiError { retry_after_s: seconds, ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }

    /// A 429: the caller is over a rate limit for `retry_after_ms` more (rounded up to whole
    /// seconds, at least 1).
    pub fn too_many_requests(class: &str, retry_after_ms: i64) -> Self {
        let seconds = u32::try_from((retry_after_ms.max(1) + 999) / 1000).unwrap_or(u32::MAX);
        ApiError {
            retry_after_s: seconds,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many {class} requests from this client; retry after {seconds} s"))
        }
    }

    pub fn into_response(self) -> Response {
        let mut r = json(self.status, &serde_json::json!({ "error": { "code": self.code, "message": self.message } }));
        if matches!(self.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_s));
        }
        r
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ApiError::conflict("concurrent_modification", "the resource changed while this request ran; retry it"),
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "store unavailable");
                ApiError::unavailable()
            }
        }
    }
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    // Serializing our own response types cannot fail: no maps with non-string keys, no
    // fallible Serialize impls.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = http::Response::new(bytes);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn no_content() -> Response {
    let mut r = http::Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// Parses a JSON request body: 415 unless it is JSON, 413 when too large, 400 when malformed or
/// of the wrong shape (unknown fields included).
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let body = req.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is over {MAX_BODY_BYTES} bytes")));
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let lower = mime.to_ascii_lowercase();
    let is_json = lower == "application/json" || (lower.starts_with("application/") && lower.ends_with("+json"));
    if !is_json {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json"));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::bad_request("invalid_body", data_error_message(&e)),
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request("malformed_json", "the body is not valid JSON"),
        }
    })
}

/// Like [`parse_json`], but an empty body (with or without a content type) means `T::default()`.
pub fn parse_optional_json<T: DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    if req.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(req)
}

// serde's message names the field and what was expected; strip the position suffix, which
// means nothing to a client.
fn data_error_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// The decoded query-string pairs of a request.
pub fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    query_pairs(req).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn percent_decode(s: &str) -> String {
    let hex_digit = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16)).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                // Not an escape: keep the '%' as it is.
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `limit` from the query: 1..=100, default 20.
pub fn page_limit(req: &Request) -> Result<usize, ApiError> {
    match query_param(req, "limit") {
        None => Ok(20),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_request("invalid_limit", "limit must be a number from 1 to 100")),
    }
}

/// `cursor` from the query, as the (timestamp, id) it encodes.
pub fn page_cursor(req: &Request) -> Result<Option<(i64, String)>, ApiError> {
    let Some(raw) = query_param(req, "cursor") else { return Ok(None) };
    let invalid = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (t, id) = text.split_once(':').ok_or_else(invalid)?;
    let t = t.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() || id.len() > 64 {
        return Err(invalid());
    }
    Ok(Some((t, id.to_owned())))
}

pub fn encode_cursor(next: &(i64, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", next.0, next.1))
}

/// An RFC 3339 UTC timestamp for milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = gocoffee_core::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(content_type: Option<&str>, body: &str) -> Request {
        let mut b = http::Request::builder().method("POST").uri("/x");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(body.as_bytes().to_vec()).expect("request")
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn bodies_are_checked_for_type_size_syntax_and_shape() {
        let code = |r: Request| parse_json::<Body>(&r).map(|_| ()).map_err(|e| (e.status.as_u16(), e.code));
        assert_eq!(code(req(Some("application/json; charset=utf-8"), r#"{"n":1}"#)), Ok(()));
        assert_eq!(code(req(Some("text/plain"), r#"{"n":1}"#)), Err((415, "unsupported_media_type")));
        assert_eq!(code(req(None, r#"{"n":1}"#)), Err((415, "unsupported_media_type")));
        assert_eq!(code(req(Some("application/json"), r#"{"n":"#)), Err((400, "malformed_json")));
        assert_eq!(code(req(Some("application/json"), r#"{"n":1,"x":2}"#)), Err((400, "invalid_body")));
        assert_eq!(code(req(Some("application/json"), r#"{"n":-1}"#)), Err((400, "invalid_body")));
        assert_eq!(code(req(Some("application/json"), &" ".repeat(MAX_BODY_BYTES + 1))), Err((413, "body_too_large")));
    }

    #[test]
    fn an_empty_optional_body_is_the_default() {
        assert!(parse_optional_json::<Body>(&req(None, "")).is_ok());
        assert!(parse_optional_json::<Body>(&req(Some("application/json"), "{")).is_err());
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let r = http::Request::builder().uri("/x?status=ready&note=a%20b+c&bad=%zz&end=%4").body(vec![]).expect("request");
        assert_eq!(query_param(&r, "status").as_deref(), Some("ready"));
        assert_eq!(query_param(&r, "note").as_deref(), Some("a b c"));
        assert_eq!(query_param(&r, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(&r, "end").as_deref(), Some("%4"));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400() {
        let c = encode_cursor(&(1234, "01ABC".into()));
        let r = http::Request::builder().uri(format!("/x?cursor={c}")).body(vec![]).expect("request");
        assert_eq!(page_cursor(&r), Ok(Some((1234, "01ABC".into()))));
        let r = http::Request::builder().uri("/x?cursor=!!!").body(vec![]).expect("request");
        assert_eq!(page_cursor(&r).map_err(|e| e.code), Err("invalid_cursor"));
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
