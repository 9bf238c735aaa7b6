//! Configuration every shell builds the same way, from whatever lookup its platform has
//! (Spin variables, Lambda environment, host flags).

use gocoffee_core::{Email, Password};

use crate::ratelimit::RateLimits;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{0}` is not set")]
    Missing(&'static str),
    #[error("`{name}` is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

#[derive(Clone)]
pub struct Config {
    /// HMAC key for signed picture URLs. At least 32 bytes. (Access tokens are RS256: see
    /// `token_public_keys`.)
    pub jwt_secret: Vec<u8>,
    /// The `iss` of access tokens (`token_issuer`): unset, the platform's (the API's URL on AWS)
    /// or [`crate::auth::DEFAULT_ISSUER`].
    pub token_issuer: Option<String>,
    /// The `aud` of access tokens (`token_audience`).
    pub token_audience: String,
    /// The public keys access tokens are checked against (`token_public_keys`: PEM blocks, the
    /// current key's and any retired one's). Unset where the platform supplies them (KMS on AWS).
    pub token_public_keys: Option<std::sync::Arc<crate::auth::KeySet>>,
    pub access_token_ttl_s: i64,
    pub refresh_token_ttl_s: i64,
    /// The first admin: created on its first login when no account has that email yet, since
    /// nobody can register as staff.
    pub bootstrap_admin: Option<(Email, Password)>,
    /// Where clients reach the API (`https://api.example.com`), for the absolute URLs it hands
    /// out (menu pictures). Without it, URLs are absolute only for a request to a loopback
    /// host and relative otherwise: never built from another request's `Host`.
    pub public_base_url: Option<String>,
    /// The crypto payment methods orders may choose, `(chain, asset)`: none unless a
    /// `payment_xpub` is configured; those of `payment_chains`, or of the default chains.
    pub crypto_methods: Vec<(String, String)>,
    /// The gateway's per-client limits (`rate_limits`: unset keeps the defaults).
    pub rate_limits: RateLimits,
    /// Where clients open live status's WebSocket (`live_socket_url`: the host's
    /// `/api/v1/live/socket`, the WebSocket API's `wss://` URL on AWS), handed out with tickets.
    /// Unset where the platform keeps no sockets (Fermyon).
    pub live_socket_url: Option<String>,
}

/// The `(chain, asset)` pairs of the default chains (`gocoffee_payments::chains::Chains::defaults`,
/// whose tests hold this list to them).
pub const DEFAULT_CRYPTO_METHODS: &[(&str, &str)] = &[
    ("arbitrum", "ETH"),
    ("arbitrum", "USDC"),
    ("arbitrum", "USDT"),
    ("bsc", "BNB"),
    ("bsc", "USDC"),
    ("bsc", "USDT"),
    ("ethereum", "ETH"),
    ("ethereum", "USDC"),
    ("ethereum", "USDT"),
    ("polygon", "POL"),
    ("polygon", "USDC"),
    ("polygon", "USDT"),
];

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("access_token_ttl_s", &self.access_token_ttl_s)
            .field("refresh_token_ttl_s", &self.refresh_token_ttl_s)
            .field("bootstrap_admin", &self.bootstrap_admin.as_ref().map(|(e, _)| e))
            .field("public_base_url", &self.public_base_url)
            .field("token_issuer", &self.token_issuer)
            .field("token_audience", &self.token_audience)
            .field("token_public_keys", &self.token_public_keys)
            .field("rate_limits", &self.rate_limits)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Names of the variables [`Config::from_lookup`] reads.
    pub const VARIABLES: [&'static str; 13] = [
        "jwt_secret",
        "token_issuer",
        "token_audience",
        "token_public_keys",
        "access_token_ttl_seconds",
        "refresh_token_ttl_seconds",
        "admin_email",
        "admin_password",
        "public_base_url",
        "payment_xpub",
        "payment_chains",
        "rate_limits",
        "live_socket_url",
    ];

    /// Builds the config from a lookup of variable names (lower snake case). Empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&'static str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let jwt_secret = get("jwt_secret").ok_or(ConfigError::Missing("jwt_secret"))?;
        if jwt_secret.len() < 32 {
            return Err(ConfigError::Invalid { name: "jwt_secret", why: "use at least 32 bytes".into() });
        }
        let seconds = |name, default: i64| -> Result<i64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=31_536_000).contains(n))
                    .ok_or(ConfigError::Invalid { name, why: "expected a number of seconds between 1 and 31536000".into() }),
            }
        };
        let bootstrap_admin = match (get("admin_email"), get("admin_password")) {
            (Some(email), Some(password)) => Some((
                Email::parse(&email).map_err(|e| ConfigError::Invalid { name: "admin_email", why: e.to_string() })?,
                Password::parse(&password).map_err(|e| ConfigError::Invalid { name: "admin_password", why: e.to_string() })?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Missing("admin_password")),
            (None, Some(_)) => return Err(ConfigError::Missing("admin_email")),
        };
        let public_base_url = get("public_base_url").map(|url| parse_base_url(&url)).transpose()?;
        let crypto_methods = match (get("payment_xpub"), get("payment_chains")) {
            (None, _) => Vec::new(),
            (Some(_), None) => DEFAULT_CRYPTO_METHODS.iter().map(|(c, a)| (c.to_string(), a.to_string())).collect(),
            (Some(_), Some(json)) => crypto_methods(&json)?,
        };
        let token_public_keys = get("token_public_keys")
            .map(|pems| crate::auth::KeySet::from_pems(&pems).map_err(|why| ConfigError::Invalid { name: "token_public_keys", why }))
            .transpose()?
            .map(std::sync::Arc::new);
        let rate_limits = get("rate_limits").map_or(Ok(RateLimits::default()), |text| RateLimits::parse(&text))?;
        Ok(Config {
            live_socket_url: get("live_socket_url").map(|url| url.trim().to_owned()),
            rate_limits,
            jwt_secret: jwt_secret.into_bytes(),
            token_issuer: get("token_issuer").map(|v| v.trim().to_owned()),
            token_audience: get("token_audience").map_or_else(|| crate::auth::DEFAULT_AUDIENCE.to_owned(), |v| v.trim().to_owned()),
            token_public_keys,
            access_token_ttl_s: seconds("access_token_ttl_seconds", 900)?,
            refresh_token_ttl_s: seconds("refresh_token_ttl_seconds", 30 * 24 * 3600)?,
            bootstrap_admin,
            public_base_url,
            crypto_methods,
        })
    }

    /// Whether orders may be paid with `asset` on `chain` here.
    pub fn accepts_crypto(&self, chain: &str, asset: &str) -> bool {
        self.crypto_methods.iter().any(|(c, a)| c == chain && a == asset)
    }
}

/// The chain and asset names of a `payment_chains` document (the payment service checks the
/// rest of it).
fn crypto_methods(json: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid { name: "payment_chains", why };
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let chains = doc.as_object().ok_or_else(|| invalid("expected an object of chains by name".into()))?;
    let mut methods = Vec::new();
    for (chain, c) in chains {
        let assets = c.get("assets").and_then(|a| a.as_object()).ok_or_else(|| invalid(format!("chain `{chain}` has no assets")))?;
        methods.extend(assets.keys().map(|a| (chain.clone(), a.clone())));
    }
    Ok(methods)
}

/// An origin (`scheme://host[:port]`), with an optional path prefix, without a trailing slash.
fn parse_base_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let valid = url
        .parse::<http::Uri>()
        .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some_and(|a| !a.host().is_empty()) && uri.query().is_none());
    if valid && !url.contains('#') {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::Invalid {
            name: "public_base_url",
            why: "use an http:// or https:// URL: scheme://host[:port][/path], with no query or fragment".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&'static str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_short_or_missing_secret_is_refused() {
        assert_eq!(Config::from_lookup(lookup(&[])).map(|_| ()), Err(ConfigError::Missing("jwt_secret")));
        assert!(matches!(Config::from_lookup(lookup(&[("jwt_secret", "short")])), Err(ConfigError::Invalid { name: "jwt_secret", .. })));
    }

    #[test]
    fn defaults_apply_and_the_admin_needs_both_halves() {
        let secret = ("jwt_secret", "0123456789abcdef0123456789abcdef");
        let c = Config::from_lookup(lookup(&[secret])).expect("valid");
        assert_eq!((c.access_token_ttl_s, c.bootstrap_admin.is_none()), (900, true));
        assert_eq!(Config::from_lookup(lookup(&[secret, ("admin_email", "a@b.co")])).map(|_| ()), Err(ConfigError::Missing("admin_password")));
        let c = Config::from_lookup(lookup(&[secret, ("admin_email", "Boss@Shop.co"), ("admin_password", "long enough pw")])).expect("valid");
        assert_eq!(c.bootstrap_admin.map(|(e, _)| e.as_str().to_owned()), Some("boss@shop.co".into()));
        assert!(!format!("{:?}", Config::from_lookup(lookup(&[secret])).expect("valid")).contains("0123"));
    }

    #[test]
    fn token_settings_default_and_bad_public_keys_are_refused_at_start_up() {
        let secret = ("jwt_secret", "0123456789abcdef0123456789abcdef");
        let c = Config::from_lookup(lookup(&[secret])).expect("valid");
        assert_eq!((c.token_issuer, c.token_audience.as_str(), c.token_public_keys), (None, crate::auth::DEFAULT_AUDIENCE, None));
        let keys = concat!(include_str!("../tests/keys/current.pub.pem"), include_str!("../tests/keys/retired.pub.pem"));
        let c = Config::from_lookup(lookup(&[secret, ("token_public_keys", keys), ("token_issuer", " https://api.example "), ("token_audience", "cafe")]))
            .expect("valid");
        assert_eq!(
            (c.token_public_keys.map(|k| k.keys().len()), c.token_issuer.as_deref(), c.token_audience.as_str()),
            (Some(2), Some("https://api.example"), "cafe")
        );
        for bad in ["not a key", include_str!("../tests/keys/current.pem"), include_str!("../tests/keys/small.pub.pem")] {
            assert!(matches!(Config::from_lookup(lookup(&[secret, ("token_public_keys", bad)])), Err(ConfigError::Invalid { name: "token_public_keys", .. })));
        }
    }

    #[test]
    fn the_public_base_url_is_an_origin_without_a_trailing_slash() {
        let secret = ("jwt_secret", "0123456789abcdef0123456789abcdef");
        let base = |url: &str| Config::from_lookup(lookup(&[secret, ("public_base_url", url)])).map(|c| c.public_base_url);
        assert_eq!(base("https://coffee.example/"), Ok(Some("https://coffee.example".into())));
        assert_eq!(base("http://10.0.0.5:3000/shop"), Ok(Some("http://10.0.0.5:3000/shop".into())));
        assert_eq!(base(""), Ok(None));
        for bad in ["coffee.example", "ftp://coffee.example", "https://", "https://a.example/?x=1", "https://a b.example"] {
            assert!(matches!(base(bad), Err(ConfigError::Invalid { name: "public_base_url", .. })), "{bad}");
        }
    }
}
