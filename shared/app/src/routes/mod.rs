//! Route handlers, one module per group. `dispatch` is the only way in.

mod identity;
mod menu;
mod orders;

use crate::http::{ApiError, Response, json};
use crate::{Ctx, RouteId};

pub(crate) async fn dispatch(id: RouteId, ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    match id {
        RouteId::Health => Ok(health(ctx.req)),
        RouteId::Register => identity::register(ctx).await,
        RouteId::Login => identity::login(ctx).await,
        RouteId::Refresh => identity::refresh(ctx).await,
        RouteId::Logout => identity::logout(ctx).await,
        RouteId::Me => identity::me(ctx).await,
        RouteId::CreateUser => identity::create_user(ctx).await,
        RouteId::Menu => menu::list(ctx).await,
        RouteId::MenuItem => menu::get(ctx).await,
        RouteId::CreateMenuItem => menu::create(ctx).await,
        RouteId::PatchMenuItem => menu::patch(ctx).await,
        RouteId::UploadMenuImage => menu::upload_image(ctx).await,
        RouteId::PutMenuImage => menu::put_image(ctx).await,
        RouteId::GetMenuImage => menu::get_image(ctx).await,
        RouteId::PlaceOrder => orders::place(ctx).await,
        RouteId::ListOrders => orders::list(ctx).await,
        RouteId::GetOrder => orders::get(ctx).await,
        RouteId::OrderEvents => orders::events(ctx).await,
        RouteId::CancelOrder => orders::cancel(ctx).await,
        RouteId::CollectOrder => orders::collect(ctx).await,
        RouteId::RefundOrder => orders::refund(ctx).await,
        RouteId::KitchenQueue => orders::kitchen_queue(ctx).await,
        RouteId::StartOrder => orders::kitchen_start(ctx).await,
        RouteId::ReadyOrder => orders::kitchen_ready(ctx).await,
    }
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
