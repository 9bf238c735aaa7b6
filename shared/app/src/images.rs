//! Menu pictures: upload and download URLs, whichever way the platform keeps the bytes.
//!
//! With [`Images::Presigned`] (S3) the store signs its own URLs and the bytes never pass through
//! a function. With [`Images::Served`] (Spin key-value) the menu function signs URLs to its own
//! picture routes with an HMAC key derived from the token secret, and checks them on the way in,
//! so both platforms hand clients the same kind of capability URL.

use gocoffee_core::{Category, MenuItem, ModifierOption, SizePrice};
use hmac::{Hmac, Mac};
use http::header;
use sha2::Sha256;

use crate::Ctx;
use crate::http::{ApiError, query_param};
use crate::ports::{Images, StoreError};

/// How long an upload URL stays valid.
pub const UPLOAD_TTL_S: u64 = 15 * 60;
/// How long a download URL stays valid after it is signed.
const DOWNLOAD_TTL_S: u64 = 60 * 60;
/// Download URLs are signed at the start of the current window, so every response within one
/// window carries the same URL and browsers and CDNs can cache the picture. A URL handed out
/// is valid for at least `DOWNLOAD_TTL_S - DOWNLOAD_WINDOW_S`.
const DOWNLOAD_WINDOW_S: u64 = 10 * 60;

/// Where a picture's routes live: `key` is `menu/<id>/<file>`.
fn route(key: &str) -> Option<String> {
    let rest = key.strip_prefix("menu/")?;
    let (id, file) = rest.split_once('/')?;
    Some(format!("/api/v1/menu/items/{id}/image/{file}"))
}

fn sign_window(now_ms: i64) -> i64 {
    let window = DOWNLOAD_WINDOW_S as i64 * 1000;
    now_ms - now_ms.rem_euclid(window)
}

/// The item as clients see it: the picture's object key replaced by a download URL. Written
/// straight to the response (no `serde_json::Value` in between: building and dropping one per
/// item was a fifth of a menu read's time in the component).
#[derive(serde::Serialize)]
pub struct ItemView<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    category: &'a Category,
    sizes: &'a [SizePrice],
    modifiers: &'a [ModifierOption],
    available: bool,
    image_url: Option<String>,
    /// How long one takes to make, in seconds (its own time or its category's).
    prep_seconds: i64,
    /// Dietary and allergen labels.
    tags: &'a [String],
    version: u64,
}

pub fn item_view<'a>(ctx: &Ctx<'_>, item: &'a MenuItem) -> ItemView<'a> {
    // Every field named: one added to MenuItem must be decided on here.
    let MenuItem { id, name, description, category, sizes, modifiers, available, image, prep_seconds: _, tags, version } = item;
    let prep_seconds = item.prep_ms() / 1000;
    let image_url = image.as_deref().and_then(|key| match download_url(ctx, key) {
        Ok(url) => Some(url),
        Err(e) => {
            // A picture that can't be linked must not take the menu down with it.
            tracing::warn!(request_id = %ctx.request_id, key, error = %e, "no download URL for a menu picture");
            None
        }
    });
    ItemView { id, name, description, category, sizes, modifiers, available: *available, image_url, prep_seconds, tags, version: *version }
}

fn download_url(ctx: &Ctx<'_>, key: &str) -> Result<String, StoreError> {
    let signed_at = sign_window(ctx.now_ms);
    match ctx.svc.images {
        Some(Images::Presigned(urls)) => urls.download_url(key, signed_at, DOWNLOAD_TTL_S),
        Some(Images::Served(_)) => {
            let expires = signed_at / 1000 + DOWNLOAD_TTL_S as i64;
            let path = route(key).ok_or_else(|| StoreError::Unavailable(format!("`{key}` is not a menu picture key")))?;
            Ok(format!("{}{path}?expires={expires}&signature={}", base_url(ctx), signature(ctx, &["GET", key, &expires.to_string()])))
        }
        None => Err(StoreError::Unavailable("no picture store on this platform".into())),
    }
}

/// A URL that takes one `PUT` of the picture, and when it stops working (Unix seconds).
pub fn upload_url(ctx: &Ctx<'_>, key: &str, content_type: &str, content_length: u64) -> Result<(String, i64), ApiError> {
    let expires = ctx.now_ms / 1000 + UPLOAD_TTL_S as i64;
    let url = match ctx.svc.images {
        Some(Images::Presigned(urls)) => urls.upload_url(key, content_type, content_length, ctx.now_ms, UPLOAD_TTL_S)?,
        Some(Images::Served(_)) => {
            let path = route(key).ok_or_else(|| ApiError::not_found("menu item"))?;
            let signature = signature(ctx, &["PUT", key, content_type, &content_length.to_string(), &expires.to_string()]);
            format!("{}{path}?expires={expires}&content_length={content_length}&signature={signature}", base_url(ctx))
        }
        None => return Err(ApiError::not_found("picture storage")),
    };
    Ok((url, expires))
}

/// Checks a served picture URL: `parts` are what was signed, minus the expiry. 403 when the
/// signature is missing, wrong or expired, as S3 answers.
pub fn verify(ctx: &Ctx<'_>, parts: &[&str]) -> Result<(), ApiError> {
    let denied = |why: &str| ApiError::forbidden(format!("this picture URL {why}"));
    let expires = query_param(ctx.req, "expires").and_then(|e| e.parse::<i64>().ok()).ok_or_else(|| denied("is not signed"))?;
    let given = query_param(ctx.req, "signature").and_then(|s| hex_decode(&s)).ok_or_else(|| denied("is not signed"))?;
    let expires_text = expires.to_string();
    let signed: Vec<&str> = parts.iter().copied().chain([expires_text.as_str()]).collect();
    keyed(ctx, &signed).verify_slice(&given).map_err(|_| denied("has a wrong signature"))?;
    if expires <= ctx.now_ms / 1000 {
        return Err(denied("has expired"));
    }
    Ok(())
}

/// The MAC over `parts`, one per line. Its key is derived from the token secret, so one secret
/// configures both and an access token's MAC can never pass for a URL's, or the reverse.
/// Keyed once per request (a menu signs a URL per item) and cloned for each URL.
fn keyed(ctx: &Ctx<'_>, parts: &[&str]) -> Hmac<Sha256> {
    let mut mac = ctx
        .picture_mac
        .get_or_init(|| {
            let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&ctx.svc.config.jwt_secret).expect("HMAC takes keys of any length");
            derive.update(b"gocoffee menu picture URLs v1");
            <Hmac<Sha256> as Mac>::new_from_slice(&derive.finalize().into_bytes()).expect("HMAC takes keys of any length")
        })
        .clone();
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac
}

fn signature(ctx: &Ctx<'_>, parts: &[&str]) -> String {
    keyed(ctx, parts).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Where clients reach this function, for absolute URLs: the configured `public_base_url`;
/// else the request's own origin when both the client (`spin-client-addr`, which Spin and the
/// host set, not the client) and the host it asked for are loopback: a link there can only lead
/// back to the machine that asked; else nothing, and URLs stay relative to the API. Never a
/// `Host` header's word for a public name, which anyone can set and a shared cache would spread.
pub(crate) fn base_url(ctx: &Ctx<'_>) -> String {
    if let Some(base) = &ctx.svc.config.public_base_url {
        return base.clone();
    }
    let header = |name| ctx.req.headers().get(name).and_then(|v| v.to_str().ok());
    let local_client = header("spin-client-addr").and_then(|a| a.parse::<std::net::SocketAddr>().ok()).is_some_and(|a| a.ip().to_canonical().is_loopback());
    if !local_client {
        return String::new();
    }
    let origin = |url: &str| -> Option<(String, String)> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?']).next().filter(|a| !a.is_empty())?;
        Some((scheme.to_owned(), authority.to_owned()))
    };
    let (scheme, authority) = match header("spin-full-url").and_then(origin) {
        Some(o) => o,
        None => match (ctx.req.uri().scheme_str(), ctx.req.uri().authority()) {
            (Some(scheme), Some(authority)) => (scheme.to_owned(), authority.to_string()),
            _ => match header(header::HOST.as_str()) {
                Some(host) => ("http".to_owned(), host.to_owned()),
                None => return String::new(),
            },
        },
    };
    if (scheme == "http" || scheme == "https") && is_loopback_authority(&authority) { format!("{scheme}://{authority}") } else { String::new() }
}

/// True for `localhost`, `127.x.x.x` and `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let Ok(authority) = authority.parse::<http::uri::Authority>() else { return false };
    // Exactly host[:port]: no user info, nothing after an IPv6 literal (the parser allows both).
    let exact = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    if exact != authority.as_str() {
        return false;
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for yes in ["localhost", "LOCALHOST:3000", "127.0.0.1", "127.0.0.1:3000", "127.8.9.10:1", "[::1]", "[::1]:3000"] {
            assert!(is_loopback_authority(yes), "{yes}");
        }
        for no in ["evil.example", "evil.example:80", "localhost.evil.example", "10.0.0.1:3000", "[::2]:80", "127.0.0.1@evil.example", "[::1]evil", ""] {
            assert!(!is_loopback_authority(no), "{no}");
        }
    }
}
