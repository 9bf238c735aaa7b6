//! Access token keys in KMS: identity signs with an asymmetric KMS key (`RSA_2048`,
//! `SIGN_VERIFY`), so no private key sits in any function, and every function checks tokens
//! against the keys' public halves, fetched once per container.

use std::sync::Arc;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use gocoffee_app::auth::{KeySet, VerifyingKey};
use gocoffee_app::ports::{StoreError, StoreResult, TokenKeys, TokenSigner};

/// The `kid` of a KMS key: its key id (the UUID at the end of its ARN). An alias won't do: it
/// can be pointed at another key, and a kid must name one key for good.
pub fn kid(key_id: &str) -> Result<String, String> {
    let id = key_id.rsplit_once(":key/").map_or(key_id, |(_, id)| id);
    let uuid = id.len() == 36 && id.bytes().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
    // Multi-Region keys: mrk- and 32 hex digits.
    let mrk = id.strip_prefix("mrk-").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if uuid || mrk { Ok(id.to_owned()) } else { Err(format!("`{key_id}` is not a KMS key id or key ARN (aliases can't name a signing key)")) }
}

/// The public halves of the KMS keys tokens may be signed with (the current one and any still
/// trusted after a rotation), with any configured PEM keys, fetched on first use.
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    key_ids: Vec<String>,
    configured: Option<Arc<KeySet>>,
    cache: tokio::sync::OnceCell<Arc<KeySet>>,
}

impl KmsKeys {
    pub fn new(client: aws_sdk_kms::Client, key_ids: Vec<String>, configured: Option<Arc<KeySet>>) -> Result<KmsKeys, String> {
        for id in &key_ids {
            kid(id)?;
        }
        Ok(KmsKeys { client, key_ids, configured, cache: tokio::sync::OnceCell::new() })
    }

    /// Every key's public half, asked for at once: a cold function's first token check waits
    /// for one KMS round trip, not one per key.
    async fn fetch(&self) -> StoreResult<Arc<KeySet>> {
        let mut calls = tokio::task::JoinSet::new();
        for (index, id) in self.key_ids.iter().enumerate() {
            let (client, id) = (self.client.clone(), id.clone());
            calls.spawn(async move { (index, public_key(&client, &id).await) });
        }
        let mut fetched: Vec<Option<VerifyingKey>> = vec![None; self.key_ids.len()];
        while let Some(done) = calls.join_next().await {
            let (index, key) = done.map_err(|e| StoreError::Unavailable(format!("KMS GetPublicKey: {e}")))?;
            fetched[index] = Some(key?);
        }
        let mut keys: Vec<VerifyingKey> = self.configured.as_deref().map(|set| set.keys().to_vec()).unwrap_or_default();
        keys.extend(fetched.into_iter().flatten());
        Ok(Arc::new(KeySet::new(keys)))
    }
}

/// The public half of KMS key `id`, which must sign RS256.
async fn public_key(client: &aws_sdk_kms::Client, id: &str) -> StoreResult<VerifyingKey> {
    let out =
        client.get_public_key().key_id(id).send().await.map_err(|e| StoreError::Unavailable(format!("KMS GetPublicKey {id}: {}", DisplayErrorContext(&e))))?;
    let signs_rs256 = out.signing_algorithms().contains(&SigningAlgorithmSpec::RsassaPkcs1V15Sha256);
    let der = out.public_key().filter(|_| signs_rs256).ok_or_else(|| StoreError::Unavailable(format!("KMS key {id} is no RSA signing key")))?;
    VerifyingKey::from_spki_der(der.as_ref(), kid(id).map_err(StoreError::Unavailable)?).map_err(|e| StoreError::Unavailable(format!("KMS key {id}: {e}")))
}

#[async_trait::async_trait(?Send)]
impl TokenKeys for KmsKeys {
    async fn keys(&self) -> StoreResult<Arc<KeySet>> {
        // A failure isn't cached: the next request tries again.
        self.cache.get_or_try_init(|| self.fetch()).await.cloned()
    }
}

/// Signs tokens with a KMS key: RSASSA-PKCS1-v1_5 with SHA-256 (RS256), one `Sign` call each.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Result<KmsSigner, String> {
        let kid = kid(&key_id)?;
        Ok(KmsSigner { client, key_id, kid })
    }
}

#[async_trait::async_trait(?Send)]
impl TokenSigner for KmsSigner {
    async fn kid(&self) -> StoreResult<String> {
        Ok(self.kid.clone())
    }

    async fn sign(&self, message: &[u8]) -> StoreResult<Vec<u8>> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("KMS Sign: {}", DisplayErrorContext(&e))))?;
        out.signature.map(Blob::into_inner).ok_or_else(|| StoreError::Unavailable("KMS Sign returned no signature".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::kid;

    #[test]
    fn a_kid_is_the_key_id_of_an_arn_or_id_and_never_an_alias() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(kid(id).as_deref(), Ok(id));
        assert_eq!(kid(&format!("arn:aws:kms:us-east-1:111122223333:key/{id}")).as_deref(), Ok(id));
        assert_eq!(kid("arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab").as_deref(), Ok("mrk-1234abcd12ab34cd56ef1234567890ab"));
        assert!(kid("alias/tokens").is_err());
        assert!(kid("arn:aws:kms:us-east-1:111122223333:alias/tokens").is_err());
        assert!(kid("").is_err());
    }
}
