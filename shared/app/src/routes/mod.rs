//! Route handlers, one module per function, each with its `Function` table.

pub mod identity;
pub mod kitchen;
pub mod menu;
pub mod orders;

use crate::Ctx;
use crate::http::{ApiError, Response, json};

pub(crate) async fn health_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    Ok(health(ctx.req))
}

/// Liveness: answers GET (and HEAD) without touching any store.
pub fn health(req: &crate::Request) -> Response {
    use ::http::{Method, StatusCode, header};
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed here", req.method())).into_response();
        r.headers_mut().insert(header::ALLOW, ::http::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = json(StatusCode::OK, &serde_json::json!({ "status": "ok", "service": "gocoffee" }));
    if req.method() == Method::HEAD {
        r.body_mut().clear();
    }
    r
}
