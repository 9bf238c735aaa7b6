//! The AWS shell: adapters for the ports on DynamoDB, Kinesis, SQS and API Gateway's management
//! API, and the Lambda entry helpers every function's `main` calls. Clients and config are
//! created once per container.

pub mod analytics;
pub mod dynamo;
pub mod kinesis;
pub mod lambda;
pub mod live;
pub mod otlp;
pub mod ratelimit;
pub mod s3;
pub mod sqs;
pub mod tokens;

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::TimeoutConfig;

pub use crate::dynamo::DynamoStore;
pub use crate::kinesis::{DynamoOutboxRelay, KinesisPublisher};
pub use crate::s3::S3Images;
pub use crate::sqs::{SqsDeadLetters, SqsKitchenQueue};

/// What Lambda's environment says about reaching AWS: `AWS_REGION`, the execution role's
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL` when
/// set (moto, LocalStack), and `AWS_CA_BUNDLE` (a PEM file) for an endpoint whose certificate
/// isn't from Amazon Trust Services.
#[derive(Clone, Debug)]
pub struct AwsEnvironment {
    pub region: String,
    pub credentials: Credentials,
    pub endpoint: Option<String>,
    /// The certificates of `AWS_CA_BUNDLE`, trusted beside Amazon's.
    pub ca_bundle: Option<Vec<u8>>,
}

/// The roots every AWS endpoint's certificate chains to (Amazon Trust Services). Trusting these
/// instead of the system's store keeps a cold start from reading and parsing every certificate
/// file of the system (about 150 here): 2.6 ms of a 5.7 ms init, measured with `lambda-init`.
const AMAZON_TRUST_SERVICES: &str = include_str!("amazon-trust-services.pem");

impl AwsEnvironment {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<AwsEnvironment, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).ok_or("AWS_REGION is not set")?;
        let access_key = get("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?;
        let secret_key = get("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY is not set")?;
        let credentials = Credentials::new(access_key, secret_key, get("AWS_SESSION_TOKEN"), None, "lambda-environment");
        let ca_bundle = get("AWS_CA_BUNDLE").map(|path| read_ca_bundle(&path)).transpose()?;
        Ok(AwsEnvironment { region, credentials, endpoint: get("AWS_ENDPOINT_URL"), ca_bundle })
    }

    /// The SDK configuration for this environment. Without aws-config: no credential chain, no
    /// profile files, no IMDS, which keeps init fast and the binary small.
    pub fn sdk_config(&self) -> SdkConfig {
        let mut trust = TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES.as_bytes());
        if let Some(bundle) = &self.ca_bundle {
            trust = trust.with_pem_certificate(bundle.clone());
        }
        let tls = TlsContext::builder().with_trust_store(trust).build().expect("a TLS context without server names always builds");
        let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).tls_context(tls).build_https();
        let mut builder = SdkConfig::builder()
            .region(Region::new(self.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(self.credentials.clone()))
            .http_client(http)
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(2)).operation_attempt_timeout(Duration::from_secs(10)).build())
            .behavior_version(BehaviorVersion::latest());
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }
}

/// The certificates of a PEM bundle, checked now: the HTTP client would panic on a bad one.
fn read_ca_bundle(path: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("AWS_CA_BUNDLE {path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| format!("AWS_CA_BUNDLE {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("AWS_CA_BUNDLE {path}: no certificate in it"));
    }
    Ok(pem)
}

/// Every client a function may use, sharing one HTTP connection pool.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Clients {
        Clients { dynamodb: aws_sdk_dynamodb::Client::new(config), kinesis: aws_sdk_kinesis::Client::new(config), sqs: aws_sdk_sqs::Client::new(config) }
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    fn env(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut vars: Vec<(String, String)> = [("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_embedded_roots_are_amazon_trust_services_five() {
        let certs = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES.as_bytes()).collect::<Result<Vec<_>, _>>().expect("valid PEM");
        assert_eq!(certs.len(), 5);
    }

    #[test]
    fn a_ca_bundle_is_read_and_checked_when_the_function_starts() {
        let dir = std::env::temp_dir().join(format!("gocoffee-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.pem");
        std::fs::write(&good, AMAZON_TRUST_SERVICES).expect("write");
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").expect("write");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");

        assert_eq!(AwsEnvironment::from_lookup(env(&[])).expect("no bundle").ca_bundle, None);
        let with = AwsEnvironment::from_lookup(env(&[("AWS_CA_BUNDLE", good.to_str().expect("utf-8"))])).expect("a good bundle");
        assert_eq!(with.ca_bundle.as_deref(), Some(AMAZON_TRUST_SERVICES.as_bytes()));
        let _ = with.sdk_config();
        for (path, why) in [(bad.to_str(), "bad.pem"), (empty.to_str(), "no certificate"), (Some("/nonexistent/ca.pem"), "/nonexistent/ca.pem")] {
            let err = AwsEnvironment::from_lookup(env(&[("AWS_CA_BUNDLE", path.expect("utf-8"))])).expect_err("refused");
            assert!(err.starts_with("AWS_CA_BUNDLE") && err.contains(why), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
