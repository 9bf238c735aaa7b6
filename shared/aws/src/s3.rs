//! S3 for menu images: presigned upload and download URLs. Presigning is SigV4 computed
//! locally, with no call to S3, so no S3 client (and no `aws-sdk-s3` build) is needed.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode, sign};
use aws_sigv4::sign::v4;
use gocoffee_app::ports::{ImageUrls, StoreError, StoreResult};

/// Presigns URLs for objects in one bucket.
#[derive(Clone, Debug)]
pub struct S3Images {
    bucket: String,
    region: String,
    credentials: Credentials,
    /// A custom endpoint (moto, LocalStack): path-style URLs under it. `None`: AWS's
    /// virtual-hosted URLs.
    endpoint: Option<String>,
}

impl S3Images {
    pub fn new(bucket: impl Into<String>, region: impl Into<String>, credentials: Credentials, endpoint: Option<String>) -> Self {
        S3Images { bucket: bucket.into(), region: region.into(), credentials, endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()) }
    }

    /// The object's URL, unsigned. Keys are ours (`menu/<id>/<ulid>.<ext>`), so they need no
    /// escaping beyond what is checked here.
    fn object_url(&self, key: &str) -> Result<String, String> {
        let plain = key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !plain || key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(format!("object key `{key}` has characters this store does not sign"));
        }
        Ok(match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}/{key}", self.bucket),
            None => format!("https://{}.s3.{}.amazonaws.com/{key}", self.bucket, self.region),
        })
    }

    /// Signs `method` on the object's URL with `headers` (besides `host`), which the request must
    /// then carry with exactly these values.
    fn presign(&self, method: &str, key: &str, headers: &[(&str, &str)], expires_in: Duration, now: SystemTime) -> Result<String, String> {
        let url = self.object_url(key)?;
        let host = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned();
        let headers: Vec<(&str, &str)> = [("host", host.as_str())].into_iter().chain(headers.iter().copied()).collect();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        // S3 signs paths as they are: single encoding, no normalization.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(method, url.as_str(), headers.into_iter(), SignableBody::UnsignedPayload).map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        let mut request = http::Request::builder().method(method).uri(&url).body(()).map_err(|e| e.to_string())?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request.uri().to_string())
    }
}

fn at(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl ImageUrls for S3Images {
    /// S3 refuses the `PUT` unless its `Content-Type` and `Content-Length` are the signed ones,
    /// which is how the size limit holds without a function in the upload's path.
    fn upload_url(&self, key: &str, content_type: &str, content_length: u64, signed_at_ms: i64, expires_in_s: u64) -> StoreResult<String> {
        let length = content_length.to_string();
        self.presign("PUT", key, &[("content-type", content_type), ("content-length", &length)], Duration::from_secs(expires_in_s), at(signed_at_ms))
            .map_err(StoreError::Unavailable)
    }

    fn download_url(&self, key: &str, signed_at_ms: i64, expires_in_s: u64) -> StoreResult<String> {
        self.presign("GET", key, &[], Duration::from_secs(expires_in_s), at(signed_at_ms)).map_err(StoreError::Unavailable)
    }
}
