//! One blocking JSON POST over `wasi:http/outgoing-handler`, with connect, first-byte and
//! between-bytes timeouts (spin-sdk's `send` sets none). Blocking is fine: a component serves one
//! invocation. The payment RPC client and the chained event delivery both go out through it.

use std::time::Duration;

use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

/// Why a POST got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostFailure {
    Timeout,
    Io(String),
}

/// A response: its status and (up to the caller's cap) its body.
pub struct Posted {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` as JSON to `url` (http or https), and reads at most `max_response` bytes back.
pub fn post_json(url: &str, body: &[u8], timeout: Duration, max_response: usize) -> Result<Posted, PostFailure> {
    let io = |what: &str| PostFailure::Io(what.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| io("bad URL"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => return Err(io("URLs are http or https")),
    };
    let headers = Fields::from_list(&[("content-type".to_owned(), b"application/json".to_vec())]).map_err(|_| io("headers"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|_| io("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|_| io("scheme"))?;
    request.set_authority(uri.authority().map(|a| a.as_str())).map_err(|_| io("authority"))?;
    request.set_path_with_query(Some(uri.path_and_query().map_or("/", |p| p.as_str()))).map_err(|_| io("path"))?;
    let outgoing = request.body().map_err(|_| io("body"))?;
    let options = RequestOptions::new();
    let ns = Some(timeout.as_nanos() as u64);
    // A host that doesn't support an option keeps its own limit; that is not an error.
    let _ = options.set_connect_timeout(ns);
    let _ = options.set_first_byte_timeout(ns);
    let _ = options.set_between_bytes_timeout(ns);
    let future = wasi::http::outgoing_handler::handle(request, Some(options)).map_err(|e| failure(&e))?;
    {
        let stream = outgoing.write().map_err(|_| io("body stream"))?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| PostFailure::Io(format!("sending: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| failure(&e))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(failure(&e)),
        _ => return Err(io("no response")),
    };
    let status = response.status();
    let incoming = response.consume().map_err(|_| io("response body"))?;
    let stream = incoming.stream().map_err(|_| io("response stream"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(PostFailure::Io(format!("reading: {e:?}"))),
        }
        if out.len() > max_response {
            return Err(io("the response is too large"));
        }
    }
    Ok(Posted { status, body: out })
}

fn failure(e: &ErrorCode) -> PostFailure {
    match e {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout => PostFailure::Timeout,
        other => PostFailure::Io(format!("{other:?}")),
    }
}
