//! Reconciler as an AWS Lambda: one pass per scheduled event (EventBridge).
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_payments::aws::reconciler()
}
