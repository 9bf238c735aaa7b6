//! The payment watcher: on each cron tick, scans every configured chain for transfers into
//! monitored deposit addresses, credits what is final, drops what was reorged out, settles
//! expired intents, and relays the outbox.
#![cfg(target_arch = "wasm32")]
// The bindings generate the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

mod bindings {
    spin_sdk::wit_bindgen::generate!({
        world: "spin-cron",
        path: "../../host/wit/deps/spin-cron@2.0.0",
        runtime_path: "::spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};

struct Watcher;

impl bindings::Guest for Watcher {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async {
            gocoffee_payments::spin::watch().await.map_err(|e| {
                eprintln!("{e}");
                Error::Other(e)
            })
        })
    }
}

bindings::export!(Watcher with_types_in bindings);
