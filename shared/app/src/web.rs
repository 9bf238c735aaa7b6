//! The web clients' files: the customer app at `/`, the kitchen display at `/kitchen` and their
//! scripts and styles under `/assets/`, served by the platform itself. The `web` function's
//! build embeds them and names each asset by a hash of its content, so an asset's URL never
//! changes meaning: assets are cached for a year, pages are revalidated on every load.

use ::http::{HeaderValue, Method, StatusCode, header};

use crate::http::{ApiError, Response};

/// One embedded file and where it is served.
#[derive(Debug)]
pub struct Asset {
    /// `/`, `/kitchen`, or `/assets/<name>.<hash>.<ext>`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Named by its content's hash: cacheable for good.
    pub fingerprinted: bool,
}

/// The web function's files (see [`crate::Services::extension`]).
#[derive(Debug)]
pub struct Assets(pub &'static [Asset]);

/// What pages may load: their own origin's scripts, styles, API and streams, live status's
/// WebSocket API on AWS (API Gateway's own domain, another origin), and pictures from anywhere
/// HTTPS (presigned S3 URLs) or inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; connect-src 'self' wss://*.amazonaws.com; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Answers a GET or HEAD for one of `assets`: 404 for any other path, 405 for other methods.
pub fn serve(assets: &Assets, req: &crate::Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed here", req.method())).into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let Some(asset) = assets.0.iter().find(|a| a.path == path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no page or asset at {path}")).into_response();
    };
    let mut r = http::Response::new(if req.method() == Method::HEAD { Vec::new() } else { asset.body.to_vec() });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(if asset.fingerprinted { "public, max-age=31536000, immutable" } else { "no-cache" }));
    if asset.content_type.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

async fn route(ctx: &crate::Ctx<'_>) -> Result<Response, ApiError> {
    Ok(serve(ctx.extension::<Assets>()?, ctx.req))
}

/// The web function: the two apps' pages and assets, public and not rate-limited (a page load
/// fetches several assets; the API calls it makes are limited as usual).
pub static FUNCTION: crate::Function = crate::Function {
    name: "web",
    routes: &[crate::route!(GET "/" => route, Exempt), crate::route!(GET "/kitchen" => route, Exempt), crate::route!(GET "/assets/{file}" => route, Exempt)],
    publishes: false,
    images: false,
};

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[Asset] = &[
        Asset { path: "/", content_type: "text/html; charset=utf-8", body: b"<!doctype html>", fingerprinted: false },
        Asset { path: "/assets/app.0123abcd.js", content_type: "text/javascript; charset=utf-8", body: b"1;", fingerprinted: true },
    ];

    fn get(method: &str, path: &str) -> Response {
        serve(&Assets(FILES), &http::Request::builder().method(method).uri(path).body(vec![]).expect("request"))
    }

    #[test]
    fn pages_revalidate_assets_are_immutable_and_nothing_else_is_there() {
        let page = get("GET", "/");
        assert_eq!((page.status(), page.headers()[header::CACHE_CONTROL].to_str().ok()), (StatusCode::OK, Some("no-cache")));
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let asset = get("GET", "/assets/app.0123abcd.js");
        assert_eq!(asset.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(asset.body(), b"1;");
        assert_eq!(get("HEAD", "/assets/app.0123abcd.js").body().len(), 0);
        assert_eq!(get("GET", "/assets/app.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("POST", "/").status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
