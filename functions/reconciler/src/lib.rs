//! The reconciler: on each cron tick, relays the outbox and re-drives orders and payments stuck
//! past a deadline, since a failed message may never come back (Spin's Redis trigger doesn't
//! redeliver). Where schedules are HTTP requests (the Fermyon profiles), the same pass runs on
//! its HTTP route.
#![cfg(target_arch = "wasm32")]
// The bindings generate the component's exported C ABI, which is necessarily unsafe.
#![allow(unsafe_code)]

#[cfg(feature = "redis-and-cron")]
gocoffee_spin::cron_component!(gocoffee_payments::spin::reconcile);

#[spin_sdk::http_component]
async fn on_schedule(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    #[cfg(feature = "in-process-consumers")]
    gocoffee_spin::delivery::run_in_process(gocoffee_payments::spin::IN_PROCESS_CONSUMERS);
    gocoffee_spin::delivery::serve_scheduled(req, gocoffee_payments::spin::reconcile).await
}
