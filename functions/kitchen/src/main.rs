//! Kitchen as an AWS Lambda: the kitchen behind API Gateway, and the consumer of its SQS queue.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::lambda::kitchen()
}
