//! [`HttpPost`] on hyper with rustls (ring) and the system's roots: what the Lambda shell and the
//! tests give the RPC transport. The same client stack the AWS SDK already links, so nothing new
//! is compiled for it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy_transport::BoxFuture;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::rpc::{HttpPost, MAX_RESPONSE_BYTES, PostError};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Clones share one connection pool. The system's roots are loaded on the first call, not when
/// the function starts: reading them (every certificate file there, about 150 here) was 2.2 ms
/// of a payments function's init, and most of its requests never reach a chain.
#[derive(Clone, Default)]
pub struct HyperPost {
    client: Arc<OnceLock<Result<HttpsClient, String>>>,
}

impl HyperPost {
    pub fn new() -> HyperPost {
        HyperPost::default()
    }

    fn client(&self) -> Result<HttpsClient, PostError> {
        let built = self.client.get_or_init(|| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
                .map_err(|e| format!("TLS roots: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(https))
        });
        built.clone().map_err(PostError::Io)
    }
}

impl HttpPost for HyperPost {
    fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> BoxFuture<'static, Result<Vec<u8>, PostError>> {
        let client = self.client();
        let request = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json").body(Full::new(Bytes::from(body)));
        Box::pin(async move {
            let client = client?;
            let request = request.map_err(|e| PostError::Io(e.to_string()))?;
            let exchange = async {
                let response = client.request(request).await.map_err(|e| PostError::Io(e.to_string()))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(PostError::Status(status.as_u16()));
                }
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(|e| PostError::Io(e.to_string()))?;
                Ok(body.to_bytes().to_vec())
            };
            tokio::time::timeout(timeout, exchange).await.map_err(|_| PostError::Timeout)?
        })
    }
}
