//! Crypto payments: the chains and assets a deployment takes, payment intents (each the fold of
//! its own event log), deposit addresses from an xpub, and the on-chain verification both shells
//! call. No platform types: the shells bring an HTTP transport and stores.

pub mod amount;
pub mod chains;
pub mod config;
pub mod deposit;
pub mod intent;
pub mod prices;
pub mod reader;
pub mod routes;
pub mod rpc;
pub mod service;
pub mod sql;
pub mod store;
pub mod verify;

#[cfg(not(target_arch = "wasm32"))]
pub mod aws;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod spin;
