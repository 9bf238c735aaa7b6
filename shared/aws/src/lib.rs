//! The AWS shell: adapters for the ports on DynamoDB, Kinesis and SQS, and the Lambda entry
//! helpers every function's `main` calls. Clients and config are created once per container.

pub mod analytics;
pub mod dynamo;
pub mod kinesis;
pub mod lambda;
pub mod otlp;
pub mod ratelimit;
pub mod s3;
pub mod sqs;
pub mod tokens;

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::TimeoutConfig;

pub use crate::dynamo::DynamoStore;
pub use crate::kinesis::{DynamoOutboxRelay, KinesisPublisher};
pub use crate::s3::S3Images;
pub use crate::sqs::{SqsDeadLetters, SqsKitchenQueue};

/// What Lambda's environment says about reaching AWS: `AWS_REGION`, the execution role's
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, and `AWS_ENDPOINT_URL`
/// when set (moto, LocalStack).
#[derive(Clone, Debug)]
pub struct AwsEnvironment {
    pub region: String,
    pub credentials: Credentials,
    pub endpoint: Option<String>,
}

impl AwsEnvironment {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<AwsEnvironment, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).ok_or("AWS_REGION is not set")?;
        let access_key = get("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?;
        let secret_key = get("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY is not set")?;
        let credentials = Credentials::new(access_key, secret_key, get("AWS_SESSION_TOKEN"), None, "lambda-environment");
        Ok(AwsEnvironment { region, credentials, endpoint: get("AWS_ENDPOINT_URL") })
    }

    /// The SDK configuration for this environment. Without aws-config: no credential chain, no
    /// profile files, no IMDS, which keeps init fast and the binary small.
    pub fn sdk_config(&self) -> SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
            .build_https();
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
