//! Chains and assets are deployment configuration: which EVM chains the café takes money on,
//! where their RPC endpoints are, when a block counts as final, and which coins and tokens are
//! allow-listed. [`Chains::defaults`] writes down Ethereum, Polygon PoS, BNB Smart Chain and
//! Arbitrum One; a deployment replaces them with the `payment_chains` variable (JSON, the same
//! shape as [`Chains::to_json`] prints).

use std::collections::BTreeMap;

use alloy_primitives::{Address, address};
use serde::{Deserialize, Serialize};

/// When a block counts as final on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finality {
    /// The node's `finalized` block tag (Ethereum's Casper finality; on Polygon PoS its
    /// milestones; on BNB Smart Chain fast finality; on Arbitrum One batches final on L1).
    Finalized,
    /// A block with at least this many blocks on top of it, itself included (1 = mined).
    Confirmations(u64),
}

/// What an asset is on its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// The chain's own coin (ETH, POL, BNB), moved as a transaction's value.
    Native,
    /// An ERC-20 token at this contract, moved by its `Transfer` events.
    Erc20(Address),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    #[serde(flatten)]
    pub kind: AssetKind,
    /// Base units per whole coin are `10^decimals`.
    pub decimals: u8,
    /// A US-dollar stablecoin: one whole token pays one dollar. Anything else is priced through
    /// the price port when an intent is made.
    #[serde(default)]
    pub usd_pegged: bool,
    /// A Chainlink-style USD price feed on the same chain (`latestRoundData`, `decimals`): how
    /// a coin that isn't a stablecoin is priced when an intent is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_feed: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    pub chain_id: u64,
    /// Tried in order; a failing endpoint is skipped while its circuit is open.
    pub rpc_urls: Vec<String>,
    pub finality: Finality,
    /// Allow-listed assets by symbol (`ETH`, `USDC`).
    pub assets: BTreeMap<String, Asset>,
}

impl Chain {
    pub fn asset(&self, symbol: &str) -> Option<&Asset> {
        self.assets.get(symbol)
    }

    /// The asset moved by a `Transfer` event from `contract`, if it is allow-listed here.
    pub fn token_at(&self, contract: Address) -> Option<(&str, &Asset)> {
        self.assets.iter().find(|(_, a)| a.kind == AssetKind::Erc20(contract)).map(|(s, a)| (s.as_str(), a))
    }

    pub fn native(&self) -> Option<(&str, &Asset)> {
        self.assets.iter().find(|(_, a)| a.kind == AssetKind::Native).map(|(s, a)| (s.as_str(), a))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainsError {
    #[error("payment_chains is not valid JSON for chains: {0}")]
    Json(String),
    #[error("chain `{0}`: {1}")]
    Invalid(String, String),
}

/// The configured chains by name (`ethereum`, `polygon`, `bsc`, `arbitrum`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Chains(pub BTreeMap<String, Chain>);

impl Chains {
    pub fn get(&self, name: &str) -> Option<&Chain> {
        self.0.get(name)
    }

    pub fn by_id(&self, chain_id: u64) -> Option<(&str, &Chain)> {
        self.0.iter().find(|(_, c)| c.chain_id == chain_id).map(|(n, c)| (n.as_str(), c))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Chain)> {
        self.0.iter().map(|(n, c)| (n.as_str(), c))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Chains from the `payment_chains` variable, checked: names and symbols are short
    /// identifiers, every chain has an RPC URL and a distinct chain id, decimals are sane, and at
    /// most one native asset per chain.
    pub fn from_json(json: &str) -> Result<Chains, ChainsError> {
        let chains: Chains = serde_json::from_str(json).map_err(|e| ChainsError::Json(e.to_string()))?;
        chains.check()?;
        Ok(chains)
    }

    fn check(&self) -> Result<(), ChainsError> {
        let ident = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let mut ids = std::collections::BTreeSet::new();
        for (name, chain) in &self.0 {
            let bad = |why: String| ChainsError::Invalid(name.clone(), why);
            if !ident(name, 32) || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad("a chain name is 1-32 lowercase letters, digits, `-` or `_`".into()));
            }
            if chain.chain_id == 0 || !ids.insert(chain.chain_id) {
                return Err(bad(format!("chain id {} is zero or used twice", chain.chain_id)));
            }
            if chain.rpc_urls.is_empty() || chain.rpc_urls.iter().any(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
                return Err(bad("needs at least one http(s) RPC URL".into()));
            }
            if chain.finality == Finality::Confirmations(0) {
                return Err(bad("confirmations start at 1 (the block that includes the transfer)".into()));
            }
            if chain.assets.is_empty() {
                return Err(bad("allow-lists no asset".into()));
            }
            if chain.assets.values().filter(|a| a.kind == AssetKind::Native).count() > 1 {
                return Err(bad("has more than one native asset".into()));
            }
            for (symbol, asset) in &chain.assets {
                if !ident(symbol, 16) {
                    return Err(bad(format!("asset symbol `{symbol}` must be 1-16 letters or digits")));
                }
                if asset.decimals > 36 || (asset.usd_pegged && asset.decimals < 2) {
                    return Err(bad(format!("{symbol}: {} decimals is out of range", asset.decimals)));
                }
                if !asset.usd_pegged && asset.price_feed.is_none() {
                    return Err(bad(format!("{symbol} is not a dollar stablecoin, so it needs a price_feed")));
                }
                if let AssetKind::Erc20(contract) = asset.kind
                    && (contract == Address::ZERO || chain.assets.values().filter(|a| a.kind == AssetKind::Erc20(contract)).count() > 1)
                {
                    return Err(bad(format!("{symbol}: the token contract is zero or listed twice")));
                }
            }
        }
        Ok(())
    }

    /// The written-down defaults: the four chains with their native coin and the two dollar
    /// stablecoins the café takes there (the issuers' canonical contracts, not bridged copies:
    /// BNB Smart Chain's Binance-Peg tokens have 18 decimals). RPC URLs are public endpoints,
    /// fine for trying it out; a deployment sets its own in `payment_chains`.
    pub fn defaults() -> Chains {
        let stable = |contract: Address, decimals: u8| Asset { kind: AssetKind::Erc20(contract), decimals, usd_pegged: true, price_feed: None };
        // Chainlink's USD feeds for each native coin on its own chain.
        let native = |feed: Address| Asset { kind: AssetKind::Native, decimals: 18, usd_pegged: false, price_feed: Some(feed) };
        let chain = |chain_id: u64, rpc: &str, assets: Vec<(&str, Asset)>| Chain {
            chain_id,
            rpc_urls: vec![rpc.to_owned()],
            finality: Finality::Finalized,
            assets: assets.into_iter().map(|(s, a)| (s.to_owned(), a)).collect(),
        };
        Chains(BTreeMap::from([
            (
                "ethereum".to_owned(),
                chain(
                    1,
                    "https://ethereum-rpc.publicnode.com",
                    vec![
                        ("ETH", native(address!("0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419"))),
                        ("USDC", stable(address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"), 6)),
                        ("USDT", stable(address!("0xdAC17F958D2ee523a2206206994597C13D831ec7"), 6)),
                    ],
                ),
            ),
            (
                "polygon".to_owned(),
                chain(
                    137,
                    "https://polygon-bor-rpc.publicnode.com",
                    vec![
                        ("POL", native(address!("0xAB594600376Ec9fD91F8e885dADF0CE036862dE0"))),
                        ("USDC", stable(address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"), 6)),
                        ("USDT", stable(address!("0xc2132D05D31c914a87C6611C10748AEb04B58e8F"), 6)),
                    ],
                ),
            ),
            (
                "bsc".to_owned(),
                chain(
                    56,
                    "https://bsc-rpc.publicnode.com",
                    vec![
                        ("BNB", native(address!("0x0567F2323251f0Aab15c8dFb1967E4e8A7D42aeE"))),
                        ("USDC", stable(address!("0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"), 18)),
                        ("USDT", stable(address!("0x55d398326f99059fF775485246999027B3197955"), 18)),
                    ],
                ),
            ),
            (
                "arbitrum".to_owned(),
                chain(
                    42161,
                    "https://arbitrum-one-rpc.publicnode.com",
                    vec![
                        ("ETH", native(address!("0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612"))),
                        ("USDC", stable(address!("0xaf88d065e77c8cC2239327C5EDb3A432268e5831"), 6)),
                        ("USDT", stable(address!("0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9"), 6)),
                    ],
                ),
            ),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_round_trip_through_the_variable() {
        let d = Chains::defaults();
        d.check().expect("defaults are valid");
        assert_eq!(Chains::from_json(&d.to_json()), Ok(d.clone()));
        assert_eq!(d.get("polygon").map(|c| c.chain_id), Some(137));
        assert_eq!(d.by_id(42161).map(|(n, _)| n), Some("arbitrum"));
        assert_eq!(d.get("bsc").and_then(|c| c.asset("USDT")).map(|a| a.decimals), Some(18));
    }

    #[test]
    fn the_orders_function_offers_exactly_the_default_methods() {
        let from_defaults: Vec<(String, String)> =
            Chains::defaults().iter().flat_map(|(name, c)| c.assets.keys().map(move |a| (name.to_owned(), a.clone()))).collect();
        let offered: Vec<(String, String)> = gocoffee_app::config::DEFAULT_CRYPTO_METHODS.iter().map(|(c, a)| (c.to_string(), a.to_string())).collect();
        assert_eq!(offered, from_defaults);
    }

    #[test]
    fn the_variable_reads_as_documented() {
        let json = r#"{"polygon": {"chain_id": 137, "rpc_urls": ["http://127.0.0.1:8545"], "finality": {"confirmations": 3},
            "assets": {"POL": {"native": null, "decimals": 18, "price_feed": "0xAB594600376Ec9fD91F8e885dADF0CE036862dE0"}, "USDC": {"erc20": "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "decimals": 6, "usd_pegged": true}}}}"#;
        let chains = Chains::from_json(json).expect("valid");
        let polygon = chains.get("polygon").expect("polygon");
        assert_eq!(polygon.finality, Finality::Confirmations(3));
        assert_eq!(polygon.native().map(|(s, _)| s), Some("POL"));
        assert!(polygon.asset("USDC").is_some_and(|a| a.usd_pegged));
    }

    #[test]
    fn bad_configuration_is_refused_with_the_reason() {
        let base = Chains::defaults();
        let mut dup = base.clone();
        dup.0.get_mut("bsc").expect("bsc").chain_id = 1;
        assert!(matches!(dup.check(), Err(ChainsError::Invalid(_, why)) if why.contains("used twice")));
        let mut no_rpc = base.clone();
        no_rpc.0.get_mut("ethereum").expect("eth").rpc_urls.clear();
        assert!(no_rpc.check().is_err());
        let mut zero = base.clone();
        zero.0.get_mut("ethereum").expect("eth").finality = Finality::Confirmations(0);
        assert!(zero.check().is_err());
        assert!(matches!(Chains::from_json("{\"x\": 1}"), Err(ChainsError::Json(_))));
    }
}
