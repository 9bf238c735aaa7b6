//! The HTTP front: routes each request to its component as Spin does (same headers), runs it on
//! a fresh instance, and shuts down gracefully with in-flight requests finishing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::routes::Router;
use crate::runtime::Runtime;

/// Bodies over this are refused before any component runs.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// How much of an over-limit body is read and dropped before answering 413.
const MAX_DRAIN_BYTES: u64 = 16 << 20;

pub struct Server {
    pub runtime: Runtime,
    pub router: Router,
    pub listen: SocketAddr,
}

fn body(bytes: impl Into<Bytes>) -> HyperOutgoingBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

fn json_error(status: u16, code: &str, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let payload = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body(payload))
        .unwrap_or_else(|_| hyper::Response::new(body(Bytes::new())))
}

impl Server {
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>, client: SocketAddr) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (response, component) = self.route(req, client).await;
        tracing::info!(%method, %path, status = response.status().as_u16(), component = component.unwrap_or("-"), us = started.elapsed().as_micros() as u64, "request");
        response
    }

    async fn route(&self, mut req: hyper::Request<Incoming>, client: SocketAddr) -> (hyper::Response<HyperOutgoingBody>, Option<&str>) {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/.well-known/spin/health" => return (hyper::Response::new(body("OK")), None),
            "/.well-known/gocoffee/dead-letters" => {
                let log = self.runtime.shared.log.clone();
                let listed = tokio::task::spawn_blocking(move || log.dead_letters()).await;
                return match listed {
                    Ok(Ok(items)) => {
                        let payload = serde_json::json!({ "items": items }).to_string();
                        (
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(body(payload))
                                .unwrap_or_else(|_| hyper::Response::new(body(""))),
                            None,
                        )
                    }
                    _ => (json_error(503, "unavailable", "the message log could not be read"), None),
                };
            }
            _ => {}
        }
        let Some(hit) = self.router.route(&path) else {
            return (json_error(404, "not_found", "no route matches this path"), None);
        };
        let component = hit.route.component.as_str();
        let too_big = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_REQUEST_BYTES);
        if too_big {
            // Read (and drop) a bounded amount first, so a client still sending gets the 413
            // instead of a broken pipe.
            let mut drained = 0u64;
            let body = req.body_mut();
            while drained < MAX_DRAIN_BYTES {
                match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
                    Ok(Some(Ok(frame))) => drained += frame.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
            return (json_error(413, "body_too_large", "the request body is too large"), Some(component));
        }
        let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
        let full_url = format!("http://{host}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        let mut spin_headers = vec![
            ("spin-full-url", full_url.clone()),
            ("spin-path-info", hit.path_info.clone()),
            ("spin-matched-route", hit.route.raw.clone()),
            ("spin-raw-component-route", hit.route.raw.clone()),
            ("spin-component-route", hit.route.component_route()),
            ("spin-base-path", "/".to_owned()),
            ("spin-client-addr", client.to_string()),
        ];
        let params: Vec<(String, String)> = hit.params.iter().map(|(k, v)| (format!("spin-path-match-{k}"), v.clone())).collect();
        let headers = req.headers_mut();
        for (name, value) in spin_headers.drain(..).map(|(k, v)| (k.to_owned(), v)).chain(params) {
            if let (Ok(n), Ok(v)) = (hyper::header::HeaderName::try_from(name), hyper::header::HeaderValue::try_from(value)) {
                headers.insert(n, v);
            }
        }
        // The component sees the absolute URL, as under Spin.
        if let Ok(uri) = full_url.parse() {
            *req.uri_mut() = uri;
        }
        match self.invoke(component, req).await {
            Ok(resp) => (resp, Some(component)),
            Err(e) => {
                tracing::error!(component, error = %format!("{e:#}"), "component failed");
                (json_error(500, "internal", "the component failed while handling this request"), Some(component))
            }
        }
    }

    async fn invoke(&self, component: &str, req: hyper::Request<Incoming>) -> Result<hyper::Response<HyperOutgoingBody>> {
        let loaded = self.runtime.components.get(component).ok_or_else(|| anyhow::anyhow!("component {component} is not loaded"))?;
        let pre = loaded.http.clone().ok_or_else(|| anyhow::anyhow!("component {component} is not an HTTP component"))?;
        let mut store = self.runtime.store(&loaded.config);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(|e| anyhow::anyhow!("{e}"))?;
        let out = store.data_mut().http().new_response_outparam(sender).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The guest runs in its own task so it can keep streaming the body after the headers.
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await.map_err(|e| anyhow::anyhow!("{e:?}"))
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => anyhow::bail!("the component answered with an error: {code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => anyhow::bail!("the component returned without setting a response"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Serves until `shutdown` turns true, then stops accepting and lets in-flight requests
    /// finish (up to `drain`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>, drain: Duration) -> Result<()> {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, Infallible>(server.handle(req, client).await) }
                        }),
                    );
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("in-flight requests finished"),
            _ = tokio::time::sleep(drain) => tracing::warn!("gave up waiting for in-flight requests"),
        }
        Ok(())
    }
}
