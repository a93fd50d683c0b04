//! Writing the fine-tuned corpus, in input row order: static rows
//! normalised, moved rows replaced by their update. The corpus is written
//! during the fit's one pass over it (rows go out as they are read, moved
//! rows are patched in at the end), or as a delta of the moved rows only.

use std::path::Path;

use crate::backend::cpu::normalize_rows;
use crate::data::Pending;
use crate::data::npy::{NpyMatrix, NpyWriter, OutDtype};
use crate::error::Result;
use crate::matrix::Matrix;

/// Fits and writes the output corpus to `path` (atomically) in the fit's
/// own pass: the library form of `nudge fit --out`.
pub fn fit_to_file(
    backend: &dyn crate::backend::Backend,
    inputs: &crate::nudge::Inputs,
    opts: &crate::nudge::FitOptions,
    path: &Path,
    dtype: OutDtype,
) -> Result<crate::nudge::Fit> {
    let mut out = InlineOutput::create(inputs.corpus, path, dtype)?;
    let fit = crate::nudge::fit_into(backend, inputs, opts, Some(&mut out))?;
    out.finish(&fit.moved, &fit.updated)?.commit()?;
    Ok(fit)
}

/// The output corpus written during the fit's own pass (see
/// [`crate::nudge::fit_into`]): rows arrive raw and in order, go out
/// normalised, and [`InlineOutput::finish`] overwrites the moved ones.
pub struct InlineOutput {
    writer: NpyWriter,
    cols: usize,
    buf: Vec<f32>,
}

impl InlineOutput {
    pub fn create(corpus: &NpyMatrix, path: &Path, dtype: OutDtype) -> Result<InlineOutput> {
        let writer = NpyWriter::create(path, corpus.rows(), corpus.cols(), dtype)?;
        Ok(InlineOutput {
            writer,
            cols: corpus.cols(),
            buf: Vec::new(),
        })
    }

    /// The next raw rows of the corpus, starting at row `first`.
    pub fn push(&mut self, raw: &[f32], first: usize) -> Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(raw);
        normalize_rows(&mut self.buf, self.cols, first);
        self.writer.write_rows(&self.buf)
    }

    /// Writes the updated moved rows over their placeholders and stages the
    /// file for [`crate::data::commit_all`].
    pub fn finish(mut self, moved: &[u32], updated: &Matrix) -> Result<Pending> {
        self.writer.patch_rows(moved, &updated.data)?;
        self.writer.finish_staged()
    }
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
