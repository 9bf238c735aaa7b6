//! The transactional outbox's relay, one at a time: every request that writes relays afterwards,
//! so relays overlap, and a lease keeps them from publishing the same entries twice or out of
//! order. The stores implement [`LeasedOutbox`]; [`relay_leased`] is the one algorithm.

use async_trait::async_trait;

use crate::ports::{Entropy, OsEntropy, StoreResult};

/// An outbox that one relay at a time may publish, by lease: a row or item with a holder and an
/// expiry, taken and released atomically.
#[async_trait(?Send)]
pub trait LeasedOutbox {
    /// True when nothing waits to be published.
    async fn is_empty(&self) -> StoreResult<bool>;
    /// Takes (or extends) the lease for `holder`; false while another holder's is unexpired.
    async fn lease(&self, holder: &str) -> StoreResult<bool>;
    /// Gives the lease back if `holder` still has it.
    async fn release(&self, holder: &str) -> StoreResult<()>;
    /// Publishes pending entries in order (each order's in version order), a bounded amount,
    /// renewing the lease between batches and stopping if it was lost; how many went out.
    async fn publish_pending(&self, holder: &str) -> StoreResult<usize>;
}

/// How many turns, and for how long, one relay keeps taking the lease while entries keep
/// arriving. Each turn looks again after letting go, for entries written while it held the lease
/// (their own relays found it taken and left them to it); only a relay that runs out of turns
/// under continuous writes can leave entries for the next request's relay. The relay runs before
/// its request is answered, so both are small.
const LEASE_TURNS: usize = 4;
const RELAY_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes what `outbox` holds, unless another relay is already doing so. The holder looks
/// again after giving the lease back, so what was committed meanwhile is not left behind; a
/// relay that dies holding the lease delays the outbox until the lease expires. Returns how many
/// entries this relay published.
pub async fn relay_leased(outbox: &dyn LeasedOutbox) -> StoreResult<usize> {
    if outbox.is_empty().await? {
        return Ok(0);
    }
    let holder = format!("{:032x}", OsEntropy.u128());
    let started = std::time::Instant::now();
    let mut sent = 0;
    for _ in 0..LEASE_TURNS {
        if started.elapsed() >= RELAY_BUDGET {
            break;
        }
        if !outbox.lease(&holder).await? {
            // Another relay is publishing; it looks again after it lets go.
            return Ok(sent);
        }
        let published = outbox.publish_pending(&holder).await;
        // An expired lease frees itself, so a failed release only delays the next relay.
        if let Err(e) = outbox.release(&holder).await {
            tracing::warn!(error = %e, "releasing the outbox lease failed");
        }
        sent += published?;
        if outbox.is_empty().await? {
            break;
        }
    }
    Ok(sent)
}
