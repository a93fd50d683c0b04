//! `nudge reduce`: partials of every part of the corpus -> the fit's
//! `--delta` and `--report`, exactly as `nudge fit` writes them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::device::DeviceArgs;
use super::fit::{Outputs, SolveArgs, inputs_json, summary};
use super::{DataArgs, log};
use nudge::fit::partial::{self, Partial, ReduceInputs};
use nudge::{Dataset, Error, Result};

#[derive(Args, Debug)]
pub struct ReduceArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The partials (`nudge map --out`), or directories holding them
    #[arg(long, value_name = "DIR", num_args = 1.., required = true)]
    pub partials: Vec<PathBuf>,
    #[command(flatten)]
    pub solve: SolveArgs,
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
    if args.solve.delta.is_none() && args.solve.report.is_none() && args.solve.html.is_none() {
        return Err(Error::invalid(
            "nothing to write: give --delta DIR, --report FILE or --html FILE",
        ));
    }
    let mut opts = args.solve.options()?;
    opts.control = super::control();
    let paths = args.data.paths()?;
    let outputs = Outputs {
        out: None,
        target: None,
        delta: args.solve.delta.as_deref(),
        report: args.solve.report.as_deref(),
        html: args.solve.html.as_deref(),
        durability: args.solve.sync.durability(),
    };
    outputs.check(&paths)?;
    let dirs = find_partials(&args.partials)?;
    let ds = Dataset::open(paths)?;
    let splits = ds.fit_splits(args.data.skip_unknown_ids, !args.solve.no_test)?;
    splits.warnings.iter().for_each(log::warn);
    let partials = load_all(&dirs)?;
    let read_s = start.elapsed().as_secs_f64();
    let moved: usize = partials.iter().map(|p| p.moved_rows.len()).sum();
    let flops = 2.0 * splits.dev.queries.len() as f64 * moved as f64 * ds.dim() as f64;
    let opened = std::time::Instant::now();
    let backend = args.device.backend_for(flops)?;
    let device_s = opened.elapsed().as_secs_f64();
    let inputs = ReduceInputs {
        records: ds.corpus.rows(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
        // Lean partials' rows are read from it; others do not touch it.
        corpus: Some((&ds.corpus).into()),
    };
    let mut fit = partial::reduce(backend.as_ref(), &inputs, &partials, &opts)?;
    fit.warnings.iter().for_each(log::warn);
    if args.solve.gamma.is_some() {
        fit.gamma_reason = Some("fixed by --gamma".to_string());
    }
    let mut inputs = inputs_json(&ds, &args.device, args.solve.no_test);
    inputs["partials"] = serde_json::json!(dirs.len());
    outputs.write(
        &ds,
        &fit,
        args.solve.dtype(),
        None,
        backend.as_ref(),
        (read_s, device_s),
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
