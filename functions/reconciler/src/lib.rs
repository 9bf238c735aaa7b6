//! The reconciler: on each cron tick, relays the outbox and re-drives orders and payments stuck
//! past a deadline, since a failed message may never come back (Spin's Redis trigger doesn't
//! redeliver).
#![cfg(target_arch = "wasm32")]
// The bindings generate the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

gocoffee_spin::cron_component!(gocoffee_payments::spin::reconcile);
