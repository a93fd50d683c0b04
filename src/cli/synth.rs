//! `nudge synth`: write a synthetic dataset folder (see `data::synth`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::data::synth::{self, SynthSpec};
use crate::error::Result;
use crate::log;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Dataset folder to write (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Corpus rows
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Embedding dimension
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Training queries
    #[arg(long, default_value_t = 5_000)]
    pub train: usize,
    /// Dev queries
    #[arg(long, default_value_t = 1_000)]
    pub dev: usize,
    /// Test queries
    #[arg(long, default_value_t = 1_000)]
    pub test: usize,
    /// Random seed: the same seed gives the same files
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: SynthArgs) -> Result<()> {
    log::set_quiet(a.quiet);
    let t = Instant::now();
    let spec = SynthSpec {
        records: a.records,
        dim: a.dim,
        train: a.train,
        dev: a.dev,
        test: a.test,
        seed: a.seed,
    };
    let w = synth::write(&a.out, &spec)?;
    log::notice(format!(
        "wrote {}: {} records x {}, {} clusters, {} groups, {}/{}/{} train/dev/test queries in {:.1} s",
        a.out.display(),
        a.records,
        a.dim,
        w.clusters,
        w.groups,
        a.train,
        a.dev,
        a.test,
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}
