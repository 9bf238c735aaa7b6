//! Reading a chain with alloy's provider over [`RpcTransport`]: the head, a transaction with its
//! receipt, a block's hash and time, and `Transfer` logs into many deposit addresses at once.
//! It gathers facts; [`crate::verify`] judges them.

use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::Transaction as _;
use alloy_primitives::{Address, B256};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::RpcClient;
use alloy_rpc_types_eth::{BlockNumberOrTag, Filter};
use alloy_transport::TransportError;

use crate::chains::{Chain, Finality};
use crate::intent::Terms;
use crate::rpc::{HttpPost, RpcTransport, RpcUnavailable, unavailable};
use crate::verify::{ChainHead, Context, LogFacts, Rejection, TRANSFER_TOPIC, TxFacts, Verified, verify_tx};

/// Why the chain could not be read. Either way nothing may change: a half-read chain decides
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Unavailable(#[from] RpcUnavailable),
    #[error("the RPC node answered in a way that can't be used: {0}")]
    Rpc(String),
}

impl From<TransportError> for ChainError {
    fn from(e: TransportError) -> ChainError {
        match unavailable(&e) {
            Some(u) => ChainError::Unavailable(u.clone()),
            None => ChainError::Rpc(e.to_string()),
        }
    }
}

/// One reader per configured chain. Its holder keeps it as long as it lives (a Lambda
/// container, the tests), so each endpoint's circuit breaker remembers failures from one
/// invocation to the next; a Spin component makes one per invocation.
pub struct Readers {
    readers: std::collections::BTreeMap<u64, ChainReader>,
}

impl Readers {
    pub fn new(chains: &crate::chains::Chains, http: Arc<dyn HttpPost>, timeout: Duration) -> Readers {
        Readers { readers: chains.iter().map(|(_, chain)| (chain.chain_id, ChainReader::new(chain, http.clone(), timeout))).collect() }
    }

    pub fn get(&self, chain_id: u64) -> Option<&ChainReader> {
        self.readers.get(&chain_id)
    }
}

/// One chain's reader.
pub struct ChainReader {
    provider: RootProvider,
    chain_id: u64,
    finality: Finality,
}

/// At most this many deposit addresses go into one `eth_getLogs` topic filter (public nodes
/// refuse very long filters); more are split into further calls.
pub const ADDRESSES_PER_LOG_QUERY: usize = 1_000;

impl ChainReader {
    pub fn new(chain: &Chain, http: Arc<dyn HttpPost>, timeout: Duration) -> ChainReader {
        let transport = RpcTransport::new(chain.chain_id, &chain.rpc_urls, timeout, http);
        let provider = RootProvider::new(RpcClient::new(transport, false));
        ChainReader { provider, chain_id: chain.chain_id, finality: chain.finality }
    }

    pub fn finality(&self) -> Finality {
        self.finality
    }

    /// The latest block, and the finalized one when the policy needs it. The transport only
    /// talks to endpoints that answered `eth_chainId` for this chain.
    pub async fn head(&self) -> Result<ChainHead, ChainError> {
        let chain_id = self.provider.get_chain_id().await?;
        let latest = self.provider.get_block_number().await?;
        let finalized = match self.finality {
            Finality::Finalized => {
                let block = self.provider.get_block_by_number(BlockNumberOrTag::Finalized).await?;
                Some(block.ok_or_else(|| ChainError::Rpc("the node has no finalized block".into()))?.header.number)
            }
            Finality::Confirmations(_) => None,
        };
        Ok(ChainHead { chain_id, latest, finalized })
    }

    /// An address's native balance at a block.
    pub async fn balance(&self, address: Address, block: u64) -> Result<alloy_primitives::U256, ChainError> {
        Ok(self.provider.get_balance(address).number(block).await?)
    }

    /// A block's hash and time (milliseconds), if the canonical chain has it.
    pub async fn block(&self, number: u64) -> Result<Option<(B256, i64)>, ChainError> {
        let block = self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).await?;
        Ok(block.map(|b| (b.header.hash, i64::try_from(b.header.timestamp).unwrap_or(i64::MAX).saturating_mul(1000))))
    }

    /// A mined transaction with its receipt; `None` if the node knows neither, `Err(Unmined)`
    /// inside the `Ok` when it is still pending.
    pub async fn transaction(&self, hash: B256) -> Result<Result<TxFacts, Rejection>, ChainError> {
        let Some(tx) = self.provider.get_transaction_by_hash(hash).await? else { return Ok(Err(Rejection::NotFound)) };
        let Some(receipt) = self.provider.get_transaction_receipt(hash).await? else { return Ok(Err(Rejection::Unmined)) };
        let (Some(block_number), Some(block_hash)) = (receipt.block_number, receipt.block_hash) else { return Ok(Err(Rejection::Unmined)) };
        let logs = receipt.inner.logs().iter().filter_map(log_facts).collect();
        Ok(Ok(TxFacts {
            hash,
            chain_id: tx.inner.chain_id(),
            from: tx.inner.signer(),
            to: tx.inner.to(),
            value: tx.inner.value(),
            success: receipt.status(),
            block_number,
            block_hash,
            logs,
        }))
    }

    /// `Transfer` logs of `token` into any of `to`, in blocks `from..=until`: one call per
    /// [`ADDRESSES_PER_LOG_QUERY`] addresses, however many intents are open.
    pub async fn transfer_logs(&self, token: Address, to: &[Address], from: u64, until: u64) -> Result<Vec<LogFacts>, ChainError> {
        let mut out = Vec::new();
        for chunk in to.chunks(ADDRESSES_PER_LOG_QUERY) {
            let topics: Vec<B256> = chunk.iter().map(|a| a.into_word()).collect();
            let filter = Filter::new().address(token).event_signature(TRANSFER_TOPIC).topic2(topics).from_block(from).to_block(until);
            let logs = self.provider.get_logs(&filter).await?;
            out.extend(logs.iter().filter_map(log_facts));
        }
        Ok(out)
    }

    /// Checks a client's transaction-hash hint against an intent: reads the head, the
    /// transaction and its receipt, then the canonical block at its height (read last, so a
    /// reorg between the reads shows as a mismatch), and judges them.
    pub async fn verify_hint(&self, terms: &Terms, hash: B256) -> Result<Result<Verified, Rejection>, ChainError> {
        let head = self.head().await?;
        if head.chain_id != self.chain_id {
            return Ok(Err(Rejection::NodeOnWrongChain { got: head.chain_id, expected: self.chain_id }));
        }
        let tx = match self.transaction(hash).await? {
            Ok(tx) => tx,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let (canonical_hash, block_time_ms) = match self.block(tx.block_number).await? {
            Some((h, t)) => (Some(h), t),
            None => (None, 0),
        };
        let ctx = Context { head, finality: self.finality, canonical_hash, block_time_ms };
        Ok(verify_tx(terms, Some(&tx), &ctx))
    }
}

fn log_facts(log: &alloy_rpc_types_eth::Log) -> Option<LogFacts> {
    Some(LogFacts {
        address: log.address(),
        topics: log.topics().to_vec(),
        data: log.data().data.to_vec(),
        log_index: log.log_index?,
        tx_hash: log.transaction_hash?,
        block_number: log.block_number?,
        block_hash: log.block_hash?,
        block_time_ms: log.block_timestamp.and_then(|t| i64::try_from(t).ok()).map(|t| t.saturating_mul(1000)),
        removed: log.removed,
    })
}
