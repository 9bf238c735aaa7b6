//! The AI orchestrator: `POST /api/v1/ai/ask`, routed to the registered agents.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::http_component]
async fn handle(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    gocoffee_ai::spin::serve(req).await
}
