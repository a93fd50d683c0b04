//! The NUDGE fit, written once against the [`Backend`] steps.
//!
//! Where things are: the NUDGE-M update and interval rules in [`nudge_m`], the
//! NUDGE-N update (rotation with the clamp to Ghat) and grid in [`nudge_n`],
//! the moved/static split in [`plan`], and the order of the steps in [`fit`]:
//!
//! 1. one streaming pass over the corpus: normalise rows, keep the static
//!    top-k of every dev and test query, gather the moved rows (and, with
//!    [`fit_into`], write the output, moved rows patched in at the end);
//! 2. G = segment sums of training queries per moved record;
//! 3. S0 = Qdev . D_M^T and S1 = Qdev . G_M^T, in blocks of moved records,
//!    from which every gamma's dev score follows without the corpus;
//! 4. update the moved rows; score test queries before and after.

pub mod nudge_m;
pub mod nudge_n;
pub mod output;
pub mod plan;

use std::time::Instant;

use rayon::prelude::*;

use crate::backend::{
    Backend, Bounds, MovedBlock, Pair, RowReport, Rows, ScanSpec, SlopeBlock, TopK,
};
use crate::data::dataset::{LabeledQuery, Split};
use crate::data::npy::NpyMatrix;
use crate::error::{Error, Result};
use crate::eval::metrics::{self, Scores};
use crate::eval::search::{check_finite, list_rows, scan_corpus};
use crate::log;
use crate::matrix::{Matrix, dot};
use plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Method {
    #[value(name = "nudge-m")]
    #[serde(rename = "nudge-m")]
    NudgeM,
    #[value(name = "nudge-n")]
    #[serde(rename = "nudge-n")]
    NudgeN,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::NudgeM => "nudge-m",
            Method::NudgeN => "nudge-n",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FitOptions {
    pub method: Method,
    /// Use this gamma instead of searching for one.
    pub gamma: Option<f64>,
    /// k of the NUDGE-N dev score.
    pub val_k: usize,
    /// Cut-off of the test metrics reported before and after.
    pub eval_k: usize,
    /// Keep zero-norm corpus rows (unmoved) instead of failing.
    pub allow_zero_rows: bool,
    /// Moved records per S0/S1 block; 0 picks one from the dev count.
    pub block: usize,
}

impl FitOptions {
    pub fn new(method: Method) -> FitOptions {
        FitOptions {
            method,
            gamma: None,
            val_k: 1,
            eval_k: 10,
            allow_zero_rows: false,
            block: 0,
        }
    }
}

/// How gamma was chosen, for the report.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum DevScores {
    /// NUDGE-N: (gamma, dev score) for every gamma tried.
    Grid(Vec<GridPoint>),
    /// NUDGE-M: how many (dev query, answer) intervals contain the winner.
    Intervals {
        best_count: usize,
        intervals: usize,
        pairs: usize,
    },
    /// NUDGE-M with `--gamma`: no search ran.
    Fixed,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GridPoint {
    pub gamma: f64,
    pub score: f64,
}

pub struct Fit {
    pub method: Method,
    pub gamma: f64,
    /// Why gamma is what it is, when that is not a plain search result.
    pub gamma_reason: Option<String>,
    /// Moved records (ascending rows) and their updated embeddings.
    pub moved: Vec<u32>,
    pub updated: Matrix,
    pub dev_scores: DevScores,
    /// Test metrics at `eval_k` before and after, when there is a test split.
    pub before: Option<Scores>,
    pub after: Option<Scores>,
    pub zero_rows: Vec<usize>,
    /// Seconds per phase, in order.
    pub timings: Vec<(&'static str, f64)>,
}

/// What a fit reads.
pub struct Inputs<'a> {
    pub corpus: &'a NpyMatrix,
    pub queries: &'a Matrix,
    pub train: &'a Split,
    pub dev: &'a Split,
    pub test: Option<&'a Split>,
}

struct Clock(Instant, Vec<(&'static str, f64)>);

impl Clock {
    fn lap(&mut self, phase: &'static str) {
        let s = self.split();
        self.1.push((phase, s));
    }
    /// Seconds since the last lap or split, without recording a phase.
    fn split(&mut self) -> f64 {
        let now = Instant::now();
        let s = (now - self.0).as_secs_f64();
        self.0 = now;
        s
    }
}

pub fn fit(backend: &dyn Backend, inp: &Inputs, opts: &FitOptions) -> Result<Fit> {
    fit_into(backend, inp, opts, None)
}

/// [`fit`], also writing the output corpus during the fit's one pass over
/// the corpus: every row goes out normalised as it is read, the moved rows
/// go in once updated ([`output::InlineOutput::put_moved`]), and the caller
/// syncs the file ([`output::InlineOutput::finish`]).
/// The disk then works while the similarity search runs, instead of in a
/// second pass of its own.
pub fn fit_into(
    backend: &dyn Backend,
    inp: &Inputs,
    opts: &FitOptions,
    mut out: Option<&mut output::InlineOutput>,
) -> Result<Fit> {
    let mut clock = Clock(Instant::now(), Vec::new());
    let n = inp.corpus.rows();
    let dim = inp.corpus.cols();
    let plan = Plan::new(n, inp.train, inp.dev);
    let dev_k = match opts.method {
        Method::NudgeM => 1,
        Method::NudgeN => opts.val_k,
    };

    // 1. The one pass over the corpus.
    let q_dev = inp.dev.matrix(inp.queries);
    let q_test = inp.test.map(|t| t.matrix(inp.queries));
    // The scan's queries: the dev queries, then the test queries if any.
    let q_scan = match &q_test {
        Some(t) => {
            let mut both = q_dev.clone();
            both.data.extend_from_slice(&t.data);
            both.rows += t.rows;
            std::borrow::Cow::Owned(both)
        }
        None => std::borrow::Cow::Borrowed(&q_dev),
    };
    let k_scan = dev_k.max(if inp.test.is_some() { opts.eval_k } else { 0 });
    // The moved rows, and the dev answers that stay, copied out as the
    // corpus streams past.
    let mut d_moved = Matrix::zeros(plan.moved.len(), dim);
    let mut kept = Matrix::zeros(plan.kept.len(), dim);
    let mut cursors = (0, 0);
    // Rows are normalised once, here on the host, and everything downstream
    // (the scan, the gathered rows, the written output) takes them as they
    // are: the moved rows and the written file then agree bit for bit
    // whatever the backend.
    let spec = ScanSpec {
        queries: &q_scan,
        k: k_scan,
        rows: Rows::Checked,
        skip: Some(&plan.is_moved),
    };
    let mut report = RowReport::default();
    // An output assembled in memory takes the corpus straight from the
    // file; a streamed one is pushed each chunk.
    let (into, mut push_to) = match out.as_deref_mut() {
        Some(o) if o.in_memory() => (o.rows_mut(), None),
        o => (None, o),
    };
    let (static_top, _) = scan_corpus(backend, inp.corpus, spec, into, |chunk, first| {
        report.extend(crate::backend::cpu::normalize_rows(chunk, dim, first));
        let end = first + chunk.len() / dim.max(1);
        for (rows, dst, cursor) in [
            (&plan.moved, &mut d_moved, &mut cursors.0),
            (&plan.kept, &mut kept, &mut cursors.1),
        ] {
            while *cursor < rows.len() && (rows[*cursor] as usize) < end {
                let r = rows[*cursor] as usize - first;
                dst.row_mut(*cursor)
                    .copy_from_slice(&chunk[r * dim..(r + 1) * dim]);
                *cursor += 1;
            }
        }
        match push_to.as_mut() {
            Some(o) => o.push(chunk, first),
            None => Ok(()),
        }
    })?;
    check_finite(&report, inp.corpus)?;
    if !report.zero.is_empty() && !opts.allow_zero_rows {
        let (have, rows) = if report.zero.len() == 1 {
            ("1 row has", "row")
        } else {
            ("rows have", "rows")
        };
        return Err(Error::data(format!(
            "{}: {}{have} zero norm ({rows} {}); they cannot be normalised. Remove them, or pass --allow-zero-rows to keep them as they are",
            inp.corpus.path().display(),
            if report.zero.len() == 1 {
                String::new()
            } else {
                format!("{} ", report.zero.len())
            },
            list_rows(&report.zero)
        )));
    }
    clock.lap("scan");

    // 2. Gradients of the moved records.
    let mut g = backend.aggregate(inp.queries, &plan.segments)?;
    for (i, &r) in plan.moved.iter().enumerate() {
        if report.zero.binary_search(&(r as usize)).is_ok() {
            g.row_mut(i).fill(0.0); // a zero row stays as it is
        }
    }
    // Records that can really move: G != 0 (a zero row kept by
    // --allow-zero-rows, or training queries that cancel out, cannot).
    let movable: Vec<bool> = (0..plan.moved.len())
        .map(|i| g.row(i).iter().any(|x| *x != 0.0))
        .collect();
    let is_movable = |row: u32| plan.moved.binary_search(&row).is_ok_and(|i| movable[i]);
    clock.lap("aggregate");

    // 3. Gamma.
    let block = if opts.block > 0 {
        opts.block
    } else {
        backend.block_rows(q_dev.rows)
    };
    let dev_static = static_part(&static_top, 0, inp.dev.queries.len(), dev_k);
    let ctx = SearchContext {
        backend,
        q_dev: &q_dev,
        dev: inp.dev,
        plan: &plan,
        d_moved: &d_moved,
        g: &g,
        block,
    };
    let n_movable = movable.iter().filter(|m| **m).count();
    let dev_moved_answers = inp
        .dev
        .queries
        .iter()
        .flat_map(|q| &q.answers)
        .filter(|a| is_movable(a.0))
        .count();
    let (gamma, dev_scores, mut reason) = match (opts.method, opts.gamma) {
        (Method::NudgeM, Some(fixed)) => (
            (fixed as f32) as f64,
            DevScores::Fixed,
            Some("fixed by --gamma".to_string()),
        ),
        (Method::NudgeM, None) => {
            let (found, count, intervals, pairs) = ctx.search_m(&dev_static, &kept)?;
            (
                found as f64,
                DevScores::Intervals {
                    best_count: count,
                    intervals,
                    pairs,
                },
                None,
            )
        }
        (Method::NudgeN, fixed) => {
            let grid = match fixed {
                Some(gm) => vec![gm],
                None => nudge_n::grid(),
            };
            let points = ctx.search_n(&grid, &dev_static, dev_k)?;
            let mut best = (f64::NEG_INFINITY, 0.0);
            for p in &points {
                if p.score > best.0 {
                    best = (p.score, p.gamma);
                }
            }
            let reason = fixed.map(|_| "fixed by --gamma".to_string());
            (best.1, DevScores::Grid(points), reason)
        }
    };
    // The silent failures: the fit "succeeds" but the dev queries could not
    // judge it. Say so on stderr and in the report's gamma_reason.
    if reason.is_none() {
        let dev_answers: usize = inp.dev.queries.iter().map(|q| q.answers.len()).sum();
        let why = if n_movable == 0 {
            Some(if plan.moved.is_empty() {
                "no record answers a training query, so nothing can move".to_string()
            } else {
                format!(
                    "none of the {} records that answer a training query can move (zero-norm rows or a zero gradient)",
                    plan.moved.len()
                )
            })
        } else if dev_moved_answers == 0 {
            Some(format!(
                "no dev query has an answer that a training query moved ({n_movable} moved records, {dev_answers} dev answers); {}",
                if gamma == 0.0 {
                    "no gamma can raise the dev score".to_string()
                } else {
                    format!(
                        "gamma {gamma} was chosen only from moves of records that answer no dev query"
                    )
                }
            ))
        } else if gamma == 0.0 {
            Some("no gamma scored higher on the dev queries than gamma 0".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            if gamma == 0.0 {
                log::warn(format!(
                    "gamma is 0, the output equals the normalised input: {why}"
                ));
            } else {
                log::warn(why.clone());
            }
            reason = Some(why);
        }
    }
    clock.lap("gamma search");

    // 4. Update the moved rows in place, scoring the test queries before and
    // after.
    let test_score = |rows: &Matrix| -> Result<Option<Scores>> {
        let (Some(test), Some(qt)) = (inp.test, &q_test) else {
            return Ok(None);
        };
        let mut top = static_part(
            &static_top,
            inp.dev.queries.len(),
            test.queries.len(),
            opts.eval_k,
        );
        merge_moved(backend, qt, rows, &plan.moved, block, &mut top)?;
        Ok(Some(
            metrics::score(&top, &test.queries, &[opts.eval_k]).remove(0),
        ))
    };
    let before = test_score(&d_moved)?;
    let mut evaluate_s = clock.split();
    let mut updated = d_moved;
    match opts.method {
        Method::NudgeM => backend.update_m(&mut updated, &g, gamma as f32)?,
        Method::NudgeN => backend.update_n(&mut updated, &g, gamma)?,
    }
    clock.lap("update");
    // The output is complete now: the disk can start on it while the test
    // queries are scored.
    if let Some(o) = out.as_mut() {
        o.put_moved(&plan.moved, &updated)?;
        clock.lap("write");
    }
    let after = test_score(&updated)?;
    evaluate_s += clock.split();
    clock.1.push(("evaluate", evaluate_s));

    Ok(Fit {
        method: opts.method,
        gamma,
        gamma_reason: reason,
        moved: plan.moved,
        updated,
        dev_scores,
        before,
        after,
        zero_rows: report.zero,
        timings: clock.1,
    })
}

/// Rows `first..first+count` of a scan's lists, cut to `k`.
fn static_part(top: &TopK, first: usize, count: usize, k: usize) -> TopK {
    let mut out = TopK::new(count, k);
    for q in 0..count {
        for (s, r) in top.entries(first + q).take(k) {
            out.push(q, s, r);
        }
    }
    out
}

/// Offers every query's score against `rows` (records `records`) to `top`.
fn merge_moved(
    backend: &dyn Backend,
    q: &Matrix,
    rows: &Matrix,
    records: &[u32],
    block: usize,
    top: &mut TopK,
) -> Result<()> {
    for start in (0..records.len()).step_by(block.max(1)) {
        crate::interrupt::check()?;
        let end = (start + block).min(records.len());
        let s = backend.similarity(q, &rows.rows_range(start, end))?;
        for i in 0..q.rows {
            top.offer(i, s.row(i), &records[start..end]);
        }
    }
    Ok(())
}

struct SearchContext<'a> {
    backend: &'a dyn Backend,
    q_dev: &'a Matrix,
    dev: &'a Split,
    plan: &'a Plan,
    d_moved: &'a Matrix,
    g: &'a Matrix,
    block: usize,
}

impl SearchContext<'_> {
    /// S0 and S1 of the block of moved records that starts at `start`.
    fn block(&self, start: usize) -> Result<(Matrix, Matrix)> {
        let end = (start + self.block.max(1)).min(self.plan.moved.len());
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

    /// Blocks of moved records with their S0 and S1 against the dev queries.
    fn for_each_block(&self, mut f: impl FnMut(usize, &MovedBlock) -> Result<()>) -> Result<()> {
        let m = self.plan.moved.len();
        let progress = crate::progress::Progress::new("gamma search", m as u64, "moved records");
        for start in (0..m).step_by(self.block.max(1)) {
            crate::interrupt::check()?;
            let (s0, s1) = self.block(start)?;
            progress.set((start + s0.cols) as u64);
            f(
                start,
                &MovedBlock {
                    records: &self.plan.moved[start..start + s0.cols],
                    s0: &s0,
                    s1: &s1,
                },
            )?;
        }
        progress.finish();
        Ok(())
    }

    /// Every (dev query, answer) pair. A static answer's score is computed
    /// here (its slope is 0); a moved answer's score and slope are left for
    /// [`Self::search_m`] to read from S0 and the slopes.
    fn pairs(&self, kept: &Matrix) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (i, q) in self.dev.queries.iter().enumerate() {
            for &(x, _) in &q.answers {
                let s = match self.plan.moved.binary_search(&x) {
                    Ok(_) => 0.0,
                    Err(_) => {
                        let ki = self.plan.kept.binary_search(&x).expect("dev answer kept");
                        dot(self.q_dev.row(i), kept.row(ki))
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
    /// pair, then the sweep. Returns gamma, the winning count, the number
    /// of intervals and of pairs.
    ///
    /// A pair's own score and slope must be the very numbers its competitors
    /// are compared with: records that answer the same training queries have
    /// the same G, so their slopes cancel to exactly 0 in the reference and
    /// such a pair is dropped or kept by the sign of the score difference
    /// alone. Computed another way (a separate dot product), the difference
    /// is a rounding error instead, and its quotient an arbitrary bound
    /// (NFCorpus has many such records; a GPU's fused multiply-add had
    /// turned them into gamma = 3e7). So the blocks are computed twice, once
    /// for the pairs' own values and once for the bounds (the backends are
    /// deterministic, so both passes see the same numbers), unless there is
    /// only one, which is then kept.
    fn search_m(&self, dev_static: &TopK, kept: &Matrix) -> Result<(f32, usize, usize, usize)> {
        let m = self.plan.moved.len();
        let inv_norm: Vec<f32> = (0..m)
            .map(|i| {
                let n = self.g_norm(i);
                if n > 0.0 { 1.0 / n } else { 0.0 }
            })
            .collect();
        let slope_block = |start: usize| -> Result<(Matrix, Matrix)> {
            let (s0, mut s1) = self.block(start)?;
            slopes(&mut s1, &inv_norm[start..start + s0.cols]);
            Ok((s0, s1))
        };
        let mut pairs = self.pairs(kept);
        // (moved index, pair) of every pair whose answer moves, by column.
        let mut own: Vec<(usize, usize)> = pairs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.plan.moved.binary_search(&p.record).ok()?, i)))
            .collect();
        own.sort_unstable();
        let starts: Vec<usize> = (0..m).step_by(self.block.max(1)).collect();
        // One block is kept for the second pass rather than computed again.
        let reuse = starts.len() == 1;
        let mut cached = Vec::new();
        let progress = crate::progress::Progress::new(
            "gamma search",
            if reuse { m } else { 2 * m } as u64,
            "moved records",
        );
        let mut next = 0;
        for &start in &starts {
            crate::interrupt::check()?;
            let (s0, t) = slope_block(start)?;
            let end = start + s0.cols;
            while let Some(&(mi, i)) = own.get(next).filter(|o| o.0 < end) {
                let q = pairs[i].query as usize;
                pairs[i].s = s0.row(q)[mi - start];
                pairs[i].t = t.row(q)[mi - start];
                next += 1;
            }
            progress.set(end as u64);
            if reuse {
                cached.push((s0, t));
            }
        }
        let mut bounds: Vec<Bounds> = pairs
            .iter()
            .map(|p| nudge_m::static_bounds(p, dev_static.entries(p.query as usize).next()))
            .collect();
        let mut cached = cached.into_iter();
        for &start in &starts {
            crate::interrupt::check()?;
            let (s0, t) = match cached.next() {
                Some(b) => b,
                None => slope_block(start)?,
            };
            let end = start + s0.cols;
            self.backend.nudge_m_bounds(
                &SlopeBlock {
                    records: &self.plan.moved[start..end],
                    s: &s0,
                    t: &t,
                },
                &pairs,
                &mut bounds,
            )?;
            if !reuse {
                progress.set((m + end) as u64);
            }
        }
        progress.finish();
        let intervals: Vec<(f32, f32)> = bounds.into_iter().filter_map(nudge_m::finish).collect();
        let (gamma, count) = nudge_m::sweep(&intervals);
        Ok((gamma, count, intervals.len(), pairs.len()))
    }

    fn g_norm(&self, i: usize) -> f32 {
        self.g.row(i).iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    fn search_n(&self, grid: &[f64], dev_static: &TopK, k: usize) -> Result<Vec<GridPoint>> {
        let steps: Vec<nudge_n::Step> = grid.iter().map(|&g| nudge_n::Step::new(g)).collect();
        // v and c per moved record, as the update computes them.
        let vc: Vec<(f64, f64)> = (0..self.plan.moved.len())
            .into_par_iter()
            .with_min_len(256)
            .map(|i| nudge_n::dots(self.d_moved.row(i), self.g.row(i)))
            .collect();
        let mut tops: Vec<TopK> = vec![dev_static.clone(); grid.len()];
        self.for_each_block(|start, b| {
            let w = b.records.len();
            let mut coef = vec![(0.0, 0.0); grid.len() * w];
            coef.par_chunks_mut(w.max(1))
                .zip(&steps)
                .for_each(|(out, step)| {
                    for (o, &(v, c)) in out.iter_mut().zip(&vc[start..start + w]) {
                        let (a, bb) = step.coefficients(v, c);
                        *o = (a as f32, bb as f32);
                    }
                });
            self.backend.nudge_n_merge(b, &coef, &mut tops)
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
