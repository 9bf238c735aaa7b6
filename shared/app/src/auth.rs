//! Credentials: argon2id password hashes, HS256 access tokens (jsonwebtoken), and opaque
//! refresh tokens stored only as hashes.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gocoffee_core::Role;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, ISSUER};
use crate::ports::Entropy;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens with the configured secret.
pub fn issue_access_token(config: &Config, user_id: &str, role: Role, now_ms: i64) -> Result<String, jsonwebtoken::errors::Error> {
    install_hs256();
    let iat = now_ms / 1000;
    let claims = Claims { sub: user_id.into(), role, iss: ISSUER.into(), iat, exp: iat + config.access_token_ttl_s };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&config.jwt_secret))
}

/// The caller a token names, if the token is ours, well-formed and unexpired at `now_ms`.
pub fn verify_access_token(config: &Config, token: &str, now_ms: i64) -> Option<Caller> {
    install_hs256();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    // Expiry is checked against the injected clock below, not the library's wall clock.
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&config.jwt_secret), &validation).ok()?;
    (data.claims.exp * 1000 > now_ms).then_some(Caller { user_id: data.claims.sub, role: data.claims.role })
}

pub fn hash_password(password: &str, entropy: &dyn Entropy) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// True when `password` matches the stored PHC `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Compares two secrets in time that doesn't depend on where they differ: both are hashed to
/// fixed-size digests first, and the digests are compared in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// A hash of a fixed password, checked against when an email is unknown so that a login takes
/// as long whether or not the account exists.
pub const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$AwoRGB8mLTQ7QklQV15lbA$BlW37j/rN/ulOLLzXBImAWAUlzW6UH78O7slNJ+r6qQ";

/// A new opaque refresh token and the hash to store for it.
pub fn new_refresh_token(entropy: &dyn Entropy) -> (String, String) {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// jsonwebtoken's bundled providers pull in RSA and elliptic curves; these tokens only ever use
// HS256, so a provider with just HMAC-SHA256 keeps every component small.
fn install_hs256() {
    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |alg, key| match alg {
            Algorithm::HS256 => Ok(Box::new(Hs256(new_mac(key.try_get_hmac_secret()?)?))),
            _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        },
        verifier_factory: |alg, key| match alg {
            Algorithm::HS256 => Ok(Box::new(Hs256(new_mac(key.try_get_hmac_secret()?)?))),
            _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        },
        jwk_utils: JwkUtils::new_unimplemented(),
    };
    // Already installed (by an earlier call) is the expected case.
    let _ = PROVIDER.install_default();
}

fn new_mac(secret: &[u8]) -> jsonwebtoken::errors::Result<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(secret).map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into())
}

struct Hs256(Hmac<Sha256>);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        mac.verify_slice(sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(std::cell::Cell<u8>);
    impl Entropy for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                self.0.set(self.0.get().wrapping_add(1));
                *b = self.0.get();
            }
        }
    }

    fn config() -> Config {
        Config {
            jwt_secret: b"0123456789abcdef0123456789abcdef".to_vec(),
            access_token_ttl_s: 60,
            refresh_token_ttl_s: 600,
            bootstrap_admin: None,
            public_base_url: None,
            crypto_methods: vec![("polygon".into(), "USDC".into())],
            rate_limits: crate::ratelimit::RateLimits::OFF,
        }
    }

    #[test]
    fn a_token_names_its_caller_until_it_expires() {
        let t = issue_access_token(&config(), "u1", Role::Barista, 1_000_000).expect("signs");
        assert_eq!(verify_access_token(&config(), &t, 1_000_000), Some(Caller { user_id: "u1".into(), role: Role::Barista }));
        assert_eq!(verify_access_token(&config(), &t, 1_000_000 + 61_000), None);
    }

    #[test]
    fn a_token_signed_with_another_key_or_tampered_with_is_refused() {
        let t = issue_access_token(&config(), "u1", Role::Customer, 0).expect("signs");
        let other = Config { jwt_secret: b"another-secret-another-secret-xx".to_vec(), ..config() };
        assert_eq!(verify_access_token(&other, &t, 0), None);
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"u1","role":"admin","iss":"gocoffee","iat":0,"exp":99999999999}"#);
        assert_eq!(verify_access_token(&config(), &parts.join("."), 0), None);
        assert_eq!(verify_access_token(&config(), "not.a.jwt", 0), None);
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse", &Counter(Default::default())).expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert!(!verify_password("correct horse", DECOY_HASH));
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"admin password", b"admin password"));
        assert!(!constant_time_eq(b"admin password", b"admin passwore"));
        assert!(!constant_time_eq(b"admin password", b"admin"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn refresh_tokens_are_stored_as_hashes() {
        let (token, hash) = new_refresh_token(&Counter(Default::default()));
        assert_eq!(hash, token_hash(&token));
        assert_ne!(hash, token);
        assert_eq!(hash.len(), 64);
    }
}

#[cfg(test)]
mod decoy {
    #[test]
    fn the_decoy_hash_is_a_real_argon2id_hash_with_default_cost() {
        let parsed = argon2::password_hash::PasswordHash::new(super::DECOY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = argon2::Params::try_from(&parsed).expect("params");
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (argon2::Params::DEFAULT_M_COST, argon2::Params::DEFAULT_T_COST, argon2::Params::DEFAULT_P_COST)
        );
    }
}
