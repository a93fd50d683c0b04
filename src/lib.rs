//! nudge: fine-tune the record embeddings of a k-NN retrieval corpus with
//! NUDGE (Zeighami, Wellmer, Parameswaran, arXiv 2409.02343).
//!
//! - [`nudge`]: the algorithm, backend-free (start at [`nudge::fit`]).
//! - [`backend`]: the steps a backend implements; the CPU one is the reference.
//! - [`eval`]: metrics and exact search.
//! - [`data`]: `.npy`, ids, qrels and dataset folders.
//! - [`cli`]: the `nudge` subcommands.
//! - [`alloc`]: the allocator the binary runs on.

pub mod alloc;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod interrupt;
pub mod log;
pub mod matrix;
pub mod nudge;
pub mod progress;

pub use error::{Error, Kind, Result};
