//! Live as an AWS Lambda: the WebSocket API's authorizer, `$connect`, messages and
//! `$disconnect`, and the tickets route behind the HTTP API.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::live::live()
}
