//! The kitchen: the ticket queue, and starting and finishing orders.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[spin_sdk::http_component]
async fn handle(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    #[cfg(feature = "in-process-consumers")]
    gocoffee_spin::delivery::run_in_process(gocoffee_payments::spin::IN_PROCESS_CONSUMERS);
    gocoffee_spin::serve(&gocoffee_app::kitchen::FUNCTION, req).await
}
