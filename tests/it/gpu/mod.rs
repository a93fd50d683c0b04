//! The GPU backend, a module per part of `src/backend/gpu/`: every kernel
//! against its CPU twin ([`ops`], [`scan`]) on every GPU device
//! (`common::backends::every_gpu`), the kernel table against its WGSL
//! ([`kernel`], no device needed), the device's failure modes
//! ([`context`]), and the CLI on a GPU ([`cli`]). Whole fits on the GPU are
//! in `reference` and `chunking`, which run on every backend.
//!
//! Tolerances. Both backends compute in f32 but sum in different orders (the
//! CPU's `gemm` crate blocks and uses FMA; the GPU sums a dot product in index
//! order, a norm as a tree). For a dot product of length d <= 1024 the
//! rounding error of any order is at most about d * 2^-24 * sum|a_i b_i|
//! (6e-5 relative to sum|a_i b_i| at d = 1024) and in practice near
//! sqrt(d) * 2^-24 (2e-6); we allow 1e-5 * sum|a_i b_i|. Steps that use the
//! same order of the same correctly rounded operations (segment sums) must
//! agree bit for bit. Top-k lists are compared by scores within the score
//! tolerance at every position and by row ids wherever the CPU's scores are
//! separated by more than twice that tolerance.
//!
//! Each twin test runs on the device as it is, and with every buffer capped
//! at 8 KiB so that the same small inputs go through the paths that split
//! inputs too large for one storage binding.

mod cli;
mod context;
mod fused;
mod kernel;
mod measure;
mod ops;
mod scan;
mod tune;

use crate::common::backends::{backend_tests, every_gpu};
use nudge::backend::Backend;
use nudge::backend::cpu;
use nudge::backend::topk::{EMPTY, TopK};
use nudge::matrix::Matrix;

/// xorshift64*: reproducible inputs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// The GEMM parity tolerance, the library's (the autotuner checks each
/// tile variant against the CPU with it too).
pub const DOT_TOL: f32 = nudge::backend::gpu::tune::DOT_TOL;

pub fn random(rng: &mut Rng, rows: usize, cols: usize) -> Matrix {
    Matrix::new(rows, cols, rng.vec(rows * cols))
}

pub fn unit_rows(mut m: Matrix) -> Matrix {
    cpu::normalize_rows(&mut m.data, m.cols, 0);
    m
}

/// Lists agree up to the score tolerance `tol` (see the module comment).
pub fn assert_topk_close(got: &TopK, want: &TopK, tol: f32, what: &str) {
    assert_eq!(
        (got.queries, got.k),
        (want.queries, want.k),
        "{what}: shape"
    );
    for q in 0..want.queries {
        let (gs, gr) = (got.scores(q), got.rows(q));
        let (ws, wr) = (want.scores(q), want.rows(q));
        for i in 0..want.k {
            if wr[i] == EMPTY || gr[i] == EMPTY {
                assert_eq!(
                    gr[i], wr[i],
                    "{what}: query {q} slot {i} filled on one side only"
                );
                continue;
            }
            assert!(
                (gs[i] - ws[i]).abs() <= tol,
                "{what}: query {q} slot {i}: score {} vs {}",
                gs[i],
                ws[i]
            );
            if gr[i] != wr[i] {
                // Only a near-tie may reorder rows: some other CPU entry (or
                // the unseen k+1-th one, for the last slot) is within 2 tol.
                let near = (0..want.k).any(|j| j != i && (ws[j] - ws[i]).abs() <= 2.0 * tol)
                    || i == want.k - 1;
                assert!(
                    near,
                    "{what}: query {q} slot {i}: row {} vs {} with separated scores {:?}",
                    gr[i], wr[i], ws
                );
            }
        }
    }
}

/// Scale of the dot products of unit rows with queries of entries in [-1,1].
pub fn score_tol(q: &Matrix) -> f32 {
    let max_norm = (0..q.rows)
        .map(|i| q.row(i).iter().map(|x| x * x).sum::<f32>().sqrt())
        .fold(0.0f32, f32::max);
    DOT_TOL * max_norm.max(1.0)
}

backend_tests! {
    fn backend_describes_itself(g in every_gpu()) {
        assert_eq!(g.name(), "gpu");
        assert!(!g.device_name().is_empty());
        assert!(g.chunk_rows(100, 384, 1 << 20) >= 1);
        assert!(g.chunk_rows(1, 1, 1) >= 1);
    }
}
