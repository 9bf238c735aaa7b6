//! The reconciler: on each cron tick, relays the outbox and re-drives orders and payments stuck
//! past a deadline, since a failed message may never come back (Spin's Redis trigger doesn't
//! redeliver).
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

struct Reconciler;

impl bindings::Guest for Reconciler {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async {
            gocoffee_payments::spin::reconcile().await.map_err(|e| {
                eprintln!("{e}");
                Error::Other(e)
            })
        })
    }
}

bindings::export!(Reconciler with_types_in bindings);
