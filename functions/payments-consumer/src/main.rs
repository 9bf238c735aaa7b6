//! Payments-consumer as an AWS Lambda: payment intents for the orders stream (Kinesis).
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_payments::aws::consumer()
}
