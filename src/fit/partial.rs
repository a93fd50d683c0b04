//! A fit split at its seam: a map over corpus parts, then a small reduce.
//!
//! Everything in a NUDGE fit that grows with the corpus is the corpus pass:
//! the static top-k of every dev and test query over the records that do
//! not move, and the moved rows (and static dev answers) gathered on the
//! way. Both are per-row facts, so a part of the corpus can be scanned on
//! its own ([`map`]) into a [`Partial`] of kilobytes to megabytes, and the
//! partials of parts that tile the corpus merge ([`reduce`]) into exactly
//! what one pass would have left: the top-k of disjoint row ranges merge
//! into the top-k of their union under the same order (score, then lower
//! row), and each row is normalised the same way wherever it is read. The
//! reduce then runs the rest of the fit (G, gamma, update, test scores),
//! which depends only on the queries and the moved rows, so its gamma,
//! moved rows and metrics equal a single-process fit's bit for bit.
//!
//! A partial does not depend on the method: it keeps lists deep enough for
//! either ([`MapOptions::k`]). It does depend on which records move and
//! which dev answers stay (the training and dev judgements), and on the
//! dev and test query embeddings (their [`Fingerprint`]); the reduce checks
//! both and names the parts to map again when judgements changed, which is
//! how an incremental refit knows what it must rescan.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::plan::Plan;
use super::{Clock, Fit, FitOptions, Inputs, Queries, scan_and_gather, solve};
use crate::backend::{Backend, TopK};
use crate::control::Control;
use crate::data::Corpus;
use crate::data::npy::{NpyMatrix, OutDtype};
use crate::data::{Pending, dataset::Split};
use crate::error::{Error, Result};
use crate::matrix::Matrix;

/// How to map a part.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// Depth of each query's static list. A reduce needs at least the
    /// fit's dev depth (1 for NUDGE-M, `val_k` for NUDGE-N) and, to score
    /// the test split, its `eval_k`; the default 10 serves both methods at
    /// the default settings.
    pub k: usize,
    /// Keep zero-norm rows (see [`FitOptions::allow_zero_rows`]).
    pub allow_zero_rows: bool,
    /// Leave the moved rows' and kept dev answers' vectors out of the
    /// partial (a lean partial: only the lists and row numbers, kilobytes
    /// whatever the training set): the reduce then reads those rows from
    /// the corpus ([`ReduceInputs::corpus`]). Full partials let a reduce
    /// run where the corpus is not.
    pub lean: bool,
    /// Corpus rows per streamed chunk; `None` lets the backend choose.
    pub chunk_rows: Option<usize>,
    /// Progress and cancellation.
    pub control: Control,
}

impl Default for MapOptions {
    fn default() -> MapOptions {
        MapOptions {
            k: 10,
            allow_zero_rows: false,
            lean: false,
            chunk_rows: None,
            control: Control::default(),
        }
    }
}

impl MapOptions {
    /// Lists as deep as a fit with `opts` (any method) will read them.
    pub fn for_fit(opts: &FitOptions) -> MapOptions {
        MapOptions {
            k: opts.val_k.max(opts.eval_k),
            allow_zero_rows: opts.allow_zero_rows,
            lean: false,
            chunk_rows: opts.chunk_rows,
            control: opts.control.clone(),
        }
    }
}

/// What the queries of a partial were: XXH3-64 hashes of the dev and the
/// test query embeddings (shape and values), so that a reduce refuses
/// partials mapped with other queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash of the dev queries, in split order.
    pub dev: u64,
    /// Hash of the test queries, when the partial scored them.
    pub test: Option<u64>,
}

impl Fingerprint {
    /// The fingerprint of these dev (and test) query matrices.
    pub fn of(q_dev: &Matrix, q_test: Option<&Matrix>) -> Fingerprint {
        fn hash(m: &Matrix) -> u64 {
            use std::hash::Hasher;
            let mut h = twox_hash::XxHash3_64::new();
            h.write(&(m.rows as u64).to_le_bytes());
            h.write(&(m.cols as u64).to_le_bytes());
            h.write(bytemuck::cast_slice(&m.data));
            h.finish()
        }
        Fingerprint {
            dev: hash(q_dev),
            test: q_test.map(hash),
        }
    }
}

/// What a map leaves of one corpus part: all a reduce needs from it.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The corpus rows the part covers.
    pub rows: Range<usize>,
    /// The embedding dimension.
    pub dim: usize,
    /// Depth of each static list.
    pub k: usize,
    /// Dev queries, whose lists come first in `top`.
    pub dev_queries: usize,
    /// Test queries, whose lists follow (`None`: mapped without a test split).
    pub test_queries: Option<usize>,
    /// The queries it was mapped with.
    pub fingerprint: Fingerprint,
    /// The static top-k of each dev then test query over the part's
    /// records that do not move, naming corpus rows.
    pub top: TopK,
    /// The part's moved records (ascending corpus rows).
    pub moved_rows: Vec<u32>,
    /// Their normalised rows (none in a lean partial).
    pub moved: Matrix,
    /// The part's dev answers that do not move (ascending corpus rows).
    pub kept_rows: Vec<u32>,
    /// Their normalised rows (none in a lean partial).
    pub kept: Matrix,
    /// A lean partial ([`MapOptions::lean`]): `moved` and `kept` are empty
    /// and the reduce reads those rows from the corpus.
    pub lean: bool,
    /// Zero-norm rows of the part (kept by `allow_zero_rows`).
    pub zero_rows: Vec<usize>,
    /// Seconds the map took.
    pub seconds: f64,
    /// The directory it was read from ([`Partial::load`]), for errors.
    pub source: Option<PathBuf>,
}

/// Maps corpus rows `rows` of `inputs.corpus` into a [`Partial`]. The
/// splits name rows of the whole corpus, as for [`super::fit`]; only the
/// part's rows are read.
pub fn map(
    backend: &dyn Backend,
    inputs: &Inputs,
    rows: Range<usize>,
    opts: &MapOptions,
) -> Result<Partial> {
    let n = inputs.corpus.rows();
    check_range(&rows, n)?;
    if opts.k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    if opts.chunk_rows == Some(0) {
        return Err(Error::invalid("chunk sizes must be at least 1"));
    }
    let queries = Queries::new(inputs.queries, inputs.train, inputs.dev, inputs.test)?;
    queries.check(n, inputs.corpus.cols())?;
    let plan = Plan::new(n, inputs.train, inputs.dev);
    let mut p = scan_and_gather(
        backend,
        inputs.corpus,
        rows,
        &queries,
        &plan,
        &plan.mask(),
        opts,
        super::Sink::Discard,
    )?;
    if opts.lean {
        p.moved = Matrix::zeros(0, p.dim);
        p.kept = Matrix::zeros(0, p.dim);
        p.lean = true;
    }
    Ok(p)
}

/// [`Error::Invalid`] unless `rows` lies within a corpus of `n` rows.
fn check_range(rows: &Range<usize>, n: usize) -> Result<()> {
    if rows.start > rows.end || rows.end > n {
        return Err(Error::invalid(format!(
            "rows {}..{}: expected a range within the corpus's {n} rows",
            rows.start, rows.end
        )));
    }
    Ok(())
}

/// Rows of part `i` of `parts` nearly equal parts of a corpus of `n` rows
/// (counting from 0): part `i` starts at `floor(i n / parts)`, so the parts
/// tile the corpus and differ in size by at most one row. How a Kubernetes
/// Indexed Job or a Slurm array task picks its part from its index.
pub fn part(i: usize, parts: usize, n: usize) -> Result<Range<usize>> {
    if parts == 0 || i >= parts {
        return Err(Error::invalid(format!(
            "part {i} of {parts}: expected 0 <= part < parts"
        )));
    }
    let at = |i: usize| ((i as u128 * n as u128) / parts as u128) as usize;
    Ok(at(i)..at(i + 1))
}

/// [`map`] with the part's pass spread over several backends at once
/// (every GPU of a machine): each scans an equal share of `rows`, and the
/// shares join into the one partial that [`map`] gives.
pub fn map_across(
    backends: &[&dyn Backend],
    inputs: &Inputs,
    rows: Range<usize>,
    opts: &MapOptions,
) -> Result<Partial> {
    match backends {
        [] => return Err(Error::invalid("no backend to map on")),
        [one] => return map(*one, inputs, rows, opts),
        _ => {}
    }
    let n = inputs.corpus.rows();
    check_range(&rows, n)?;
    let parts = crate::fit::scan::across(
        backends,
        rows,
        &opts.control,
        "scanning corpus",
        |_, b, r, control| {
            let o = MapOptions {
                control: control.clone(),
                ..opts.clone()
            };
            map(b, inputs, r, &o)
        },
    )?;
    let mut parts = parts.into_iter();
    let mut all = parts.next().expect("a part per backend");
    for p in parts {
        all.top.merge(&p.top);
        all.rows.end = p.rows.end;
        all.moved.data.extend_from_slice(&p.moved.data);
        all.moved.rows += p.moved.rows;
        all.kept.data.extend_from_slice(&p.kept.data);
        all.kept.rows += p.kept.rows;
        all.moved_rows.extend(p.moved_rows);
        all.kept_rows.extend(p.kept_rows);
        all.zero_rows.extend(p.zero_rows);
        // The shares ran side by side.
        all.seconds = all.seconds.max(p.seconds);
    }
    Ok(all)
}

/// What a reduce reads besides the partials: the corpus's row count and
/// the queries and judgements, as for a fit (no corpus rows).
#[derive(Clone, Copy)]
pub struct ReduceInputs<'a> {
    /// Rows of the whole corpus; the partials must cover `0..records`.
    pub records: usize,
    /// Every query embedding of every split, one per row.
    pub queries: &'a Matrix,
    /// Training judgements.
    pub train: &'a Split,
    /// Dev judgements.
    pub dev: &'a Split,
    /// Test judgements, if any (the partials must have scored them).
    pub test: Option<&'a Split>,
    /// The corpus, needed only for lean partials: their moved rows and
    /// kept dev answers are read from it, and normalised as a map would.
    pub corpus: Option<Corpus<'a>>,
}

/// Merges partials that tile the corpus and fits from them: the same
/// [`Fit`] as [`super::fit`] over the whole corpus (gamma, moved rows,
/// metrics), bit for bit. The partials may come in any order; they must
/// cover every row exactly once, come from the same queries and hold the
/// moved records the judgements now name (otherwise the error names the
/// parts to map again).
pub fn reduce(
    backend: &dyn Backend,
    inputs: &ReduceInputs,
    partials: &[Partial],
    opts: &FitOptions,
) -> Result<Fit> {
    opts.validate()?;
    let queries = Queries::new(inputs.queries, inputs.train, inputs.dev, inputs.test)?;
    queries.check(inputs.records, inputs.queries.cols)?;
    let mut clock = Clock::start();
    let plan = Plan::new(inputs.records, inputs.train, inputs.dev);
    let k = opts.scan_k(inputs.test.is_some());
    let pass = merge(&queries, &plan, inputs.records, partials, k, inputs.corpus)?;
    clock.lap("merge");
    solve(backend, &queries, plan, pass, opts, clock, None)
}

/// The one partial the whole corpus would have given, from partials that
/// tile it.
pub(crate) fn merge(
    queries: &Queries,
    plan: &Plan,
    records: usize,
    partials: &[Partial],
    k: usize,
    corpus: Option<Corpus>,
) -> Result<Partial> {
    let name = |i: usize| match &partials[i].source {
        Some(p) => format!("partial {}", p.display()),
        None => format!(
            "partial {i} (rows {}..{})",
            partials[i].rows.start, partials[i].rows.end
        ),
    };
    let dim = queries.all.cols;
    let want = Fingerprint::of(&queries.q_dev, queries.q_test.as_ref());
    let n_dev = queries.q_dev.rows;
    let n_test = queries.q_test.as_ref().map(|t| t.rows);
    for (i, p) in partials.iter().enumerate() {
        let why = if p.dim != dim {
            Some(format!("holds {}-d rows; the queries are {dim}-d", p.dim))
        } else if p.dev_queries != n_dev || p.fingerprint.dev != want.dev {
            Some(format!(
                "was mapped with other dev queries ({} of them; these are {n_dev})",
                p.dev_queries
            ))
        } else if let Some(t) = n_test {
            match (p.test_queries, p.fingerprint.test) {
                (None, _) => Some(
                    "was mapped without the test split; map it with the test judgements, or reduce without the test split".to_string(),
                ),
                (Some(pt), h) if pt != t || h != want.test => Some(format!(
                    "was mapped with other test queries ({pt} of them; these are {t})"
                )),
                _ => None,
            }
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::inconsistent(format!("{} {why}", name(i))));
        }
        if p.lean {
            match corpus {
                None => {
                    return Err(Error::invalid(format!(
                        "{} is lean (mapped without the moved rows' vectors): give the reduce the corpus to read them from",
                        name(i)
                    )));
                }
                Some(c) if c.rows() != records || c.cols() != dim => {
                    return Err(Error::inconsistent(format!(
                        "{} is lean, and the corpus to read its rows from is {} x {}, not {records} x {dim}",
                        name(i),
                        c.rows(),
                        c.cols()
                    )));
                }
                Some(_) => {}
            }
        }
        if p.k < k {
            return Err(Error::inconsistent(format!(
                "{} keeps the top {} of each query; this fit needs the top {k} (NUDGE-N's val_k and the test cut-off): map it again with k >= {k}",
                name(i),
                p.k
            )));
        }
    }
    // The parts must tile the corpus: sorted by first row, each starts
    // where the one before ended.
    let mut order: Vec<usize> = (0..partials.len()).collect();
    order.sort_by_key(|&i| (partials[i].rows.start, partials[i].rows.end));
    let mut next = 0;
    for &i in &order {
        let r = &partials[i].rows;
        if r.start > next {
            return Err(Error::inconsistent(format!(
                "no partial covers corpus rows {next}..{}: map them and add the partial",
                r.start
            )));
        }
        if r.start < next && !r.is_empty() {
            return Err(Error::inconsistent(format!(
                "{} (rows {}..{}) overlaps another partial on rows {}..{}: give each row once",
                name(i),
                r.start,
                r.end,
                r.start,
                next.min(r.end)
            )));
        }
        next = next.max(r.end);
    }
    if next != records {
        return Err(Error::inconsistent(if next < records {
            format!(
                "no partial covers corpus rows {next}..{records} (the corpus has {records} rows): map them and add the partial"
            )
        } else {
            format!(
                "the partials cover rows up to {next}, but the corpus has {records} rows: they were mapped from another corpus"
            )
        }));
    }
    // Each part must hold what the judgements now move and keep in its
    // rows; a part mapped before they changed is named, to be mapped again.
    let mut stale = Vec::new();
    for &i in &order {
        let p = &partials[i];
        if Plan::within(&plan.moved, &p.rows) != p.moved_rows
            || Plan::within(&plan.kept, &p.rows) != p.kept_rows
        {
            stale.push(i);
        }
    }
    if !stale.is_empty() {
        let list: Vec<String> = stale.iter().take(8).map(|&i| name(i)).collect();
        return Err(Error::inconsistent(format!(
            "{} of {} partials were mapped with other training or dev judgements (the records that move or the dev answers in their rows differ): map again {}{}",
            stale.len(),
            partials.len(),
            list.join(", "),
            if stale.len() > 8 { ", ..." } else { "" }
        )));
    }
    let lists = n_dev + n_test.unwrap_or(0);
    let mut top = TopK::new(lists, k);
    let mut moved = Matrix::zeros(0, dim);
    let mut kept = Matrix::zeros(0, dim);
    let (mut moved_rows, mut kept_rows, mut zero_rows) = (Vec::new(), Vec::new(), Vec::new());
    for &i in &order {
        let p = &partials[i];
        // The first `lists` lists: a partial mapped with a test split
        // serves a reduce without one.
        for q in 0..lists {
            for (s, r) in p.top.entries(q).take(k) {
                top.push(q, s, r);
            }
        }
        match (p.lean, corpus) {
            (true, Some(c)) => {
                read_normalised(c, &p.moved_rows, &mut moved)?;
                read_normalised(c, &p.kept_rows, &mut kept)?;
            }
            _ => {
                moved.data.extend_from_slice(&p.moved.data);
                moved.rows += p.moved.rows;
                kept.data.extend_from_slice(&p.kept.data);
                kept.rows += p.kept.rows;
            }
        }
        moved_rows.extend_from_slice(&p.moved_rows);
        kept_rows.extend_from_slice(&p.kept_rows);
        zero_rows.extend_from_slice(&p.zero_rows);
    }
    Ok(Partial {
        rows: 0..records,
        dim,
        k,
        dev_queries: n_dev,
        test_queries: n_test,
        fingerprint: want,
        top,
        moved_rows,
        moved,
        kept_rows,
        kept,
        zero_rows,
        seconds: partials.iter().map(|p| p.seconds).sum(),
        source: None,
        lean: false,
    })
}

/// Appends corpus rows `rows` to `out`, normalised by the function the
/// corpus pass normalises with (row by row, so reading one row alone gives
/// the bits a chunk gives): a lean partial's vectors.
fn read_normalised(corpus: Corpus, rows: &[u32], out: &mut Matrix) -> Result<()> {
    let dim = corpus.cols();
    let mut raw = Vec::new();
    let at = out.data.len();
    out.data.resize(at + rows.len() * dim, 0.0);
    for (i, &r) in rows.iter().enumerate() {
        let row = &mut out.data[at + i * dim..at + (i + 1) * dim];
        corpus.read_rows_into(r as usize, 1, &mut raw, row)?;
        crate::backend::cpu::normalize_rows(row, dim, r as usize);
    }
    out.rows += rows.len();
    Ok(())
}

/// The files of a saved partial.
const MANIFEST: &str = "partial.json";
const FORMAT: &str = "nudge-partial";
const VERSION: u64 = 1;

impl Partial {
    /// The manifest `partial.json` holds (the arrays go to `.npy` files).
    pub fn manifest(&self) -> Value {
        json!({
            "format": FORMAT,
            "version": VERSION,
            "rows": [self.rows.start, self.rows.end],
            "dim": self.dim,
            "k": self.k,
            "dev_queries": self.dev_queries,
            "test_queries": self.test_queries,
            "fingerprint": {
                "dev": format!("{:016x}", self.fingerprint.dev),
                "test": self.fingerprint.test.map(|h| format!("{h:016x}")),
            },
            "moved_records": self.moved_rows.len(),
            "kept_records": self.kept_rows.len(),
            "zero_rows": self.zero_rows.len(),
            "lean": self.lean,
            "seconds": self.seconds,
        })
    }

    /// Writes the partial into directory `dir` (created if needed) as
    /// `partial.json` and `.npy` arrays: `top_scores` (f32) and `top_rows`
    /// (u32, `u32::MAX` for an empty slot), one row per dev then test
    /// query; `moved_rows`/`moved` and `kept_rows`/`kept` (u32 rows and
    /// their f32 vectors); `zero_rows`. The files are staged and renamed
    /// into place together, the manifest last.
    pub fn save(&self, dir: &Path) -> Result<()> {
        for p in self.stage(dir)? {
            p.commit()?;
        }
        Ok(())
    }

    /// The files of [`Partial::save`], written but not yet in place (the
    /// manifest last), for a caller that commits them with other outputs.
    pub fn stage(&self, dir: &Path) -> Result<Vec<Pending>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
        use crate::data::npy::{stage_matrix, u32_npy_bytes};
        use crate::data::stage_write;
        let column = |v: &[u32]| u32_npy_bytes(v, 1);
        let zero: Vec<u32> = self.zero_rows.iter().map(|&r| r as u32).collect();
        let mut staged = vec![
            stage_matrix(
                &dir.join("top_scores.npy"),
                &self.top.scores,
                self.top.k,
                OutDtype::F32,
            )?,
            stage_write(
                &dir.join("top_rows.npy"),
                &u32_npy_bytes(&self.top.rows, self.top.k),
            )?,
            stage_write(&dir.join("moved_rows.npy"), &column(&self.moved_rows))?,
            stage_write(&dir.join("kept_rows.npy"), &column(&self.kept_rows))?,
            stage_write(&dir.join("zero_rows.npy"), &column(&zero))?,
        ];
        if !self.lean {
            for (file, m) in [("moved.npy", &self.moved), ("kept.npy", &self.kept)] {
                staged.push(stage_matrix(
                    &dir.join(file),
                    &m.data,
                    self.dim,
                    OutDtype::F32,
                )?);
            }
        }
        let text = serde_json::to_string_pretty(&self.manifest()).expect("manifest serialises");
        staged.push(stage_write(
            &dir.join(MANIFEST),
            format!("{text}\n").as_bytes(),
        )?);
        Ok(staged)
    }

    /// Reads a partial written by [`Partial::save`]; a data error naming
    /// the file and what is wrong with it otherwise.
    pub fn load(dir: &Path) -> Result<Partial> {
        let manifest = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&manifest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::data(
                    dir,
                    format!("holds no {MANIFEST}; expected a partial written by `nudge map`"),
                )
            } else {
                Error::io(&manifest, "read", e)
            }
        })?;
        let bad = |m: String| Error::data(&manifest, m);
        let v: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
        if v["format"] != FORMAT || v["version"] != VERSION {
            return Err(bad(format!(
                "expected format {FORMAT:?} version {VERSION} (a partial written by this version of `nudge map`)"
            )));
        }
        let uint = |key: &str| -> Result<usize> {
            v[key]
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("'{key}': expected a whole number")))
        };
        let hex = |x: &Value, key: &str| -> Result<u64> {
            x.as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad(format!("'{key}': expected a hex fingerprint")))
        };
        let rows = match v["rows"].as_array().map(|a| a.as_slice()) {
            Some([a, b]) => match (a.as_u64(), b.as_u64()) {
                (Some(a), Some(b)) if a <= b => a as usize..b as usize,
                _ => return Err(bad("'rows': expected [first, end] row numbers".into())),
            },
            _ => return Err(bad("'rows': expected [first, end] row numbers".into())),
        };
        let (dim, k, dev_queries) = (uint("dim")?, uint("k")?, uint("dev_queries")?);
        let test_queries = match &v["test_queries"] {
            Value::Null => None,
            _ => Some(uint("test_queries")?),
        };
        let fingerprint = Fingerprint {
            dev: hex(&v["fingerprint"]["dev"], "fingerprint.dev")?,
            test: match &v["fingerprint"]["test"] {
                Value::Null => None,
                t => Some(hex(t, "fingerprint.test")?),
            },
        };
        let lists = dev_queries + test_queries.unwrap_or(0);
        let floats = |file: &str, rows: usize, cols: usize| -> Result<Vec<f32>> {
            let path = dir.join(file);
            let m = NpyMatrix::open(&path)?;
            if m.rows() != rows || m.cols() != cols {
                return Err(Error::data(
                    &path,
                    format!(
                        "is {} x {}; {MANIFEST} says {rows} x {cols}",
                        m.rows(),
                        m.cols()
                    ),
                ));
            }
            m.read_all()
        };
        let ints = |file: &str, rows: Option<usize>, cols: usize| -> Result<Vec<u32>> {
            let path = dir.join(file);
            let (data, r, c) = crate::data::npy::read_u32(&path)?;
            if c != cols || rows.is_some_and(|n| n != r) {
                return Err(Error::data(
                    &path,
                    format!("is {r} x {c}; expected {} x {cols}", rows.unwrap_or(r)),
                ));
            }
            Ok(data)
        };
        let ascending_within = |file: &str, v: &[u32]| -> Result<()> {
            let ok = v.windows(2).all(|w| w[0] < w[1])
                && v.iter().all(|&r| rows.contains(&(r as usize)));
            if ok {
                Ok(())
            } else {
                Err(Error::data(
                    dir.join(file),
                    format!(
                        "expected ascending rows within {}..{}",
                        rows.start, rows.end
                    ),
                ))
            }
        };
        let top_rows = ints("top_rows.npy", Some(lists), k)?;
        if let Some(r) = top_rows
            .iter()
            .find(|&&r| r != crate::backend::topk::EMPTY && !rows.contains(&(r as usize)))
        {
            return Err(Error::data(
                dir.join("top_rows.npy"),
                format!(
                    "names row {r}, outside the part's rows {}..{}",
                    rows.start, rows.end
                ),
            ));
        }
        let top = TopK {
            k,
            queries: lists,
            scores: floats("top_scores.npy", lists, k)?,
            rows: top_rows,
        };
        let moved_rows = ints("moved_rows.npy", Some(uint("moved_records")?), 1)?;
        ascending_within("moved_rows.npy", &moved_rows)?;
        let kept_rows = ints("kept_rows.npy", Some(uint("kept_records")?), 1)?;
        ascending_within("kept_rows.npy", &kept_rows)?;
        let zero = ints("zero_rows.npy", Some(uint("zero_rows")?), 1)?;
        ascending_within("zero_rows.npy", &zero)?;
        let lean = match &v["lean"] {
            Value::Bool(b) => *b,
            _ => return Err(bad("'lean': expected true or false".into())),
        };
        let vectors = |file: &str, n: usize| -> Result<Matrix> {
            Ok(if lean {
                Matrix::zeros(0, dim)
            } else {
                Matrix::new(n, dim, floats(file, n, dim)?)
            })
        };
        let moved = vectors("moved.npy", moved_rows.len())?;
        let kept = vectors("kept.npy", kept_rows.len())?;
        Ok(Partial {
            rows,
            dim,
            k,
            dev_queries,
            test_queries,
            fingerprint,
            top,
            moved_rows,
            moved,
            kept_rows,
            kept,
            zero_rows: zero.into_iter().map(|r| r as usize).collect(),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            source: Some(dir.to_path_buf()),
            lean,
        })
    }
}
