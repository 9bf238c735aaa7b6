//! Native coins' prices from Chainlink-style feeds on the coin's own chain, read through the
//! same RPC transport (timeouts, breaker, chain check) as payments. A feed's `updatedAt` is the
//! quote's time, so a stalled feed is refused by the intent's maximum price age.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::RpcClient;
use alloy_rpc_types_eth::TransactionRequest;
use alloy_sol_types::SolCall;
use async_trait::async_trait;

use crate::amount::Quote;
use crate::chains::Chains;
use crate::rpc::{HttpPost, RpcTransport};
use crate::service::Prices;

mod feed {
    alloy_sol_types::sol! {
        function decimals() external view returns (uint8);
        function latestRoundData() external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
    }
}

pub struct ChainlinkPrices {
    pub chains: Chains,
    pub http: Arc<dyn HttpPost>,
    pub timeout: Duration,
}

async fn call(provider: &RootProvider, to: Address, data: Vec<u8>) -> Result<Bytes, String> {
    let tx = TransactionRequest::default().to(to).input(Bytes::from(data).into());
    provider.call(tx).await.map_err(|e| format!("reading the price feed at {to}: {e}"))
}

#[async_trait(?Send)]
impl Prices for ChainlinkPrices {
    async fn quote(&self, chain: &str, asset: &str) -> Result<Option<Quote>, String> {
        let Some(c) = self.chains.get(chain) else { return Ok(None) };
        let Some(feed_address) = c.asset(asset).and_then(|a| a.price_feed) else { return Ok(None) };
        let provider = RootProvider::new(RpcClient::new(RpcTransport::new(c.chain_id, &c.rpc_urls, self.timeout, self.http.clone()), false));
        let decimals = feed::decimalsCall::abi_decode_returns(&call(&provider, feed_address, feed::decimalsCall {}.abi_encode()).await?)
            .map_err(|e| format!("price feed decimals: {e}"))?;
        let round = feed::latestRoundDataCall::abi_decode_returns(&call(&provider, feed_address, feed::latestRoundDataCall {}.abi_encode()).await?)
            .map_err(|e| format!("price feed round: {e}"))?;
        if round.answer.is_negative() || round.answer.is_zero() {
            return Err(format!("the price feed at {feed_address} answers {}", round.answer));
        }
        // answer / 10^decimals dollars = answer * 100 / 10^decimals cents (rounded down).
        let answer = round.answer.into_raw();
        let cents = answer.saturating_mul(U256::from(100u8)) / U256::from(10u8).pow(U256::from(decimals));
        let cents = u64::try_from(cents).map_err(|_| "the price does not fit".to_owned())?;
        let at_ms = i64::try_from(round.updatedAt).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Ok(Some(Quote { usd_cents_per_coin: cents, at_ms }))
    }
}
