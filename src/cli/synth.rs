//! `nudge synth`: write a synthetic dataset folder (see `data::synth`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::log;
use nudge::Result;
use nudge::data::synth::{self, SynthSpec};

/// The size and seed of a synthetic dataset (shared with `nudge bench`).
#[derive(Args, Debug, Clone)]
pub struct Shape {
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
}

impl Shape {
    pub fn spec(&self) -> SynthSpec {
        SynthSpec {
            records: self.records,
            dim: self.dim,
            train: self.train,
            dev: self.dev,
            test: self.test,
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Dataset folder to write (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub shape: Shape,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: SynthArgs) -> Result<()> {
    log::set_quiet(a.quiet);
    let t = Instant::now();
    let spec = a.shape.spec();
    let w = synth::write(&a.out, &spec, &super::control())?;
    log::notice(format!(
        "wrote {}: {} records x {}, {} clusters, {} groups, {}/{}/{} train/dev/test queries in {:.1} s",
        a.out.display(),
        spec.records,
        spec.dim,
        w.clusters,
        w.groups,
        spec.train,
        spec.dev,
        spec.test,
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}
