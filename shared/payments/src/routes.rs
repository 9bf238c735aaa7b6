//! The payments function's HTTP routes under `/api/v1/payments`. The shell puts a
//! [`PaymentContext`] in [`Services::extension`](gocoffee_app::Services).

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use gocoffee_app::consumer::ConsumerError;
use gocoffee_app::http::{ApiError, Response, json, page_limit, parse_json, query_param, rfc3339};
use gocoffee_app::{Caller, Ctx, Function, Services, route};
use gocoffee_core::Role;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::amount::format_units;
use crate::chains::{AssetKind, Chains};
use crate::config::PaymentConfig;
use crate::deposit::DepositKeys;
use crate::intent::{Intent, Transfer};
use crate::prices::ChainlinkPrices;
use crate::reader::Readers;
use crate::rpc::HttpPost;
use crate::service::{PaymentError, PaymentServices, Prices, ScanReport, Settings};
use crate::store::IntentStore;
use crate::verify::Rejection;

/// What the payment service brings to a request beyond the common services.
pub struct PaymentContext {
    pub intents: Box<dyn IntentStore>,
    pub chains: Chains,
    /// Without an xpub no intent can be made (crypto orders are refused at placement too).
    pub keys: Option<DepositKeys>,
    pub prices: Box<dyn Prices>,
    pub readers: Readers,
    pub settings: Settings,
}

impl PaymentContext {
    /// The context of `config` on `intents`, reaching the chains (and their price feeds) through
    /// `http`.
    pub fn new(config: PaymentConfig, intents: Box<dyn IntentStore>, http: Arc<dyn HttpPost>) -> PaymentContext {
        let timeout = config.settings.rpc_timeout;
        PaymentContext {
            intents,
            prices: Box::new(ChainlinkPrices { chains: config.chains.clone(), http: http.clone(), timeout }),
            readers: Readers::new(&config.chains, http, timeout),
            chains: config.chains,
            keys: config.keys,
            settings: config.settings,
        }
    }

    pub fn services<'a>(&'a self, svc: &'a gocoffee_app::Services<'_>) -> PaymentServices<'a> {
        PaymentServices {
            intents: self.intents.as_ref(),
            orders: svc.orders,
            chains: &self.chains,
            keys: self.keys.as_ref(),
            prices: self.prices.as_ref(),
            readers: &self.readers,
            clock: svc.clock,
            entropy: svc.entropy,
            settings: self.settings,
        }
    }
}

/// How a payment failure reads to a stream trigger: a configuration that can't make the intent
/// is poison (dead-lettered for an operator), anything else may pass on a retry.
fn consumer_error(e: PaymentError) -> ConsumerError {
    match e {
        PaymentError::Config(why) => ConsumerError::Poison(why),
        other => ConsumerError::Retryable(other.to_string()),
    }
}

/// The payments consumer's handling of one message of the orders stream (both shells): an
/// intent for an order that asks for payment, a closed intent for a cancelled order.
pub async fn consume_order_event(pc: &PaymentContext, svc: &Services<'_>, payload: &[u8]) -> Result<(), ConsumerError> {
    let event = gocoffee_app::consumer::order_event(crate::service::PAYMENTS_CONSUMER, payload)?;
    let handle = async |_| pc.services(svc).on_order_event(&event).await.map_err(consumer_error);
    gocoffee_app::consumer::traced(svc, crate::service::PAYMENTS_CONSUMER, &event, handle).await
}

/// Publishes what was queued; on failure a later request, batch or pass relays it.
pub async fn relay_logged(svc: &Services<'_>) {
    if let Err(e) = svc.relay.relay().await {
        tracing::warn!(error = %e, "outbox relay failed; a later request relays it");
    }
}

/// One watcher pass (both shells): every configured chain is scanned; a chain that can't be read
/// is reported and the others still run. Then the outbox is relayed, which also sends anything
/// an interrupted request left behind. The error lists every chain (and the relay) that failed.
pub async fn watch_chains(pc: &PaymentContext, svc: &Services<'_>) -> Result<Vec<ScanReport>, String> {
    let services = pc.services(svc);
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (name, _) in pc.chains.iter() {
        match services.scan(name).await {
            Ok(report) => {
                tracing::info!(
                    chain = name,
                    from = report.from_block,
                    to = report.to_block,
                    intents = report.intents,
                    credited = report.credited,
                    seen = report.seen,
                    expired = report.expired,
                    dropped = report.dropped,
                    "chain scanned"
                );
                reports.push(report);
            }
            Err(e) => {
                tracing::warn!(chain = name, error = %e, "chain scan failed; the next tick retries");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    if let Err(e) = svc.relay.relay().await {
        failed.push(format!("outbox relay: {e}"));
    }
    if failed.is_empty() { Ok(reports) } else { Err(failed.join("; ")) }
}

/// What one reconciler pass did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReconcileReport {
    /// Events the outbox relays published.
    pub relayed: usize,
    /// Stuck orders whose latest event was published again.
    pub republished: Vec<String>,
    /// Crypto orders whose payment request or outcome was published again.
    pub payments_redriven: usize,
    /// Orders stuck for over a day, left to an operator.
    pub abandoned: usize,
}

/// The reconciler's deadline from its `reconcile_after_seconds` variable (default
/// [`STUCK_AFTER_MS`](gocoffee_app::reconcile::STUCK_AFTER_MS)).
pub fn stuck_after_ms(lookup: impl Fn(&str) -> Option<String>) -> Result<i64, String> {
    match lookup("reconcile_after_seconds").filter(|v| !v.trim().is_empty()) {
        None => Ok(gocoffee_app::reconcile::STUCK_AFTER_MS),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .map(|s| s * 1000)
            .ok_or_else(|| "reconcile_after_seconds must be a number from 1 to 86400".to_owned()),
    }
}

/// One reconciler pass (both shells): relays what no request relayed, re-drives the orders stuck
/// past `stuck_after_ms` (the order side, [`gocoffee_app::reconcile`]) and the payments of crypto
/// orders that waited as long ([`PaymentServices::reconcile`]), then relays what that queued.
pub async fn reconcile_pass(pc: &PaymentContext, svc: &Services<'_>, stuck_after_ms: i64) -> Result<ReconcileReport, String> {
    let mut report = ReconcileReport { relayed: svc.relay.relay().await.map_err(|e| format!("outbox relay: {e}"))?, ..ReconcileReport::default() };
    let orders = gocoffee_app::reconcile::reconcile_orders(svc, svc.clock.now_ms(), stuck_after_ms).await.map_err(|e| format!("stuck orders: {e}"))?;
    report.payments_redriven = pc.services(svc).reconcile(&orders.awaiting_payment).await.map_err(|e| format!("stuck payments: {e}"))?;
    report.republished = orders.republished;
    report.abandoned = orders.abandoned;
    report.relayed += svc.relay.relay().await.map_err(|e| format!("outbox relay: {e}"))?;
    tracing::info!(
        relayed = report.relayed,
        republished = report.republished.len(),
        payments = report.payments_redriven,
        abandoned = report.abandoned,
        "reconciled"
    );
    Ok(report)
}

/// The payments function: intents, transaction hints, refunds.
pub static FUNCTION: Function = Function {
    name: "payments",
    routes: &[
        route!(GET "/api/v1/payments/refunds" => refunds_due),
        route!(GET "/api/v1/payments/methods" => methods),
        route!(GET "/api/v1/payments/{id}" => get),
        route!(GET "/api/v1/payments/{id}/qr" => qr),
        route!(GET "/api/v1/payments/{id}/events" => events),
        route!(POST "/api/v1/payments/{id}/transactions" => hint),
        route!(PUT "/api/v1/payments/{id}/refund-address" => refund_address),
        route!(POST "/api/v1/payments/{id}/refunds" => record_refund),
    ],
    publishes: true,
    images: false,
};

fn amount(v: U256, decimals: u8) -> Value {
    json!({ "base_units": v.to_string(), "display": format_units(v, decimals) })
}

fn transfer_view(t: &Transfer, decimals: u8) -> Value {
    json!({
        "tx_hash": t.key.tx_hash.to_string(),
        "log_index": t.key.log_index,
        "from": t.from.to_checksum(None),
        "amount": amount(t.amount, decimals),
        "block_number": t.block_number,
        "mined_at": rfc3339(t.block_time_ms),
    })
}

fn view(i: &Intent) -> Value {
    let t = &i.terms;
    let d = t.decimals;
    json!({
        "id": t.intent_id,
        "order_id": t.order_id,
        "status": i.status.as_str(),
        "outcome": i.outcome,
        "chain": t.chain,
        "chain_id": t.chain_id,
        "asset": t.asset,
        "token_contract": match t.asset_kind { AssetKind::Erc20(a) => Some(a.to_checksum(None)), AssetKind::Native => None },
        "amount_due": amount(t.amount_due, d),
        "amount_cents": t.amount_cents,
        "price_usd_cents_per_coin": t.quote.map(|q| q.usd_cents_per_coin),
        "deposit_address": t.deposit_address.to_checksum(None),
        "payment_uri": t.payment_uri,
        "created_at": rfc3339(t.created_at_ms),
        "expires_at": rfc3339(t.expires_at_ms),
        "monitor_until": rfc3339(t.monitor_until_ms),
        "created_block": t.created_block,
        "received": amount(i.received, d),
        "confirming": i.pending.iter().map(|p| transfer_view(p, d)).collect::<Vec<_>>(),
        "transfers": i.credited.iter().map(|p| transfer_view(p, d)).collect::<Vec<_>>(),
        "refund": {
            "due": amount(i.refund_due, d),
            "refunded": amount(i.refunded(), d),
            "outstanding": amount(i.refund_outstanding(), d),
            "address": i.refund_address.map(|a| a.to_checksum(None)),
            "transactions": i.refunds.iter().map(|r| json!({"tx_hash": r.tx_hash.to_string(), "to": r.to.to_checksum(None), "amount": amount(r.amount, d)})).collect::<Vec<_>>(),
        },
        "version": i.version,
        "links": {
            "self": format!("/api/v1/payments/{}", t.intent_id),
            "order": format!("/api/v1/orders/{}", t.order_id),
            "events": format!("/api/v1/payments/{}/events", t.intent_id),
        },
    })
}

fn rejection_code(r: &Rejection) -> &'static str {
    match r {
        Rejection::NodeOnWrongChain { .. } => "rpc_wrong_chain",
        Rejection::TxForWrongChain { .. } => "wrong_chain",
        Rejection::NotFound => "transaction_not_found",
        Rejection::Unmined => "transaction_pending",
        Rejection::Reverted => "transaction_reverted",
        Rejection::WrongAsset(_) => "wrong_asset",
        Rejection::NotToDepositAddress => "wrong_recipient",
        Rejection::BeforeIntent => "before_intent",
        Rejection::NotCanonical => "not_canonical",
    }
}

fn api_error(e: PaymentError) -> ApiError {
    match e {
        PaymentError::NotFound => ApiError::not_found("payment"),
        PaymentError::Rejected(r) => ApiError::unprocessable(rejection_code(&r), r.to_string()),
        PaymentError::AlreadyClaimed => ApiError::conflict("transfer_already_credited", e.to_string()),
        PaymentError::Intent(i) => ApiError::conflict("payment_state", i.to_string()),
        PaymentError::Chain(c) => {
            tracing::warn!(cause = %c, "chain unavailable");
            ApiError::unavailable_for("chain_unavailable", "the chain's RPC nodes can't be reached; retry shortly", crate::rpc::BREAKER_OPEN.as_secs() as u32)
        }
        PaymentError::Store(s) => s.into(),
        PaymentError::Config(cause) => {
            tracing::error!(%cause, "payment configuration");
            ApiError::unavailable()
        }
        PaymentError::Price(p) => ApiError::unavailable_for("price_unavailable", p.to_string(), 60),
    }
}

/// The intent in the path, if the caller may see it: its customer or staff. Anyone else gets
/// the same 404 as for a missing one.
async fn visible(ctx: &Ctx<'_>, pc: &PaymentContext, caller: &Caller) -> Result<Intent, ApiError> {
    let intent = pc.intents.intent(ctx.param(0)).await?;
    intent.filter(|i| caller.role.is_staff() || i.terms.customer_id == caller.user_id).ok_or_else(|| ApiError::not_found("payment"))
}

async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    Ok(json(StatusCode::OK, &view(&visible(ctx, pc, &caller).await?)))
}

/// `GET /api/v1/payments/methods`: the chains and assets orders may be paid with here, what a
/// client offers at checkout. None without an xpub (orders then take `pay_at_counter` alone).
async fn methods(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    let methods: Vec<Value> = match pc.keys {
        None => Vec::new(),
        Some(_) => pc
            .chains
            .iter()
            .flat_map(|(name, chain)| {
                chain.assets.iter().map(move |(symbol, asset)| {
                    json!({
                        "chain": name,
                        "chain_id": chain.chain_id,
                        "asset": symbol,
                        "token_contract": match asset.kind { AssetKind::Erc20(a) => Some(a.to_checksum(None)), AssetKind::Native => None },
                        "decimals": asset.decimals,
                        "payment_method": {"crypto": {"chain": name, "asset": symbol}},
                    })
                })
            })
            .collect(),
    };
    let mut response = json(StatusCode::OK, &json!({ "methods": methods }));
    // The same for every caller until the configuration changes.
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("private, max-age=300"));
    Ok(response)
}

/// `GET /api/v1/payments/{id}/qr`: the intent's payment URI as a QR code, an SVG a wallet's
/// camera reads (its customer or staff).
async fn qr(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    let intent = visible(ctx, pc, &caller).await?;
    let svg = crate::amount::payment_qr_svg(&intent.terms.payment_uri).map_err(|e| {
        tracing::error!(error = %e, intent = %intent.terms.intent_id, "payment URI does not fit a QR code");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the payment's QR code could not be made")
    })?;
    let mut response = http::Response::new(svg.into_bytes());
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("image/svg+xml"));
    // An intent's URI never changes.
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("private, max-age=86400, immutable"));
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    // Opened on its own, the document may run and load nothing (it has only shapes).
    headers.insert(http::header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

async fn events(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    let intent = visible(ctx, pc, &caller).await?;
    let events = pc.intents.intent_events(&intent.terms.intent_id).await?;
    Ok(json(StatusCode::OK, &json!({ "intent_id": intent.terms.intent_id, "version": intent.version, "events": events })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxBody {
    tx_hash: String,
}

fn tx_hash(body: &TxBody) -> Result<B256, ApiError> {
    let h = body.tx_hash.trim();
    if h.len() != 66 || !h.starts_with("0x") {
        return Err(ApiError::unprocessable("invalid_tx_hash", "tx_hash is a 0x-prefixed 32-byte hex string"));
    }
    h.parse().map_err(|_| ApiError::unprocessable("invalid_tx_hash", "tx_hash is a 0x-prefixed 32-byte hex string"))
}

/// A hint: the customer (or staff) names a transaction that pays the intent. 200 with the
/// intent as the chain leaves it (paid, confirming, partially paid), 422 naming why the
/// transaction pays nothing, 409 if it already paid another intent, 503 while the chain is out
/// of reach.
async fn hint(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    let body: TxBody = parse_json(ctx.req)?;
    let hash = tx_hash(&body)?;
    let intent = visible(ctx, pc, &caller).await?;
    let services = pc.services(ctx.svc);
    let updated = services.hint(&intent.terms.intent_id, hash, &caller.user_id).await.map_err(api_error)?;
    Ok(json(StatusCode::OK, &view(&updated)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    address: String,
}

/// The customer's address for refunds (never a transfer's sender: an exchange withdrawal comes
/// from the exchange's wallet).
async fn refund_address(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.caller()?;
    let pc = ctx.extension::<PaymentContext>()?;
    let body: AddressBody = parse_json(ctx.req)?;
    let address: Address =
        body.address.trim().parse().map_err(|_| ApiError::unprocessable("invalid_address", "address is a 0x-prefixed 20-byte hex address"))?;
    let intent = visible(ctx, pc, &caller).await?;
    if intent.terms.customer_id != caller.user_id {
        return Err(ApiError::forbidden("only the customer who placed the order names the refund address"));
    }
    let updated = pc.services(ctx.svc).set_refund_address(&intent.terms.intent_id, address, &caller.user_id).await.map_err(api_error)?;
    Ok(json(StatusCode::OK, &view(&updated)))
}

/// A manager records the refund they sent; it is verified on the chain like a payment.
async fn record_refund(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Manager)?;
    let pc = ctx.extension::<PaymentContext>()?;
    let body: TxBody = parse_json(ctx.req)?;
    let hash = tx_hash(&body)?;
    let intent = visible(ctx, pc, &caller).await?;
    let updated = pc.services(ctx.svc).record_refund(&intent.terms.intent_id, hash, &caller.user_id).await.map_err(api_error)?;
    Ok(json(StatusCode::OK, &view(&updated)))
}

/// Intents that owe a refund (managers), oldest first; `cursor` is the last id of a page.
async fn refunds_due(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.require(Role::Manager)?;
    let pc = ctx.extension::<PaymentContext>()?;
    let limit = page_limit(ctx.req)?;
    let after = query_param(ctx.req, "cursor");
    let mut items = pc.intents.refunds_due(limit + 1, after.as_deref()).await?;
    let next = (items.len() > limit).then(|| items[limit - 1].terms.intent_id.clone());
    items.truncate(limit);
    Ok(json(StatusCode::OK, &json!({ "items": items.iter().map(view).collect::<Vec<_>>(), "next_cursor": next })))
}
