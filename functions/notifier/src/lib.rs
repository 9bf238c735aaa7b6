//! The notifier: each order event on the orders channel becomes live status messages in the
//! feed the live component streams from. Redis-triggered in spin.toml; in the Fermyon profiles
//! the outbox relay delivers to its private HTTP route instead.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macros generate the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[cfg(feature = "redis-and-cron")]
#[spin_sdk::redis_component]
async fn on_message(payload: Vec<u8>) -> anyhow::Result<()> {
    gocoffee_spin::live::notify(&payload).await
}

#[spin_sdk::http_component]
async fn on_delivery(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    gocoffee_spin::delivery::serve_delivery(req, gocoffee_spin::live::notify).await
}
