//! The menu: public reads, manager writes.

use gocoffee_core::menu::{ImageUploadRequest, image_key};
use gocoffee_core::{MenuItemPatch, NewMenuItem, Role};
use http::{HeaderValue, StatusCode, header};

use crate::Ctx;
use crate::http::{ApiError, Response, json, no_content, parse_json, query_param, rfc3339};
use crate::images::{self, item_view};
use crate::ports::{Images, StoreError};

fn location(id: &str) -> String {
    format!("/api/v1/menu/items/{id}")
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let items: Vec<_> = ctx.svc.menu.menu().await?.iter().map(|item| item_view(ctx, item)).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "currency": "USD", "items": items })))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let item = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    Ok(json(StatusCode::OK, &item_view(ctx, &item)))
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
    let mut r = json(StatusCode::CREATED, &item_view(ctx, &item));
    if let Ok(v) = HeaderValue::from_str(&location(&item.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn patch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let patch: MenuItemPatch = parse_json(ctx.req)?;
    let current = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    let next = patch.apply(&current)?;
    if !ctx.svc.menu.replace_menu_item(&next).await? {
        return Err(ApiError::not_found("menu item"));
    }
    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, item_id = %next.id, "menu item updated");
    Ok(json(StatusCode::OK, &item_view(ctx, &next)))
}

/// Gives the item a new picture: records its object key and returns a URL that takes one
/// upload of exactly what was announced. Until the upload lands the item's `image_url` answers
/// 404 (or 403 from S3, which hides missing objects from readers).
pub async fn upload_image(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let (format, length) = parse_json::<ImageUploadRequest>(ctx.req)?.parse()?;
    let current = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    let key = image_key(&current.id, &ctx.svc.new_id(), format);
    let (url, expires) = images::upload_url(ctx, &key, format.content_type(), length)?;
    let next = gocoffee_core::MenuItem { image: Some(key.clone()), ..current };
    if !ctx.svc.menu.replace_menu_item(&next).await? {
        return Err(ApiError::not_found("menu item"));
    }
    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, item_id = %next.id, key, "menu picture upload URL issued");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "method": "PUT",
            "upload_url": url,
            "headers": { "content-type": format.content_type(), "content-length": length.to_string() },
            "expires_at": rfc3339(expires * 1000),
            "item": item_view(ctx, &next),
        }),
    ))
}

/// The picture's object key from the route: `menu/<id>/<file>`.
fn picture_key(ctx: &Ctx<'_>) -> String {
    format!("menu/{}/{}", ctx.param(0), ctx.param(1))
}

/// Takes an upload on a URL from [`upload_image`], where the platform keeps the bytes itself.
pub async fn put_image(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let Some(Images::Served(blobs)) = ctx.svc.images else { return Err(ApiError::not_found("picture upload")) };
    let key = picture_key(ctx);
    let content_type = ctx.req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let length = query_param(ctx.req, "content_length").unwrap_or_default();
    images::verify(ctx, &["PUT", &key, content_type, &length])?;
    if length != ctx.req.body().len().to_string() {
        return Err(ApiError::bad_request("content_length_mismatch", format!("this URL takes exactly {length} bytes")));
    }
    blobs.put_image(&key, content_type, ctx.req.body()).await?;
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
