//! `nudge eval`: Recall@k and NDCG@k of a corpus on one split, by dot product.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use super::device::DeviceArgs;
use super::{DataArgs, log};
use nudge::{Dataset, Error, EvalOptions, Result, SplitName};

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
        return Err(Error::invalid("--k must be at least 1"));
    }
    ks.sort_unstable();
    ks.dedup();
    nudge::backend::cpu::warm_up_in_background();
    // An explicit --corpus is scored as stored (a NUDGE-M output must be);
    // the dataset's own corpus is the untuned baseline, normalised.
    let normalize = args.cosine || args.data.corpus.is_none();
    let paths = args.data.paths()?;
    let early = args.device.open_early();
    let start = std::time::Instant::now();
    let ds = Dataset::open(paths)?;
    ds.notes
        .iter()
        .for_each(|n| log::notice(format!("note: {n}")));
    let split = match args.split {
        SplitArg::Train => SplitName::Train,
        SplitArg::Dev => SplitName::Dev,
        SplitArg::Test => SplitName::Test,
    };
    let judged = ds.required_split(split, args.data.skip_unknown_ids)?;
    judged.warnings.iter().for_each(log::warn);
    judged
        .notes
        .iter()
        .for_each(|n| log::notice(format!("note: {n}")));
    let split = judged.split;
    let flops = 2.0 * split.queries.len() as f64 * ds.corpus.rows() as f64 * ds.dim() as f64;
    let read_s = start.elapsed().as_secs_f64();
    let backends = args.device.backends_after(early, flops)?;
    // Opening the device (on a GPU: instance, adapter, kernel compiles),
    // or what is left of it once the dataset is read.
    let device_s = start.elapsed().as_secs_f64() - read_s;
    let all: Vec<&dyn nudge::Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let backend = &backends[0];
    let opts = EvalOptions {
        ks,
        cosine: normalize,
        chunk_rows: super::chunk_rows_knob(),
        control: super::control(),
    };
    let t = std::time::Instant::now();
    let result = nudge::evaluate_across(&all, (&ds.corpus).into(), &ds.queries, &split, &opts)?;
    let scan_s = t.elapsed().as_secs_f64();
    // Said in either output form (its warnings go to stderr).
    let gpu_tile = super::tune_json(backend.as_ref());
    for b in &all[1..] {
        let _ = super::tune_json(*b);
    }
    let scores = result.scores;
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
        let mut timings = json!({ "read": read_s, "device": device_s, "scan": scan_s, "total": start.elapsed().as_secs_f64() });
        if let Some(k) = super::kernel_timings_json(backend.as_ref()) {
            timings["gpu_kernels"] = k;
        }
        if let Some(k) = super::host_timings_json(backend.as_ref()) {
            timings["gpu_host"] = k;
        }
        if let Some(t) = gpu_tile {
            timings["gpu_tile"] = t;
        }
        o.insert("timings".into(), timings);
        if all.len() > 1 {
            // Each adapter's share of the pass and its own GPU time.
            let shares: Vec<Value> = all
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let rows =
                        nudge::fit::partial::part(i, all.len(), ds.corpus.rows()).expect("a part");
                    json!({
                        "device": b.device_name(),
                        "rows": [rows.start, rows.end],
                        "gpu_kernels": super::kernel_timings_json(*b),
                    })
                })
                .collect();
            o.insert("adapters".into(), json!(shares));
        }
        println!("{}", Value::Object(o));
    } else {
        println!(
            "{} {} queries over {} records ({}{})",
            split.name.as_str(),
            split.queries.len(),
            ds.corpus.rows(),
            if normalize { "cosine" } else { "dot product" },
            if result.zero_rows.is_empty() {
                String::new()
            } else {
                format!(", {} zero rows", result.zero_rows.len())
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
