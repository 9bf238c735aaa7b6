//! The payment service's configuration, read the same way on every platform (Spin variables,
//! Lambda environment in upper case): `payment_xpub`, `payment_chains` (JSON; the written-down
//! defaults when unset), `payment_expiry_seconds` (900), `payment_monitor_seconds` (86400),
//! `payment_max_price_age_seconds` (3900), `payment_rpc_timeout_ms` (5000).

use std::time::Duration;

use crate::chains::Chains;
use crate::deposit::DepositKeys;
use crate::service::Settings;

pub struct PaymentConfig {
    pub chains: Chains,
    pub keys: Option<DepositKeys>,
    pub settings: Settings,
}

impl PaymentConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<PaymentConfig, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let chains = match get("payment_chains") {
            Some(json) => Chains::from_json(&json).map_err(|e| e.to_string())?,
            None => Chains::defaults(),
        };
        let keys = get("payment_xpub").map(|x| DepositKeys::parse(&x)).transpose().map_err(|e| e.to_string())?;
        let number = |name: &str, default: u64, max: u64| -> Result<u64, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u64>().ok().filter(|n| (1..=max).contains(n)).ok_or(format!("{name} must be a number from 1 to {max}")),
            }
        };
        let settings = Settings {
            expiry_ms: number("payment_expiry_seconds", 900, 86_400)? as i64 * 1000,
            monitor_ms: number("payment_monitor_seconds", 86_400, 30 * 86_400)? as i64 * 1000,
            max_quote_age_ms: number("payment_max_price_age_seconds", 3_900, 86_400)? as i64 * 1000,
            rpc_timeout: Duration::from_millis(number("payment_rpc_timeout_ms", 5_000, 60_000)?),
        };
        if settings.monitor_ms < settings.expiry_ms {
            return Err("payment_monitor_seconds must be at least payment_expiry_seconds".into());
        }
        Ok(PaymentConfig { chains, keys, settings })
    }
}
