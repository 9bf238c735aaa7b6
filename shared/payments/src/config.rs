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
        let d = Settings::default();
        let seconds = |name: &str, default_ms: i64, max: u64| -> Result<i64, String> { Ok(number(name, (default_ms / 1000) as u64, max)? as i64 * 1000) };
        let settings = Settings {
            expiry_ms: seconds("payment_expiry_seconds", d.expiry_ms, 86_400)?,
            monitor_ms: seconds("payment_monitor_seconds", d.monitor_ms, 30 * 86_400)?,
            max_quote_age_ms: seconds("payment_max_price_age_seconds", d.max_quote_age_ms, 86_400)?,
            rpc_timeout: Duration::from_millis(number("payment_rpc_timeout_ms", d.rpc_timeout.as_millis() as u64, 60_000)?),
        };
        if settings.monitor_ms < settings.expiry_ms {
            return Err("payment_monitor_seconds must be at least payment_expiry_seconds".into());
        }
        Ok(PaymentConfig { chains, keys, settings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_take_the_documented_defaults_and_bad_ones_are_refused() {
        let c = PaymentConfig::from_lookup(|_| None).expect("defaults");
        assert_eq!((c.settings.expiry_ms, c.settings.monitor_ms, c.settings.max_quote_age_ms), (900_000, 86_400_000, 3_900_000));
        assert_eq!(c.settings.rpc_timeout, Duration::from_secs(5));
        assert!(c.keys.is_none() && c.chains == Chains::defaults());
        let monitor_too_short = |name: &str| match name {
            "payment_expiry_seconds" => Some("600".to_owned()),
            "payment_monitor_seconds" => Some("60".to_owned()),
            _ => None,
        };
        assert!(PaymentConfig::from_lookup(monitor_too_short).is_err());
        assert!(PaymentConfig::from_lookup(|n| (n == "payment_xpub").then(|| "nope".to_owned())).is_err());
    }
}
