//! Helpers the payment tests and the payment benchmark share: the café's keys (only the tests
//! hold the private side), an HTTP port that counts the RPC calls reaching the wire, and a
//! price port for stablecoin-only tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gocoffee_payments::amount::Quote;
use gocoffee_payments::deposit::DepositKeys;
use gocoffee_payments::native::HyperPost;
use gocoffee_payments::rpc::{HttpPost, PostError};
use gocoffee_payments::service::Prices;

/// The account-level xpub (`m/44'/60'/0'`) of a wallet made from a fixed seed.
pub fn account_xpub(seed: u8) -> String {
    use bip32::{DerivationPath, Prefix, XPrv};
    let path: DerivationPath = "m/44'/60'/0'".parse().expect("path");
    XPrv::derive_from_path([seed; 64], &path).expect("account").public_key().to_string(Prefix::XPUB)
}

/// The deposit keys of [`account_xpub`]`(seed)`.
pub fn deposit_keys(seed: u8) -> DepositKeys {
    DepositKeys::parse(&account_xpub(seed)).expect("xpub")
}

/// Counts the HTTP calls that reach the wire.
pub struct Counting {
    inner: HyperPost,
    pub calls: Arc<AtomicUsize>,
}

impl Counting {
    pub fn new() -> Counting {
        Counting { inner: HyperPost::new().expect("tls roots"), calls: Arc::default() }
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
