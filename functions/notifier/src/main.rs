//! The notifier as an AWS Lambda: Kinesis batches from the orders stream, each event pushed to
//! the WebSocket connections following its channels.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::live::notifier()
}
