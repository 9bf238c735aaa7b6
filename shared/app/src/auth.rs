//! Credentials: argon2id password hashes, RS256 access tokens that anyone can verify from the
//! published keys (`/.well-known/jwks.json`), and opaque refresh tokens stored only as hashes.
//!
//! Tokens are signed RS256 because that is what the HTTP API's JWT authorizer (and most
//! verifiers) accept. The crypto is RustCrypto's `rsa`: pure Rust, so it builds for wasip2 with no
//! C toolchain, and a component that only verifies links only the public-key half.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gocoffee_core::Role;
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtVerifier};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{Entropy, StoreError, StoreResult, TokenSigner};

/// The `iss` of tokens where no `token_issuer` is configured and the platform names none.
pub const DEFAULT_ISSUER: &str = "gocoffee";
/// The `aud` of tokens where no `token_audience` is configured.
pub const DEFAULT_AUDIENCE: &str = "gocoffee-api";
/// How early a token is taken before its `nbf`: the clocks of the function that signed it and the
/// one checking it may disagree by this much.
const CLOCK_SKEW_S: i64 = 30;
/// RSA moduli this small or smaller are refused, in keys to sign with and keys to trust alike.
const MIN_RSA_BITS: usize = 2048;

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
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Who issues tokens and for whom: what a token must name besides carrying a good signature.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
}

/// One public key tokens may be signed with, as `/.well-known/jwks.json` lists it.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("bits", &(self.n.len() * 8)).finish()
    }
}

impl VerifyingKey {
    /// A PEM public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`), named by its RFC 7638
    /// thumbprint.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let key =
            RsaPublicKey::from_public_key_pem(pem).or_else(|_| RsaPublicKey::from_pkcs1_pem(pem)).map_err(|e| format!("not an RSA public key in PEM: {e}"))?;
        Self::from_rsa(&key, None)
    }

    /// A DER SubjectPublicKeyInfo (what KMS's GetPublicKey returns), named `kid`.
    pub fn from_spki_der(der: &[u8], kid: String) -> Result<Self, String> {
        let key = RsaPublicKey::from_public_key_der(der).map_err(|e| format!("not an RSA public key: {e}"))?;
        Self::from_rsa(&key, Some(kid))
    }

    fn from_rsa(key: &RsaPublicKey, kid: Option<String>) -> Result<Self, String> {
        if key.size() * 8 < MIN_RSA_BITS {
            return Err(format!("an RSA key of {} bits is too small: use {MIN_RSA_BITS} or more", key.size() * 8));
        }
        let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        let kid = kid.unwrap_or_else(|| thumbprint(&n, &e));
        Ok(VerifyingKey { kid, n, e })
    }

    /// The key as a PEM SubjectPublicKeyInfo (`PUBLIC KEY`), as `token_public_keys` takes it.
    pub fn to_pem(&self) -> String {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        RsaPublicKey::new_unchecked(BigUint::from_bytes_be(&self.n), BigUint::from_bytes_be(&self.e)).to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// The key as a JWK (RFC 7517), for the JWKS document.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }
}

/// The RFC 7638 thumbprint of an RSA public key: SHA-256 over its required members in
/// lexicographic order, base64url.
pub fn thumbprint(n: &[u8], e: &[u8]) -> String {
    let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, URL_SAFE_NO_PAD.encode(e), URL_SAFE_NO_PAD.encode(n));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The keys a deployment's tokens may be signed with: the current one and any retired while tokens
/// it signed may still be live. Rotating is adding the new key here before it signs, and removing
/// the old one once its last tokens have expired (the access token lifetime after it stopped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(Vec<VerifyingKey>);

impl KeySet {
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        KeySet(keys)
    }

    /// Every PEM public key in `text`: one or more blocks, as the `token_public_keys` variable
    /// holds them.
    pub fn from_pems(text: &str) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block = &rest[start..];
            let end = block.find("-----END ").and_then(|e| block[e + 9..].find("-----").map(|close| e + 9 + close + 5)).ok_or("a PEM block has no END line")?;
            keys.push(VerifyingKey::from_pem(&block[..end])?);
            rest = &block[end..];
        }
        if keys.is_empty() {
            return Err("no PEM public key in it".into());
        }
        Ok(KeySet(keys))
    }

    /// The RSA keys of a JWKS document (RFC 7517), as another verifier reads ours.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<KeySet, String> {
        let keys = jwks["keys"].as_array().ok_or("no `keys` array")?;
        let field = |k: &serde_json::Value, name: &str| -> Result<Vec<u8>, String> {
            let text = k[name].as_str().ok_or(format!("a key has no `{name}`"))?;
            URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("`{name}` is not base64url: {e}"))
        };
        let mut set = Vec::new();
        for k in keys.iter().filter(|k| k["kty"] == "RSA") {
            let kid = k["kid"].as_str().ok_or("a key has no `kid`")?.to_owned();
            let key = RsaPublicKey::new(BigUint::from_bytes_be(&field(k, "n")?), BigUint::from_bytes_be(&field(k, "e")?)).map_err(|e| e.to_string())?;
            set.push(VerifyingKey::from_rsa(&key, Some(kid))?);
        }
        Ok(KeySet(set))
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.0
    }

    /// The JWKS document (RFC 7517) of these keys.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.0.iter().map(VerifyingKey::jwk).collect::<Vec<_>>() })
    }
}

/// A new access token for `user_id`, signed by `signer`'s current key and naming it in `kid`.
pub async fn issue_access_token(signer: &dyn TokenSigner, audience: Audience<'_>, user_id: &str, role: Role, ttl_s: i64, now_ms: i64) -> StoreResult<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signer.kid().await?);
    let iat = now_ms.div_euclid(1000);
    let claims = Claims { sub: user_id.into(), role, iss: audience.issuer.into(), aud: audience.audience.into(), iat, nbf: iat, exp: iat + ttl_s };
    let part = |value: Result<Vec<u8>, serde_json::Error>| value.map(|json| URL_SAFE_NO_PAD.encode(json)).map_err(|e| StoreError::Unavailable(e.to_string()));
    let message = format!("{}.{}", part(serde_json::to_vec(&header))?, part(serde_json::to_vec(&claims))?);
    let signature = signer.sign(message.as_bytes()).await?;
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The caller a token names, if it is RS256-signed by one of `keys` (the one its `kid` names),
/// issued by and for `audience`, and within its `nbf`..`exp` at `now_ms`.
pub fn verify_access_token(keys: &KeySet, audience: Audience<'_>, token: &str, now_ms: i64) -> Option<Caller> {
    install_rs256();
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::RS256 {
        return None;
    }
    let key = keys.get(header.kid.as_deref()?)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[audience.issuer]);
    validation.set_audience(&[audience.audience]);
    validation.set_required_spec_claims(&["sub", "iss", "aud", "nbf", "exp"]);
    // Times are checked against the injected clock below, not the library's wall clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let decoding = DecodingKey::from_rsa_raw_components(&key.n, &key.e);
    let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation).ok()?.claims;
    let now_s = now_ms.div_euclid(1000);
    (now_ms < claims.exp.saturating_mul(1000) && claims.nbf - CLOCK_SKEW_S <= now_s).then_some(Caller { user_id: claims.sub, role: claims.role })
}

/// Signs with an RSA private key held in memory (the `token_signing_key` variable), for Spin and
/// the local host; on AWS, KMS signs instead and no private key sits in a function.
pub struct PemSigner {
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    public: VerifyingKey,
}

impl PemSigner {
    /// From a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM. Its `kid` is the RFC 7638
    /// thumbprint of its public half, as [`VerifyingKey::from_pem`] names that half.
    pub fn from_pem(pem: &str) -> Result<PemSigner, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let key =
            RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem)).map_err(|e| format!("not an RSA private key in PEM: {e}"))?;
        let public = VerifyingKey::from_rsa(&key.to_public_key(), None)?;
        Ok(PemSigner { key: rsa::pkcs1v15::SigningKey::new(key), public })
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The public half, as the key set lists it.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }
}

#[async_trait::async_trait(?Send)]
impl TokenSigner for PemSigner {
    async fn kid(&self) -> StoreResult<String> {
        Ok(self.public.kid.clone())
    }

    async fn sign(&self, message: &[u8]) -> StoreResult<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        // Blinded with fresh randomness, so the time a signature takes says nothing of the key.
        let signature = self.key.try_sign_with_rng(&mut OsRng, message).map_err(|e| StoreError::Unavailable(format!("RSA signing failed: {e}")))?;
        Ok(signature.to_vec())
    }
}

/// The operating system's randomness as `rsa` takes it (getrandom 0.3, which builds for wasip2).
struct OsRng;

impl rand_core::RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the operating system's randomness is available");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        getrandom::fill(dest).map_err(|e| rand_core::Error::new(std::io::Error::other(e.to_string())))
    }
}

impl rand_core::CryptoRng for OsRng {}

/// The keys configuration names (`token_public_keys`). Without any, checking a token is a
/// deployment fault (503), not the caller's (401).
pub struct ConfiguredKeys<'a>(pub &'a crate::Config);

#[async_trait::async_trait(?Send)]
impl crate::ports::TokenKeys for ConfiguredKeys<'_> {
    async fn keys(&self) -> StoreResult<Arc<KeySet>> {
        self.0.token_public_keys.clone().ok_or_else(|| StoreError::Unavailable("token_public_keys is not set".into()))
    }
}

/// A fixed set of verification keys.
pub struct StaticKeys(pub Arc<KeySet>);

#[async_trait::async_trait(?Send)]
impl crate::ports::TokenKeys for StaticKeys {
    async fn keys(&self) -> StoreResult<Arc<KeySet>> {
        Ok(self.0.clone())
    }
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

// jsonwebtoken's bundled providers pull in every algorithm; tokens here are only ever RS256, and
// only verified through the library (signing is above, since KMS signs asynchronously), so the
// provider verifies RS256 and nothing else.
fn install_rs256() {
    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |_, _| Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        verifier_factory: |alg, key| match (alg, key.kind()) {
            (Algorithm::RS256, jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e }) => Ok(Box::new(Rs256(rsa::pkcs1v15::VerifyingKey::new(
                RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e)).map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?,
            )))),
            _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        },
        jwk_utils: JwkUtils::new_unimplemented(),
    };
    // Already installed (by an earlier call) is the expected case.
    let _ = PROVIDER.install_default();
}

struct Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>);

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        self.0.verify(msg, &rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(|_| signature::Error::new())?).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
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

    const CURRENT: &str = include_str!("../tests/keys/current.pem");
    const CURRENT_PUB: &str = include_str!("../tests/keys/current.pub.pem");
    const RETIRED: &str = include_str!("../tests/keys/retired.pem");
    const RETIRED_PUB: &str = include_str!("../tests/keys/retired.pub.pem");
    const STRANGER: &str = include_str!("../tests/keys/stranger.pem");
    const AUD: Audience<'static> = Audience { issuer: "https://coffee.example", audience: "gocoffee-api" };
    const NOW: i64 = 1_700_000_000_000;

    fn keys() -> KeySet {
        KeySet::from_pems(&format!("{CURRENT_PUB}\n{RETIRED_PUB}")).expect("parses")
    }

    fn issue(pem: &str, audience: Audience<'_>, ttl_s: i64, now_ms: i64) -> String {
        let signer = PemSigner::from_pem(pem).expect("a private key");
        pollster::block_on(issue_access_token(&signer, audience, "u1", Role::Barista, ttl_s, now_ms)).expect("signs")
    }

    fn part(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn claims(iss: &str, aud: &str, role: &str) -> String {
        part(&format!(r#"{{"sub":"u1","role":"{role}","iss":"{iss}","aud":"{aud}","iat":1700000000,"nbf":1700000000,"exp":1700000900}}"#))
    }

    /// `header.claims` signed by `pem` as RS256, whatever the header says.
    fn signed(pem: &str, header: &str, claims: &str) -> String {
        let signer = PemSigner::from_pem(pem).expect("a private key");
        let message = format!("{}.{claims}", part(header));
        let signature = pollster::block_on(TokenSigner::sign(&signer, message.as_bytes())).expect("signs");
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn a_token_names_its_caller_from_its_nbf_until_it_expires() {
        let t = issue(CURRENT, AUD, 60, NOW);
        let caller = Some(Caller { user_id: "u1".into(), role: Role::Barista });
        assert_eq!(verify_access_token(&keys(), AUD, &t, NOW), caller);
        assert_eq!(verify_access_token(&keys(), AUD, &t, NOW + 59_999), caller);
        assert_eq!(verify_access_token(&keys(), AUD, &t, NOW + 60_000), None, "expired");
        // A verifier whose clock is behind the signer's by less than the skew allowed takes it.
        assert_eq!(verify_access_token(&keys(), AUD, &t, NOW - CLOCK_SKEW_S * 1000), caller);
        assert_eq!(verify_access_token(&keys(), AUD, &t, NOW - (CLOCK_SKEW_S + 1) * 1000), None, "not yet valid");
    }

    #[test]
    fn a_retired_key_still_verifies_its_tokens_and_a_strangers_never_does() {
        assert!(verify_access_token(&keys(), AUD, &issue(RETIRED, AUD, 60, NOW), NOW).is_some());
        let only_current = KeySet::from_pems(CURRENT_PUB).expect("parses");
        assert_eq!(verify_access_token(&only_current, AUD, &issue(RETIRED, AUD, 60, NOW), NOW), None, "removed from the set");
        assert_eq!(verify_access_token(&keys(), AUD, &issue(STRANGER, AUD, 60, NOW), NOW), None, "unknown kid");
        // A stranger's signature under a trusted kid.
        let kid = PemSigner::from_pem(CURRENT).expect("key").kid().to_owned();
        let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
        let forged = signed(STRANGER, &header, &claims(AUD.issuer, AUD.audience, "barista"));
        assert_eq!(verify_access_token(&keys(), AUD, &forged, NOW), None);
        let genuine = signed(CURRENT, &header, &claims(AUD.issuer, AUD.audience, "barista"));
        assert!(verify_access_token(&keys(), AUD, &genuine, NOW).is_some(), "the same token, signed by the right key");
    }

    #[test]
    fn the_token_attacks_are_refused() {
        let kid = PemSigner::from_pem(CURRENT).expect("key").kid().to_owned();
        let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
        let good = claims(AUD.issuer, AUD.audience, "customer");
        assert!(verify_access_token(&keys(), AUD, &signed(CURRENT, &header, &good), NOW).is_some(), "the control");
        // alg=none, with an empty signature.
        let none = format!("{}.{good}.", part(&format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#)));
        assert_eq!(verify_access_token(&keys(), AUD, &none, NOW), None);
        // HS256 keyed with the public key's PEM (key confusion).
        let hs_header = part(&format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#));
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(CURRENT_PUB.as_bytes()).expect("any key length");
        hmac::Mac::update(&mut mac, format!("{hs_header}.{good}").as_bytes());
        let hs = format!("{hs_header}.{good}.{}", URL_SAFE_NO_PAD.encode(hmac::Mac::finalize(mac).into_bytes()));
        assert_eq!(verify_access_token(&keys(), AUD, &hs, NOW), None);
        // No kid, and a kid nobody has.
        assert_eq!(verify_access_token(&keys(), AUD, &signed(CURRENT, r#"{"alg":"RS256","typ":"JWT"}"#, &good), NOW), None);
        assert_eq!(verify_access_token(&keys(), AUD, &signed(CURRENT, r#"{"alg":"RS256","kid":"nobody"}"#, &good), NOW), None);
        // Another issuer or audience, though signed by the right key.
        assert_eq!(verify_access_token(&keys(), AUD, &signed(CURRENT, &header, &claims("https://evil.example", AUD.audience, "customer")), NOW), None);
        assert_eq!(verify_access_token(&keys(), AUD, &signed(CURRENT, &header, &claims(AUD.issuer, "another-api", "customer")), NOW), None);
        // A role raised after signing.
        let token = signed(CURRENT, &header, &good);
        let admin = claims(AUD.issuer, AUD.audience, "admin");
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &admin;
        assert_eq!(verify_access_token(&keys(), AUD, &parts.join("."), NOW), None);
        assert_eq!(verify_access_token(&keys(), AUD, "not.a.jwt", NOW), None);
    }

    #[test]
    fn keys_are_named_by_their_rfc_7638_thumbprint_and_published_as_jwks() {
        // RFC 7638, section 3.1.
        let n = URL_SAFE_NO_PAD
            .decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
            .expect("base64url");
        assert_eq!(thumbprint(&n, &[1, 0, 1]), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        let signer = PemSigner::from_pem(CURRENT).expect("key");
        let set = keys();
        assert_eq!(set.keys().len(), 2);
        assert_eq!(set.keys()[0], signer.verifying_key());
        let jwks = set.jwks();
        assert_eq!(jwks["keys"][0]["kid"], signer.kid());
        assert_eq!(
            (jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["alg"].as_str(), jwks["keys"][0]["e"].as_str()),
            (Some("RSA"), Some("RS256"), Some("AQAB"))
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(jwks["keys"][0]["n"].as_str().expect("n")).expect("base64url").len(), 256);
        assert_eq!(KeySet::from_jwks(&jwks), Ok(set.clone()), "what it publishes reads back as the same keys");
        assert_eq!(set.keys()[0].to_pem().trim(), CURRENT_PUB.trim());
    }

    #[test]
    fn small_keys_private_keys_and_garbage_are_not_trusted() {
        assert!(KeySet::from_pems(include_str!("../tests/keys/small.pub.pem")).is_err_and(|e| e.contains("too small")));
        assert!(KeySet::from_pems(CURRENT).is_err(), "a private key is no public key");
        assert!(KeySet::from_pems("").is_err());
        assert!(KeySet::from_pems("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(PemSigner::from_pem(CURRENT_PUB).is_err());
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
