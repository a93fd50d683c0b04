//! The `nudge` command line: argument definitions shared by the subcommands,
//! one file per subcommand, and what only a command-line program does
//! (printing, progress bars, signals, environment variables, exit codes).

pub mod apply;
pub mod bench;
pub mod demo;
pub mod device;
pub mod devices;
pub mod errors;
pub mod eval;
pub mod fit;
pub mod floor;
pub mod interrupt;
pub mod log;
pub mod map;
pub mod part;
pub mod progress;
pub mod reduce;
pub mod report;
pub mod synth;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use nudge::{Control, Paths, Result};

#[derive(Parser, Debug)]
#[command(
    name = "nudge",
    version,
    about = "Fine-tune the record embeddings of a k-NN retrieval corpus with NUDGE"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit NUDGE-M or NUDGE-N and write the fine-tuned corpus.
    Fit(fit::FitArgs),
    /// Recall@k and NDCG@k of a corpus (tuned or not) on one split.
    Eval(eval::EvalArgs),
    /// Fit both methods on the bundled SciFact data and show the gain.
    Demo(demo::DemoArgs),
    /// Write a synthetic dataset folder on which NUDGE helps.
    Synth(synth::SynthArgs),
    /// Scan one part of the corpus into a partial, for `nudge reduce`.
    Map(map::MapArgs),
    /// Fit from the partials of every part: the same delta and report as `nudge fit`.
    Reduce(reduce::ReduceArgs),
    /// Write a corpus (or one part of it) tuned by a delta.
    Apply(apply::ApplyArgs),
    /// Time fit and eval on the CPU path and the GPU path in one run.
    Bench(bench::BenchArgs),
    /// Render a saved fit report (`fit --report`) as a self-contained HTML page.
    Report(report::ReportArgs),
    /// List the GPU adapters nudge can use.
    Devices(devices::DevicesArgs),
}

/// `--no-sync`, for the commands whose outputs are data (fit, reduce, map,
/// apply).
#[derive(Args, Debug, Clone, Default)]
pub struct SyncArgs {
    /// Rename the outputs into place without syncing them to disk first: faster (a sync takes 10-20 ms for a small output on a cloud VM's disk and seconds for a large one), and a failed run still leaves no partial file, but a power loss or kernel crash soon after the run may lose or truncate them
    #[arg(long)]
    pub no_sync: bool,
}

impl SyncArgs {
    /// What the library is asked for.
    pub fn durability(&self) -> nudge::data::Durability {
        nudge::data::Durability::from_sync(!self.no_sync)
    }
}

/// Where the data is: a dataset folder, explicit files, or both (explicit wins).
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Dataset folder: corpus.npy (or corpus.parquet), queries.npy (or queries.parquet), [corpus_ids.txt, query_ids.txt], qrels/{train,dev,test}.tsv
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Corpus embeddings: n x d float32/float16 .npy, a .parquet / .arrow / .feather / .ipc table with a vector column, or a folder of .npy or .parquet shards
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Corpus ids, one per line in row order (default: row numbers)
    #[arg(long, value_name = "FILE")]
    pub corpus_ids: Option<PathBuf>,
    /// Query embeddings of all splits (.npy, or a table like --corpus)
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Query ids, one per line in row order (default: row numbers)
    #[arg(long, value_name = "FILE")]
    pub query_ids: Option<PathBuf>,
    /// Training judgements: BEIR TSV with header, TREC qrels or headerless TSV; plain, .gz or .zst
    #[arg(long, value_name = "FILE")]
    pub train_qrels: Option<PathBuf>,
    /// Dev judgements, used to choose gamma
    #[arg(long, value_name = "FILE")]
    pub dev_qrels: Option<PathBuf>,
    /// Test judgements, scored before and after
    #[arg(long, value_name = "FILE")]
    pub test_qrels: Option<PathBuf>,
    /// Vector column of Parquet/Arrow inputs (default: the one list column)
    #[arg(long, value_name = "NAME")]
    pub vector_column: Option<String>,
    /// Id column of Parquet/Arrow inputs (default: `id` or `_id` if present, else row numbers)
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Skip qrels lines whose ids are unknown (one warning) instead of failing
    #[arg(long)]
    pub skip_unknown_ids: bool,
}

impl DataArgs {
    pub fn paths(&self) -> Result<Paths> {
        Paths {
            corpus: self.corpus.clone(),
            corpus_ids: self.corpus_ids.clone(),
            queries: self.queries.clone(),
            query_ids: self.query_ids.clone(),
            train_qrels: self.train_qrels.clone(),
            dev_qrels: self.dev_qrels.clone(),
            test_qrels: self.test_qrels.clone(),
            vector_column: self.vector_column.clone(),
            id_column: self.id_column.clone(),
            folder: None,
        }
        .with_folder(self.dataset.as_deref())
    }
}

/// What a command hands the library to watch and stop it: progress bars
/// (on a terminal, unless `--quiet`) and the Ctrl-C token.
pub fn control() -> Control {
    Control {
        progress: progress::Bars::for_terminal(),
        cancel: interrupt::token().clone(),
    }
}

/// A hidden tuning knob from the environment: a positive integer, or
/// nothing. (`NUDGE_CHUNK_ROWS` and `NUDGE_OUTPUT_IN_MEMORY_MAX` let tests
/// force many small chunks and the streamed output on small data;
/// `NUDGE_GPU_TIMEOUT_S` bounds a GPU wait.)
pub fn env_knob(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// `NUDGE_CHUNK_ROWS`: corpus rows per streamed chunk, if set and positive
/// (tests force many small chunks with it).
pub fn chunk_rows_knob() -> Option<usize> {
    env_knob("NUDGE_CHUNK_ROWS")
        .filter(|&n| n > 0)
        .map(|n| n as usize)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Map(a) => map::run(a),
        Command::Reduce(a) => reduce::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
        Command::Devices(a) => devices::run(a),
    }
}

/// Shows what the GPU autotuner chose for the job (a notice per shape) and
/// its warnings (a corrupt or stale cache, one it could not write); returns
/// the choices as `{"d=384,queries<=1024": "128x128/8x8/k16 (tuned)"}` for
/// a JSON report, `None` when nothing was tuned.
pub fn tune_json(backend: &dyn nudge::Backend) -> Option<serde_json::Value> {
    for r in backend.tune_reports() {
        for w in &r.warnings {
            log::warn(w);
        }
        let shape = format!("d={},queries<={}", r.key.d, r.key.queries);
        log::notice(format!(
            "GPU tile for {shape}: {} ({})",
            r.tile,
            r.source.as_str()
        ));
    }
    nudge::report::tiles_json(backend)
}

/// The backend's per-kernel GPU times as `{name: {ms, calls, gflops}}`
/// (`gflops` only for kernels that count their work); `None` when it has
/// none (the CPU, or an adapter without timestamp queries).
pub fn kernel_timings_json(backend: &dyn nudge::Backend) -> Option<serde_json::Value> {
    nudge::report::times_json(backend.kernel_timings())
}

/// The GPU scan's host-side steps (`Backend::host_timings`) as JSON
/// (`{name: {ms, calls}}`), or `None` where there are none (the CPU).
pub fn host_timings_json(backend: &dyn nudge::Backend) -> Option<serde_json::Value> {
    nudge::report::times_json(backend.host_timings())
}
