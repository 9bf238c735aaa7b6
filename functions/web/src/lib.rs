//! The web clients: the customer app (`/`), the kitchen display (`/kitchen`) and their assets
//! (`/assets/...`), embedded at build time (`build.rs`) and served without touching any store.
#![cfg(target_arch = "wasm32")]
// The spin-sdk macro generates the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

use gocoffee_app::web::{Asset, Assets};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

#[spin_sdk::http_component]
fn handle(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    gocoffee_app::web::serve(&Assets(FILES), &req)
}
