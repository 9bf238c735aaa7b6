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

/// Multicall3, at the same address on every chain that has it (all four defaults; the tests put
/// it on anvil with `anvil_setCode`). The watcher reads native balances through it.
pub const MULTICALL3: Address = alloy_primitives::address!("cA11bde05977b3631167028862bE2a173976CA11");
/// Balances per `eth_call`: about 2,600 gas each for a cold account, far under nodes' caps.
pub const BALANCES_PER_CALL: usize = 500;

alloy_sol_types::sol! {
    /// The part of Multicall3's ABI the watcher uses.
    interface IMulticall3 {
        struct Call3 { address target; bool allowFailure; bytes callData; }
        struct Result { bool success; bytes returnData; }
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
        function getEthBalance(address addr) external view returns (uint256 balance);
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

    /// The native balances of `addresses` at `block`, in order: one `eth_call` to Multicall3 per
    /// [`BALANCES_PER_CALL`] addresses, however many intents are open.
    pub async fn native_balances(&self, addresses: &[Address], block: u64) -> Result<Vec<alloy_primitives::U256>, ChainError> {
        use alloy_sol_types::SolCall;
        let mut out = Vec::with_capacity(addresses.len());
        for chunk in addresses.chunks(BALANCES_PER_CALL) {
            let calls: Vec<IMulticall3::Call3> = chunk
                .iter()
                .map(|a| IMulticall3::Call3 {
                    target: MULTICALL3,
                    allowFailure: false,
                    callData: IMulticall3::getEthBalanceCall { addr: *a }.abi_encode().into(),
                })
                .collect();
            let request = alloy_rpc_types_eth::TransactionRequest::default().to(MULTICALL3).input(IMulticall3::aggregate3Call { calls }.abi_encode().into());
            let raw = self.provider.call(request).block(block.into()).await?;
            let results =
                IMulticall3::aggregate3Call::abi_decode_returns(&raw).map_err(|e| ChainError::Rpc(format!("Multicall3's answer can't be read: {e}")))?;
            if results.len() != chunk.len() {
                return Err(ChainError::Rpc("Multicall3 answered for a different number of addresses".into()));
            }
            for r in results {
                let balance =
                    IMulticall3::getEthBalanceCall::abi_decode_returns(&r.returnData).map_err(|e| ChainError::Rpc(format!("a balance can't be read: {e}")))?;
                out.push(balance);
            }
        }
        Ok(out)
    }

    /// Block `number` read whole: its hash and time (milliseconds), and its transactions that
    /// send the native coin straight to one of `to`, as `(tx hash, recipient)`. A contract passing
    /// the coin on (an internal transfer) is not among them.
    pub async fn value_transfers(&self, number: u64, to: &[Address]) -> Result<((B256, i64), Vec<(B256, Address)>), ChainError> {
        let block = self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).full().await?;
        let block = block.ok_or_else(|| ChainError::Rpc(format!("the node has no block {number}")))?;
        let time = i64::try_from(block.header.timestamp).unwrap_or(i64::MAX).saturating_mul(1000);
        let transfers = block
            .transactions
            .txns()
            .filter_map(|tx| {
                let recipient = tx.inner.to()?;
                (to.contains(&recipient) && !tx.inner.value().is_zero()).then(|| (*tx.inner.tx_hash(), recipient))
            })
            .collect();
        Ok(((block.header.hash, time), transfers))
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
