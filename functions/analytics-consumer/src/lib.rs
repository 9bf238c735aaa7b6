//! The analytics projector: folds each order event of the analytics channel into the read model.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::redis_component]
async fn on_message(payload: Vec<u8>) -> anyhow::Result<()> {
    gocoffee_spin::consume_analytics(&payload).await
}
