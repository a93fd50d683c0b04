//! Writing the fine-tuned corpus, in input row order: static rows
//! normalised, moved rows replaced by their update. The corpus is written
//! during the fit's one pass over it (rows go out as they are read, moved
//! rows are patched in once updated; a small corpus is assembled in memory
//! and written in one piece instead), or as a delta of the moved rows only.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::control::Cancel;
use crate::data::ids::Ids;
use crate::data::npy::{NpyMatrix, NpyWriter, OutDtype};
use crate::data::parquet_out::ParquetOut;
use crate::data::shards::ShardKind;
use crate::data::{MatrixFile, Pending};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::matrix::Matrix;

/// How the tuned corpus is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Element type of the written rows.
    pub dtype: OutDtype,
    /// Outputs of up to this many bytes (as f32) are assembled in memory and
    /// written in one piece; larger ones stream to disk on a writer thread
    /// during the pass. Tests set 0 to walk the streaming path on small data.
    pub in_memory_max: u64,
    /// Whether [`fit_to_file`] syncs the output before it renames it into
    /// place. (Commands that stage several outputs pass theirs to
    /// [`crate::data::commit_all`].)
    pub durability: crate::data::Durability,
}

impl Default for WriteOptions {
    /// f32 rows; outputs of up to 64 MiB in memory; synced.
    fn default() -> WriteOptions {
        WriteOptions {
            dtype: OutDtype::F32,
            in_memory_max: 64 << 20,
            durability: crate::data::Durability::Synced,
        }
    }
}

/// Fits and writes the output corpus to `path` (atomically) in the fit's
/// own pass: the library form of `nudge fit --out`.
pub fn fit_to_file(
    backend: &dyn crate::backend::Backend,
    inputs: &crate::fit::Inputs,
    opts: &crate::fit::FitOptions,
    path: &Path,
    write: &WriteOptions,
) -> Result<crate::fit::Fit> {
    let mut out = InlineOutput::create(inputs.corpus.rows(), inputs.corpus.cols(), path, write)?;
    let fit = crate::fit::fit_into(backend, inputs, opts, Some(&mut out))?;
    let mut staged = out.finish()?;
    staged.flush(write.durability)?;
    staged.commit()?;
    Ok(fit)
}

/// The output corpus written during the fit's own pass (see
/// [`crate::fit::fit_into`]): rows arrive normalised and in order,
/// [`InlineOutput::put_moved`] puts the moved ones in as soon as they are
/// updated, and [`InlineOutput::finish`] stages the file (synced at its
/// commit, unless [`WriteOptions::durability`] says otherwise).
pub struct InlineOutput {
    cols: usize,
    sink: Sink,
}

/// Where the rows go until [`InlineOutput::put_moved`].
enum Sink {
    /// An output of up to [`WriteOptions::in_memory_max`] bytes is kept in memory and
    /// written in one piece once the moved rows are in place: for a
    /// small corpus, a writer thread, its buffers and a write call per run
    /// of moved rows cost more than the fit itself. The corpus pass reads
    /// the corpus straight into `rows` ([`InlineOutput::rows_mut`]), which
    /// spares it buffers of its own and a copy.
    Memory { writer: NpyWriter, rows: Vec<f32> },
    /// A larger one is written as it streams past, on a thread of its own:
    /// once the page cache holds its share of dirty pages, a write waits for
    /// the disk, and the similarity search must not wait with it. A few
    /// chunks in flight bound the memory. The moved rows are patched in at
    /// the end.
    Stream {
        send: Option<SyncSender<Vec<f32>>>,
        recycle: Receiver<Vec<f32>>,
        writer: Option<JoinHandle<Result<NpyWriter>>>,
    },
    /// Every row is written and the disk has been told to start: what is
    /// left is the sync.
    Written(NpyWriter),
    /// Between two of the above, or after a failed `put_moved`.
    Failed,
}

impl InlineOutput {
    /// Starts the output of a `rows x cols` corpus at `path` (a temporary
    /// file beside it until [`InlineOutput::finish`] and a commit).
    pub fn create(
        rows: usize,
        cols: usize,
        path: &Path,
        write: &WriteOptions,
    ) -> Result<InlineOutput> {
        let mut w = NpyWriter::create(path, rows, cols, write.dtype)?;
        if write.durability == crate::data::Durability::Unsynced {
            w = w.unsynced();
        }
        let sink = if (rows * cols * 4) as u64 <= write.in_memory_max {
            Sink::Memory {
                writer: w,
                // Zeroed memory fresh from the allocator costs nothing
                // until the corpus is read into it.
                rows: vec![0.0; rows * cols],
            }
        } else {
            let (send, rows) = sync_channel::<Vec<f32>>(4);
            let (give_back, recycle) = channel::<Vec<f32>>();
            let writer = std::thread::spawn(move || -> Result<NpyWriter> {
                for buf in rows {
                    w.write_rows(&buf)?;
                    let _ = give_back.send(buf);
                }
                Ok(w)
            });
            Sink::Stream {
                send: Some(send),
                recycle,
                writer: Some(writer),
            }
        };
        Ok(InlineOutput { cols, sink })
    }

    /// Whether the output is assembled in memory (see [`Self::rows_mut`]).
    pub fn in_memory(&self) -> bool {
        matches!(self.sink, Sink::Memory { .. })
    }

    /// Every row of the output, when it is assembled in memory: the corpus
    /// pass may read and normalise the rows right there, and then need not
    /// [`push`](Self::push) them.
    pub fn rows_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.sink {
            Sink::Memory { rows, .. } => Some(rows),
            _ => None,
        }
    }

    /// The next rows of the corpus, normalised, starting at row `first`.
    pub fn push(&mut self, normalised: &[f32], first: usize) -> Result<()> {
        let cols = self.cols;
        match &mut self.sink {
            Sink::Memory { rows, .. } => {
                rows[first * cols..first * cols + normalised.len()].copy_from_slice(normalised);
                Ok(())
            }
            Sink::Written(_) | Sink::Failed => {
                unreachable!("output rows pushed after the moved rows")
            }
            Sink::Stream {
                send,
                recycle,
                writer,
            } => {
                let mut buf = recycle.try_recv().unwrap_or_default();
                // Copied in parallel blocks: on one core this copy (64 MiB
                // a chunk) holds up the next chunk's scan for as long as
                // the scan itself takes on a GPU. A recycled buffer has the
                // room already, so `resize` only fills a new one's.
                buf.resize(normalised.len(), 0.0);
                {
                    use rayon::prelude::*;
                    const BLOCK: usize = 1 << 18;
                    buf.par_chunks_mut(BLOCK)
                        .zip(normalised.par_chunks(BLOCK))
                        .for_each(|(d, s)| d.copy_from_slice(s));
                }
                if send.as_ref().is_some_and(|s| s.send(buf).is_ok()) {
                    return Ok(());
                }
                // The writer stopped on an error: report that error.
                Err(stop_writer(send, writer)
                    .err()
                    .unwrap_or_else(|| Error::runtime("the output writer stopped")))
            }
        }
    }

    /// Puts the updated moved rows in place, writes whatever is not written
    /// yet and starts the disk on it: the fit calls this as soon as the
    /// rows are updated, so the disk works while the test queries are
    /// scored.
    pub fn put_moved(&mut self, moved: &[u32], updated: &Matrix) -> Result<()> {
        let cols = self.cols;
        let mut writer = match std::mem::replace(&mut self.sink, Sink::Failed) {
            Sink::Memory {
                mut writer,
                mut rows,
            } => {
                for (i, &r) in moved.iter().enumerate() {
                    let r = r as usize;
                    rows[r * cols..(r + 1) * cols].copy_from_slice(updated.row(i));
                }
                writer.write_rows(&rows)?;
                writer
            }
            Sink::Stream {
                mut send,
                mut writer,
                ..
            } => {
                let mut w = stop_writer(&mut send, &mut writer)?;
                w.patch_rows(moved, &updated.data)?;
                w
            }
            Sink::Written(_) | Sink::Failed => {
                unreachable!("moved rows put twice");
            }
        };
        writer.start_writeback()?;
        self.sink = Sink::Written(writer);
        Ok(())
    }

    /// Stages the complete file for [`crate::data::commit_all`] (which, or
    /// [`Pending::flush`], syncs it).
    pub fn finish(mut self) -> Result<Pending> {
        match std::mem::replace(&mut self.sink, Sink::Failed) {
            Sink::Written(w) => w.finish_staged(),
            _ => unreachable!("the output was finished before its moved rows were put"),
        }
    }
}

impl Drop for InlineOutput {
    fn drop(&mut self) {
        // An unfinished output (an error, Ctrl-C): stop the writer, whose
        // temporary file is removed when it drops the NpyWriter.
        if let Sink::Stream { send, writer, .. } = &mut self.sink {
            let _ = stop_writer(send, writer);
        }
    }
}

/// Ends a streamed output's writer thread (closing its channel first) and
/// takes back its writer, or the error that stopped it.
fn stop_writer(
    send: &mut Option<SyncSender<Vec<f32>>>,
    writer: &mut Option<JoinHandle<Result<NpyWriter>>>,
) -> Result<NpyWriter> {
    *send = None;
    match writer.take() {
        // A panic on the writer thread is a bug: carry it on here.
        Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        None => Err(Error::runtime("the output writer stopped")),
    }
}

/// Stages only what changed, `ids.txt` and `vectors.npy` of the moved
/// records (for upserting into a vector database): creates `dir` and returns
/// both files uncommitted.
pub fn stage_delta(
    dir: &Path,
    names: &[String],
    updated: &Matrix,
    dtype: OutDtype,
) -> Result<Vec<Pending>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| crate::error::Error::io(dir, "create directory", e))?;
    let vectors = crate::data::npy::stage_matrix(
        &dir.join("vectors.npy"),
        &updated.data,
        updated.cols,
        dtype,
    )?;
    let mut text = names.join("\n");
    text.push('\n');
    let ids = crate::data::stage_write(&dir.join("ids.txt"), text.as_bytes())?;
    Ok(vec![vectors, ids])
}

/// A delta read back (`nudge fit --delta`): the moved records' ids and new
/// vectors, one row per id.
#[derive(Debug, Clone)]
pub struct Delta {
    /// Ids of the moved records, as `ids.txt` lists them.
    pub ids: Vec<String>,
    /// Their new vectors, in the same order.
    pub vectors: Matrix,
}

impl Delta {
    /// Reads `dir/ids.txt` and `dir/vectors.npy`; a data error naming the
    /// file when they do not agree.
    pub fn load(dir: &Path) -> Result<Delta> {
        let ids_path = dir.join("ids.txt");
        let text = std::fs::read_to_string(&ids_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::data(
                    dir,
                    "holds no ids.txt; expected a delta written by `nudge fit --delta`",
                )
            } else {
                Error::io(&ids_path, "read", e)
            }
        })?;
        let ids: Vec<String> = text.lines().map(str::to_string).collect();
        let m = crate::data::npy::NpyMatrix::open(&dir.join("vectors.npy"))?;
        if m.rows() != ids.len() {
            return Err(Error::inconsistent(format!(
                "{} has {} rows but {} lists {} ids; expected one vector per id",
                dir.join("vectors.npy").display(),
                m.rows(),
                ids_path.display(),
                ids.len()
            )));
        }
        Ok(Delta {
            vectors: Matrix::new(m.rows(), m.cols(), m.read_all()?),
            ids,
        })
    }
}

/// Writes rows `range` of `corpus` tuned, to a temporary file beside
/// `path` (to be committed): every row normalised as a fit normalises it,
/// and the rows `moved` (ascending corpus rows) that fall in the range
/// replaced by their row of `updated`. The outputs of parts that tile the
/// corpus, concatenated, are the fit's `--out` byte for byte, so each
/// worker of a distributed fit rewrites its own part.
#[allow(clippy::too_many_arguments)]
pub fn stage_applied(
    corpus: crate::data::Corpus,
    range: std::ops::Range<usize>,
    moved: &[u32],
    updated: &Matrix,
    path: &Path,
    write: &WriteOptions,
    chunk_rows: Option<usize>,
    control: &crate::control::Control,
) -> Result<Pending> {
    let dim = corpus.cols();
    assert!(range.end <= corpus.rows(), "rows within the corpus");
    assert_eq!(updated.rows, moved.len(), "one updated row per moved row");
    if updated.cols != dim {
        return Err(Error::inconsistent(format!(
            "the delta's vectors are {}-d but {} has {dim}-d rows",
            updated.cols,
            corpus.path().display()
        )));
    }
    let lo = moved.partition_point(|&r| (r as usize) < range.start);
    let part = crate::fit::plan::Plan::within(moved, &range);
    let hi = lo + part.len();
    let local: Vec<u32> = part.iter().map(|&r| r - range.start as u32).collect();
    let rows = Matrix::new(hi - lo, dim, updated.data[lo * dim..hi * dim].to_vec());
    let mut out = InlineOutput::create(range.len(), dim, path, write)?;
    // In memory, the rows are read into the output and normalised there;
    // streamed, each chunk is pushed.
    let report = match out.rows_mut() {
        Some(all) => {
            let first_row = range.start;
            let mut report = crate::backend::RowReport::default();
            let phase = control.phase("applying", range.len() as u64, "rows");
            crate::data::stream::for_each_chunk(
                corpus,
                range.clone(),
                chunk_rows.unwrap_or(1 << 16).max(1),
                Some(all),
                &control.cancel,
                |c, first| {
                    report.extend(crate::backend::cpu::normalize_rows(c, dim, first));
                    phase.set((first - first_row + c.len() / dim.max(1)) as u64);
                    Ok(())
                },
            )?;
            report
        }
        None => push_normalised(corpus, range, &mut out, chunk_rows, control, "applying")?,
    };
    crate::fit::scan::check_finite(&report, corpus)?;
    out.put_moved(&local, &rows)?;
    out.finish()
}

/// Streams rows `range` of `corpus`, normalised as a fit normalises them,
/// into `out` (its first row being the range's first): the output of a
/// fit whose scan could not write it on the way ([`crate::fit::fit_across`]
/// with a streamed output), and a streamed [`stage_applied`]. Returns the
/// rows found zero or not finite.
pub(crate) fn push_normalised(
    corpus: crate::data::Corpus,
    range: std::ops::Range<usize>,
    out: &mut InlineOutput,
    chunk_rows: Option<usize>,
    control: &crate::control::Control,
    phase: &str,
) -> Result<crate::backend::RowReport> {
    let dim = corpus.cols();
    let first_row = range.start;
    let mut report = crate::backend::RowReport::default();
    let phase = control.phase(phase, range.len() as u64, "rows");
    crate::data::stream::for_each_chunk(
        corpus,
        range,
        chunk_rows.unwrap_or(1 << 16).max(1),
        None,
        &control.cancel,
        |c, first| {
            report.extend(crate::backend::cpu::normalize_rows(c, dim, first));
            phase.set((first - first_row + c.len() / dim.max(1)) as u64);
            out.push(c, first - first_row)
        },
    )?;
    Ok(report)
}

/// Where the tuned corpus goes, and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutTarget {
    /// One `.npy` file.
    Npy(PathBuf),
    /// One Parquet file of `(id, vector)` rows (see
    /// [`crate::data::parquet_out`]).
    Parquet(PathBuf),
    /// A folder with one tuned shard per shard of a sharded corpus, named as
    /// the input shards and in their format (`.npy`, or Parquet of `(id,
    /// vector)`).
    Shards(PathBuf),
}

impl OutTarget {
    /// The target `path` names: a folder if it ends with `/` or is one, a
    /// Parquet file by its extension (`.parquet`, `.pq`), else `.npy`. A
    /// folder needs a sharded corpus (`corpus_is_sharded`): there is no
    /// sharding to keep otherwise.
    pub fn new(path: &Path, corpus_is_sharded: bool) -> Result<OutTarget> {
        let dir = path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir();
        if dir {
            if !corpus_is_sharded {
                return Err(Error::invalid(format!(
                    "{}: is a directory; expected a file path (.npy or .parquet): a folder output keeps the sharding of a sharded corpus (--corpus DIR/), and the corpus is one file",
                    path.display()
                )));
            }
            return Ok(OutTarget::Shards(path.to_path_buf()));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Ok(match ext.as_deref() {
            Some("parquet" | "pq") => OutTarget::Parquet(path.to_path_buf()),
            _ => OutTarget::Npy(path.to_path_buf()),
        })
    }

    /// Where the fit's pass writes its `.npy` ([`InlineOutput::create`]): the
    /// output itself, or, for another format, a temporary file beside it
    /// that [`stage_as`] converts and removes.
    pub fn pass_path(&self) -> PathBuf {
        match self {
            OutTarget::Npy(p) | OutTarget::Parquet(p) => p.clone(),
            OutTarget::Shards(dir) => dir.join("corpus.npy"),
        }
    }

    /// The final paths the target writes, for a corpus of `shards` (its
    /// shard files, if sharded).
    pub fn paths(&self, shards: &[PathBuf]) -> Vec<PathBuf> {
        match self {
            OutTarget::Npy(p) | OutTarget::Parquet(p) => vec![p.clone()],
            OutTarget::Shards(dir) => shards
                .iter()
                .filter_map(|s| s.file_name())
                .map(|n| dir.join(n))
                .collect(),
        }
    }
}

/// The fit's staged `.npy` output, read back a step of rows (64 MiB of
/// f32) at a time for [`stage_as`].
struct Readback {
    m: NpyMatrix,
    step: usize,
    raw: Vec<u8>,
    buf: Vec<f32>,
}

impl Readback {
    fn open(pass: &Pending) -> Result<Readback> {
        let m = NpyMatrix::open(pass.staged_path())?;
        let step = ((64 << 20) / (m.cols().max(1) * 4)).max(1);
        Ok(Readback {
            m,
            step,
            raw: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// Calls `put(rows, values)` for consecutive steps of rows `range`.
    fn copy(
        &mut self,
        range: Range<usize>,
        cancel: &Cancel,
        mut put: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let cols = self.m.cols();
        let mut at = range.start;
        while at < range.end {
            cancel.check()?;
            let n = self.step.min(range.end - at);
            self.buf.resize(n * cols, 0.0);
            self.m.read_rows_into(at, n, &mut self.raw, &mut self.buf)?;
            put(at..at + n, &self.buf)?;
            at += n;
        }
        Ok(())
    }

    /// Rows `range` as a Parquet file at `path`, with their `ids`, staged.
    fn parquet(
        &mut self,
        path: &Path,
        range: Range<usize>,
        ids: &Ids,
        dtype: OutDtype,
        cancel: &Cancel,
    ) -> Result<Pending> {
        let mut w = ParquetOut::create(path, self.m.cols(), dtype)?;
        self.copy(range, cancel, |rows, values| {
            let names: Vec<String> = rows.map(|r| ids.name(r)).collect();
            w.write(&names, values)
        })?;
        w.finish_staged()
    }
}

/// Turns the fit's staged `.npy` output (`pass`, from
/// [`InlineOutput::finish`]) into `target`, staged for
/// [`crate::data::commit_all`]: as it is for `.npy`; otherwise read back a
/// chunk at a time (memory stays bounded) and written as Parquet or as one
/// shard per shard of `corpus`, after which the `.npy` is removed. The ids
/// of Parquet rows are `ids`; values round-trip exactly (f16 included),
/// so every format holds the same numbers.
pub fn stage_as(
    pass: Pending,
    target: &OutTarget,
    corpus: &MatrixFile,
    ids: &Ids,
    dtype: OutDtype,
    cancel: &Cancel,
) -> Result<Vec<Pending>> {
    if let OutTarget::Npy(_) = target {
        return Ok(vec![pass]);
    }
    let mut back = Readback::open(&pass)?;
    let cols = back.m.cols();
    let staged = match target {
        OutTarget::Npy(_) => unreachable!(),
        OutTarget::Parquet(path) => {
            let rows = back.m.rows();
            vec![back.parquet(path, 0..rows, ids, dtype, cancel)?]
        }
        OutTarget::Shards(dir) => {
            let MatrixFile::Shards(s) = corpus else {
                return Err(Error::invalid(format!(
                    "{}: a sharded output needs a sharded corpus",
                    dir.display()
                )));
            };
            let mut staged = Vec::new();
            for (i, shard) in s.shards().iter().enumerate() {
                let name = shard.path().file_name().expect("a shard is a file");
                let path = dir.join(name);
                let range = s.range(i);
                staged.push(match s.kind() {
                    ShardKind::Parquet => back.parquet(&path, range, ids, dtype, cancel)?,
                    ShardKind::Npy => {
                        let mut w = NpyWriter::create(&path, range.len(), cols, dtype)?;
                        back.copy(range, cancel, |_, values| w.write_rows(values))?;
                        w.finish_staged()?
                    }
                });
            }
            staged
        }
    };
    // The pass's `.npy` is removed as `pass` drops.
    drop(pass);
    Ok(staged)
}
