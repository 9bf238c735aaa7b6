//! Registration, login, token refresh and the caller's own account.

use gocoffee_core::{Email, Password, Role};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::{self, DECOY_HASH};
use crate::http::{ApiError, Response, json, no_content, parse_json};
use crate::ports::{RefreshTokenRecord, StoreError, UserRecord};
use crate::{Ctx, Services};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    password: String,
    role: Role,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize)]
struct UserView<'a> {
    id: &'a str,
    email: &'a str,
    name: Option<&'a str>,
    role: Role,
    created_at: String,
}

fn user_view(u: &UserRecord) -> UserView<'_> {
    UserView { id: &u.id, email: &u.email, name: u.name.as_deref(), role: u.role, created_at: crate::http::rfc3339(u.created_at_ms) }
}

fn parse_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > 80 || n.chars().any(char::is_control) => {
            Err(ApiError::unprocessable("invalid_name", "name must be at most 80 printable characters"))
        }
        other => Ok(other),
    }
}

async fn create(
    svc: &Services<'_>,
    id: String,
    email: Email,
    password: &Password,
    name: Option<String>,
    role: Role,
    now_ms: i64,
) -> Result<UserRecord, ApiError> {
    let password_hash =
        auth::hash_password(password.expose(), svc.entropy).map_err(|_| ApiError::unprocessable("weak_password", "that password cannot be used"))?;
    let user = UserRecord { id, email: email.as_str().to_owned(), name, role, password_hash, created_at_ms: now_ms };
    match svc.users.create_user(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict) => Err(email_taken()),
        Err(e) => Err(e.into()),
    }
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with that email already exists")
}

/// Creates an account for someone who isn't the bootstrap admin. The configured admin email is
/// reserved for the admin's first login: it answers exactly as a taken email does, after the
/// same password hashing, so nobody can take it first and nothing tells it apart.
async fn create_other(ctx: &Ctx<'_>, email: Email, password: &Password, name: Option<String>, role: Role) -> Result<UserRecord, ApiError> {
    let svc = ctx.svc;
    if svc.config.bootstrap_admin.as_ref().is_some_and(|(admin, _)| *admin == email) {
        let _ = auth::hash_password(password.expose(), svc.entropy);
        tracing::warn!(request_id = %ctx.request_id, "refused an account with the reserved admin email");
        return Err(email_taken());
    }
    create(svc, svc.new_id(), email, password, name, role, ctx.now_ms).await
}

/// Issues an access token and a new refresh token for `user`.
async fn session(ctx: &Ctx<'_>, user: &UserRecord, status: StatusCode) -> Result<Response, ApiError> {
    let svc = ctx.svc;
    let signer = svc.signer.ok_or_else(|| {
        tracing::error!(request_id = %ctx.request_id, "this function holds no token signing key");
        ApiError::unavailable()
    })?;
    let access = auth::issue_access_token(signer, ctx.token_audience(), &user.id, user.role, svc.config.access_token_ttl_s, ctx.now_ms).await.map_err(|e| {
        tracing::error!(request_id = %ctx.request_id, error = %e, "signing an access token failed");
        ApiError::unavailable()
    })?;
    let (refresh, hash) = auth::new_refresh_token(svc.entropy);
    let record = RefreshTokenRecord { token_hash: hash, user_id: user.id.clone(), expires_at_ms: ctx.now_ms + svc.config.refresh_token_ttl_s * 1000 };
    svc.users.save_refresh_token(&record).await?;
    Ok(json(
        status,
        &serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": svc.config.access_token_ttl_s,
            "refresh_token": refresh,
            "user": user_view(user),
        }),
    ))
}

pub async fn register(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: Credentials = parse_json(ctx.req)?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(&body.password)?;
    let name = parse_name(body.name)?;
    let user = create_other(ctx, email, &password, name, Role::Customer).await?;
    tracing::info!(request_id = %ctx.request_id, user_id = %user.id, "registered");
    session(ctx, &user, StatusCode::CREATED).await
}

pub async fn login(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: Credentials = parse_json(ctx.req)?;
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "email or password is wrong");
    let Ok(email) = Email::parse(&body.email) else {
        return Err(invalid());
    };
    let svc = ctx.svc;
    let mut user = svc.users.user_by_email(email.as_str()).await?;
    if user.is_none() {
        user = bootstrap_admin(ctx, &email, &body.password).await?;
    }
    match user {
        Some(user) if auth::verify_password(&body.password, &user.password_hash) => session(ctx, &user, StatusCode::OK).await,
        Some(user) => {
            if user.role != Role::Admin && is_bootstrap_admin(ctx, &email, &body.password) {
                // Only possible for data written before the admin email was reserved.
                tracing::error!(request_id = %ctx.request_id, user_id = %user.id, "the admin_email belongs to a non-admin account; configure another admin_email");
            }
            Err(invalid())
        }
        None => {
            // Spend the same time as a real check so response times don't reveal accounts.
            auth::verify_password(&body.password, DECOY_HASH);
            Err(invalid())
        }
    }
}

/// True when `email` and `password` are the configured admin's. The password comparison takes
/// the same time wherever the two differ.
fn is_bootstrap_admin(ctx: &Ctx<'_>, email: &Email, password: &str) -> bool {
    let Some((admin_email, admin_password)) = &ctx.svc.config.bootstrap_admin else { return false };
    let same_password = auth::constant_time_eq(admin_password.expose().as_bytes(), password.as_bytes());
    same_password & (admin_email == email)
}

/// The configured first admin, created on its first login. Race-free because emails are unique
/// in every store: of two first logins at once, one creates the account and the other reads it.
async fn bootstrap_admin(ctx: &Ctx<'_>, email: &Email, password: &str) -> Result<Option<UserRecord>, ApiError> {
    let Some((admin_email, admin_password)) = &ctx.svc.config.bootstrap_admin else { return Ok(None) };
    if !is_bootstrap_admin(ctx, email, password) {
        return Ok(None);
    }
    // A second round for DynamoDB, where two racing transactions may both be cancelled.
    for _ in 0..2 {
        match create(ctx.svc, ctx.svc.new_id(), admin_email.clone(), admin_password, Some("Administrator".into()), Role::Admin, ctx.now_ms).await {
            Ok(user) => {
                tracing::info!(request_id = %ctx.request_id, user_id = %user.id, "bootstrap admin created");
                return Ok(Some(user));
            }
            // A concurrent first login created it.
            Err(e) if e.code == "email_taken" => {
                if let Some(user) = ctx.svc.users.user_by_email(email.as_str()).await? {
                    return Ok(Some(user));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

pub async fn refresh(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: RefreshBody = parse_json(ctx.req)?;
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid_refresh_token", "the refresh token is invalid, used or expired");
    let record = ctx.svc.users.take_refresh_token(&auth::token_hash(&body.refresh_token)).await?.ok_or_else(invalid)?;
    if record.expires_at_ms <= ctx.now_ms {
        return Err(invalid());
    }
    let user = ctx.svc.users.user_by_id(&record.user_id).await?.ok_or_else(invalid)?;
    session(ctx, &user, StatusCode::OK).await
}

pub async fn logout(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: RefreshBody = parse_json(ctx.req)?;
    ctx.svc.users.take_refresh_token(&auth::token_hash(&body.refresh_token)).await?;
    Ok(no_content())
}

pub async fn me(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let user = ctx.svc.users.user_by_id(&caller.user_id).await?.ok_or_else(|| ApiError::not_found("account"))?;
    Ok(json(StatusCode::OK, &user_view(&user)))
}

pub async fn create_user(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Admin)?;
    let body: NewUser = parse_json(ctx.req)?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(&body.password)?;
    let name = parse_name(body.name)?;
    let user = create_other(ctx, email, &password, name, body.role).await?;
    tracing::info!(request_id = %ctx.request_id, admin = %caller.user_id, user_id = %user.id, role = %user.role, "account created");
    Ok(json(StatusCode::CREATED, &user_view(&user)))
}

/// Verifiers may cache the published keys for 5 minutes: a new key is published at least that
/// long before it signs (the README's key rotation), so no cache misses it.
fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=300"));
    response
}

/// The JWKS document (RFC 7517): every key a live token may be signed with.
pub async fn jwks(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let keys = ctx.svc.tokens.keys().await?;
    Ok(cacheable(json(StatusCode::OK, &keys.jwks())))
}

/// OpenID Connect discovery, as far as verifiers use it (API Gateway's JWT authorizer reads
/// `jwks_uri` here under the issuer): who issues the tokens and where their keys are.
pub async fn openid_configuration(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let issuer = ctx.token_audience().issuer;
    let base =
        if issuer.starts_with("https://") || issuer.starts_with("http://") { issuer.trim_end_matches('/').to_owned() } else { crate::images::base_url(ctx) };
    Ok(cacheable(json(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
    )))
}

/// The identity function: accounts, sessions, staff, and the keys its tokens are signed with.
pub static FUNCTION: crate::Function = crate::Function {
    name: "identity",
    routes: &[
        crate::route!(POST "/api/v1/auth/register" => register, Credentials),
        crate::route!(POST "/api/v1/auth/login" => login, Credentials),
        crate::route!(POST "/api/v1/auth/refresh" => refresh, Credentials),
        crate::route!(POST "/api/v1/auth/logout" => logout),
        crate::route!(GET "/api/v1/auth/me" => me),
        crate::route!(POST "/api/v1/auth/users" => create_user),
        crate::route!(GET "/.well-known/jwks.json" => jwks),
        crate::route!(GET "/.well-known/openid-configuration" => openid_configuration),
    ],
    publishes: false,
    images: false,
};
