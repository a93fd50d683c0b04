//! `nudge fit`: fit NUDGE-M or NUDGE-N and write the fine-tuned corpus.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::device::DeviceArgs;
use super::{DataArgs, env_knob, log};
use nudge::fit::output;
use nudge::{
    Dataset, Error, Fit, FitOptions, Inputs, Method, OutDtype, Result, Scores, WriteOptions,
};

/// `--out-dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutType {
    F32,
    F16,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    #[value(name = "nudge-m")]
    NudgeM,
    #[value(name = "nudge-n")]
    NudgeN,
}

impl MethodArg {
    pub fn method(self) -> Method {
        match self {
            MethodArg::NudgeM => Method::NudgeM,
            MethodArg::NudgeN => Method::NudgeN,
        }
    }
}

#[derive(Args, Debug)]
pub struct FitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the fine-tuned corpus, in input row order: FILE.npy, FILE.parquet ((id, vector) rows), or DIR/ for a sharded corpus (one tuned shard per input shard, same names)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub solve: SolveArgs,
    /// Keep zero-norm corpus rows as they are (unmoved) instead of failing
    #[arg(long)]
    pub allow_zero_rows: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `fit` and `reduce` share: the method and its settings, the test
/// split, and the outputs besides the corpus.
#[derive(Args, Debug)]
pub struct SolveArgs {
    /// nudge-m (unconstrained norm; search the output by dot product) or nudge-n (unit-norm output)
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Write only the moved records' ids and new vectors: into DIR (ids.txt, vectors.npy), or as one FILE.parquet of (id, vector) rows
    #[arg(long, value_name = "DIR")]
    pub delta: Option<PathBuf>,
    /// Write a JSON report of the fit (gamma, dev scores, timings, metrics)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a self-contained HTML report (gamma curve, before/after, moves, timings)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Use this gamma instead of searching for one
    #[arg(long, value_name = "X")]
    pub gamma: Option<f64>,
    /// k of the NUDGE-N dev score (top-k hits / min(|answers|, k))
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub val_k: usize,
    /// Element type of the written corpus and delta
    #[arg(long, value_enum, default_value_t = OutType::F32)]
    pub out_dtype: OutType,
    /// Do not score the test split before and after (on a large corpus the
    /// test queries double the similarity work of the pass)
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub sync: super::SyncArgs,
}

impl SolveArgs {
    /// The fit's options for these flags (control and sizes left at their
    /// defaults); a usage error naming the flag for settings no fit can
    /// run with.
    pub fn options(&self) -> Result<FitOptions> {
        let method = self.method.method();
        if let Some(g) = self.gamma {
            let max = if method == Method::NudgeN {
                4.0
            } else {
                f64::MAX
            };
            if !(g.is_finite() && (0.0..=max).contains(&g)) {
                return Err(Error::invalid(format!(
                    "--gamma {g}: expected a number >= 0 (and <= 4 for nudge-n)"
                )));
            }
        }
        if self.val_k == 0 {
            return Err(Error::invalid("--val-k must be at least 1"));
        }
        let mut opts = FitOptions::new(method);
        opts.gamma = self.gamma;
        opts.val_k = self.val_k;
        Ok(opts)
    }

    /// `--out-dtype`.
    pub fn dtype(&self) -> OutDtype {
        match self.out_dtype {
            OutType::F32 => OutDtype::F32,
            OutType::F16 => OutDtype::F16,
        }
    }
}

pub fn run(args: FitArgs) -> Result<()> {
    log::set_quiet(args.quiet);
    let start = Instant::now();
    if args.out.is_none()
        && args.solve.delta.is_none()
        && args.solve.report.is_none()
        && args.solve.html.is_none()
    {
        return Err(Error::invalid(
            "nothing to write: give --out FILE.npy (or .parquet, or DIR/), --delta DIR, --report FILE or --html FILE",
        ));
    }
    let mut opts = args.solve.options()?;
    nudge::backend::cpu::warm_up_in_background();
    let paths = args.data.paths()?;
    let early = args.device.open_early();
    // `--out DIR/` keeps the corpus's shards; `--delta X.parquet` is one file.
    let sharded = paths.corpus.as_ref().is_some_and(|c| c.is_dir());
    let outputs = Outputs {
        out: args.out.as_deref(),
        target: match &args.out {
            Some(out) => Some(output::OutTarget::new(out, sharded)?),
            None => None,
        },
        delta: args.solve.delta.as_deref(),
        report: args.solve.report.as_deref(),
        html: args.solve.html.as_deref(),
        durability: args.solve.sync.durability(),
    };
    outputs.check(&paths)?;
    let target = &outputs.target;
    let ds = Dataset::open(paths)?;
    // The shards written into `--out DIR/` must not be the corpus's own.
    if let (Some(t), nudge::data::MatrixFile::Shards(s)) = (&target, &ds.corpus) {
        let shards: Vec<PathBuf> = s.shards().iter().map(|m| m.path().to_path_buf()).collect();
        for out in t.paths(&shards) {
            refuse_overwriting_input(&out, &ds.paths)?;
            if shards.iter().any(|s| same_file(s, &out)) {
                return Err(Error::invalid(format!(
                    "{}: refusing to overwrite a corpus shard; choose another output folder",
                    out.display()
                )));
            }
        }
    }
    ds.notes
        .iter()
        .for_each(|n| log::notice(format!("note: {n}")));
    let splits = ds.fit_splits(args.data.skip_unknown_ids, !args.solve.no_test)?;
    splits.warnings.iter().for_each(log::warn);
    splits
        .notes
        .iter()
        .for_each(|n| log::notice(format!("note: {n}")));
    let (train, dev, test) = (&splits.train, &splits.dev, splits.test.as_ref());
    let read_s = start.elapsed().as_secs_f64();

    let scanned = dev.queries.len() + test.map_or(0, |t| t.queries.len());
    let flops = 2.0 * scanned as f64 * ds.corpus.rows() as f64 * ds.dim() as f64;
    let opened = Instant::now();
    // What is left of opening the device once the dataset is read.
    let backends = args.device.backends_after(early, flops)?;
    let device_s = opened.elapsed().as_secs_f64();
    let all: Vec<&dyn nudge::Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let backend = &backends[0];
    opts.allow_zero_rows = args.allow_zero_rows;
    opts.chunk_rows = super::chunk_rows_knob();
    opts.control = super::control();
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train,
        dev,
        test,
    };
    let mut write = WriteOptions {
        dtype: args.solve.dtype(),
        durability: args.solve.sync.durability(),
        ..Default::default()
    };
    if let Some(max) = env_knob("NUDGE_OUTPUT_IN_MEMORY_MAX") {
        write.in_memory_max = max;
    }
    let dtype = write.dtype;
    // The output corpus is written during the fit's pass over the corpus
    // (a temporary file until everything succeeded; for Parquet or shards,
    // an `.npy` converted once the fit is done).
    // A new `--out DIR/` goes again if the run fails (declared before the
    // output, so that the output's temporary file in it is removed first).
    let mut out_dir = RemoveIfEmpty(None);
    if let Some(output::OutTarget::Shards(dir)) = &target {
        if !dir.exists() {
            out_dir.0 = Some(dir.clone());
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    }
    let mut inline = match &target {
        Some(t) => Some(output::InlineOutput::create(
            ds.corpus.rows(),
            ds.corpus.cols(),
            &t.pass_path(),
            &write,
        )?),
        None => None,
    };
    let mut fit = nudge::fit_across(&all, &inputs, &opts, inline.as_mut())?;
    // The other adapters' tiles (the first's go into the report).
    for b in &all[1..] {
        let _ = super::tune_json(*b);
    }
    fit.warnings.iter().for_each(log::warn);
    if args.solve.gamma.is_some() {
        // The library says "fixed by the caller"; here the caller is a flag.
        fit.gamma_reason = Some("fixed by --gamma".to_string());
    }
    let inputs = inputs_json(&ds, &args.device, args.solve.no_test);
    outputs.write(
        &ds,
        &fit,
        dtype,
        inline,
        backend.as_ref(),
        (read_s, device_s),
        start,
        inputs,
        &opts.control,
    )?;
    out_dir.0 = None;
    summary(
        &fit,
        &ds,
        backend.device_name(),
        args.out.as_deref(),
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// The files a fit (or a reduce) writes.
pub struct Outputs<'a> {
    /// `--out`: the tuned corpus.
    pub out: Option<&'a Path>,
    /// Its format: one `.npy` or Parquet file, or one shard per input shard.
    pub target: Option<output::OutTarget>,
    /// `--delta`: the moved records only.
    pub delta: Option<&'a Path>,
    /// `--report`: the JSON report.
    pub report: Option<&'a Path>,
    /// `--html`: the HTML report.
    pub html: Option<&'a Path>,
    /// `--no-sync` or not.
    pub durability: nudge::data::Durability,
}

impl Outputs<'_> {
    /// Before any work: no output replaces an input or another output, and
    /// each can be written.
    pub fn check(&self, paths: &nudge::Paths) -> Result<()> {
        let delta_file = self.delta.filter(|d| is_parquet(d));
        let mut files: Vec<PathBuf> = [self.out, self.report, self.html]
            .into_iter()
            .flatten()
            .map(Path::to_path_buf)
            .collect();
        if let Some(dir) = self.delta.filter(|_| delta_file.is_none()) {
            files.push(dir.join("vectors.npy"));
            files.push(dir.join("ids.txt"));
        } else if let Some(file) = delta_file {
            files.push(file.to_path_buf());
        }
        for out in &files {
            refuse_overwriting_input(out, paths)?;
        }
        let named = [
            ("--out", self.out),
            ("--report", self.report),
            ("--html", self.html),
        ];
        for (i, (a, x)) in named.iter().enumerate() {
            for (b, y) in &named[i + 1..] {
                if let (Some(x), Some(y)) = (x, y)
                    && std::path::absolute(x).ok() == std::path::absolute(y).ok()
                {
                    return Err(Error::invalid(format!(
                        "{a} and {b} both name {}; give them different paths",
                        x.display()
                    )));
                }
            }
        }
        // Fail before the fit, not after it, when an output cannot be written.
        let out_file = self
            .out
            .filter(|_| !matches!(self.target, Some(output::OutTarget::Shards(_))));
        for out in [out_file, self.report, self.html].into_iter().flatten() {
            check_writable(out)?;
        }
        if let Some(file) = delta_file {
            check_writable(file)?;
        } else if let Some(dir) = self.delta {
            check_delta_dir(dir)?;
        }
        if let Some(output::OutTarget::Shards(dir)) = &self.target {
            check_delta_dir(dir)
                .map_err(|e| Error::invalid(e.to_string().replace("--delta", "--out")))?;
        }
        Ok(())
    }

    /// Writes every output of `fit`. Each is staged in a temporary file and
    /// all are renamed into place together at the end: a failure (or
    /// Ctrl-C) on the way leaves none of them, and files already at those
    /// paths stay as they were.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        ds: &Dataset,
        fit: &Fit,
        dtype: OutDtype,
        inline: Option<output::InlineOutput>,
        backend: &dyn nudge::Backend,
        (read_s, device_s): (f64, f64),
        start: Instant,
        inputs: Value,
        control: &nudge::Control,
    ) -> Result<()> {
        let t = Instant::now();
        let delta_dir_is_new = self.delta.is_some_and(|d| !is_parquet(d) && !d.exists());
        let written = (|| -> Result<()> {
            let corpus = match (inline, &self.target) {
                (Some(inline), Some(t)) => Some((inline, t)),
                _ => None,
            };
            let mut staged = stage_outputs(self.delta, ds, fit, dtype, corpus, &control.cancel)?;
            // Flushed now (the sync, unless --no-sync), so that the report
            // times it; the reports themselves are flushed at the commit.
            for p in &mut staged {
                p.flush(self.durability)?;
            }
            let write_s = t.elapsed().as_secs_f64();
            // The fit's own phases, and what only the command saw: reading the
            // inputs, syncing the outputs, the whole run.
            let mut report = fit.report();
            let timings = report["timings"]
                .as_object_mut()
                .expect("the report has timings");
            timings.insert("read".into(), json!(read_s));
            // Opening the device: on a GPU, its instance, adapter and the
            // kernels' compiles, which no phase of the fit includes.
            timings.insert("device".into(), json!(device_s));
            // The fit wrote the rows ("write" in its timings); staging
            // flushed them (synced, unless --no-sync).
            let fit_write = timings.get("write").and_then(Value::as_f64).unwrap_or(0.0);
            timings.insert("write".into(), json!(fit_write + write_s));
            timings.insert("total".into(), json!(start.elapsed().as_secs_f64()));
            if let Some(k) = super::kernel_timings_json(backend) {
                timings.insert("gpu_kernels".into(), k);
            }
            if let Some(k) = super::host_timings_json(backend) {
                timings.insert("gpu_host".into(), k);
            }
            if let Some(t) = super::tune_json(backend) {
                timings.insert("gpu_tile".into(), t);
            }
            report["inputs"] = inputs;
            if let Some(path) = self.report {
                let text = serde_json::to_string_pretty(&report).expect("report serialises");
                staged.push(nudge::data::stage_write(
                    path,
                    format!("{text}\n").as_bytes(),
                )?);
            }
            if let Some(path) = self.html {
                let html = nudge::report::fit_html(&report)?;
                staged.push(nudge::data::stage_write(path, html.as_bytes())?);
            }
            nudge::data::commit_all(staged, &control.cancel, self.durability)
        })();
        if let Err(e) = written {
            if delta_dir_is_new {
                // Removes the directory only if it is empty, as it is unless a
                // rename into it succeeded.
                let _ = std::fs::remove_dir(self.delta.expect("delta"));
            }
            return Err(e);
        }
        Ok(())
    }
}

/// The inputs as the HTML report lists them: each file, with the corpus's
/// and the queries' shape and element type.
fn table_ids(m: &nudge::data::MatrixFile) -> Option<String> {
    match m {
        nudge::data::MatrixFile::Table(t) => t.id_column().map(|c| format!("column {c}")),
        nudge::data::MatrixFile::Shards(_) => Some("the shards' ids (or row numbers)".into()),
        _ => None,
    }
}

pub fn inputs_json(ds: &Dataset, device: &DeviceArgs, no_test: bool) -> Value {
    let p = &ds.paths;
    let file = |x: &Option<PathBuf>| x.as_ref().map(|x| x.display().to_string());
    json!({
        "corpus": format!("{} ({} x {}, {})", file(&p.corpus).unwrap_or_default(), ds.corpus.rows(), ds.corpus.cols(), ds.corpus.descr()),
        "queries": format!("{} ({} x {})", file(&p.queries).unwrap_or_default(), ds.queries.rows, ds.queries.cols),
        "corpus ids": file(&p.corpus_ids).or_else(|| table_ids(&ds.corpus)).unwrap_or_else(|| "row numbers".into()),
        "query ids": file(&p.query_ids).or_else(|| ds.query_id_column.as_ref().map(|c| format!("column {c}"))).unwrap_or_else(|| "row numbers".into()),
        "train qrels": file(&p.train_qrels),
        "dev qrels": file(&p.dev_qrels),
        "test qrels": if no_test { None } else { file(&p.test_qrels) },
        "device flag": device.device_name(),
    })
}

/// Writes `--out` and `--delta` to temporary files, uncommitted.
fn stage_outputs(
    delta: Option<&Path>,
    ds: &Dataset,
    fit: &Fit,
    dtype: OutDtype,
    corpus: Option<(output::InlineOutput, &output::OutTarget)>,
    cancel: &nudge::Cancel,
) -> Result<Vec<nudge::data::Pending>> {
    let mut staged = Vec::new();
    if let Some((corpus, target)) = corpus {
        let pass = corpus.finish()?;
        staged.extend(output::stage_as(
            pass,
            target,
            &ds.corpus,
            &ds.corpus_ids,
            dtype,
            cancel,
        )?);
    }
    if let Some(delta) = delta {
        let names: Vec<String> = fit
            .moved
            .iter()
            .map(|&r| ds.corpus_ids.name(r as usize))
            .collect();
        if is_parquet(delta) {
            staged.push(nudge::data::parquet_out::stage_matrix(
                delta,
                &names,
                &fit.updated.data,
                fit.updated.cols,
                dtype,
            )?);
        } else {
            staged.extend(output::stage_delta(delta, &names, &fit.updated, dtype)?);
        }
    }
    Ok(staged)
}

/// A directory removed on drop if it is still empty (a failed run's new
/// output folder); `None` once the run has succeeded.
struct RemoveIfEmpty(Option<PathBuf>);

impl Drop for RemoveIfEmpty {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether an output path names a Parquet file.
fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "parquet" | "pq"))
}

/// Whether two paths are the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether a file can be created next to `path`: creates and removes a
/// temporary file there, as the real write will. A runtime error (exit 4)
/// naming the directory otherwise.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(Error::invalid(format!(
            "{}: is a directory; expected a file path",
            path.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".nudge-partial-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| Error::io(path, format!("write in {}", dir.display()), e))
}

/// Whether `--delta DIR` can be written: DIR is a directory, or the nearest
/// existing folder above it is one that files can be created in.
fn check_delta_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "--delta {}: is not a directory",
                dir.display()
            )));
        }
        return check_writable(&dir.join("vectors.npy"));
    }
    let mut above = dir;
    while let Some(parent) = above.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if parent.exists() {
            return check_writable(&parent.join("x")).map_err(|_| {
                Error::runtime(format!(
                    "--delta {}: cannot create it: {} is not a writable directory",
                    dir.display(),
                    parent.display()
                ))
            });
        }
        above = parent;
    }
    Ok(())
}

/// An output that would replace one of the inputs is refused: the input is
/// memory-mapped while the output is written. Symbolic and hard links to an
/// input count as the input.
pub fn refuse_overwriting_input(out: &Path, paths: &nudge::Paths) -> Result<()> {
    let inputs = [
        &paths.corpus,
        &paths.queries,
        &paths.corpus_ids,
        &paths.query_ids,
        &paths.train_qrels,
        &paths.dev_qrels,
        &paths.test_qrels,
    ];
    // An output that does not exist yet is no input. One that does is
    // compared by file identity, which also catches a path through a
    // symlink or a hard link to an input, with one stat per path (resolving
    // every path component by component cost more than a small fit's scan).
    #[cfg(unix)]
    let is_input = {
        use std::os::unix::fs::MetadataExt;
        let Ok(o) = std::fs::metadata(out) else {
            return Ok(());
        };
        move |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.dev() == o.dev() && m.ino() == o.ino())
    };
    #[cfg(not(unix))]
    let is_input = {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        let Some(o) = canon(out) else { return Ok(()) };
        move |p: &Path| canon(p).as_ref() == Some(&o)
    };
    if inputs.into_iter().flatten().any(|p| is_input(p)) {
        return Err(Error::invalid(format!(
            "{}: refusing to overwrite an input file; choose another output path",
            out.display()
        )));
    }
    Ok(())
}

pub fn summary(fit: &Fit, ds: &Dataset, device: String, out: Option<&Path>, total: f64) {
    log::notice(format!(
        "{} on {} records x {} ({device}): gamma {}, {} records moved{}",
        fit.method.as_str(),
        ds.corpus.rows(),
        ds.dim(),
        fmt_gamma(fit.gamma),
        fit.moved.len(),
        fit.gamma_reason
            .as_ref()
            .map_or(String::new(), |r| format!(" ({r})"))
    ));
    if let Some(out) = out {
        log::notice(format!("wrote {} in {total:.2} s", out.display()));
    }
    if let (Some(b), Some(a)) = (&fit.before, &fit.after) {
        log::notice(table(&[("", b, a)]));
    }
}

pub fn fmt_gamma(g: f64) -> String {
    let s = format!("{g:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The before -> after table of the human output, one block per labelled row.
pub fn table(rows: &[(&str, &Scores, &Scores)]) -> String {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (label, b, a) in rows {
        let pad = |x: &str| format!("{x:<width$}");
        s.push_str(&format!(
            "{} recall@{k}  {:.4} -> {:.4}   ndcg@{k}  {:.4} -> {:.4}   ({} test queries)\n",
            pad(label),
            b.recall,
            a.recall,
            b.ndcg,
            a.ndcg,
            a.queries,
            k = a.k
        ));
    }
    s.trim_end().to_string()
}
