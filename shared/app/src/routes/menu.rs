//! The menu: public reads, manager writes.

use gocoffee_core::{MenuItemPatch, NewMenuItem, Role};
use http::{HeaderValue, StatusCode, header};

use crate::Ctx;
use crate::http::{ApiError, Response, json, parse_json};
use crate::ports::StoreError;

fn location(id: &str) -> String {
    format!("/api/v1/menu/items/{id}")
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let items = ctx.svc.menu.menu().await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "currency": "USD", "items": items })))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let item = ctx.svc.menu.menu_item(ctx.param(0)).await?.ok_or_else(|| ApiError::not_found("menu item"))?;
    Ok(json(StatusCode::OK, &item))
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
    let mut r = json(StatusCode::CREATED, &item);
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
    Ok(json(StatusCode::OK, &next))
}
