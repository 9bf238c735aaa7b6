//! The analytics projector as an AWS Lambda: Kinesis batches from the analytics stream.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::analytics::consumer()
}
