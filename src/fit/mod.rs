//! The NUDGE fit, written once against the [`Backend`] steps.
//!
//! [`fit_into`] is the whole algorithm as five named steps:
//!
//! 1. `scan_and_gather`: one streaming pass over the corpus normalises the
//!    rows, keeps the static top-k of every dev and test query, gathers the
//!    moved rows (and writes the output as it goes, when asked to);
//! 2. `aggregate`: G = segment sums of training queries per moved record;
//! 3. `choose_gamma`: S0 = Qdev . D_M^T and S1 = Qdev . G_M^T, in blocks
//!    of moved records, from which every gamma's dev score follows without
//!    the corpus (the searches themselves are in `search`);
//! 4. `update`: move the moved rows;
//! 5. `score_test`: test metrics before and after, from the static lists
//!    and the moved rows alone.
//!
//! The moved/static split comes from the judgements alone (`plan`),
//! before the corpus is read. [`output`] writes the tuned corpus.

pub mod output;
pub mod partial;
pub(crate) mod plan;
pub(crate) mod scan;
mod search;

use std::time::Instant;

use crate::backend::{Backend, RowReport, Rows, ScanSpec, TopK};
use crate::control::Control;
use crate::data::Corpus;
use crate::data::dataset::Split;
use crate::error::{Error, Result};
use crate::eval::metrics::{self, Scores};
use crate::matrix::Matrix;
use crate::method::{Method, nudge_n};
use plan::Plan;
use scan::{check_finite, scan_corpus};
use search::Search;

pub use crate::backend::slopes;

/// How to fit: the method and its settings, plus the knobs a caller may
/// tune (chunk and block sizes) and the [`Control`] that watches the run.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// NUDGE-M or NUDGE-N.
    pub method: Method,
    /// Use this gamma instead of searching for one (NUDGE-N: 0 to 4).
    pub gamma: Option<f64>,
    /// k of the NUDGE-N dev score (top-k hits / min(|answers|, k)); at least 1.
    pub val_k: usize,
    /// Cut-off of the test metrics reported before and after; at least 1.
    pub eval_k: usize,
    /// Keep zero-norm corpus rows (unmoved) instead of failing with
    /// [`Error::ZeroRows`].
    pub allow_zero_rows: bool,
    /// Moved records per S0/S1 block; `None` lets the backend choose from
    /// the number of dev queries.
    pub block_rows: Option<usize>,
    /// Corpus rows per streamed chunk; `None` lets the backend choose. The
    /// result does not depend on it (tests force tiny chunks to prove it).
    pub chunk_rows: Option<usize>,
    /// Progress and cancellation.
    pub control: Control,
}

impl FitOptions {
    /// The depth of the static lists this fit's pass keeps: the dev depth,
    /// and the test cut-off when a test split is scored.
    pub(crate) fn scan_k(&self, with_test: bool) -> usize {
        self.dev_k().max(if with_test { self.eval_k } else { 0 })
    }

    /// The corpus pass of this fit, as a map of the whole corpus.
    pub(crate) fn scan_options(&self, with_test: bool) -> partial::MapOptions {
        partial::MapOptions {
            k: self.scan_k(with_test),
            allow_zero_rows: self.allow_zero_rows,
            lean: false,
            chunk_rows: self.chunk_rows,
            control: self.control.clone(),
        }
    }

    /// The depth of the dev lists the gamma search reads: 1 for NUDGE-M,
    /// `val_k` for NUDGE-N.
    pub fn dev_k(&self) -> usize {
        match self.method {
            Method::NudgeM => 1,
            Method::NudgeN => self.val_k,
        }
    }

    /// The reference's defaults for `method`: gamma searched, `val_k` 1,
    /// test metrics at 10.
    pub fn new(method: Method) -> FitOptions {
        FitOptions {
            method,
            gamma: None,
            val_k: 1,
            eval_k: 10,
            allow_zero_rows: false,
            block_rows: None,
            chunk_rows: None,
            control: Control::default(),
        }
    }

    /// [`Error::Invalid`] for settings no fit can run with.
    pub fn validate(&self) -> Result<()> {
        if let Some(g) = self.gamma {
            let max = match self.method {
                Method::NudgeN => 4.0,
                Method::NudgeM => f64::MAX,
            };
            if !(g.is_finite() && (0.0..=max).contains(&g)) {
                return Err(Error::invalid(format!(
                    "gamma {g}: expected a number >= 0 (and <= 4 for nudge-n)"
                )));
            }
        }
        if self.val_k == 0 {
            return Err(Error::invalid("val_k must be at least 1"));
        }
        if self.eval_k == 0 {
            return Err(Error::invalid("eval_k must be at least 1"));
        }
        if self.block_rows == Some(0) || self.chunk_rows == Some(0) {
            return Err(Error::invalid("block and chunk sizes must be at least 1"));
        }
        Ok(())
    }
}

/// How gamma was chosen, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum DevScores {
    /// NUDGE-N: (gamma, dev score) for every gamma tried.
    Grid(Vec<GridPoint>),
    /// NUDGE-M: how many (dev query, answer) intervals contain the winner.
    Intervals {
        /// Intervals that contain the chosen gamma.
        best_count: usize,
        /// Intervals (pairs whose answer can rank first for some gamma).
        intervals: usize,
        /// (dev query, answer) pairs.
        pairs: usize,
    },
    /// NUDGE-M with a fixed gamma: no search ran.
    Fixed,
}

/// One gamma of the NUDGE-N grid and its dev score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GridPoint {
    /// The gamma.
    pub gamma: f64,
    /// Mean dev hit rate at `val_k` with that gamma.
    pub score: f64,
}

/// What a fit found: gamma, the moved records and their new embeddings, and
/// how it got there. The tuned corpus is the input with every row
/// normalised and the rows `moved` replaced by `updated` ([`Fit::apply`]).
#[derive(Debug, Clone)]
pub struct Fit {
    /// The method that ran.
    pub method: Method,
    /// k of the NUDGE-N dev score (1 for NUDGE-M).
    pub val_k: usize,
    /// The chosen (or given) gamma.
    pub gamma: f64,
    /// Why gamma is what it is, when that is not a plain search result
    /// (fixed by the caller, or a search that could not judge; see
    /// [`Fit::warnings`]).
    pub gamma_reason: Option<String>,
    /// Moved records, ascending corpus rows.
    pub moved: Vec<u32>,
    /// The moved records' new embeddings, one row per entry of `moved`.
    pub updated: Matrix,
    /// How gamma was chosen.
    pub dev_scores: DevScores,
    /// NUDGE-M: every dev pair's interval `[low, high)` of gamma where its
    /// answer ranks first (the sweep picks the gamma most of them contain);
    /// empty for NUDGE-N or a fixed gamma.
    pub dev_intervals: Vec<(f32, f32)>,
    /// NDCG at `eval_k` of every test query before and after, in split
    /// order, when there is a test split.
    pub test_ndcg: Option<(Vec<f64>, Vec<f64>)>,
    /// How far (L2) each moved record moved, in `moved` order.
    pub moved_distances: Vec<f32>,
    /// Test metrics at `eval_k` before the fit, when there is a test split.
    pub before: Option<Scores>,
    /// Test metrics at `eval_k` after the fit, when there is a test split.
    pub after: Option<Scores>,
    /// Corpus rows of zero norm, kept as they are (with `allow_zero_rows`).
    pub zero_rows: Vec<usize>,
    /// Things the caller should tell the user (e.g. gamma came out 0
    /// because no dev query could judge it).
    pub warnings: Vec<String>,
    /// Seconds per phase, in order.
    pub timings: Vec<(&'static str, f64)>,
    /// What ran it: the backend's name (`cpu`, `gpu`) and its device.
    pub backend: (&'static str, String),
    /// Corpus rows and dimension.
    pub shape: (usize, usize),
    /// Queries in the train, dev and test splits (0 without a test split).
    pub queries: [usize; 3],
}

impl Fit {
    /// The fit as the JSON object `nudge fit --report` writes (and the
    /// Python package's `FitResult.report`): method, gamma, gamma_reason,
    /// backend, device, records, dim, queries, moved_records, zero_rows,
    /// dev_scores, timings (seconds per phase) and, with a test split,
    /// before/after.
    pub fn report(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let metrics = |s: &Scores| json!({ format!("recall@{}", s.k): s.recall, format!("ndcg@{}", s.k): s.ndcg, "queries": s.queries });
        let mut timings = Map::new();
        for (phase, s) in &self.timings {
            timings.insert((*phase).into(), json!(s));
        }
        let mut r = Map::new();
        r.insert("method".into(), json!(self.method.as_str()));
        r.insert("gamma".into(), json!(self.gamma));
        r.insert("gamma_reason".into(), json!(self.gamma_reason));
        r.insert("val_k".into(), json!(self.val_k));
        r.insert("backend".into(), json!(self.backend.0));
        r.insert("device".into(), json!(self.backend.1));
        r.insert("records".into(), json!(self.shape.0));
        r.insert("dim".into(), json!(self.shape.1));
        let [train, dev, test] = self.queries;
        r.insert(
            "queries".into(),
            json!({ "train": train, "dev": dev, "test": test }),
        );
        r.insert("moved_records".into(), json!(self.moved.len()));
        r.insert("zero_rows".into(), json!(self.zero_rows.len()));
        r.insert(
            "dev_scores".into(),
            serde_json::to_value(&self.dev_scores).expect("dev scores serialise"),
        );
        r.insert("timings".into(), Value::Object(timings));
        if let (Some(b), Some(a)) = (&self.before, &self.after) {
            r.insert("before".into(), metrics(b));
            r.insert("after".into(), metrics(a));
        }
        // What the HTML report draws (`nudge report`): the curves and
        // distributions behind the numbers above.
        if !self.dev_intervals.is_empty() {
            r.insert("dev_intervals".into(), json!(self.dev_intervals));
        }
        if let (Some((b, a)), Some(s)) = (&self.test_ndcg, &self.after) {
            r.insert(
                "per_query_ndcg".into(),
                json!({ "k": s.k, "before": b, "after": a }),
            );
        }
        r.insert("moved_distances".into(), json!(self.moved_distances));
        Value::Object(r)
    }

    /// Turns a copy of the input corpus (`rows x cols`, row-major, in input
    /// order) into the tuned corpus in place: every row L2-normalised (zero
    /// rows stay zero), the moved rows replaced. Bit for bit what a fit
    /// writes to its output.
    pub fn apply(&self, corpus: &mut [f32], cols: usize) {
        apply(corpus, cols, &self.moved, &self.updated.data);
    }
}

/// [`Fit::apply`] from its parts: `moved` rows (ascending, each below the
/// corpus's row count) and their new embeddings `updated` (one row of
/// `cols` values per entry of `moved`), for a fit that was saved (the
/// delta of `nudge fit --delta`, a Python `FitResult`).
pub fn apply(corpus: &mut [f32], cols: usize, moved: &[u32], updated: &[f32]) {
    assert!(cols > 0 && corpus.len().is_multiple_of(cols), "whole rows");
    assert_eq!(
        updated.len(),
        moved.len() * cols,
        "one updated row per moved row"
    );
    crate::backend::cpu::normalize_rows(corpus, cols, 0);
    for (&r, row) in moved.iter().zip(updated.chunks_exact(cols)) {
        let r = r as usize;
        corpus[r * cols..(r + 1) * cols].copy_from_slice(row);
    }
}

/// What a fit reads: the corpus, every query embedding, and the judgements
/// of each split (rows into `queries` and the corpus).
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The corpus, on disk or in memory.
    pub corpus: Corpus<'a>,
    /// Every query embedding of every split, one per row.
    pub queries: &'a Matrix,
    /// Training judgements: the records they name move.
    pub train: &'a Split,
    /// Dev judgements: choose gamma.
    pub dev: &'a Split,
    /// Test judgements, scored before and after, if any.
    pub test: Option<&'a Split>,
}

/// Fits NUDGE on `backend` and returns the moved records with their new
/// embeddings; nothing is written (see [`Fit::apply`], or [`fit_into`] and
/// [`output::fit_to_file`] to write the tuned corpus in the same pass).
pub fn fit(backend: &dyn Backend, inputs: &Inputs, opts: &FitOptions) -> Result<Fit> {
    fit_into(backend, inputs, opts, None)
}

/// [`fit`], also writing the output corpus during the fit's one pass over
/// the corpus: every row goes out normalised as it is read, the moved rows
/// go in once updated ([`output::InlineOutput::put_moved`]), and the caller
/// syncs the file ([`output::InlineOutput::finish`]). The disk then works
/// while the similarity search runs, instead of in a second pass of its own.
pub fn fit_into(
    backend: &dyn Backend,
    inputs: &Inputs,
    opts: &FitOptions,
    mut out: Option<&mut output::InlineOutput>,
) -> Result<Fit> {
    opts.validate()?;
    let queries = Queries::new(inputs.queries, inputs.train, inputs.dev, inputs.test)?;
    queries.check(inputs.corpus.rows(), inputs.corpus.cols())?;
    let mut clock = Clock::start();
    let plan = Plan::new(inputs.corpus.rows(), inputs.train, inputs.dev);
    // Only as deep as this fit needs (a map for a later reduce keeps the
    // deepest either method asks for).
    let map = opts.scan_options(inputs.test.is_some());
    let pass = scan_and_gather(
        backend,
        inputs.corpus,
        0..inputs.corpus.rows(),
        &queries,
        &plan,
        &plan.mask(),
        &map,
        Sink::of(out.as_deref_mut()),
    )?;
    clock.lap("scan");
    solve(backend, &queries, plan, pass, opts, clock, out)
}

/// Where the corpus pass puts the rows it normalised, for the output.
pub(crate) enum Sink<'a> {
    /// Nowhere (no output, or a part of a map).
    Discard,
    /// Read into these rows of an output assembled in memory (room for the
    /// pass's rows, which are read straight into it).
    Into(&'a mut [f32]),
    /// Pushed chunk by chunk to a streamed output.
    Push(&'a mut output::InlineOutput),
}

impl<'a> Sink<'a> {
    /// The sink of a whole-corpus pass writing `out`: an output assembled
    /// in memory takes the corpus straight from the file; a streamed one is
    /// pushed each chunk.
    fn of(out: Option<&'a mut output::InlineOutput>) -> Sink<'a> {
        match out {
            None => Sink::Discard,
            Some(o) if o.in_memory() => Sink::Into(o.rows_mut().expect("in memory")),
            Some(o) => Sink::Push(o),
        }
    }
}

/// [`fit_into`] with the corpus pass spread over several backends at once
/// (every GPU of a machine): each scans an equal share of the rows on a
/// thread of its own, and the shares merge as [`partial::reduce`] merges
/// partials, so the fit equals [`fit_into`] on one of them bit for bit
/// (when they compute alike, as adapters of one kind do). The steps after
/// the scan run on the first backend. An output assembled in memory is
/// filled by the shares directly; a streamed one (a corpus over
/// [`output::WriteOptions::in_memory_max`]) is written in a second pass
/// over the corpus once the scan is done.
pub fn fit_across(
    backends: &[&dyn Backend],
    inputs: &Inputs,
    opts: &FitOptions,
    mut out: Option<&mut output::InlineOutput>,
) -> Result<Fit> {
    match backends {
        [] => return Err(Error::invalid("no backend to fit on")),
        [one] => return fit_into(*one, inputs, opts, out),
        _ => {}
    }
    opts.validate()?;
    let queries = Queries::new(inputs.queries, inputs.train, inputs.dev, inputs.test)?;
    let n = inputs.corpus.rows();
    queries.check(n, inputs.corpus.cols())?;
    let mut clock = Clock::start();
    let plan = Plan::new(n, inputs.train, inputs.dev);
    let map = opts.scan_options(inputs.test.is_some());
    // Each share of an in-memory output goes to the part that reads it.
    let dim = inputs.corpus.cols();
    let mut slices: Vec<std::sync::Mutex<Option<&mut [f32]>>> = Vec::new();
    let streamed = match out.as_deref_mut() {
        Some(o) if o.in_memory() => {
            let mut rest = o.rows_mut().expect("in memory");
            for i in 0..backends.len() {
                let rows = partial::part(i, backends.len(), n)?;
                let (head, tail) = rest.split_at_mut(rows.len() * dim);
                slices.push(std::sync::Mutex::new(Some(head)));
                rest = tail;
            }
            false
        }
        Some(_) => true,
        None => false,
    };
    let mask = plan.mask();
    let parts = scan::across(
        backends,
        0..n,
        &opts.control,
        "scanning corpus",
        |i, b, rows, control| {
            let sink = match slices.get(i).and_then(|s| s.lock().expect("slice").take()) {
                Some(rows) => Sink::Into(rows),
                None => Sink::Discard,
            };
            let opts = partial::MapOptions {
                control: control.clone(),
                ..map.clone()
            };
            scan_and_gather(b, inputs.corpus, rows, &queries, &plan, &mask, &opts, sink)
        },
    )?;
    drop(slices);
    let pass = partial::merge(&queries, &plan, n, &parts, map.k, None)?;
    clock.lap("scan");
    if streamed && let Some(o) = out.as_deref_mut() {
        output::push_normalised(
            inputs.corpus,
            0..n,
            o,
            opts.chunk_rows,
            &opts.control,
            "writing output",
        )?;
        clock.lap("write");
    }
    solve(backends[0], &queries, plan, pass, opts, clock, out)
}

/// The queries of a fit and of its partials: every query embedding, the
/// splits, and the dev (then test) queries gathered for the scan.
pub(crate) struct Queries<'a> {
    pub all: &'a Matrix,
    pub train: &'a Split,
    pub dev: &'a Split,
    pub test: Option<&'a Split>,
    pub q_dev: Matrix,
    pub q_test: Option<Matrix>,
}

impl<'a> Queries<'a> {
    pub fn new(
        all: &'a Matrix,
        train: &'a Split,
        dev: &'a Split,
        test: Option<&'a Split>,
    ) -> Result<Queries<'a>> {
        Ok(Queries {
            all,
            train,
            dev,
            test,
            q_dev: dev.matrix(all),
            q_test: test.map(|t| t.matrix(all)),
        })
    }

    /// Fails unless every split names queries and records that exist and
    /// the corpus has the queries' dimension.
    pub fn check(&self, records: usize, cols: usize) -> Result<()> {
        if self.all.cols != cols {
            return Err(Error::inconsistent(format!(
                "dimension mismatch: the corpus has {cols}-d rows but the queries have {}-d rows; queries and corpus must come from the same model",
                self.all.cols
            )));
        }
        for split in [Some(self.train), Some(self.dev), self.test]
            .into_iter()
            .flatten()
        {
            split.check_rows(self.all.rows, records)?;
        }
        Ok(())
    }
}

/// Steps 2 to 5, from what the corpus pass (or the reduce of partials that
/// cover the corpus) left: everything after the scan.
pub(crate) fn solve(
    backend: &dyn Backend,
    queries: &Queries,
    plan: Plan,
    pass: partial::Partial,
    opts: &FitOptions,
    mut clock: Clock,
    mut out: Option<&mut output::InlineOutput>,
) -> Result<Fit> {
    let dev_k = opts.dev_k();
    let (q_dev, q_test) = (&queries.q_dev, queries.q_test.as_ref());
    let (dev, test) = (queries.dev, queries.test);
    let g = aggregate(backend, queries.all, &plan, &pass.zero_rows)?;
    clock.lap("aggregate");

    let block = opts
        .block_rows
        .unwrap_or_else(|| backend.block_rows(q_dev.rows));
    let search = Search {
        backend,
        q_dev,
        dev,
        moved: &plan.moved,
        kept: &plan.kept,
        d_moved: &pass.moved,
        kept_rows: &pass.kept,
        g: &g,
        block,
        control: &opts.control,
    };
    let dev_static = static_part(&pass.top, 0, dev.queries.len(), dev_k);
    let choice = choose_gamma(&search, &dev_static, opts, dev_k)?;
    let reason = choice
        .reason
        .clone()
        .or_else(|| explain_gamma(choice.gamma, dev, &plan.moved, &g));
    let mut warnings = Vec::new();
    if choice.reason.is_none()
        && let Some(why) = &reason
    {
        warnings.push(if choice.gamma == 0.0 {
            format!("gamma is 0, the output equals the normalised input: {why}")
        } else {
            why.clone()
        });
    }
    clock.lap("gamma search");

    let scoring = TestScoring {
        backend,
        top: &pass.top,
        dev_queries: dev.queries.len(),
        test: test.zip(q_test),
        moved: &plan.moved,
        k: opts.eval_k,
        block,
        control: &opts.control,
    };
    let before = score_test(&scoring, &pass.moved)?;
    let mut evaluate_s = clock.split();
    let moved_distances = move_distances(opts.method, &pass.moved, &g, choice.gamma);
    let updated = update(backend, opts.method, pass.moved, &g, choice.gamma)?;
    clock.lap("update");
    // The output is complete now: the disk can start on it while the test
    // queries are scored.
    if let Some(o) = out.as_mut() {
        o.put_moved(&plan.moved, &updated)?;
        clock.lap("write");
    }
    let after = score_test(&scoring, &updated)?;
    evaluate_s += clock.split();
    clock.1.push(("evaluate", evaluate_s));

    let (before, before_q) = before.unzip();
    let (after, after_q) = after.unzip();
    Ok(Fit {
        method: opts.method,
        val_k: dev_k,
        gamma: choice.gamma,
        gamma_reason: reason,
        moved: plan.moved,
        updated,
        dev_scores: choice.dev_scores,
        dev_intervals: choice.intervals,
        test_ndcg: before_q.zip(after_q),
        moved_distances,
        before,
        after,
        zero_rows: pass.zero_rows,
        warnings,
        timings: clock.1,
        backend: (backend.name(), backend.device_name()),
        shape: (plan.records, queries.all.cols),
        queries: [
            queries.train.queries.len(),
            dev.queries.len(),
            test.map_or(0, |t| t.queries.len()),
        ],
    })
}

/// Step 1: one pass over corpus rows `range`. Every row is normalised once,
/// here on the host, and everything downstream (the scan, the gathered
/// rows, the written output) takes it as it is, so the moved rows and the
/// written file agree bit for bit whatever the backend. The moved rows are
/// left out of the static top-k; they and the static dev answers are
/// copied out as the corpus streams past. A fit passes over every row; a
/// map ([`partial::map`]) over its part.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_and_gather(
    backend: &dyn Backend,
    corpus: Corpus,
    range: std::ops::Range<usize>,
    queries: &Queries,
    plan: &Plan,
    mask: &[bool],
    opts: &partial::MapOptions,
    sink: Sink,
) -> Result<partial::Partial> {
    let t = Instant::now();
    let dim = corpus.cols();
    let (q_dev, q_test) = (&queries.q_dev, queries.q_test.as_ref());
    // The scan's queries: the dev queries, then the test queries if any.
    let q_scan = match q_test {
        Some(t) => {
            let mut both = q_dev.clone();
            both.data.extend_from_slice(&t.data);
            both.rows += t.rows;
            std::borrow::Cow::Owned(both)
        }
        None => std::borrow::Cow::Borrowed(q_dev),
    };
    // The moved records and static dev answers within the range.
    let (moved_rows, kept_rows) = (
        Plan::within(&plan.moved, &range).to_vec(),
        Plan::within(&plan.kept, &range).to_vec(),
    );
    let mut moved = Matrix::zeros(moved_rows.len(), dim);
    let mut kept = Matrix::zeros(kept_rows.len(), dim);
    let mut cursors = (0, 0);
    let spec = ScanSpec {
        queries: &q_scan,
        k: opts.k,
        rows: Rows::Checked,
        skip: Some(mask),
    };
    let mut report = RowReport::default();
    let (into, mut push_to) = match sink {
        Sink::Discard => (None, None),
        Sink::Into(rows) => (Some(rows), None),
        Sink::Push(o) => (None, Some(o)),
    };
    let (top, _) = scan_corpus(
        backend,
        corpus,
        range.clone(),
        spec,
        opts.chunk_rows,
        into,
        &opts.control,
        |chunk, first| {
            report.extend(crate::backend::cpu::normalize_rows(chunk, dim, first));
            let end = first + chunk.len() / dim.max(1);
            for (rows, dst, cursor) in [
                (&moved_rows, &mut moved, &mut cursors.0),
                (&kept_rows, &mut kept, &mut cursors.1),
            ] {
                while *cursor < rows.len() && (rows[*cursor] as usize) < end {
                    let r = rows[*cursor] as usize - first;
                    dst.row_mut(*cursor)
                        .copy_from_slice(&chunk[r * dim..(r + 1) * dim]);
                    *cursor += 1;
                }
            }
            match push_to.as_mut() {
                Some(o) => o.push(chunk, first - range.start),
                None => Ok(()),
            }
        },
    )?;
    check_finite(&report, corpus)?;
    if !report.zero.is_empty() && !opts.allow_zero_rows {
        return Err(Error::ZeroRows {
            path: corpus.path_buf(),
            rows: report.zero,
        });
    }
    Ok(partial::Partial {
        rows: range,
        dim,
        k: opts.k,
        dev_queries: q_dev.rows,
        test_queries: q_test.map(|t| t.rows),
        fingerprint: partial::Fingerprint::of(q_dev, q_test),
        top,
        moved_rows,
        moved,
        kept_rows,
        kept,
        zero_rows: report.zero,
        seconds: t.elapsed().as_secs_f64(),
        source: None,
        lean: false,
    })
}

/// Step 2: the gradient G of every moved record, the sum of the training
/// queries it answers. A zero row kept by `allow_zero_rows` gets G = 0, so
/// that it stays as it is.
fn aggregate(
    backend: &dyn Backend,
    queries: &Matrix,
    plan: &Plan,
    zero_rows: &[usize],
) -> Result<Matrix> {
    let mut g = backend.aggregate(queries, &plan.segments)?;
    for (i, &r) in plan.moved.iter().enumerate() {
        if zero_rows.binary_search(&(r as usize)).is_ok() {
            g.row_mut(i).fill(0.0);
        }
    }
    Ok(g)
}

/// Gamma, how it was found, and why when a caller fixed it.
struct Choice {
    gamma: f64,
    dev_scores: DevScores,
    reason: Option<String>,
    /// NUDGE-M's dev intervals (empty otherwise).
    intervals: Vec<(f32, f32)>,
}

/// Step 3: gamma, fixed by the caller or searched: NUDGE-M's exact interval
/// sweep, or NUDGE-N's grid (a fixed NUDGE-N gamma is a grid of one, so its
/// dev score is reported too).
fn choose_gamma(
    search: &Search,
    dev_static: &TopK,
    opts: &FitOptions,
    dev_k: usize,
) -> Result<Choice> {
    let fixed = opts.gamma.map(|_| "fixed by the caller".to_string());
    Ok(match (opts.method, opts.gamma) {
        (Method::NudgeM, Some(g)) => Choice {
            // NUDGE-M applies gamma in f32, as the reference does.
            gamma: (g as f32) as f64,
            dev_scores: DevScores::Fixed,
            reason: fixed,
            intervals: Vec::new(),
        },
        (Method::NudgeM, None) => {
            let m = search.search_m(dev_static)?;
            Choice {
                gamma: m.gamma as f64,
                dev_scores: DevScores::Intervals {
                    best_count: m.count,
                    intervals: m.intervals.len(),
                    pairs: m.pairs,
                },
                reason: None,
                intervals: m.intervals,
            }
        }
        (Method::NudgeN, g) => {
            let grid = match g {
                Some(g) => vec![g],
                None => nudge_n::grid(),
            };
            let points = search.search_n(&grid, dev_static, dev_k)?;
            // The first best point wins, as in the reference.
            let mut best = (f64::NEG_INFINITY, 0.0);
            for p in &points {
                if p.score > best.0 {
                    best = (p.score, p.gamma);
                }
            }
            Choice {
                gamma: best.1,
                dev_scores: DevScores::Grid(points),
                reason: fixed,
                intervals: Vec::new(),
            }
        }
    })
}

/// The silent failures: the search "succeeds" but the dev queries could not
/// judge it. `None` when the search result is a plain one.
fn explain_gamma(gamma: f64, dev: &Split, moved: &[u32], g: &Matrix) -> Option<String> {
    // Records that can really move: G != 0 (a zero row kept by
    // allow_zero_rows, or training queries that cancel out, cannot).
    let movable: Vec<bool> = (0..moved.len())
        .map(|i| g.row(i).iter().any(|x| *x != 0.0))
        .collect();
    let n_movable = movable.iter().filter(|m| **m).count();
    let is_movable = |row: u32| moved.binary_search(&row).is_ok_and(|i| movable[i]);
    let dev_answers: usize = dev.queries.iter().map(|q| q.answers.len()).sum();
    let dev_moved_answers = dev
        .queries
        .iter()
        .flat_map(|q| &q.answers)
        .filter(|a| is_movable(a.0))
        .count();
    if n_movable == 0 {
        Some(if moved.is_empty() {
            "no record answers a training query, so nothing can move".to_string()
        } else {
            format!(
                "none of the {} records that answer a training query can move (zero-norm rows or a zero gradient)",
                moved.len()
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
    }
}

/// Step 4: the moved rows, moved (NUDGE-M shift or NUDGE-N rotation).
fn update(
    backend: &dyn Backend,
    method: Method,
    mut rows: Matrix,
    g: &Matrix,
    gamma: f64,
) -> Result<Matrix> {
    match method {
        Method::NudgeM => backend.update_m(&mut rows, g, gamma as f32)?,
        Method::NudgeN => backend.update_n(&mut rows, g, gamma)?,
    }
    Ok(rows)
}

/// How far (L2) each moved record moves, for the report: from the update
/// rule itself, so that no copy of the rows before the update is kept.
/// NUDGE-M shifts by `gamma` along the unit `G/|G|` (not at all if G = 0);
/// NUDGE-N's `a d + b G` of a unit-norm `d` lies
/// `sqrt((a-1)^2 + 2(a-1)b v + b^2 c)` from it, with `(v, c) = (d.G, |G|^2)`
/// as the update computes them.
fn move_distances(method: Method, rows: &Matrix, g: &Matrix, gamma: f64) -> Vec<f32> {
    use rayon::prelude::*;
    let step = nudge_n::Step::new(gamma);
    (0..rows.rows)
        .into_par_iter()
        .with_min_len(256)
        .map(|i| match method {
            Method::NudgeM => {
                if g.row(i).iter().any(|x| *x != 0.0) {
                    (gamma as f32).abs()
                } else {
                    0.0
                }
            }
            Method::NudgeN => {
                let (v, c) = nudge_n::dots(rows.row(i), g.row(i));
                let (a, b) = step.coefficients(v, c);
                let d2 = (a - 1.0) * (a - 1.0) + 2.0 * (a - 1.0) * b * v + b * b * c;
                d2.max(0.0).sqrt() as f32
            }
        })
        .collect()
}

/// What scoring the test queries needs besides the moved rows.
struct TestScoring<'a> {
    backend: &'a dyn Backend,
    /// The scan's lists: dev queries first, then test queries.
    top: &'a TopK,
    dev_queries: usize,
    test: Option<(&'a Split, &'a Matrix)>,
    moved: &'a [u32],
    k: usize,
    block: usize,
    control: &'a Control,
}

/// Step 5: test metrics with the moved records at `rows`: the static lists
/// of the scan, merged with the moved rows' scores, averaged and per query
/// (NDCG). `None` without a test split.
fn score_test(t: &TestScoring, rows: &Matrix) -> Result<Option<(Scores, Vec<f64>)>> {
    let Some((test, q)) = t.test else {
        return Ok(None);
    };
    let mut top = static_part(t.top, t.dev_queries, test.queries.len(), t.k);
    let mut s = Matrix::default();
    let d = rows.cols;
    for start in (0..t.moved.len()).step_by(t.block.max(1)) {
        t.control.check()?;
        let end = (start + t.block).min(t.moved.len());
        t.backend
            .similarity_into(q, &rows.data[start * d..end * d], end - start, &mut s)?;
        for i in 0..q.rows {
            top.offer(i, s.row(i), &t.moved[start..end]);
        }
    }
    Ok(Some((
        metrics::score(&top, &test.queries, &[t.k]).remove(0),
        metrics::per_query_ndcg(&top, &test.queries, t.k),
    )))
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

/// Seconds per phase.
pub(crate) struct Clock(pub Instant, pub Vec<(&'static str, f64)>);

impl Clock {
    /// A clock started now.
    pub fn start() -> Clock {
        Clock(Instant::now(), Vec::new())
    }
    /// Records the seconds since the last lap as `phase`.
    pub fn lap(&mut self, phase: &'static str) {
        let s = self.split();
        self.1.push((phase, s));
    }
    /// Seconds since the last lap or split, without recording a phase.
    pub fn split(&mut self) -> f64 {
        let now = Instant::now();
        let s = (now - self.0).as_secs_f64();
        self.0 = now;
        s
    }
}
