//! The AI orchestrator as an AWS Lambda: `POST /api/v1/ai/ask` behind API Gateway, its models on
//! Amazon Bedrock.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_ai::aws::http()
}
