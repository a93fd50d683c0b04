//! `nudge map`: one part of the corpus -> one partial, for `nudge reduce`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::device::DeviceArgs;
use super::fit::refuse_overwriting_input;
use super::part::PartArgs;
use super::{DataArgs, log};
use nudge::fit::partial::{self, MapOptions};
use nudge::{Dataset, Error, Inputs, Result};

#[derive(Args, Debug)]
pub struct MapArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub part: PartArgs,
    /// Where to write the partial (a directory: partial.json and .npy arrays)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Depth of each query's static list: at least NUDGE-N's --val-k and the
    /// test cut-off (10) of the reduce
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub k: usize,
    /// Keep zero-norm corpus rows as they are (unmoved) instead of failing
    #[arg(long)]
    pub allow_zero_rows: bool,
    /// Leave the moved rows' vectors out (kilobytes whatever the training
    /// set): the reduce reads them from the corpus, which it must then see
    #[arg(long)]
    pub lean: bool,
    /// Leave the test split out (the reduce then cannot score it)
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub sync: super::SyncArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: MapArgs) -> Result<()> {
    log::set_quiet(args.quiet);
    let start = Instant::now();
    if args.k == 0 {
        return Err(Error::invalid("--k must be at least 1"));
    }
    nudge::backend::cpu::warm_up_in_background();
    let paths = args.data.paths()?;
    for f in ["partial.json", "top_scores.npy", "moved.npy"] {
        refuse_overwriting_input(&args.out.join(f), &paths)?;
    }
    if args.out.exists() && !args.out.is_dir() {
        return Err(Error::invalid(format!(
            "--out {}: is not a directory",
            args.out.display()
        )));
    }
    let early = args.device.open_early();
    let ds = Dataset::open(paths)?;
    ds.notes
        .iter()
        .for_each(|n| log::notice(format!("note: {n}")));
    let rows = args.part.rows_of(&ds.corpus)?;
    let splits = ds.fit_splits(args.data.skip_unknown_ids, !args.no_test)?;
    splits.warnings.iter().for_each(log::warn);
    let scanned = splits.dev.queries.len() + splits.test.as_ref().map_or(0, |t| t.queries.len());
    let flops = 2.0 * scanned as f64 * rows.len() as f64 * ds.dim() as f64;
    let backends = args.device.backends_after(early, flops)?;
    let all: Vec<&dyn nudge::Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let backend = &backends[0];
    let opts = MapOptions {
        k: args.k,
        allow_zero_rows: args.allow_zero_rows,
        lean: args.lean,
        chunk_rows: super::chunk_rows_knob(),
        control: super::control(),
    };
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
    };
    let p = partial::map_across(&all, &inputs, rows.clone(), &opts)?;
    // The tile each adapter's autotuner chose, and its cache warnings.
    for b in &all {
        let _ = super::tune_json(*b);
    }
    let staged = p.stage(&args.out)?;
    nudge::data::commit_all(staged, &opts.control.cancel, args.sync.durability())?;
    log::notice(format!(
        "mapped rows {}..{} of {} ({}): {} moved records, {} dev + {} test lists of {}; wrote {} in {:.2} s",
        rows.start,
        rows.end,
        ds.corpus.rows(),
        backend.device_name(),
        p.moved_rows.len(),
        p.dev_queries,
        p.test_queries.unwrap_or(0),
        p.k,
        args.out.display(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}
