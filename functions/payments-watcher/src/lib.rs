//! The payment watcher: on each cron tick, scans every configured chain for transfers into
//! monitored deposit addresses, credits what is final, drops what was reorged out, settles
//! expired intents, and relays the outbox.
#![cfg(target_arch = "wasm32")]
// The bindings generate the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

gocoffee_spin::cron_component!(gocoffee_payments::spin::watch);
