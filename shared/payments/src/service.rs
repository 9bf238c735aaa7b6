//! The payment service's use cases, against ports: making an intent when an order asks for
//! payment, a client's transaction hint, the watcher's scan, expiry, cancellation, refunds.
//! Every change is events appended to the intent's log with an expected version (and, for a
//! final transfer, its unique claim in the same write), so concurrent hints and watchers have
//! one effect.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use async_trait::async_trait;
use gocoffee_app::ports::{Clock, Entropy, OrderStore, StoreError};
use gocoffee_core::trace::TraceContext;
use gocoffee_core::{OrderEvent, StoredEvent};

use crate::amount::{AmountError, Quote, amount_due, payment_uri};
use crate::chains::{AssetKind, Chains};
use crate::deposit::{DepositError, DepositKeys};
use crate::intent::{Intent, IntentError, IntentEvent, StoredIntentEvent, Terms, Transfer};
use crate::reader::{ChainError, ChainReader, Readers};
use crate::store::IntentStore;
use crate::verify::{Context, Rejection, Verified, verify_log, verify_tx};

/// This consumer's name in the processed-events ledger.
pub const PAYMENTS_CONSUMER: &str = "payments-consumer";
/// The most blocks one watcher pass reads logs for on a chain (public nodes limit the range of
/// `eth_getLogs`); a chain further behind catches up over the next passes.
pub const MAX_BLOCKS_PER_SCAN: u64 = 2_000;
const APPEND_ATTEMPTS: usize = 5;

/// The native coins' prices, for intents in a coin that isn't a dollar stablecoin.
#[async_trait(?Send)]
pub trait Prices {
    /// US cents per whole coin of `asset` on `chain`, with when the source last updated it.
    async fn quote(&self, chain: &str, asset: &str) -> Result<Option<Quote>, String>;
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long an intent takes payments (default 15 min).
    pub expiry_ms: i64,
    /// How long after it was made its address is still watched for late money (default 24 h).
    pub monitor_ms: i64,
    /// The oldest price an intent may be made at (default 65 min: Chainlink's USD feeds update
    /// at least hourly, more often when the price moves).
    pub max_quote_age_ms: i64,
    pub rpc_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { expiry_ms: 15 * 60_000, monitor_ms: 24 * 3_600_000, max_quote_age_ms: 65 * 60_000, rpc_timeout: Duration::from_secs(5) }
    }
}

/// Why a use case did nothing, in terms the API and the consumers act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("no such payment")]
    NotFound,
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("this transfer was already credited to another payment")]
    AlreadyClaimed,
    #[error(transparent)]
    Intent(#[from] IntentError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Price(#[from] AmountError),
}

impl From<DepositError> for PaymentError {
    fn from(e: DepositError) -> Self {
        PaymentError::Config(e.to_string())
    }
}

/// Everything the payment use cases touch, for one invocation.
pub struct PaymentServices<'a> {
    pub intents: &'a dyn IntentStore,
    pub orders: &'a dyn OrderStore,
    pub chains: &'a Chains,
    /// Without them no intent can be made.
    pub keys: Option<&'a DepositKeys>,
    pub prices: &'a dyn Prices,
    pub readers: &'a Readers,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
    pub settings: Settings,
}

/// What one watcher pass did on one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub chain_id: u64,
    pub from_block: u64,
    pub to_block: u64,
    pub intents: usize,
    pub credited: usize,
    pub seen: usize,
    pub dropped: usize,
    pub expired: usize,
    /// Blocks read whole for native-coin transfers (only when a native balance rose).
    pub native_blocks_read: usize,
}

impl PaymentServices<'_> {
    fn new_id(&self) -> String {
        gocoffee_core::ids::ulid(self.clock.now_ms() as u64, self.entropy.u128())
    }

    pub fn reader(&self, chain_id: u64) -> Result<&ChainReader, PaymentError> {
        self.readers.get(chain_id).ok_or_else(|| PaymentError::Config(format!("chain {chain_id} is not configured")))
    }

    /// `events` as the intent's next stored events, in the intent's trace (a new span of it).
    fn stored(&self, intent: &Intent, events: Vec<IntentEvent>, actor: &str, correlation_id: Option<&str>) -> Vec<StoredIntentEvent> {
        let now = self.clock.now_ms();
        let trace = TraceContext::continue_or_start(intent.traceparent.as_deref(), now, self.entropy.u128());
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| StoredIntentEvent {
                event_id: self.new_id(),
                intent_id: intent.terms.intent_id.clone(),
                order_id: intent.terms.order_id.clone(),
                version: intent.version + 1 + i as u64,
                occurred_at_ms: now,
                actor: actor.to_owned(),
                correlation_id: correlation_id.map(str::to_owned),
                traceparent: Some(trace.header()),
                event,
            })
            .collect()
    }

    /// Decides and appends against the intent's current version, again on a lost race. With a
    /// claim, a conflict caused by another intent holding it is [`PaymentError::AlreadyClaimed`].
    async fn change(
        &self,
        intent_id: &str,
        actor: &str,
        claim: Option<crate::intent::TransferKey>,
        decide: impl Fn(&Intent) -> Result<Vec<IntentEvent>, PaymentError>,
    ) -> Result<Intent, PaymentError> {
        for _ in 0..APPEND_ATTEMPTS {
            let intent = self.intents.intent(intent_id).await?.ok_or(PaymentError::NotFound)?;
            let events = decide(&intent)?;
            if events.is_empty() {
                return Ok(intent);
            }
            let stored = self.stored(&intent, events, actor, None);
            let mut next = intent.clone();
            for e in &stored {
                next.apply(e);
            }
            let claims: Vec<_> = claim.into_iter().collect();
            match self.intents.append_intent(&next, &stored, intent.version, &claims).await {
                Ok(()) => {
                    for e in &stored {
                        if let Some(outcome) = e.event.outcome() {
                            gocoffee_app::telemetry::payment_outcome(outcome);
                        }
                        tracing::info!(intent_id, order_id = %next.terms.order_id, event = e.event.name(), status = next.status.as_str(), "payment changed");
                    }
                    return Ok(next);
                }
                Err(StoreError::Conflict) => {
                    // Held by another intent: this transfer is spent. Held by this one (or by
                    // none: the version moved): re-read and decide again.
                    if let Some(key) = &claim
                        && let Some(owner) = self.intents.claimed_by(key).await?
                        && owner != intent_id
                    {
                        return Err(PaymentError::AlreadyClaimed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// Applies what the chain says about `transfer`: credit it when final (claiming it), or mark
    /// it seen.
    async fn apply_transfer(&self, intent_id: &str, transfer: &Transfer, is_final: bool, actor: &str) -> Result<Intent, PaymentError> {
        if is_final {
            self.change(intent_id, actor, Some(transfer.key), |i| Ok(i.decide_credit(transfer)?)).await
        } else {
            self.change(intent_id, actor, None, |i| Ok(i.decide_seen(transfer)?)).await
        }
    }

    /// Handles one message from the orders stream: a crypto order asking for payment gets its
    /// intent; a cancelled order closes it.
    pub async fn on_order_event(&self, event: &StoredEvent) -> Result<(), PaymentError> {
        if self.orders.is_processed(PAYMENTS_CONSUMER, &event.event_id).await? {
            return Ok(());
        }
        match &event.event {
            OrderEvent::PaymentRequested { intent_id } => self.open_intent(event, intent_id).await,
            OrderEvent::OrderCancelled { .. } => {
                let intent_id = format!("pi_{}", event.order_id);
                match self.change(&intent_id, "system", None, |i| Ok(i.decide_cancel()?)).await {
                    Ok(_) | Err(PaymentError::NotFound) => {}
                    Err(e) => return Err(e),
                }
                Ok(self.orders.mark_processed(PAYMENTS_CONSUMER, &event.event_id).await?)
            }
            _ => Ok(()),
        }
    }

    /// The reconciler's payment side, for crypto orders that have waited for their payment
    /// without a change past the order side's deadline: an intent never made (the message asking
    /// for it was lost) is asked for again by publishing the order's `PaymentRequested` again; an
    /// intent that ended (paid or failed) whose outcome the order never got has that outcome
    /// published again. An open intent is the watcher's business. Returns how many were re-driven.
    pub async fn reconcile(&self, waiting: &[gocoffee_core::Order]) -> Result<usize, PaymentError> {
        let mut redriven = 0;
        for order in waiting {
            let Some(intent_id) = order.payment_intent.as_deref() else { continue };
            match self.intents.intent(intent_id).await? {
                None => {
                    let events = self.orders.events(&order.id).await?;
                    if let Some(requested) = events.iter().rev().find(|e| matches!(e.event, OrderEvent::PaymentRequested { .. })) {
                        self.orders.republish(requested).await?;
                        tracing::warn!(order_id = %order.id, intent_id, "no intent for a payment request: the request is published again");
                        redriven += 1;
                    }
                }
                Some(intent) if intent.outcome.is_some() => {
                    let events = self.intents.intent_events(intent_id).await?;
                    if let Some(outcome) = events.iter().rev().find(|e| matches!(e.event.name(), "PaymentConfirmed" | "PaymentFailed")) {
                        self.intents.republish(outcome).await?;
                        tracing::warn!(order_id = %order.id, intent_id, event = outcome.event.name(), "the order never got its payment's outcome: published again");
                        redriven += 1;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(redriven)
    }

    async fn open_intent(&self, requested: &StoredEvent, intent_id: &str) -> Result<(), PaymentError> {
        if self.intents.intent(intent_id).await?.is_some() {
            return Ok(self.orders.mark_processed(PAYMENTS_CONSUMER, &requested.event_id).await?);
        }
        let order =
            self.orders.order(&requested.order_id).await?.ok_or_else(|| StoreError::Unavailable(format!("order {} is not visible yet", requested.order_id)))?;
        // A cancellation handled first (while this message waited for a retry) means no intent:
        // an address nobody should pay into is never handed out.
        if order.status != gocoffee_core::OrderStatus::Pending || order.payment_intent.as_deref() != Some(intent_id) {
            tracing::info!(intent_id, order_id = %order.id, status = %order.status, "no intent: the order no longer waits for payment");
            return Ok(self.orders.mark_processed(PAYMENTS_CONSUMER, &requested.event_id).await?);
        }
        let method = order.payment_method.crypto().ok_or_else(|| PaymentError::Config(format!("order {} is not a crypto order", order.id)))?;
        let chain = self.chains.get(&method.chain).ok_or_else(|| PaymentError::Config(format!("chain `{}` is not configured", method.chain)))?;
        let asset = chain.asset(&method.asset).ok_or_else(|| PaymentError::Config(format!("{} is not taken on {}", method.asset, method.chain)))?;
        let now = self.clock.now_ms();
        let quote = if asset.usd_pegged { None } else { self.prices.quote(&method.chain, &method.asset).await.map_err(PaymentError::Config)? };
        let amount = amount_due(order.total_cents.0, asset, quote, now, self.settings.max_quote_age_ms)?;
        // The chain first: if it can't be read, nothing is written and the message is retried.
        let head = self.reader(chain.chain_id)?.head().await?;
        let keys = self.keys.ok_or_else(|| PaymentError::Config("payment_xpub is not set".into()))?;
        let index = self.intents.next_deposit_index().await?;
        let deposit = keys.address(index)?;
        let terms = Terms {
            intent_id: intent_id.to_owned(),
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            chain: method.chain.clone(),
            chain_id: chain.chain_id,
            asset: method.asset.clone(),
            asset_kind: asset.kind,
            decimals: asset.decimals,
            amount_cents: order.total_cents.0,
            amount_due: amount,
            quote,
            deposit_address: deposit,
            derivation_index: index,
            payment_uri: payment_uri(chain.chain_id, asset, deposit, amount),
            created_at_ms: now,
            expires_at_ms: now + self.settings.expiry_ms,
            monitor_until_ms: now + self.settings.monitor_ms,
            created_block: head.latest,
        };
        let created = StoredIntentEvent {
            event_id: self.new_id(),
            intent_id: intent_id.to_owned(),
            order_id: order.id.clone(),
            version: 1,
            occurred_at_ms: now,
            actor: "system".into(),
            correlation_id: requested.correlation_id.clone(),
            traceparent: Some(TraceContext::continue_or_start(requested.traceparent.as_deref(), now, self.entropy.u128()).header()),
            event: IntentEvent::IntentCreated { terms },
        };
        let intent = Intent::from_events(std::slice::from_ref(&created)).ok_or_else(|| PaymentError::Config("intent".into()))?;
        match self.intents.create_intent(&intent, &created, Some((PAYMENTS_CONSUMER, &requested.event_id))).await {
            Ok(()) => {
                tracing::info!(intent_id, order_id = %order.id, chain = %method.chain, asset = %method.asset, amount = %amount, index, "payment intent made");
                Ok(())
            }
            // Another delivery made it first.
            Err(StoreError::Conflict) => Ok(self.orders.mark_processed(PAYMENTS_CONSUMER, &requested.event_id).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// A client's hint: the hash of a transaction that pays `intent_id`. Checked on the chain at
    /// once; only what the chain says counts.
    pub async fn hint(&self, intent_id: &str, tx_hash: B256, actor: &str) -> Result<Intent, PaymentError> {
        let intent = self.intents.intent(intent_id).await?.ok_or(PaymentError::NotFound)?;
        let verified = self.reader(intent.terms.chain_id)?.verify_hint(&intent.terms, tx_hash).await??;
        let mut latest = intent;
        for (transfer, is_final) in &verified.transfers {
            latest = self.apply_transfer(intent_id, transfer, *is_final, actor).await?;
        }
        Ok(latest)
    }

    pub async fn set_refund_address(&self, intent_id: &str, address: Address, actor: &str) -> Result<Intent, PaymentError> {
        // Any intent's deposit address (they are the café's own, on every chain) would route the
        // refund into another payment.
        if self.intents.is_deposit_address(address).await? {
            return Err(IntentError::RefundAddressMismatch.into());
        }
        self.change(intent_id, actor, None, |i| Ok(i.decide_refund_address(address)?)).await
    }

    /// A manager's refund transaction: verified on the chain as a final transfer of the intent's
    /// asset to the customer's refund address, and claimed like a payment, so one transaction
    /// can neither pay an intent nor refund two.
    pub async fn record_refund(&self, intent_id: &str, tx_hash: B256, actor: &str) -> Result<Intent, PaymentError> {
        let intent = self.intents.intent(intent_id).await?.ok_or(PaymentError::NotFound)?;
        let to = intent.refund_address.ok_or(IntentError::NoRefundAddress)?;
        let mut refund_terms = intent.terms.clone();
        refund_terms.deposit_address = to;
        let verified = self.reader(intent.terms.chain_id)?.verify_hint(&refund_terms, tx_hash).await??;
        let (transfer, is_final) = verified.transfers.into_iter().next().ok_or(Rejection::NotToDepositAddress)?;
        if !is_final {
            return Err(PaymentError::Rejected(Rejection::Unmined));
        }
        self.change(intent_id, actor, Some(transfer.key), |i| Ok(i.decide_refund(&transfer)?)).await
    }

    /// Credits (final) or records as seen (not yet final) what the watcher verified for `intent`,
    /// counting it in `report`. A transfer already credited to another intent (a replayed hint)
    /// is not this one's; a rejection only gets a debug line.
    async fn credit_verified(&self, intent: &Intent, verdict: Result<Verified, Rejection>, report: &mut ScanReport) -> Result<(), PaymentError> {
        let verified = match verdict {
            Ok(v) => v,
            Err(rejection) => {
                tracing::debug!(intent_id = %intent.terms.intent_id, %rejection, "transfer not credited");
                return Ok(());
            }
        };
        for (transfer, is_final) in &verified.transfers {
            match self.apply_transfer(&intent.terms.intent_id, transfer, *is_final, "watcher").await {
                Ok(_) if *is_final => report.credited += 1,
                Ok(_) => report.seen += 1,
                Err(PaymentError::AlreadyClaimed) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One watcher pass over one chain: from the stored cursor to the chain's final block, every
    /// `Transfer` of each allow-listed token into any monitored deposit address (one log query
    /// per token, however many intents), native coins sent to them (two Multicall3 balance reads,
    /// however many intents, and the window's blocks only when a balance rose), then the
    /// transfers still confirming (final now, or reorged out), then expiries.
    pub async fn scan(&self, chain_name: &str) -> Result<ScanReport, PaymentError> {
        let chain = self.chains.get(chain_name).ok_or_else(|| PaymentError::Config(format!("chain `{chain_name}` is not configured")))?;
        let reader = self.reader(chain.chain_id)?;
        let now = self.clock.now_ms();
        let intents = self.intents.monitored_intents(chain.chain_id, now).await?;
        if intents.is_empty() {
            // Nothing to watch: no RPC call at all. The cursor stays, and the next intent's
            // creation block bounds the next scan anyway.
            return Ok(ScanReport { chain_id: chain.chain_id, ..ScanReport::default() });
        }
        let head = reader.head().await?;
        let final_block = head.final_block(chain.finality).unwrap_or(0);
        let mut report = ScanReport { chain_id: chain.chain_id, intents: intents.len(), ..ScanReport::default() };
        // Transfers in or before an intent's creation block never count, so the scan starts after
        // the cursor and after the oldest monitored intent's creation, whichever is later, and
        // takes at most MAX_BLOCKS_PER_SCAN blocks (the next tick goes on from there).
        let cursor = self.intents.cursor(chain.chain_id).await?;
        let oldest = intents.iter().map(|i| i.terms.created_block).min().unwrap_or(final_block);
        let from = cursor.unwrap_or(0).max(oldest) + 1;
        let final_block = final_block.min(from.saturating_add(MAX_BLOCKS_PER_SCAN - 1));
        report.from_block = from;
        report.to_block = final_block;
        // Block hashes and times, read once per block.
        let mut blocks: BTreeMap<u64, Option<(B256, i64)>> = BTreeMap::new();
        if from <= final_block && !intents.is_empty() {
            let mut by_token: BTreeMap<Address, Vec<&Intent>> = BTreeMap::new();
            for i in &intents {
                if let AssetKind::Erc20(token) = i.terms.asset_kind {
                    by_token.entry(token).or_default().push(i);
                }
            }
            for (token, group) in &by_token {
                let addresses: Vec<Address> = group.iter().map(|i| i.terms.deposit_address).collect();
                for log in reader.transfer_logs(*token, &addresses, from, final_block).await? {
                    let Some(intent) = group.iter().find(|i| crate::verify::decode_transfer(&log).is_some_and(|(_, to, _)| to == i.terms.deposit_address))
                    else {
                        continue;
                    };
                    // Under the `finalized` policy a log at or below the finalized block can't be
                    // reorged, and a node that puts the block's time in the log saves reading the
                    // block; otherwise the block is read to check the hash is still canonical.
                    let block = match (chain.finality, log.block_time_ms) {
                        (crate::chains::Finality::Finalized, Some(t)) => Some((log.block_hash, t)),
                        _ => Some(required_block(reader, &mut blocks, log.block_number).await?),
                    };
                    let ctx = Context { head, finality: chain.finality, canonical_hash: block.map(|b| b.0), block_time_ms: block.map_or(0, |b| b.1) };
                    self.credit_verified(intent, verify_log(&intent.terms, &log, &ctx), &mut report).await?;
                }
            }
        }
        // Native coins leave no log. One Multicall3 read of every monitored native deposit address
        // at each end of the window finds those whose balance rose; only then are the window's
        // blocks read for the transactions that sent the coin there, each verified like a hint.
        let natives: Vec<&Intent> = intents.iter().filter(|i| i.terms.asset_kind == AssetKind::Native).collect();
        if from <= final_block && !natives.is_empty() {
            let addresses: Vec<Address> = natives.iter().map(|i| i.terms.deposit_address).collect();
            let after = reader.native_balances(&addresses, final_block).await?;
            let before = match reader.native_balances(&addresses, from - 1).await {
                Ok(b) => Some(b),
                // A node that keeps no state that old (a full node keeps about 128 blocks):
                // compare with what the intents already account for instead.
                Err(ChainError::Rpc(why)) => {
                    tracing::warn!(chain = chain_name, block = from - 1, %why, "no balances at the window's start; comparing with what is credited");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let rose: Vec<Address> = natives
                .iter()
                .enumerate()
                .filter(|(k, i)| match &before {
                    Some(before) => after[*k] > before[*k],
                    None => after[*k] > i.credited.iter().chain(&i.pending).fold(U256::ZERO, |sum, t| sum.saturating_add(t.amount)),
                })
                .map(|(_, i)| i.terms.deposit_address)
                .collect();
            let window = if rose.is_empty() { from..=from - 1 } else { from..=final_block };
            report.native_blocks_read = window.clone().count();
            for number in window {
                // The block just read is the canonical one at its height: each transaction in it
                // is judged against it and the scan's head, so it costs its transaction and
                // receipt only.
                let (block, transfers) = reader.value_transfers(number, &rose).await?;
                blocks.insert(number, Some(block));
                for (tx, to) in transfers {
                    let Some(intent) = natives.iter().find(|i| i.terms.deposit_address == to) else { continue };
                    let ctx = Context { head, finality: chain.finality, canonical_hash: Some(block.0), block_time_ms: block.1 };
                    let verdict = match reader.transaction(tx).await? {
                        Ok(facts) => verify_tx(&intent.terms, Some(&facts), &ctx),
                        Err(rejection) => Err(rejection),
                    };
                    self.credit_verified(intent, verdict, &mut report).await?;
                }
            }
        }
        // Transfers seen before they were final: credit them now, or drop them if their block
        // left the chain.
        for intent in &intents {
            for pending in &intent.pending {
                if pending.block_number > final_block {
                    continue;
                }
                // The node has reached this height (it is at or below the final block), so a
                // different hash means the block was replaced; no answer is an error, not a reorg.
                let canonical = required_block(reader, &mut blocks, pending.block_number).await?.0;
                if canonical == pending.block_hash {
                    match self.apply_transfer(&intent.terms.intent_id, pending, true, "watcher").await {
                        Ok(_) => report.credited += 1,
                        Err(PaymentError::AlreadyClaimed) => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    self.change(&intent.terms.intent_id, "watcher", None, |i| Ok(i.decide_dropped(&pending.key))).await?;
                    report.dropped += 1;
                }
            }
        }
        // Expiry, judged by the final block's time: everything mined before the deadline has
        // been scanned by now. Before an intent is failed, its own address is looked at once more
        // (a node that was behind, a log the range query missed): a paid order is never cancelled
        // for a read that came back short.
        let (_, final_time) = required_block(reader, &mut blocks, final_block).await?;
        for intent in intents.iter().filter(|i| i.is_open() && !i.decide_expiry(now, final_time).is_empty()) {
            let ctx_for = |block: (B256, i64)| Context { head, finality: chain.finality, canonical_hash: Some(block.0), block_time_ms: block.1 };
            match intent.terms.asset_kind {
                AssetKind::Erc20(token) => {
                    let logs = reader.transfer_logs(token, &[intent.terms.deposit_address], intent.terms.created_block + 1, final_block).await?;
                    for log in logs {
                        let block = required_block(reader, &mut blocks, log.block_number).await?;
                        if let Ok(v) = verify_log(&intent.terms, &log, &ctx_for(block)) {
                            for (transfer, is_final) in &v.transfers {
                                match self.apply_transfer(&intent.terms.intent_id, transfer, *is_final, "watcher").await {
                                    Ok(_) | Err(PaymentError::AlreadyClaimed) => {}
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                    }
                }
                AssetKind::Native => {
                    // Money at the address that neither the scan nor a hint explained (a contract
                    // passing the coin on) holds the expiry off rather than cancel a paid order.
                    let balance = reader.balance(intent.terms.deposit_address, final_block).await?;
                    if balance > intent.received {
                        tracing::warn!(intent_id = %intent.terms.intent_id, %balance, "unexplained money at a native deposit address; not expiring it");
                        continue;
                    }
                }
            }
            // Counted only when this pass ended it: another watcher (or a payment) may have got
            // there first, and then the fresh read decides nothing.
            let ended_here = std::cell::Cell::new(false);
            let changed = self
                .change(&intent.terms.intent_id, "watcher", None, |i| {
                    let events = i.decide_expiry(now, final_time);
                    ended_here.set(!events.is_empty());
                    Ok(events)
                })
                .await?;
            if ended_here.get() && !changed.is_open() {
                report.expired += 1;
            }
        }
        if final_block >= from {
            self.intents.advance_cursor(chain.chain_id, final_block).await?;
        }
        Ok(report)
    }
}

/// A block's hash and time, read from the chain once per scan.
async fn cached_block(reader: &ChainReader, blocks: &mut BTreeMap<u64, Option<(B256, i64)>>, number: u64) -> Result<Option<(B256, i64)>, ChainError> {
    if let Some(b) = blocks.get(&number) {
        return Ok(*b);
    }
    let b = reader.block(number).await?;
    blocks.insert(number, b);
    Ok(b)
}

/// A block at or below the final block: the node must have it, so no answer is an error (the
/// pass stops and the cursor stays), never a reorg.
async fn required_block(reader: &ChainReader, blocks: &mut BTreeMap<u64, Option<(B256, i64)>>, number: u64) -> Result<(B256, i64), ChainError> {
    cached_block(reader, blocks, number).await?.ok_or_else(|| ChainError::Rpc(format!("the node has no block {number} although it is final")))
}
