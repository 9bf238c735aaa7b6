//! Helpers the payment tests and the payment benchmark share: the café's keys (only the tests
//! hold the private side), intents written straight to a store, an HTTP port that counts the RPC
//! calls reaching the wire, and a price port for stablecoin-only tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::U256;
use gocoffee_payments::amount::Quote;
use gocoffee_payments::chains::AssetKind;
use gocoffee_payments::deposit::DepositKeys;
use gocoffee_payments::intent::{Intent, IntentEvent, StoredIntentEvent, Terms};
use gocoffee_payments::native::HyperPost;
use gocoffee_payments::rpc::{HttpPost, PostError};
use gocoffee_payments::service::Prices;
use gocoffee_payments::store::IntentStore;

/// The account-level xpub (`m/44'/60'/0'`) of a wallet made from a fixed seed.
pub fn account_xpub(seed: u8) -> String {
    use bip32::{DerivationPath, Prefix, XPrv};
    let path: DerivationPath = "m/44'/60'/0'".parse().expect("path");
    XPrv::derive_from_path([seed; 64], &path).expect("account").public_key().to_string(Prefix::XPUB)
}

/// A café taking USDC (the ERC-20 at `token`, 6 decimals) on Polygon through `rpc_url`, its
/// deposit addresses from [`account_xpub`]`(77)`: the `PAYMENT_XPUB` and `PAYMENT_CHAINS`
/// variables, named as on Lambda (the host's are `SPIN_VARIABLE_` and these).
pub fn polygon_usdc_cafe(rpc_url: &str, token: &str) -> Vec<(String, String)> {
    let chains = serde_json::json!({"polygon": {"chain_id": 137, "rpc_urls": [rpc_url], "finality": {"confirmations": 1},
        "assets": {"USDC": {"erc20": token, "decimals": 6, "usd_pegged": true}}}});
    vec![("PAYMENT_XPUB".into(), account_xpub(77)), ("PAYMENT_CHAINS".into(), chains.to_string())]
}

/// The deposit keys of [`account_xpub`]`(seed)`.
pub fn deposit_keys(seed: u8) -> DepositKeys {
    DepositKeys::parse(&account_xpub(seed)).expect("xpub")
}

/// Where and in what a directly made intent is paid: `(chain name, chain id)` and
/// `(asset symbol, kind, decimals)`.
pub type Venue<'a> = ((&'a str, u64), (&'a str, AssetKind, u8));

/// The terms of an intent made without an order or a price (what the payment consumer would
/// write after pricing one): `pi_{index:05}`, for order `o{index}`, paid to deposit address
/// `index` of `keys`, open 15 minutes and watched a day from `now_ms`.
pub fn direct_terms(
    keys: &DepositKeys,
    index: u64,
    ((chain, chain_id), (asset, asset_kind, decimals)): Venue<'_>,
    amount_due: U256,
    now_ms: i64,
    created_block: u64,
) -> Terms {
    Terms {
        intent_id: format!("pi_{index:05}"),
        order_id: format!("o{index}"),
        customer_id: "c1".into(),
        chain: chain.into(),
        chain_id,
        asset: asset.into(),
        asset_kind,
        decimals,
        amount_cents: 450,
        amount_due,
        quote: None,
        deposit_address: keys.address(index).expect("address"),
        derivation_index: index,
        payment_uri: String::new(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms + 900_000,
        monitor_until_ms: now_ms + 86_400_000,
        created_block,
    }
}

/// Writes an intent with `terms` straight to `store`: its `IntentCreated` and the intent.
pub async fn create_direct(store: &dyn IntentStore, terms: &Terms) -> Intent {
    let created = StoredIntentEvent {
        event_id: format!("created-{}", terms.intent_id),
        intent_id: terms.intent_id.clone(),
        order_id: terms.order_id.clone(),
        version: 1,
        occurred_at_ms: terms.created_at_ms,
        actor: "system".into(),
        correlation_id: None,
        traceparent: None,
        event: IntentEvent::IntentCreated { terms: terms.clone() },
    };
    let intent = Intent::from_events(std::slice::from_ref(&created)).expect("intent");
    store.create_intent(&intent, &created, None).await.expect("create");
    intent
}

/// Counts the HTTP calls that reach the wire.
pub struct Counting {
    inner: HyperPost,
    pub calls: Arc<AtomicUsize>,
}

impl Counting {
    pub fn new() -> Counting {
        Counting { inner: HyperPost::new(), calls: Arc::default() }
    }

    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Default for Counting {
    fn default() -> Counting {
        Counting::new()
    }
}

impl HttpPost for Counting {
    fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> alloy_transport::BoxFuture<'static, Result<Vec<u8>, PostError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.post(url, body, timeout)
    }
}

/// No native-coin prices: for tests that take stablecoins only.
pub struct NoPrices;

#[async_trait::async_trait(?Send)]
impl Prices for NoPrices {
    async fn quote(&self, _: &str, _: &str) -> Result<Option<Quote>, String> {
        Ok(None)
    }
}
