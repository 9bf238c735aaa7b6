//! The payment service's consumer of the orders stream: makes the intent of an order that asks
//! for payment, closes the intent of a cancelled order.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::redis_component]
async fn on_message(payload: Vec<u8>) -> anyhow::Result<()> {
    gocoffee_payments::spin::consume(&payload).await
}
