//! The integration tests, one binary with a module per area (one binary
//! links the crate once, and runs every area's tests side by side).
//!
//! Cases that make sense on every backend are written once and run on each
//! (`common::backends`: the CPU, and the GPU devices when there is an
//! adapter; `NUDGE_REQUIRE_GPU=1` makes a missing adapter a failure).
//!
//! - `api`: the public library API (in-memory fits, progress,
//!   cancellation, error variants).
//! - `chunking`: a fit in many blocks of moved records equals one block
//!   (every backend).
//! - `cli`: the `nudge` binary end to end.
//! - `errors`: every bad input gets a clear error and exit code.
//! - `formats`: sharded folders, Parquet output, qrels layouts and
//!   compressed text give the same fit as `.npy` and BEIR TSV.
//! - `fuzz`: property tests of the parsers.
//! - `gpu`: each GPU kernel against its CPU twin, the kernel table against
//!   the WGSL, device failures, the CLI on a GPU.
//! - `partials`: map/reduce/apply equal the one-process fit; incremental
//!   refits.
//! - `reference`: parity with the reference implementation (every backend).
//! - `report`: the HTML reports, rendered in headless Chromium.
//! - `safety`: no partial outputs, determinism, interruption.
//! - `synth`: `nudge synth`.
//! - `table`: Parquet and Arrow IPC input.

mod api;
mod chunking;
mod cli;
mod common;
mod errors;
mod formats;
mod fuzz;
mod gpu;
mod partials;
mod reference;
mod report;
mod safety;
mod synth;
mod table;
