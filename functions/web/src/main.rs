//! The web clients as an AWS Lambda: the same pages and fingerprinted assets, behind the HTTP API
//! (same origin as the API, so no CORS), reading no store.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[cfg(not(target_arch = "wasm32"))]
use gocoffee_app::web::{Asset, Assets};

#[cfg(not(target_arch = "wasm32"))]
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), lambda_runtime::Error> {
    gocoffee_aws::lambda::stateless(|req| gocoffee_app::web::serve(&Assets(FILES), req))
}
