//! Analytics as an AWS Lambda: the reports behind API Gateway, on the analytics table.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::analytics::http()
}
