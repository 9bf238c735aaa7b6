//! The order consumer: reacts to events on the orders stream (confirms placed orders, which puts
//! them on the kitchen board).
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::redis_component]
async fn on_message(payload: Vec<u8>) -> anyhow::Result<()> {
    gocoffee_spin::consume(&payload).await
}
