//! The gamma searches, from S0 = Qdev . D_M^T and S1 = Qdev . G_M^T over
//! the moved records, computed block by block in one loop
//! ([`Search::for_each_rows`]) so that memory stays bounded by the block
//! size however many records move (NUDGE-M's first block by the number of
//! moved dev answers, see [`m_blocks`]).

use rayon::prelude::*;

use crate::backend::{Backend, Pair, TopK};
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

/// The moved records of one S0/S1 block, as indices into the moved list,
/// ascending.
#[derive(Debug, Clone, PartialEq)]
enum Cols {
    /// Consecutive moved records: their rows are read in place.
    Run(std::ops::Range<usize>),
    /// Scattered moved records: their rows are gathered first.
    Picked(Vec<usize>),
}

impl Cols {
    /// `cols` (ascending), as a run when they are consecutive.
    fn of(cols: Vec<usize>) -> Cols {
        match (cols.first(), cols.last()) {
            (Some(&a), Some(&b)) if b - a + 1 == cols.len() => Cols::Run(a..b + 1),
            _ => Cols::Picked(cols),
        }
    }

    fn len(&self) -> usize {
        match self {
            Cols::Run(r) => r.len(),
            Cols::Picked(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            Cols::Run(r) => r.start + i,
            Cols::Picked(v) => v[i],
        }
    }

    /// `(0..len).map(get)`, as values gathered from `src` by column.
    fn gather<T: Copy>(&self, src: &[T]) -> Vec<T> {
        (0..self.len()).map(|i| src[self.get(i)]).collect()
    }
}

/// NUDGE-M's blocks: the first holds every moved record that is a dev
/// answer (whole blocks of them, filled up with the lowest other
/// records), so that every pair's own score and slope are known from
/// the first block on; the other records follow in blocks of
/// `block`. The first block is larger than the others only when
/// more than a block of moved records answer dev queries.
fn m_blocks(m: usize, block: usize, own: &[usize]) -> Vec<Cols> {
    let block = block.max(1);
    let first = own.len().next_multiple_of(block).min(m);
    let mut is_own = vec![false; m];
    for &c in own {
        is_own[c] = true;
    }
    let mut head = own.to_vec();
    let mut rest = Vec::with_capacity(m - own.len());
    for i in (0..m).filter(|&i| !is_own[i]) {
        if head.len() < first {
            head.push(i);
        } else {
            rest.push(i);
        }
    }
    head.sort_unstable();
    let mut blocks = vec![Cols::of(head)];
    blocks.extend(rest.chunks(block).map(|c| Cols::of(c.to_vec())));
    blocks.retain(|b| b.len() > 0);
    blocks
}

impl Search<'_> {
    /// The normalised rows and the G rows of the moved records `cols`: in
    /// place for a run, else gathered into `scratch` (reused block after
    /// block).
    fn rows_of<'s>(
        &'s self,
        cols: &Cols,
        scratch: &'s mut (Vec<f32>, Vec<f32>),
    ) -> (&'s [f32], &'s [f32]) {
        let d = self.d_moved.cols;
        match cols {
            Cols::Run(r) => (
                &self.d_moved.data[r.start * d..r.end * d],
                &self.g.data[r.start * d..r.end * d],
            ),
            Cols::Picked(v) => {
                let (bd, bg) = scratch;
                for (buf, src) in [(&mut *bd, self.d_moved), (&mut *bg, self.g)] {
                    buf.resize(v.len() * d, 0.0);
                    buf.par_chunks_mut(d.max(1))
                        .zip(v.par_iter())
                        .for_each(|(out, &c)| out.copy_from_slice(src.row(c)));
                }
                (&scratch.0[..], &scratch.1[..])
            }
        }
    }

    /// The block loop: calls `f(cols, records, rows_d, rows_g)` for every
    /// block in turn with its records and their normalised and G rows,
    /// checking for cancellation between blocks and reporting progress to
    /// `phase`.
    fn for_each_rows(
        &self,
        phase: &Phase,
        blocks: impl IntoIterator<Item = Cols>,
        mut f: impl FnMut(&Cols, &[u32], &[f32], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut scratch = Default::default();
        let mut done = 0;
        for cols in blocks {
            self.control.check()?;
            let (rows_d, rows_g) = self.rows_of(&cols, &mut scratch);
            let picked;
            let records = match &cols {
                Cols::Run(r) => &self.moved[r.clone()],
                Cols::Picked(_) => {
                    picked = cols.gather(self.moved);
                    &picked[..]
                }
            };
            f(&cols, records, rows_d, rows_g)?;
            done += cols.len();
            phase.set(done as u64);
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
    /// values are read from the blocks themselves: the first block holds
    /// every moved record that answers a dev query ([`m_blocks`]), so
    /// they are known before any bounds are taken, and the bounds then take
    /// one pass over the blocks. (Reading them from a separate similarity
    /// over just those records gave the same bits, since every backend
    /// gives each element of a similarity the same bits whatever else is in
    /// the call, but it computed those columns twice: a third of tldr's
    /// gamma search.)
    pub fn search_m(&self, dev_static: &TopK) -> Result<Sweep> {
        let m = self.moved.len();
        let inv_norm: Vec<f32> = (0..m)
            .map(|i| {
                let n = self.g.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 { 1.0 / n } else { 0.0 }
            })
            .collect();
        let mut pairs = self.pairs();
        // The moved records that are a pair's answer (ascending, once).
        let mut cols: Vec<usize> = pairs
            .iter()
            .filter_map(|p| self.moved.binary_search(&p.record).ok())
            .collect();
        cols.sort_unstable();
        cols.dedup();
        let phase = self
            .control
            .phase("gamma search", m as u64, "moved records");
        // Every pair's bounds against the best static record, once its own
        // (s, t) is known.
        let static_bounds = |p: &Pair| -> nudge_m::Bounds {
            nudge_m::static_bounds(p, dev_static.entries(p.query as usize).next())
        };
        // Every dev answer that moves is in the first block: its own values
        // are read there, before any bounds are taken.
        let mut bounds: Option<Vec<nudge_m::Bounds>> = None;
        let mut scratch = Default::default();
        self.for_each_rows(
            &phase,
            m_blocks(m, self.block, &cols),
            |cols, records, rows_d, rows_g| {
                let inv = cols.gather(&inv_norm);
                if let Some(bounds) = bounds.as_mut() {
                    // Nothing here is read on the host: a device backend
                    // keeps S0 and the slopes.
                    return self.backend.nudge_m_block(
                        self.q_dev,
                        (rows_d, rows_g),
                        records,
                        &inv,
                        &pairs,
                        bounds,
                        &mut scratch,
                    );
                }
                // The first block: the pairs' own values are read from it
                // before its bounds are taken.
                bounds = Some(self.backend.nudge_m_first_block(
                    self.q_dev,
                    (rows_d, rows_g),
                    records,
                    &inv,
                    &mut pairs,
                    &static_bounds,
                    &mut scratch,
                )?);
                Ok(())
            },
        )?;
        drop(phase);
        let bounds = bounds.unwrap_or_else(|| pairs.iter().map(static_bounds).collect());
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
        let mut scratch = Default::default();
        let mut coef = Vec::new();
        let (m, block) = (self.moved.len(), self.block.max(1));
        self.for_each_rows(
            &phase,
            (0..m)
                .step_by(block)
                .map(|s| Cols::Run(s..(s + block).min(m))),
            |cols, records, rows_d, rows_g| {
                let w = cols.len();
                let vc = cols.gather(&vc);
                coef.clear();
                coef.resize(grid.len() * w, (0.0, 0.0));
                coef.par_chunks_mut(w.max(1))
                    .zip(&steps)
                    .for_each(|(out, step)| {
                        for (o, &(v, c)) in out.iter_mut().zip(&vc) {
                            let (a, b) = step.coefficients(v, c);
                            *o = (a as f32, b as f32);
                        }
                    });
                self.backend.nudge_n_block(
                    self.q_dev,
                    (rows_d, rows_g),
                    records,
                    Some(&vc),
                    &coef,
                    &mut tops,
                    &mut scratch,
                )
            },
        )?;
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

/// Mean over dev queries of `|top-k ∩ answers| / min(|answers|, k)`.
fn dev_score(top: &TopK, queries: &[LabeledQuery], k: usize) -> f64 {
    let total: f64 = queries
        .iter()
        .enumerate()
        .map(|(i, q)| nudge_n::hit_rate(top.entries(i).map(|e| e.1), &q.answers, k))
        .sum();
    total / queries.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(b: &Cols) -> Vec<usize> {
        (0..b.len()).map(|i| b.get(i)).collect()
    }

    #[test]
    fn m_blocks_put_every_own_record_first_and_cover_the_rest_once() {
        for (m, block, own) in [
            (10, 4, vec![1, 7]),
            (10, 4, vec![0, 2, 3, 5, 9]), // more than a block: the first is 8
            (10, 4, vec![]),
            (10, 4, (0..10).collect()),
            (3, 8, vec![2]),
            (9, 1, vec![4, 8]),
        ] {
            let blocks = m_blocks(m, block, &own);
            let first = indices(&blocks[0]);
            assert!(own.iter().all(|o| first.contains(o)), "{m} {block} {own:?}");
            assert_eq!(
                first.len(),
                own.len().next_multiple_of(block).min(m).max(block.min(m))
            );
            let mut all: Vec<usize> = blocks.iter().flat_map(indices).collect();
            for b in &blocks {
                let v = indices(b);
                assert!(v.windows(2).all(|w| w[0] < w[1]), "a block is ascending");
                assert!(!v.is_empty());
            }
            assert!(blocks[1..].iter().all(|b| b.len() <= block));
            all.sort_unstable();
            assert_eq!(all, (0..m).collect::<Vec<_>>(), "{m} {block} {own:?}");
        }
    }

    #[test]
    fn cols_of_consecutive_records_is_a_run() {
        assert_eq!(Cols::of(vec![3, 4, 5]), Cols::Run(3..6));
        assert_eq!(Cols::of(vec![3, 5]), Cols::Picked(vec![3, 5]));
    }
}
