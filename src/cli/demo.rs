//! `nudge demo`: both methods on the SciFact data bundled in the repository.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::device::DeviceArgs;
use super::fit::{fmt_gamma, table};
use super::log;
use nudge::{Dataset, Error, FitOptions, Inputs, Method, Paths, Result, SplitName};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Dataset folder to use instead of the bundled SciFact copy
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The bundled copy, found next to the sources the binary was built from.
pub fn bundled_dataset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("scifact")
}

pub fn run(args: DemoArgs) -> Result<()> {
    let dir = args.dataset.clone().unwrap_or_else(bundled_dataset);
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{}: the bundled SciFact data is not there (it ships in the repository's data/scifact); pass --dataset DIR",
            dir.display()
        )));
    }
    let ds = Dataset::open(Paths::folder(&dir)?)?;
    let split = |name| -> Result<nudge::Split> {
        let judged = ds.required_split(name, false)?;
        judged.warnings.iter().for_each(log::warn);
        Ok(judged.split)
    };
    let train = split(SplitName::Train)?;
    let dev = split(SplitName::Dev)?;
    let test = split(SplitName::Test)?;
    let scanned = dev.queries.len() + test.queries.len();
    let backend = args
        .device
        .backend_for(2.0 * scanned as f64 * ds.corpus.rows() as f64 * ds.dim() as f64)?;
    log::notice(format!(
        "SciFact: {} records x {}, {} train / {} dev / {} test queries, on {}",
        ds.corpus.rows(),
        ds.dim(),
        train.queries.len(),
        dev.queries.len(),
        test.queries.len(),
        backend.device_name()
    ));
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train: &train,
        dev: &dev,
        test: Some(&test),
    };
    let mut rows = Vec::new();
    for method in [Method::NudgeM, Method::NudgeN] {
        let t = Instant::now();
        let mut opts = FitOptions::new(method);
        opts.control = super::control();
        let fit = nudge::fit(backend.as_ref(), &inputs, &opts)?;
        fit.warnings.iter().for_each(log::warn);
        let label = format!(
            "{} (gamma {}, {:.0} ms)",
            method.as_str(),
            fmt_gamma(fit.gamma),
            t.elapsed().as_secs_f64() * 1e3
        );
        rows.push((
            label,
            fit.before.expect("test split"),
            fit.after.expect("test split"),
        ));
    }
    let view: Vec<(&str, _, _)> = rows.iter().map(|(l, b, a)| (l.as_str(), b, a)).collect();
    println!("{}", table(&view));
    Ok(())
}
