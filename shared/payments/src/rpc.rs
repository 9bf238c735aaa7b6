//! The JSON-RPC transport alloy's provider runs on: a `tower::Service` over a one-method HTTP
//! port ([`HttpPost`]) that each shell implements (hyper on Lambda and in tests, Spin's outbound
//! HTTP in components; alloy's reqwest transport doesn't build for wasip2).
//!
//! It adds what a payment service needs from its nodes:
//! - a timeout on every call;
//! - the chain check: before an endpoint answers anything else it must answer `eth_chainId`
//!   with the configured chain, so a verification never mixes a node on another chain in;
//! - a circuit breaker per endpoint: after [`BREAKER_FAILURES`] failures in a row it is skipped
//!   for [`BREAKER_OPEN`], so a dead node costs one timeout, not one per call;
//! - fallback to the next URL; when none answers, [`RpcUnavailable`] (the API's 503).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_json_rpc::{RequestPacket, ResponsePacket};
use alloy_transport::{BoxFuture, TransportError, TransportErrorKind, TransportFut};

/// Consecutive failures that open an endpoint's circuit.
pub const BREAKER_FAILURES: u32 = 3;
/// How long an open circuit skips its endpoint.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// The most of a response body that is read.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("timed out")]
    Timeout,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Io(String),
}

/// POST a JSON body, get the response body. One method, so each shell's adapter stays small.
pub trait HttpPost: Send + Sync + 'static {
    fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> BoxFuture<'static, Result<Vec<u8>, PostError>>;
}

/// No endpoint of the chain could answer: the client should retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no RPC endpoint of chain {chain_id} is available: {detail}")]
pub struct RpcUnavailable {
    pub chain_id: u64,
    pub detail: String,
}

#[derive(Debug)]
struct Endpoint {
    url: String,
    /// `Some(true)` once it answered `eth_chainId` with the right chain; `Some(false)` when it
    /// answered with another (never used again).
    chain_ok: Option<bool>,
    failures: u32,
    open_until: Option<Instant>,
}

#[derive(Clone)]
pub struct RpcTransport {
    chain_id: u64,
    timeout: Duration,
    http: Arc<dyn HttpPost>,
    endpoints: Arc<Mutex<Vec<Endpoint>>>,
}

impl std::fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTransport").field("chain_id", &self.chain_id).finish_non_exhaustive()
    }
}

impl RpcTransport {
    pub fn new(chain_id: u64, urls: &[String], timeout: Duration, http: Arc<dyn HttpPost>) -> RpcTransport {
        let endpoints = urls.iter().map(|url| Endpoint { url: url.clone(), chain_ok: None, failures: 0, open_until: None }).collect();
        RpcTransport { chain_id, timeout, http, endpoints: Arc::new(Mutex::new(endpoints)) }
    }

    /// Endpoints to try now, in order: checked or unchecked, circuit closed (or open past its time).
    fn candidates(&self) -> Vec<(usize, String, bool)> {
        let now = Instant::now();
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.chain_ok != Some(false) && e.open_until.is_none_or(|t| t <= now))
            .map(|(i, e)| (i, e.url.clone(), e.chain_ok == Some(true)))
            .collect()
    }

    fn record(&self, i: usize, outcome: Result<(), ()>) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = endpoints.get_mut(i) else { return };
        match outcome {
            Ok(()) => {
                e.failures = 0;
                e.open_until = None;
            }
            Err(()) => {
                e.failures += 1;
                if e.failures >= BREAKER_FAILURES {
                    e.open_until = Some(Instant::now() + BREAKER_OPEN);
                }
            }
        }
    }

    fn set_chain_ok(&self, i: usize, ok: bool) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = endpoints.get_mut(i) {
            e.chain_ok = Some(ok);
        }
    }

    /// Whether the endpoint answers for the configured chain. `Err` is a failed call.
    async fn check_chain(&self, url: &str) -> Result<bool, String> {
        let body = br#"{"jsonrpc":"2.0","id":0,"method":"eth_chainId","params":[]}"#.to_vec();
        let bytes = self.http.post(url, body, self.timeout).await.map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("eth_chainId: not JSON-RPC: {e}"))?;
        let hex = v.get("result").and_then(|r| r.as_str()).ok_or("eth_chainId: no result")?;
        let id = u64::from_str_radix(hex.trim_start_matches("0x"), 16).map_err(|e| format!("eth_chainId: {e}"))?;
        Ok(id == self.chain_id)
    }

    async fn call(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let body = serde_json::to_vec(&packet).map_err(TransportError::ser_err)?;
        let mut errors = Vec::new();
        for (i, url, checked) in self.candidates() {
            if !checked {
                match self.check_chain(&url).await {
                    Ok(true) => self.set_chain_ok(i, true),
                    Ok(false) => {
                        self.set_chain_ok(i, false);
                        errors.push(format!("{url} is not on chain {}", self.chain_id));
                        continue;
                    }
                    Err(e) => {
                        self.record(i, Err(()));
                        errors.push(format!("{url}: {e}"));
                        continue;
                    }
                }
            }
            match self.http.post(&url, body.clone(), self.timeout).await {
                Ok(bytes) => match serde_json::from_slice::<ResponsePacket>(&bytes) {
                    Ok(response) => {
                        self.record(i, Ok(()));
                        return Ok(response);
                    }
                    Err(e) => {
                        self.record(i, Err(()));
                        errors.push(format!("{url}: not a JSON-RPC response: {e}"));
                    }
                },
                Err(e) => {
                    self.record(i, Err(()));
                    errors.push(format!("{url}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            errors.push("every endpoint's circuit is open".into());
        }
        Err(TransportErrorKind::custom(RpcUnavailable { chain_id: self.chain_id, detail: errors.join("; ") }))
    }
}

impl tower::Service<RequestPacket> for RpcTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> Self::Future {
        Box::pin(self.clone().call(packet))
    }
}

/// Whether an alloy error is the transport's "no endpoint available".
pub fn unavailable(e: &TransportError) -> Option<&RpcUnavailable> {
    match e {
        alloy_json_rpc::RpcError::Transport(TransportErrorKind::Custom(inner)) => inner.downcast_ref::<RpcUnavailable>(),
        _ => None,
    }
}
