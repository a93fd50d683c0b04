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
    /// The intervals `[low, high)` of gamma where a pair's answer ranks
    /// first, one per pair that can rank first.
    pub intervals: Vec<(f32, f32)>,
    pub pairs: usize,
}

impl Search<'_> {
    /// S0 and S1 of the moved records `start..end`, into `s0` and `s1`
    /// (reused block after block).
    fn block(&self, start: usize, end: usize, s0: &mut Matrix, s1: &mut Matrix) -> Result<()> {
        let d = self.d_moved.cols;
        let (n, rows) = (end - start, start * d..end * d);
        // Side by side: a small block is too few GEMM tiles to keep every
        // core busy on its own (SciFact's S0 is 3 tiles for 2 cores).
        let (a, b) = rayon::join(
            || {
                self.backend
                    .similarity_into(self.q_dev, &self.d_moved.data[rows.clone()], n, s0)
            },
            || {
                self.backend
                    .similarity_into(self.q_dev, &self.g.data[rows.clone()], n, s1)
            },
        );
        a.and(b)
    }

    /// The block loop: calls `f(start, S0, S1)` for every block of moved
    /// records in order (each block computed once, into buffers reused from
    /// block to block), checking for cancellation between blocks and
    /// reporting progress to `phase`.
    fn for_each_block(
        &self,
        phase: &Phase,
        mut f: impl FnMut(usize, &Matrix, &mut Matrix) -> Result<()>,
    ) -> Result<()> {
        let m = self.moved.len();
        let (mut s0, mut s1) = (Matrix::default(), Matrix::default());
        for start in (0..m).step_by(self.block.max(1)) {
            self.control.check()?;
            let end = (start + self.block).min(m);
            self.block(start, end, &mut s0, &mut s1)?;
            f(start, &s0, &mut s1)?;
            phase.set(end as u64);
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
    /// pair, then the sweep. Each S0/S1 block is computed once.
    ///
    /// A pair's own score and slope must be the very numbers its competitors
    /// are compared with: records that answer the same training queries have
    /// the same G, so their slopes cancel to exactly 0 in the reference and
    /// such a pair is dropped or kept by the sign of the score difference
    /// alone. Computed another way (a dot product in another order), the
    /// difference is a rounding error instead, and its quotient an
    /// arbitrary bound (NFCorpus has many such records; a GPU's fused
    /// multiply-add had turned them into gamma = 3e7). So the pairs' own
    /// values come from [`Backend::similarity`] too, over just the moved
    /// records that are dev answers: every backend gives each element of a
    /// similarity the same bits whatever else is in the call, so these are
    /// the numbers the blocks hold. The bounds then take one pass over the
    /// blocks. (With a single block, its own numbers are read from it.)
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
        let phase = self
            .control
            .phase("gamma search", m as u64, "moved records");
        // Every pair's bounds against the best static record, once its own
        // (s, t) is known.
        let static_bounds = |pairs: &[Pair]| -> Vec<nudge_m::Bounds> {
            pairs
                .iter()
                .map(|p| nudge_m::static_bounds(p, dev_static.entries(p.query as usize).next()))
                .collect()
        };
        // The pairs' own (s, t) from S0 and the slopes `t`, whose column
        // for moved record `mi` is `col_of(mi)`.
        let read_own =
            |pairs: &mut [Pair], s0: &Matrix, t: &Matrix, col_of: &dyn Fn(usize) -> usize| {
                for &(mi, i) in &own {
                    let (q, c) = (pairs[i].query as usize, col_of(mi));
                    pairs[i].s = s0.row(q)[c];
                    pairs[i].t = t.row(q)[c];
                }
            };
        if m > self.block.max(1) {
            // The moved records that are dev answers, once each.
            let mut cols: Vec<usize> = own.iter().map(|o| o.0).collect();
            cols.dedup();
            let d = self.d_moved.cols;
            let gather = |src: &Matrix| {
                let mut out = Vec::with_capacity(cols.len() * d);
                for &c in &cols {
                    out.extend_from_slice(src.row(c));
                }
                out
            };
            let (mut s0, mut t) = (Matrix::default(), Matrix::default());
            self.backend
                .similarity_into(self.q_dev, &gather(self.d_moved), cols.len(), &mut s0)?;
            self.backend
                .similarity_into(self.q_dev, &gather(self.g), cols.len(), &mut t)?;
            let inv: Vec<f32> = cols.iter().map(|&c| inv_norm[c]).collect();
            slopes(&mut t, &inv);
            let col_of = |mi: usize| cols.binary_search(&mi).expect("an own column");
            read_own(&mut pairs, &s0, &t, &col_of);
        }
        let mut bounds = None;
        self.for_each_block(&phase, |start, s0, t| {
            slopes(t, &inv_norm[start..start + s0.cols]);
            if bounds.is_none() && m <= self.block.max(1) {
                read_own(&mut pairs, s0, t, &|mi| mi - start);
            }
            let bounds = bounds.get_or_insert_with(|| static_bounds(&pairs));
            let block = SlopeBlock {
                records: &self.moved[start..start + s0.cols],
                s: s0,
                t,
            };
            self.backend.nudge_m_bounds(&block, &pairs, bounds)
        })?;
        drop(phase);
        let bounds = bounds.unwrap_or_else(|| static_bounds(&pairs));
        let intervals: Vec<(f32, f32)> = bounds.into_iter().filter_map(nudge_m::finish).collect();
        let (gamma, count) = nudge_m::sweep(&intervals);
        Ok(Sweep {
            gamma,
            count,
            intervals,
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
        self.for_each_block(&phase, |start, s0, s1| {
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
                s0,
                s1,
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
