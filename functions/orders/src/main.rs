//! Orders as an AWS Lambda: the orders routes behind API Gateway.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::lambda::http(&gocoffee_app::orders::FUNCTION)
}
