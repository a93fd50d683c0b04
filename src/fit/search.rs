//! The gamma searches, from S0 = Qdev . D_M^T and S1 = Qdev . G_M^T over
//! the moved records, computed block by block in one loop
//! ([`Search::for_each_block`]) so that memory stays bounded by the block
//! size however many records move.

use rayon::prelude::*;

use crate::backend::{Backend, MovedBlock, Pair, SlopeBlock, TopK};
use crate::control::{Control, Phase};
use crate::data::dataset::{LabeledQuery, Split};
use crate::error::Result;
use crate::matrix::{Matrix, dot};
use crate::method::{nudge_m, nudge_n};

use super::GridPoint;

/// What both searches read.
pub(super) struct Search<'a> {
    pub backend: &'a dyn Backend,
    /// The dev queries, in split order.
    pub q_dev: &'a Matrix,
    pub dev: &'a Split,
    /// Moved records (ascending rows) and their normalised rows.
    pub moved: &'a [u32],
    pub d_moved: &'a Matrix,
    /// Static dev answers (ascending rows) and their normalised rows.
    pub kept: &'a [u32],
    pub kept_rows: &'a Matrix,
    /// G of every moved record.
    pub g: &'a Matrix,
    /// Moved records per block.
    pub block: usize,
    pub control: &'a Control,
}

/// The result of NUDGE-M's search.
pub(super) struct Sweep {
    pub gamma: f32,
    /// Intervals that contain gamma.
    pub count: usize,
    pub intervals: usize,
    pub pairs: usize,
}

impl Search<'_> {
    /// S0 and S1 of the moved records `start..end`.
    fn block(&self, start: usize, end: usize) -> Result<(Matrix, Matrix)> {
        // Side by side: a small block is too few GEMM tiles to keep every
        // core busy on its own (SciFact's S0 is 3 tiles for 2 cores).
        let (s0, s1) = rayon::join(
            || {
                self.backend
                    .similarity(self.q_dev, &self.d_moved.rows_range(start, end))
            },
            || {
                self.backend
                    .similarity(self.q_dev, &self.g.rows_range(start, end))
            },
        );
        Ok((s0?, s1?))
    }

    /// The block loop: calls `f(start, S0, S1)` for every block of moved
    /// records in order, checking for cancellation between blocks and
    /// reporting progress to `phase` (offset by `done`, for a search that
    /// walks the blocks twice).
    fn for_each_block(
        &self,
        phase: &Phase,
        done: usize,
        mut f: impl FnMut(usize, Matrix, Matrix) -> Result<()>,
    ) -> Result<()> {
        let m = self.moved.len();
        for start in (0..m).step_by(self.block.max(1)) {
            self.control.check()?;
            let end = (start + self.block).min(m);
            let (s0, s1) = self.block(start, end)?;
            f(start, s0, s1)?;
            phase.set((done + end) as u64);
        }
        Ok(())
    }

    /// Every (dev query, answer) pair. A static answer's score is computed
    /// here (its slope is 0); a moved answer's score and slope are left for
    /// [`Self::search_m`] to read from S0 and the slopes.
    fn pairs(&self) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (i, q) in self.dev.queries.iter().enumerate() {
            for &(x, _) in &q.answers {
                let s = match self.moved.binary_search(&x) {
                    Ok(_) => 0.0,
                    Err(_) => {
                        let ki = self
                            .kept
                            .binary_search(&x)
                            .expect("the plan keeps every static dev answer");
                        dot(self.q_dev.row(i), self.kept_rows.row(ki))
                    }
                };
                pairs.push(Pair {
                    query: i as u32,
                    record: x,
                    s,
                    t: 0.0,
                });
            }
        }
        pairs
    }

    /// NUDGE-M's exact search: the interval of every (dev query, answer)
    /// pair, then the sweep.
    ///
    /// A pair's own score and slope must be the very numbers its competitors
    /// are compared with: records that answer the same training queries have
    /// the same G, so their slopes cancel to exactly 0 in the reference and
    /// such a pair is dropped or kept by the sign of the score difference
    /// alone. Computed another way (a separate dot product), the difference
    /// is a rounding error instead, and its quotient an arbitrary bound
    /// (NFCorpus has many such records; a GPU's fused multiply-add had
    /// turned them into gamma = 3e7). So the block loop runs twice, once
    /// for the pairs' own values and once for the bounds (the backends are
    /// deterministic, so both passes see the same numbers), unless there is
    /// only one block, which is then kept for the second pass.
    pub fn search_m(&self, dev_static: &TopK) -> Result<Sweep> {
        let m = self.moved.len();
        let inv_norm: Vec<f32> = (0..m)
            .map(|i| {
                let n = self.g.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 { 1.0 / n } else { 0.0 }
            })
            .collect();
        let mut pairs = self.pairs();
        // (moved index, pair) of every pair whose answer moves, by column.
        let mut own: Vec<(usize, usize)> = pairs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.moved.binary_search(&p.record).ok()?, i)))
            .collect();
        own.sort_unstable();
        let one_block = m <= self.block.max(1);
        let phase = self.control.phase(
            "gamma search",
            if one_block { m } else { 2 * m } as u64,
            "moved records",
        );
        // Pass 1: each pair's own (s, t).
        let mut cached = None;
        let mut next = 0;
        self.for_each_block(&phase, 0, |start, s0, mut t| {
            slopes(&mut t, &inv_norm[start..start + s0.cols]);
            let end = start + s0.cols;
            while let Some(&(mi, i)) = own.get(next).filter(|o| o.0 < end) {
                let q = pairs[i].query as usize;
                pairs[i].s = s0.row(q)[mi - start];
                pairs[i].t = t.row(q)[mi - start];
                next += 1;
            }
            if one_block {
                cached = Some((s0, t));
            }
            Ok(())
        })?;
        // Pass 2: every pair's bounds against every moved competitor.
        let mut bounds: Vec<nudge_m::Bounds> = pairs
            .iter()
            .map(|p| nudge_m::static_bounds(p, dev_static.entries(p.query as usize).next()))
            .collect();
        let mut tighten = |start: usize, s0: &Matrix, t: &Matrix| {
            let block = SlopeBlock {
                records: &self.moved[start..start + s0.cols],
                s: s0,
                t,
            };
            self.backend.nudge_m_bounds(&block, &pairs, &mut bounds)
        };
        match cached {
            Some((s0, t)) => tighten(0, &s0, &t)?,
            None => self.for_each_block(&phase, m, |start, s0, mut t| {
                slopes(&mut t, &inv_norm[start..start + s0.cols]);
                tighten(start, &s0, &t)
            })?,
        }
        drop(phase);
        let intervals: Vec<(f32, f32)> = bounds.into_iter().filter_map(nudge_m::finish).collect();
        let (gamma, count) = nudge_m::sweep(&intervals);
        Ok(Sweep {
            gamma,
            count,
            intervals: intervals.len(),
            pairs: pairs.len(),
        })
    }

    /// NUDGE-N's grid search: every grid gamma's dev score at `k`, from the
    /// static lists merged with each moved record's updated score
    /// `a S0 + b S1` (the update's own coefficients, [`nudge_n::Step`]).
    pub fn search_n(&self, grid: &[f64], dev_static: &TopK, k: usize) -> Result<Vec<GridPoint>> {
        let steps: Vec<nudge_n::Step> = grid.iter().map(|&g| nudge_n::Step::new(g)).collect();
        // v and c per moved record, as the update computes them.
        let vc: Vec<(f64, f64)> = (0..self.moved.len())
            .into_par_iter()
            .with_min_len(256)
            .map(|i| nudge_n::dots(self.d_moved.row(i), self.g.row(i)))
            .collect();
        let mut tops: Vec<TopK> = vec![dev_static.clone(); grid.len()];
        let phase = self
            .control
            .phase("gamma search", self.moved.len() as u64, "moved records");
        self.for_each_block(&phase, 0, |start, s0, s1| {
            let w = s0.cols;
            let mut coef = vec![(0.0, 0.0); grid.len() * w];
            coef.par_chunks_mut(w.max(1))
                .zip(&steps)
                .for_each(|(out, step)| {
                    for (o, &(v, c)) in out.iter_mut().zip(&vc[start..start + w]) {
                        let (a, b) = step.coefficients(v, c);
                        *o = (a as f32, b as f32);
                    }
                });
            let block = MovedBlock {
                records: &self.moved[start..start + w],
                s0: &s0,
                s1: &s1,
            };
            self.backend.nudge_n_merge(&block, &coef, &mut tops)
        })?;
        Ok(grid
            .iter()
            .zip(&tops)
            .map(|(&gamma, top)| GridPoint {
                gamma,
                score: dev_score(top, &self.dev.queries, k),
            })
            .collect())
    }
}

/// NUDGE-M slopes from S1, in place: column j times `inv_norm[j]` = 1/|G_j|.
/// Every backend's bounds step and every pair read these same numbers.
pub fn slopes(s1: &mut Matrix, inv_norm: &[f32]) {
    let width = s1.cols.max(1);
    s1.data.par_chunks_mut(width).for_each(|row| {
        for (x, n) in row.iter_mut().zip(inv_norm) {
            *x *= n;
        }
    });
}

/// Mean over dev queries of `|top-k ∩ answers| / min(|answers|, k)`.
fn dev_score(top: &TopK, queries: &[LabeledQuery], k: usize) -> f64 {
    let total: f64 = queries
        .iter()
        .enumerate()
        .map(|(i, q)| nudge_n::hit_rate(top.entries(i).map(|e| e.1), &q.answers, k))
        .sum();
    total / queries.len().max(1) as f64
}
