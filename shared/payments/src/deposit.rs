//! Deposit addresses: one per intent, derived from the café's extended public key. Functions hold
//! only the xpub; the private keys that move the money stay with the café's wallet.
//!
//! The configured `payment_xpub` is the account-level key of BIP-44's Ethereum path
//! (`m/44'/60'/0'`, what hardware wallets export). Intent number `i` gets the address at
//! `m/44'/60'/0'/0/i`, the same address the wallet shows as its `i`-th receiving address, on every
//! EVM chain. Indexes come from a counter the store only ever increments, so none is reused.

use alloy_primitives::Address;
use bip32::{ChildNumber, XPub};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepositError {
    #[error("payment_xpub is not an extended public key: {0}")]
    BadXpub(String),
    #[error("index {0} is past the last non-hardened child")]
    IndexOutOfRange(u64),
}

/// The external (receiving) chain under the configured account key.
#[derive(Clone)]
pub struct DepositKeys {
    receiving: XPub,
}

impl std::fmt::Debug for DepositKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DepositKeys(..)")
    }
}

impl DepositKeys {
    /// From an account xpub (`xpub...`; other version bytes such as `tpub` are accepted too).
    pub fn parse(xpub: &str) -> Result<DepositKeys, DepositError> {
        let account: XPub = xpub.trim().parse().map_err(|e: bip32::Error| DepositError::BadXpub(e.to_string()))?;
        let receiving = account.derive_child(ChildNumber(0)).map_err(|e| DepositError::BadXpub(e.to_string()))?;
        Ok(DepositKeys { receiving })
    }

    /// The deposit address of intent number `index`.
    pub fn address(&self, index: u64) -> Result<Address, DepositError> {
        let n = u32::try_from(index).ok().filter(|n| *n < ChildNumber::HARDENED_FLAG).ok_or(DepositError::IndexOutOfRange(index))?;
        let child = self.receiving.derive_child(ChildNumber(n)).map_err(|_| DepositError::IndexOutOfRange(index))?;
        Ok(Address::from_public_key(child.public_key()))
    }
}

#[cfg(test)]
mod tests {
    use bip32::{DerivationPath, Prefix, XPrv};

    use super::*;

    /// BIP-32 test vector 1: public derivation of `m/0'/1/2'/2` to its child 1000000000.
    #[test]
    fn public_derivation_matches_the_bip32_test_vector() {
        let parent: XPub =
            "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV".parse().expect("xpub");
        let child = parent.derive_child(ChildNumber(1_000_000_000)).expect("child");
        assert_eq!(
            child.to_string(Prefix::XPUB),
            "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy"
        );
    }

    /// The addresses from the xpub are the ones the wallet (holding the private key) derives.
    #[test]
    fn addresses_match_the_wallets_own_derivation() {
        let seed = [7u8; 64];
        let account = XPrv::derive_from_path(seed, &"m/44'/60'/0'".parse::<DerivationPath>().expect("path")).expect("account");
        let keys = DepositKeys::parse(&account.public_key().to_string(Prefix::XPUB)).expect("xpub");
        for i in [0u64, 1, 41] {
            let path: DerivationPath = format!("m/44'/60'/0'/0/{i}").parse().expect("path");
            let private = XPrv::derive_from_path(seed, &path).expect("derive");
            let expected = Address::from_public_key(private.public_key().public_key());
            assert_eq!(keys.address(i), Ok(expected), "index {i}");
        }
        assert_ne!(keys.address(0), keys.address(1));
        assert_eq!(keys.address(1 << 31), Err(DepositError::IndexOutOfRange(1 << 31)));
        assert!(matches!(DepositKeys::parse("xpub-nope"), Err(DepositError::BadXpub(_))));
    }
}
