//! Fit NUDGE-N on a dataset folder with the public API alone, and print the
//! gamma and the test NDCG@10 before and after:
//!
//! ```text
//! cargo run --release --example fit -- data/scifact
//! ```
//!
//! The folder holds `corpus.npy`, `queries.npy`, optional
//! `corpus_ids.txt`/`query_ids.txt`, and `qrels/{train,dev,test}.tsv`.

use std::process::ExitCode;

use nudge::{Dataset, FitOptions, Inputs, Method, Paths};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: fit DATASET_DIR");
        return ExitCode::from(2);
    };
    match run(dir.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path) -> nudge::Result<()> {
    let ds = Dataset::open(Paths::folder(dir)?)?;
    let splits = ds.fit_splits(false, true)?;
    for w in &splits.warnings {
        eprintln!("warning: {w}");
    }
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
    };
    let fit = nudge::fit(&nudge::Cpu, &inputs, &FitOptions::new(Method::NudgeN))?;
    for w in &fit.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "nudge-n: gamma {}, {} of {} records moved",
        fit.gamma,
        fit.moved.len(),
        ds.corpus.rows()
    );
    match (&fit.before, &fit.after) {
        (Some(b), Some(a)) => println!(
            "test ndcg@10 {:.4} -> {:.4} ({} queries)",
            b.ndcg, a.ndcg, a.queries
        ),
        _ => println!("no test judgements: nothing to score"),
    }
    Ok(())
}
