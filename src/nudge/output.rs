//! Writing the fine-tuned corpus: a second streaming pass in input row order,
//! static rows normalised, moved rows replaced by their update.

use std::path::Path;

use crate::backend::cpu::normalize_rows;
use crate::data::Pending;
use crate::data::npy::{NpyMatrix, NpyWriter, OutDtype};
use crate::data::stream::for_each_chunk;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::progress::Progress;

/// Streams `corpus` to `path` (atomically) with `moved` rows (ascending)
/// replaced by the rows of `updated`.
pub fn write_corpus(
    corpus: &NpyMatrix,
    moved: &[u32],
    updated: &Matrix,
    path: &Path,
    dtype: OutDtype,
) -> Result<()> {
    stage_corpus(corpus, moved, updated, path, dtype)?.commit()
}

/// As [`write_corpus`], but the finished file waits at its temporary path
/// until the caller commits it (with the command's other outputs).
pub fn stage_corpus(
    corpus: &NpyMatrix,
    moved: &[u32],
    updated: &Matrix,
    path: &Path,
    dtype: OutDtype,
) -> Result<Pending> {
    let (n, d) = (corpus.rows(), corpus.cols());
    // ~4 MiB chunks: large sequential writes, bounded memory.
    let chunk = crate::backend::cpu::chunk_rows_override()
        .unwrap_or((4usize << 20) / (4 * d.max(1)))
        .max(1);
    let writer = NpyWriter::create(path, n, d, dtype)?;
    let progress = Progress::new("writing", n as u64, "rows");
    // Dropping the writer on an error (or Ctrl-C, which for_each_chunk
    // turns into one) removes its temporary file.
    let mut writer = writer;
    let mut next = 0;
    for_each_chunk(corpus, chunk, |buf, start| {
        let count = buf.len() / d.max(1);
        normalize_rows(buf, d, start);
        while next < moved.len() && (moved[next] as usize) < start + count {
            let r = moved[next] as usize - start;
            buf[r * d..(r + 1) * d].copy_from_slice(updated.row(next));
            next += 1;
        }
        writer.write_rows(buf)?;
        progress.set((start + count) as u64);
        Ok(())
    })?;
    let staged = writer.finish_staged()?;
    progress.finish();
    crate::interrupt::check()?;
    Ok(staged)
}

/// Writes only what changed: `ids.txt` and `vectors.npy` of the moved records,
/// for upserting into a vector database.
pub fn write_delta(dir: &Path, names: &[String], updated: &Matrix, dtype: OutDtype) -> Result<()> {
    crate::data::commit_all(stage_delta(dir, names, updated, dtype)?)
}

/// As [`write_delta`], staged: creates `dir` and returns both files uncommitted.
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
