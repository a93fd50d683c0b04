//! Retrieval quality: metrics and the exact search they are computed from.
pub mod metrics;
pub mod search;
