//! Order-consumer as an AWS Lambda: the order consumer on the orders stream (Kinesis).
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::lambda::order_consumer()
}
