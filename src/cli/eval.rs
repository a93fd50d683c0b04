//! `nudge eval`: Recall@k and NDCG@k of a corpus on one split, by dot product.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use super::DataArgs;
use super::device::DeviceArgs;
use crate::backend::{Rows, ScanSpec};
use crate::data::dataset::{Dataset, SplitName};
use crate::error::{Error, Result};
use crate::eval::metrics;
use crate::eval::search::{check_finite, scan_corpus};
use crate::log;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Dev,
    Test,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Which judgements to score
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Cut-off; repeat for several (default 10)
    #[arg(long = "k", value_name = "K")]
    pub k: Vec<usize>,
    /// Normalise the rows of a --corpus before scoring (cosine instead of dot product)
    #[arg(long)]
    pub cosine: bool,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print nothing but errors (and the --json object)
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    log::set_quiet(args.quiet);
    let mut ks = if args.k.is_empty() {
        vec![10]
    } else {
        args.k.clone()
    };
    if ks.contains(&0) {
        return Err(Error::usage("--k must be at least 1"));
    }
    ks.sort_unstable();
    ks.dedup();
    crate::backend::cpu::warm_up_in_background();
    // An explicit --corpus is scored as stored (a NUDGE-M output must be);
    // the dataset's own corpus is the untuned baseline, normalised.
    let normalize = args.cosine || args.data.corpus.is_none();
    let paths = args.data.paths()?;
    let start = std::time::Instant::now();
    let ds = Dataset::open(paths)?;
    let split = match args.split {
        SplitArg::Train => SplitName::Train,
        SplitArg::Dev => SplitName::Dev,
        SplitArg::Test => SplitName::Test,
    };
    let split = ds.required_split(split, args.data.skip_unknown_ids)?;
    let flops = 2.0 * split.queries.len() as f64 * ds.corpus.rows() as f64 * ds.dim() as f64;
    let backend = args.device.backend_for(flops)?;
    let q = split.matrix(&ds.queries);
    let kmax = *ks.last().expect("at least one k");
    let spec = ScanSpec {
        queries: &q,
        k: kmax,
        rows: if normalize {
            Rows::Normalize
        } else {
            Rows::AsStored
        },
        skip: None,
    };
    let read_s = start.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (top, report) = scan_corpus(backend.as_ref(), &ds.corpus, spec, None, |_, _| Ok(()))?;
    let scan_s = t.elapsed().as_secs_f64();
    check_finite(&report, &ds.corpus)?;
    let scores = metrics::score(&top, &split.queries, &ks);
    if args.json {
        let mut o = Map::new();
        for s in &scores {
            o.insert(format!("recall@{}", s.k), json!(s.recall));
            o.insert(format!("ndcg@{}", s.k), json!(s.ndcg));
        }
        o.insert("queries".into(), json!(split.queries.len()));
        o.insert("split".into(), json!(split.name.as_str()));
        o.insert("backend".into(), json!(backend.name()));
        o.insert("device".into(), json!(backend.device_name()));
        o.insert("records".into(), json!(ds.corpus.rows()));
        o.insert("dim".into(), json!(ds.dim()));
        o.insert(
            "timings".into(),
            json!({ "read": read_s, "scan": scan_s, "total": start.elapsed().as_secs_f64() }),
        );
        println!("{}", Value::Object(o));
    } else {
        println!(
            "{} {} queries over {} records ({}{})",
            split.name.as_str(),
            split.queries.len(),
            ds.corpus.rows(),
            if normalize { "cosine" } else { "dot product" },
            if report.zero.is_empty() {
                String::new()
            } else {
                format!(", {} zero rows", report.zero.len())
            }
        );
        for s in &scores {
            println!(
                "recall@{:<3} {:.4}   ndcg@{:<3} {:.4}",
                s.k, s.recall, s.k, s.ndcg
            );
        }
    }
    Ok(())
}
