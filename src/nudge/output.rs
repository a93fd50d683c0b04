//! Writing the fine-tuned corpus, in input row order: static rows
//! normalised, moved rows replaced by their update. The corpus is written
//! during the fit's one pass over it (rows go out as they are read, moved
//! rows are patched in at the end), or as a delta of the moved rows only.

use std::path::Path;

use crate::backend::cpu::normalize_rows;
use crate::data::Pending;
use crate::data::npy::{NpyMatrix, NpyWriter, OutDtype};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
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
///
/// The writes run on a thread of their own: once the page cache holds its
/// share of dirty pages, a write waits for the disk, and the similarity
/// search must not wait with it. A few chunks in flight bound the memory.
pub struct InlineOutput {
    cols: usize,
    send: Option<SyncSender<Vec<f32>>>,
    recycle: Receiver<Vec<f32>>,
    writer: Option<JoinHandle<Result<NpyWriter>>>,
}

impl InlineOutput {
    pub fn create(corpus: &NpyMatrix, path: &Path, dtype: OutDtype) -> Result<InlineOutput> {
        let mut w = NpyWriter::create(path, corpus.rows(), corpus.cols(), dtype)?;
        let (send, rows) = sync_channel::<Vec<f32>>(4);
        let (give_back, recycle) = channel::<Vec<f32>>();
        let writer = std::thread::spawn(move || -> Result<NpyWriter> {
            for buf in rows {
                w.write_rows(&buf)?;
                let _ = give_back.send(buf);
            }
            Ok(w)
        });
        Ok(InlineOutput {
            cols: corpus.cols(),
            send: Some(send),
            recycle,
            writer: Some(writer),
        })
    }

    /// The next raw rows of the corpus, starting at row `first`.
    pub fn push(&mut self, raw: &[f32], first: usize) -> Result<()> {
        let mut buf = self.recycle.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(raw);
        normalize_rows(&mut buf, self.cols, first);
        let sent = self.send.as_ref().is_some_and(|s| s.send(buf).is_ok());
        if !sent {
            // The writer stopped on an error: report that error.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| Error::runtime("the output writer stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<NpyWriter> {
        self.send = None;
        match self.writer.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::runtime("the output writer panicked"))?,
            None => Err(Error::runtime("the output writer stopped")),
        }
    }

    /// Writes the updated moved rows over their placeholders and stages the
    /// file for [`crate::data::commit_all`].
    pub fn finish(mut self, moved: &[u32], updated: &Matrix) -> Result<Pending> {
        let mut writer = self.join()?;
        writer.patch_rows(moved, &updated.data)?;
        writer.finish_staged()
    }
}

impl Drop for InlineOutput {
    fn drop(&mut self) {
        // An unfinished output (an error, Ctrl-C): stop the writer, whose
        // temporary file is removed when it drops the NpyWriter.
        let _ = self.join();
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
