//! The integration tests, one binary with a module per area (one binary
//! links the crate once, and runs every area's tests side by side).
//!
//! - `api`: the public library API (in-memory fits, progress,
//!   cancellation, error variants).
//! - `chunking`: a fit in many blocks of moved records equals one block.
//! - `cli`: the `nudge` binary end to end.
//! - `errors`: every bad input gets a clear error and exit code.
//! - `fuzz`: property tests of the parsers.
//! - `reference`: parity with the reference implementation.
//! - `safety`: no partial outputs, determinism, interruption.
//! - `synth`: `nudge synth`.
//!
//! The GPU tests (`tests/gpu_*.rs`) are separate binaries for now.

mod api;
mod chunking;
mod cli;
mod common;
mod errors;
mod fuzz;
mod reference;
mod safety;
mod synth;
