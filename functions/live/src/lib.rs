//! Live order status: `GET /api/v1/live/events`, each order's and the kitchen board's changes
//! as Server-Sent Events, streamed as they reach the feed.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::http_component]
async fn handle(req: spin_sdk::http::IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
    gocoffee_spin::live::serve(req, out).await
}
