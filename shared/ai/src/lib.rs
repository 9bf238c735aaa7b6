//! Go Coffee's AI layer, platform-neutral: the model ports and the [`guard`] every call goes
//! through, retrieval (BM25 fused with embeddings), and the agents behind the orchestrator.

pub mod agents;
pub mod analytics;
#[cfg(all(feature = "aws", not(target_arch = "wasm32")))]
pub mod aws;
pub mod eval;
pub mod guard;
pub mod model;
pub mod orchestrator;
pub mod retrieve;
pub mod router;
pub mod search;
pub mod service;
#[cfg(target_arch = "wasm32")]
pub mod spin;
pub mod sql;
pub mod store;
pub mod text;
