//! `nudge apply`: a delta onto a corpus (or one part of it) -> the tuned
//! corpus (or that part of it), so each worker of a distributed fit
//! rewrites its own shard.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::fit::{OutType, check_writable, refuse_overwriting_input};
use super::part::PartArgs;
use super::{DataArgs, env_knob, log};
use nudge::data::MatrixFile;
use nudge::data::table::Columns;
use nudge::fit::output::{Delta, stage_applied};
use nudge::{Error, Ids, OutDtype, Result, WriteOptions};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub part: PartArgs,
    /// The delta to apply (`nudge fit --delta` or `nudge reduce --delta`)
    #[arg(long, value_name = "DIR")]
    pub delta: PathBuf,
    /// Where to write the tuned rows (.npy, input row order)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Element type of the written rows
    #[arg(long, value_enum, default_value_t = OutType::F32)]
    pub out_dtype: OutType,
    #[command(flatten)]
    pub sync: super::SyncArgs,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    log::set_quiet(args.quiet);
    let start = Instant::now();
    let paths = args.data.paths()?;
    refuse_overwriting_input(&args.out, &paths)?;
    check_writable(&args.out)?;
    let corpus_path = paths
        .corpus
        .clone()
        .ok_or(Error::MissingInput { what: "corpus" })?;
    let columns = Columns {
        vector: paths.vector_column.clone(),
        id: paths.id_column.clone(),
    };
    let corpus = MatrixFile::open(&corpus_path, &columns)?;
    // The delta names records by id: this corpus's ids (an ids file wins
    // over a table's id column), or its row numbers.
    let ids = match &paths.corpus_ids {
        Some(f) => Ids::load(Some(f), corpus.rows(), &corpus_path)?,
        None => match corpus.table_ids()? {
            Some(ids) => ids,
            None => Ids::rows(corpus.rows()),
        },
    };
    let delta = Delta::load(&args.delta)?;
    let range = args.part.rows_of(&corpus)?;
    // Rows of the delta's records in this corpus; ids it does not hold
    // belong to other shards.
    let mut found: Vec<(u32, usize)> = delta
        .ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| ids.row(id).map(|r| (r, i)))
        .collect();
    found.sort_unstable();
    if let Some(w) = found.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::data(
            args.delta.join("ids.txt"),
            format!(
                "lists id {} twice; expected each moved record once",
                delta.ids[w[1].1]
            ),
        ));
    }
    let dim = delta.vectors.cols;
    let moved: Vec<u32> = found.iter().map(|f| f.0).collect();
    let mut updated = nudge::Matrix::zeros(found.len(), dim);
    for (j, &(_, i)) in found.iter().enumerate() {
        updated.row_mut(j).copy_from_slice(delta.vectors.row(i));
    }
    let in_part = moved
        .iter()
        .filter(|&&r| range.contains(&(r as usize)))
        .count();
    let write = WriteOptions {
        dtype: match args.out_dtype {
            OutType::F32 => OutDtype::F32,
            OutType::F16 => OutDtype::F16,
        },
        in_memory_max: env_knob("NUDGE_OUTPUT_IN_MEMORY_MAX")
            .unwrap_or(WriteOptions::default().in_memory_max),
        durability: args.sync.durability(),
    };
    let control = super::control();
    let staged = stage_applied(
        (&corpus).into(),
        range.clone(),
        &moved,
        &updated,
        &args.out,
        &write,
        super::chunk_rows_knob(),
        &control,
    )?;
    nudge::data::commit_all(vec![staged], &control.cancel, write.durability)?;
    log::notice(format!(
        "wrote rows {}..{} ({} of the delta's {} records) to {} in {:.2} s",
        range.start,
        range.end,
        in_part,
        delta.ids.len(),
        args.out.display(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}
