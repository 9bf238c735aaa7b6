//! Verification: whether what a chain's RPC reported pays an intent. Pure: the chain reader
//! gathers the facts ([`TxFacts`], [`LogFacts`], [`ChainHead`]), this module judges them, and
//! both shells (and the watcher) call the same code. Nothing a client sends is trusted: a hint
//! is only a transaction hash to look up.
//!
//! A transfer counts for an intent only if all of these hold:
//! - the node answered for the intent's chain (`eth_chainId`), and the transaction was signed
//!   for it (EIP-155 chain id; an unprotected transaction is refused);
//! - its receipt says it succeeded;
//! - for a token: a log emitted by the allow-listed contract, with the real `Transfer` topic
//!   and three topics, whose `to` is the deposit address (the amount read from the log, never
//!   from calldata); for the native coin: the transaction's own value sent to the deposit address;
//! - the log was not `removed`, its block is after the intent's creation block, and that block
//!   is still the canonical one at its height;
//! - the block is final by the chain's policy (else the transfer is only *seen*);
//! - `(chain id, tx hash, log index)` was never credited to any intent (the store's unique
//!   claim; not checked here).

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolEvent;

use crate::chains::{AssetKind, Finality};
use crate::intent::{Terms, Transfer, TransferKey};

mod erc20 {
    alloy_sol_types::sol! {
        /// ERC-20's `Transfer(address indexed from, address indexed to, uint256 value)`.
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

/// The `Transfer` event's topic: `keccak256("Transfer(address,address,uint256)")`.
pub const TRANSFER_TOPIC: B256 = <erc20::Transfer as SolEvent>::SIGNATURE_HASH;

/// One log as the node returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFacts {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
    pub log_index: u64,
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    /// The block's time, when the node includes it in the log (`blockTimestamp`).
    pub block_time_ms: Option<i64>,
    pub removed: bool,
}

/// A mined transaction and its receipt, as the node returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFacts {
    pub hash: B256,
    /// The EIP-155 chain id it was signed for (none for an unprotected legacy transaction).
    pub chain_id: Option<u64>,
    pub from: Address,
    pub to: Option<Address>,
    pub value: U256,
    pub success: bool,
    pub block_number: u64,
    pub block_hash: B256,
    pub logs: Vec<LogFacts>,
}

/// Where the chain stands, read in the same pass as the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// `eth_chainId` of the node that answered.
    pub chain_id: u64,
    pub latest: u64,
    /// The `finalized` tag's block number, when the policy uses it.
    pub finalized: Option<u64>,
}

impl ChainHead {
    /// The newest block that is final under `policy`.
    pub fn final_block(&self, policy: Finality) -> Option<u64> {
        match policy {
            Finality::Finalized => self.finalized,
            Finality::Confirmations(n) => (self.latest + 1).checked_sub(n),
        }
    }
}

/// Why a transaction pays nothing into an intent. Each is a distinct attack or mistake, and the
/// API names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the RPC node is on chain {got}, not the intent's chain {expected}")]
    NodeOnWrongChain { got: u64, expected: u64 },
    #[error("the transaction was signed for chain {got:?}, not the intent's chain {expected}")]
    TxForWrongChain { got: Option<u64>, expected: u64 },
    #[error("no such transaction on this chain (yet)")]
    NotFound,
    #[error("the transaction is pending; it has no block yet")]
    Unmined,
    #[error("the transaction reverted")]
    Reverted,
    #[error("the transaction moved {0} to the deposit address, not the asset the intent asks for")]
    WrongAsset(String),
    #[error("the transaction sent nothing to the intent's deposit address")]
    NotToDepositAddress,
    #[error("the transaction was mined before the intent existed")]
    BeforeIntent,
    #[error("the transaction's block is no longer on the canonical chain")]
    NotCanonical,
}

/// What a transaction means for an intent: transfers into it, each final or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub transfers: Vec<(Transfer, bool)>,
}

/// The chain facts a verification needs beyond the transaction.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub head: ChainHead,
    pub finality: Finality,
    /// The canonical block hash at the transaction's height, read after the receipt.
    pub canonical_hash: Option<B256>,
    pub block_time_ms: i64,
}

/// Judges a transaction (found by a client's hint) against `terms`.
pub fn verify_tx(terms: &Terms, tx: Option<&TxFacts>, ctx: &Context) -> Result<Verified, Rejection> {
    if ctx.head.chain_id != terms.chain_id {
        return Err(Rejection::NodeOnWrongChain { got: ctx.head.chain_id, expected: terms.chain_id });
    }
    let tx = tx.ok_or(Rejection::NotFound)?;
    if tx.chain_id != Some(terms.chain_id) {
        return Err(Rejection::TxForWrongChain { got: tx.chain_id, expected: terms.chain_id });
    }
    if !tx.success {
        return Err(Rejection::Reverted);
    }
    let final_block = ctx.head.final_block(ctx.finality);
    let transfer = |log_index: Option<u64>, from: Address, amount: U256| Transfer {
        key: TransferKey { chain_id: terms.chain_id, tx_hash: tx.hash, log_index },
        from,
        to: terms.deposit_address,
        amount,
        block_number: tx.block_number,
        block_hash: tx.block_hash,
        block_time_ms: ctx.block_time_ms,
    };
    let transfers: Vec<Transfer> = match terms.asset_kind {
        AssetKind::Native => {
            if tx.to == Some(terms.deposit_address) && !tx.value.is_zero() {
                vec![transfer(None, tx.from, tx.value)]
            } else {
                vec![]
            }
        }
        AssetKind::Erc20(token) => tx
            .logs
            .iter()
            .filter(|l| l.address == token && !l.removed)
            .filter_map(|l| decode_transfer(l).filter(|(_, to, _)| *to == terms.deposit_address).map(|(from, _, v)| transfer(Some(l.log_index), from, v)))
            .collect(),
    };
    if transfers.is_empty() {
        // Name the near miss: a transfer of something else to the right address.
        let other_token = tx.logs.iter().find(|l| decode_transfer(l).is_some_and(|(_, to, _)| to == terms.deposit_address));
        return match (terms.asset_kind, other_token) {
            (_, Some(l)) => Err(Rejection::WrongAsset(format!("a token at {}", l.address))),
            (AssetKind::Erc20(_), None) if tx.to == Some(terms.deposit_address) && !tx.value.is_zero() => Err(Rejection::WrongAsset("the native coin".into())),
            _ => Err(Rejection::NotToDepositAddress),
        };
    }
    if tx.block_number <= terms.created_block {
        return Err(Rejection::BeforeIntent);
    }
    if ctx.canonical_hash != Some(tx.block_hash) {
        return Err(Rejection::NotCanonical);
    }
    let is_final = final_block.is_some_and(|f| tx.block_number <= f);
    Ok(Verified { transfers: transfers.into_iter().map(|t| (t, is_final)).collect() })
}

/// A log's `Transfer(from, to, value)`, if it is one: the real topic, exactly three topics (an
/// ERC-721 `Transfer` has the value indexed too), a 32-byte value.
pub fn decode_transfer(log: &LogFacts) -> Option<(Address, Address, U256)> {
    if log.topics.len() != 3 || log.topics[0] != TRANSFER_TOPIC || log.data.len() != 32 {
        return None;
    }
    let from = Address::from_word(log.topics[1]);
    let to = Address::from_word(log.topics[2]);
    Some((from, to, U256::from_be_slice(&log.data)))
}

/// A transfer found by the watcher's `eth_getLogs` over the allow-listed token for open deposit
/// addresses: the same checks as a hint's log (the watcher only asks for logs up to the final
/// block, and re-reads the block hash, so it passes both).
pub fn verify_log(terms: &Terms, log: &LogFacts, ctx: &Context) -> Result<Verified, Rejection> {
    if ctx.head.chain_id != terms.chain_id {
        return Err(Rejection::NodeOnWrongChain { got: ctx.head.chain_id, expected: terms.chain_id });
    }
    let AssetKind::Erc20(token) = terms.asset_kind else { return Err(Rejection::WrongAsset("a token log for a native-coin intent".into())) };
    if log.address != token {
        return Err(Rejection::WrongAsset(format!("a token at {}", log.address)));
    }
    if log.removed {
        return Err(Rejection::NotCanonical);
    }
    let Some((from, to, amount)) = decode_transfer(log) else { return Err(Rejection::NotToDepositAddress) };
    if to != terms.deposit_address {
        return Err(Rejection::NotToDepositAddress);
    }
    if log.block_number <= terms.created_block {
        return Err(Rejection::BeforeIntent);
    }
    if ctx.canonical_hash != Some(log.block_hash) {
        return Err(Rejection::NotCanonical);
    }
    let is_final = ctx.head.final_block(ctx.finality).is_some_and(|f| log.block_number <= f);
    let transfer = Transfer {
        key: TransferKey { chain_id: terms.chain_id, tx_hash: log.tx_hash, log_index: Some(log.log_index) },
        from,
        to,
        amount,
        block_number: log.block_number,
        block_hash: log.block_hash,
        block_time_ms: ctx.block_time_ms,
    };
    Ok(Verified { transfers: vec![(transfer, is_final)] })
}

#[cfg(test)]
mod tests {
    use alloy_primitives::address;

    use super::*;

    const TOKEN: Address = address!("0x00000000000000000000000000000000000000c0");
    const DEPOSIT: Address = address!("0x00000000000000000000000000000000000000d0");
    const PAYER: Address = address!("0x00000000000000000000000000000000000000f0");

    fn terms(kind: AssetKind) -> Terms {
        Terms {
            intent_id: "pi".into(),
            order_id: "o".into(),
            customer_id: "c".into(),
            chain: "polygon".into(),
            chain_id: 137,
            asset: "USDC".into(),
            asset_kind: kind,
            decimals: 6,
            amount_cents: 450,
            amount_due: U256::from(4_500_000u64),
            quote: None,
            deposit_address: DEPOSIT,
            derivation_index: 0,
            payment_uri: String::new(),
            created_at_ms: 0,
            expires_at_ms: 1,
            monitor_until_ms: 2,
            created_block: 10,
        }
    }

    fn log(contract: Address, to: Address, value: u64) -> LogFacts {
        LogFacts {
            address: contract,
            topics: vec![TRANSFER_TOPIC, PAYER.into_word(), to.into_word()],
            data: U256::from(value).to_be_bytes::<32>().to_vec(),
            log_index: 3,
            tx_hash: B256::repeat_byte(1),
            block_number: 20,
            block_hash: B256::repeat_byte(2),
            block_time_ms: None,
            removed: false,
        }
    }

    fn tx(logs: Vec<LogFacts>) -> TxFacts {
        TxFacts {
            hash: B256::repeat_byte(1),
            chain_id: Some(137),
            from: PAYER,
            to: Some(TOKEN),
            value: U256::ZERO,
            success: true,
            block_number: 20,
            block_hash: B256::repeat_byte(2),
            logs,
        }
    }

    fn ctx(finalized: u64) -> Context {
        Context {
            head: ChainHead { chain_id: 137, latest: 30, finalized: Some(finalized) },
            finality: Finality::Finalized,
            canonical_hash: Some(B256::repeat_byte(2)),
            block_time_ms: 0,
        }
    }

    #[test]
    fn the_topic_is_the_real_one() {
        assert_eq!(TRANSFER_TOPIC, alloy_primitives::keccak256("Transfer(address,address,uint256)"));
    }

    #[test]
    fn a_token_transfer_is_read_from_its_log_and_final_by_policy() {
        let t = terms(AssetKind::Erc20(TOKEN));
        let v = verify_tx(&t, Some(&tx(vec![log(TOKEN, DEPOSIT, 4_500_000)])), &ctx(25)).expect("verified");
        assert_eq!(v.transfers.len(), 1);
        let (transfer, is_final) = &v.transfers[0];
        assert!(is_final);
        assert_eq!((transfer.amount, transfer.key.log_index, transfer.from), (U256::from(4_500_000u64), Some(3), PAYER));
        let pending = verify_tx(&t, Some(&tx(vec![log(TOKEN, DEPOSIT, 1)])), &ctx(19)).expect("verified");
        assert!(!pending.transfers[0].1, "block 20 is not final when the finalized block is 19");
    }

    #[test]
    fn each_attack_is_named() {
        let t = terms(AssetKind::Erc20(TOKEN));
        let fake = address!("0x00000000000000000000000000000000000000ee");
        assert_eq!(verify_tx(&t, Some(&tx(vec![log(TOKEN, PAYER, 9)])), &ctx(25)), Err(Rejection::NotToDepositAddress));
        assert!(matches!(verify_tx(&t, Some(&tx(vec![log(fake, DEPOSIT, 4_500_000)])), &ctx(25)), Err(Rejection::WrongAsset(_))));
        let mut reverted = tx(vec![]);
        reverted.success = false;
        assert_eq!(verify_tx(&t, Some(&reverted), &ctx(25)), Err(Rejection::Reverted));
        let mut other_chain = tx(vec![log(TOKEN, DEPOSIT, 1)]);
        other_chain.chain_id = Some(1);
        assert_eq!(verify_tx(&t, Some(&other_chain), &ctx(25)), Err(Rejection::TxForWrongChain { got: Some(1), expected: 137 }));
        let mut node = ctx(25);
        node.head.chain_id = 1;
        assert_eq!(verify_tx(&t, Some(&tx(vec![])), &node), Err(Rejection::NodeOnWrongChain { got: 1, expected: 137 }));
        assert_eq!(verify_tx(&t, None, &ctx(25)), Err(Rejection::NotFound));
        let mut early = tx(vec![log(TOKEN, DEPOSIT, 1)]);
        early.block_number = 10;
        assert_eq!(verify_tx(&t, Some(&early), &ctx(25)), Err(Rejection::BeforeIntent));
        let mut reorged = ctx(25);
        reorged.canonical_hash = Some(B256::repeat_byte(9));
        assert_eq!(verify_tx(&t, Some(&tx(vec![log(TOKEN, DEPOSIT, 1)])), &reorged), Err(Rejection::NotCanonical));
        // An ERC-721 Transfer has four topics: not a token payment.
        let mut nft = log(TOKEN, DEPOSIT, 1);
        nft.topics.push(B256::ZERO);
        assert_eq!(verify_tx(&t, Some(&tx(vec![nft])), &ctx(25)), Err(Rejection::NotToDepositAddress));
    }

    #[test]
    fn native_coins_count_the_transactions_own_value() {
        let t = terms(AssetKind::Native);
        let mut pay = tx(vec![]);
        pay.to = Some(DEPOSIT);
        pay.value = U256::from(7u8);
        let v = verify_tx(&t, Some(&pay), &ctx(25)).expect("verified");
        assert_eq!((v.transfers[0].0.amount, v.transfers[0].0.key.log_index), (U256::from(7u8), None));
        assert!(matches!(verify_tx(&t, Some(&tx(vec![log(TOKEN, DEPOSIT, 1)])), &ctx(25)), Err(Rejection::WrongAsset(_))));
    }

    #[test]
    fn confirmations_count_the_including_block() {
        let head = ChainHead { chain_id: 1, latest: 100, finalized: None };
        assert_eq!(head.final_block(Finality::Confirmations(1)), Some(100));
        assert_eq!(head.final_block(Finality::Confirmations(12)), Some(89));
        assert_eq!(head.final_block(Finality::Finalized), None);
    }
}
