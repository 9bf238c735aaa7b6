//! The menu: public reads, manager writes.

use gocoffee_core::menu::{ImageUploadRequest, image_key};
use gocoffee_core::{MenuItem, MenuItemPatch, NewMenuItem, Role};
use http::{HeaderValue, StatusCode, header};

use crate::Ctx;
use crate::http::{ApiError, Response, json, no_content, parse_json, query_param, rfc3339};
use crate::images::{self, item_view};
use crate::ports::{Images, StoreError};

fn location(id: &str) -> String {
    format!("/api/v1/menu/items/{id}")
}

/// How long shared caches may keep the menu. It is public, and its picture URLs stay valid far
/// longer than this (see `images`) and never come from a public request's `Host`.
const MENU_CACHE_CONTROL: &str = "public, max-age=30";
/// One item is read before changing it, for its ETag: a cache may keep it but must ask first, so
/// a manager never edits from a stale version.
const ITEM_CACHE_CONTROL: &str = "no-cache";
/// Read-modify-write rounds before a change gives up with 409.
const WRITE_ATTEMPTS: usize = 3;

fn with_header(mut r: Response, name: header::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

/// An item's entity tag: its version, quoted.
fn etag(item: &MenuItem) -> String {
    format!("\"{}\"", item.version)
}

fn item_response(ctx: &Ctx<'_>, status: StatusCode, item: &MenuItem) -> Response {
    with_header(json(status, &item_view(ctx, item)), header::ETAG, &etag(item))
}

/// The versions `If-Match` accepts: `None` without the header (or with `*`), so the change is
/// re-applied to whatever is current. Entity tags are compared strongly: a weak or foreign tag
/// never matches.
fn if_match(ctx: &Ctx<'_>) -> Result<Option<Vec<u64>>, ApiError> {
    let mut versions = Vec::new();
    for value in ctx.req.headers().get_all(header::IF_MATCH) {
        let value = value.to_str().map_err(|_| ApiError::bad_request("invalid_if_match", "If-Match must be a list of entity tags"))?;
        for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(None);
            }
            if let Some(v) = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse::<u64>().ok()) {
                versions.push(v);
            }
        }
    }
    if ctx.req.headers().contains_key(header::IF_MATCH) { Ok(Some(versions)) } else { Ok(None) }
}

fn precondition_failed() -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "the item changed since it was read; fetch it again and retry with its ETag")
}

/// Changes item `id` with `change`, as a conditional write on the version it read: with
/// `If-Match`, only from one of those versions (else 412); without, a concurrent write is
/// re-read and the change applied again on top of it, so no update is lost. Returns the item
/// before and after.
async fn update_item(ctx: &Ctx<'_>, id: &str, change: impl Fn(&MenuItem) -> Result<MenuItem, ApiError>) -> Result<(MenuItem, MenuItem), ApiError> {
    let expected = if_match(ctx)?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = ctx.svc.menu.menu_item(id).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
        if expected.as_ref().is_some_and(|versions| !versions.contains(&current.version)) {
            return Err(precondition_failed());
        }
        let mut next = change(&current)?;
        next.version = current.version + 1;
        match ctx.svc.menu.replace_menu_item(&next, current.version).await {
            Ok(true) => return Ok((current, next)),
            Ok(false) => return Err(ApiError::not_found("menu item")),
            // Someone else wrote first: read again (and check If-Match against what they wrote).
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("concurrent_modification", "the item kept changing while this request ran; retry it"))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    #[derive(serde::Serialize)]
    struct MenuView<'a> {
        currency: &'static str,
        items: Vec<images::ItemView<'a>>,
    }
    let menu = crate::kitchen::menu_now(ctx).await?;
    let r = json(StatusCode::OK, &MenuView { currency: "USD", items: menu.iter().map(|item| item_view(ctx, item)).collect() });
    Ok(with_header(r, header::CACHE_CONTROL, MENU_CACHE_CONTROL))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut item = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    if let Some(kitchen) = crate::kitchen::kitchen_or_none(ctx).await {
        crate::kitchen::mark_unavailable(&kitchen, std::slice::from_mut(&mut item));
    }
    Ok(with_header(item_response(ctx, StatusCode::OK, &item), header::CACHE_CONTROL, ITEM_CACHE_CONTROL))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let item = parse_json::<NewMenuItem>(ctx.req)?.parse()?;
    match ctx.svc.menu.insert_menu_item(&item).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::conflict("item_exists", format!("menu item `{}` already exists", item.id))),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, item_id = %item.id, "menu item created");
    Ok(with_header(item_response(ctx, StatusCode::CREATED, &item), header::LOCATION, &location(&item.id)))
}

pub async fn patch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let patch: MenuItemPatch = parse_json(ctx.req)?;
    let (_, next) = update_item(ctx, ctx.param(0), |current| Ok(patch.clone().apply(current)?)).await?;
    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, item_id = %next.id, version = next.version, "menu item updated");
    Ok(item_response(ctx, StatusCode::OK, &next))
}

/// Gives the item a new picture: records its object key and returns a URL that takes one
/// upload of exactly what was announced. Until the upload lands the item's `image_url` answers
/// 404 (or 403 from S3, which hides missing objects from readers). The bytes of the picture it
/// replaces are deleted where the platform keeps them itself.
pub async fn upload_image(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let (format, length) = parse_json::<ImageUploadRequest>(ctx.req)?.parse()?;
    let key = image_key(ctx.param(0), &ctx.svc.new_id(), format);
    let (url, expires) = images::upload_url(ctx, &key, format.content_type(), length)?;
    let (previous, next) = update_item(ctx, ctx.param(0), |current| Ok(MenuItem { image: Some(key.clone()), ..current.clone() })).await?;
    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, item_id = %next.id, key, "menu picture upload URL issued");
    if let (Some(Images::Served(blobs)), Some(old)) = (ctx.svc.images, previous.image.as_deref()) {
        // The item no longer points at the old picture, so nothing can link it again.
        if let Err(e) = blobs.delete_image(old).await {
            tracing::warn!(request_id = %ctx.request_id, key = old, error = %e, "the replaced picture could not be deleted");
        }
    }
    let r = json(
        StatusCode::OK,
        &serde_json::json!({
            "method": "PUT",
            "upload_url": url,
            "headers": { "content-type": format.content_type(), "content-length": length.to_string() },
            "expires_at": rfc3339(expires * 1000),
            "item": item_view(ctx, &next),
        }),
    );
    Ok(with_header(r, header::ETAG, &etag(&next)))
}

/// The picture's object key from the route: `menu/<id>/<file>`.
fn picture_key(ctx: &Ctx<'_>) -> String {
    format!("menu/{}/{}", ctx.param(0), ctx.param(1))
}

/// Takes an upload on a URL from [`upload_image`], where the platform keeps the bytes itself.
/// Each URL works once, and only while it is still the item's newest picture.
pub async fn put_image(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let Some(Images::Served(blobs)) = ctx.svc.images else { return Err(ApiError::not_found("picture upload")) };
    let key = picture_key(ctx);
    let content_type = ctx.req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let length = query_param(ctx.req, "content_length").unwrap_or_default();
    images::verify(ctx, &["PUT", &key, content_type, &length])?;
    if length != ctx.req.body().len().to_string() {
        return Err(ApiError::bad_request("content_length_mismatch", format!("this URL takes exactly {length} bytes")));
    }
    let item = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    if item.image.as_deref() != Some(key.as_str()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "upload_superseded", "a newer picture upload replaced this one"));
    }
    match ctx.svc.menu.claim_upload(&key, ctx.now_ms).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::new(StatusCode::FORBIDDEN, "upload_used", "this upload URL has already been used")),
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = blobs.put_image(&key, content_type, ctx.req.body()).await {
        // Nothing was stored: let the same URL be tried again.
        if let Err(release) = ctx.svc.menu.release_upload(&key).await {
            tracing::warn!(request_id = %ctx.request_id, key, error = %release, "a failed upload's claim could not be released");
        }
        return Err(e.into());
    }
    // A newer picture may have been issued while these bytes were stored (and its issue deleted
    // what was under this key then, which was nothing): nothing links them now, so they go.
    let current = ctx.svc.menu.menu_item(ctx.param(0)).await?;
    if current.and_then(|i| i.image).as_deref() != Some(key.as_str()) {
        if let Err(e) = blobs.delete_image(&key).await {
            tracing::warn!(request_id = %ctx.request_id, key, error = %e, "a superseded upload could not be deleted");
        }
        return Err(ApiError::new(StatusCode::FORBIDDEN, "upload_superseded", "a newer picture upload replaced this one"));
    }
    tracing::info!(request_id = %ctx.request_id, key, bytes = ctx.req.body().len(), "menu picture stored");
    Ok(no_content())
}

/// Serves a picture on a download URL from the menu, where the platform keeps the bytes itself.
pub async fn get_image(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let Some(Images::Served(blobs)) = ctx.svc.images else { return Err(ApiError::not_found("picture")) };
    let key = picture_key(ctx);
    images::verify(ctx, &["GET", &key])?;
    let (content_type, bytes) = blobs.image(&key).await?.ok_or_else(|| ApiError::not_found("picture"))?;
    let mut r = http::Response::new(bytes);
    let headers = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // The bytes under a key never change (a new picture gets a new key), so they may be cached
    // for as long as the URL is valid.
    let expires = query_param(ctx.req, "expires").and_then(|e| e.parse::<i64>().ok()).unwrap_or_default();
    let max_age = (expires - ctx.now_ms / 1000).max(0);
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={max_age}, immutable")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(r)
}

/// The menu function: the menu, its items and their pictures.
pub static FUNCTION: crate::Function = crate::Function {
    name: "menu",
    routes: &[
        crate::route!(GET "/api/v1/menu" => list),
        crate::route!(POST "/api/v1/menu/items" => create),
        crate::route!(GET "/api/v1/menu/items/{id}" => get),
        crate::route!(PATCH "/api/v1/menu/items/{id}" => patch),
        crate::route!(PUT "/api/v1/menu/items/{id}/image" => upload_image),
        crate::route!(PUT "/api/v1/menu/items/{id}/image/{file}" => put_image),
        crate::route!(GET "/api/v1/menu/items/{id}/image/{file}" => get_image),
    ],
    publishes: false,
    images: true,
};
