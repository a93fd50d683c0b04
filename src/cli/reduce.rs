//! `nudge reduce`: partials of every part of the corpus -> the fit's
//! `--delta` and `--report`, exactly as `nudge fit` writes them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::device::DeviceArgs;
use super::fit::{MethodArg, OutType, Outputs, inputs_json, summary};
use super::{DataArgs, log};
use nudge::fit::partial::{self, Partial, ReduceInputs};
use nudge::{Dataset, Error, FitOptions, OutDtype, Result};

#[derive(Args, Debug)]
pub struct ReduceArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The partials (`nudge map --out`), or directories holding them
    #[arg(long, value_name = "DIR", num_args = 1.., required = true)]
    pub partials: Vec<PathBuf>,
    /// nudge-m (unconstrained norm; search the output by dot product) or nudge-n (unit-norm output)
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Write only the moved records' ids and new vectors (ids.txt, vectors.npy) into DIR
    #[arg(long, value_name = "DIR")]
    pub delta: Option<PathBuf>,
    /// Write a JSON report of the fit (gamma, dev scores, timings, metrics)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a self-contained HTML report
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Use this gamma instead of searching for one
    #[arg(long, value_name = "X")]
    pub gamma: Option<f64>,
    /// k of the NUDGE-N dev score (top-k hits / min(|answers|, k))
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub val_k: usize,
    /// Element type of the written delta
    #[arg(long, value_enum, default_value_t = OutType::F32)]
    pub out_dtype: OutType,
    /// Do not score the test split before and after
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

/// Each argument is a partial, or a directory whose subdirectories are
/// (in name order).
fn find_partials(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for a in args {
        if a.join("partial.json").is_file() {
            found.push(a.clone());
            continue;
        }
        let entries = std::fs::read_dir(a).map_err(|e| Error::io(a, "read directory", e))?;
        let mut inside: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("partial.json").is_file())
            .collect();
        if inside.is_empty() {
            return Err(Error::data(
                a,
                "is neither a partial (no partial.json) nor a directory of partials; expected `nudge map --out` directories",
            ));
        }
        inside.sort();
        found.extend(inside);
    }
    Ok(found)
}

pub fn run(args: ReduceArgs) -> Result<()> {
    log::set_quiet(args.quiet);
    let start = Instant::now();
    if args.delta.is_none() && args.report.is_none() && args.html.is_none() {
        return Err(Error::invalid(
            "nothing to write: give --delta DIR, --report FILE or --html FILE",
        ));
    }
    let mut opts = FitOptions::new(args.method.method());
    opts.gamma = args.gamma;
    opts.val_k = args.val_k;
    opts.control = super::control();
    opts.validate().map_err(|e| match args.gamma {
        Some(g) if e.to_string().contains("gamma") => Error::invalid(format!(
            "--gamma {g}: expected a number >= 0 (and <= 4 for nudge-n)"
        )),
        _ => e,
    })?;
    let paths = args.data.paths()?;
    let outputs = Outputs {
        out: None,
        target: None,
        delta: args.delta.as_deref(),
        report: args.report.as_deref(),
        html: args.html.as_deref(),
    };
    outputs.check(&paths)?;
    let dirs = find_partials(&args.partials)?;
    let ds = Dataset::open(paths)?;
    let splits = ds.fit_splits(args.data.skip_unknown_ids, !args.no_test)?;
    splits.warnings.iter().for_each(log::warn);
    let partials = load_all(&dirs)?;
    let read_s = start.elapsed().as_secs_f64();
    let moved: usize = partials.iter().map(|p| p.moved_rows.len()).sum();
    let flops = 2.0 * splits.dev.queries.len() as f64 * moved as f64 * ds.dim() as f64;
    let backend = args.device.backend_for(flops)?;
    let inputs = ReduceInputs {
        records: ds.corpus.rows(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
    };
    let mut fit = partial::reduce(backend.as_ref(), &inputs, &partials, &opts)?;
    fit.warnings.iter().for_each(log::warn);
    if args.gamma.is_some() {
        fit.gamma_reason = Some("fixed by --gamma".to_string());
    }
    let mut inputs = inputs_json(&ds, &args.device, args.no_test);
    inputs["partials"] = serde_json::json!(dirs.len());
    outputs.write(
        &ds,
        &fit,
        match args.out_dtype {
            OutType::F32 => OutDtype::F32,
            OutType::F16 => OutDtype::F16,
        },
        None,
        backend.as_ref(),
        read_s,
        start,
        inputs,
        &opts.control,
    )?;
    summary(
        &fit,
        &ds,
        backend.device_name(),
        None,
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Reads every partial, a few at a time.
fn load_all(dirs: &[PathBuf]) -> Result<Vec<Partial>> {
    use rayon::prelude::*;
    dirs.par_iter()
        .map(|d: &PathBuf| Partial::load(d as &Path))
        .collect()
}
