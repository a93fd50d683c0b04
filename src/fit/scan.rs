//! The one streaming pass over a corpus: chunks read ahead of the compute,
//! fed to a backend scan for the top-k of every query. The fit's pass
//! (normalise, gather the moved rows, write the output) and
//! [`crate::evaluate`] are both made of it.

use crate::backend::{Backend, RowReport, ScanSpec, TopK};
use crate::control::Control;
use crate::data::Corpus;
use crate::data::stream::for_each_chunk;
use crate::error::{Error, Result};

/// Streams `corpus` through a backend scan, chunk by chunk (`chunk_rows`
/// rows, or the backend's choice). `on_chunk` sees each raw chunk and its
/// first row before the scan does, and may change it (the fit normalises it
/// there and gathers the rows it needs). With `into` (room for the whole
/// corpus), the chunks are read into their places there and stay there
/// (see [`for_each_chunk`]).
pub(crate) fn scan_corpus(
    backend: &dyn Backend,
    corpus: Corpus,
    spec: ScanSpec,
    chunk_rows: Option<usize>,
    into: Option<&mut [f32]>,
    control: &Control,
    mut on_chunk: impl FnMut(&mut [f32], usize) -> Result<()>,
) -> Result<(TopK, RowReport)> {
    let n = corpus.rows();
    let chunk = chunk_rows
        .unwrap_or_else(|| backend.chunk_rows(spec.queries.rows, corpus.cols(), n))
        .max(1);
    let mut scan = backend.scan(spec)?;
    let mut report = RowReport::default();
    let phase = control.phase("scanning corpus", n as u64, "rows");
    for_each_chunk(corpus, chunk, into, &control.cancel, |rows, start| {
        on_chunk(rows, start)?;
        report.extend(scan.push(rows, start)?);
        phase.set((start + rows.len() / corpus.cols().max(1)) as u64);
        Ok(())
    })?;
    drop(phase);
    Ok((scan.finish()?, report))
}

/// Fails on non-finite rows, naming the first few.
pub(crate) fn check_finite(report: &RowReport, corpus: Corpus) -> Result<()> {
    let Some(&first) = report.non_finite.first() else {
        return Ok(());
    };
    // Say what is wrong with the first one: a NaN or infinity in a column, or
    // finite values so large that the squared norm overflows f32.
    let row = corpus.read_rows(first, 1)?;
    let detail = match crate::data::npy::NpyMatrix::first_non_finite(&row, row.len().max(1)) {
        Some((_, c)) => format!(
            "row {first}{} column {c} is {}",
            corpus.row_origin(first),
            row[c]
        ),
        None => format!(
            "row {first}{} has values so large that its norm overflows float32",
            corpus.row_origin(first)
        ),
    };
    let n = report.non_finite.len();
    Err(Error::data_row(
        corpus.path(),
        first,
        format!(
            "{} NaN or infinity ({} {}; {detail}); every corpus embedding must be finite",
            if n == 1 {
                "1 row holds".to_string()
            } else {
                format!("{n} rows hold")
            },
            if n == 1 { "row" } else { "rows" },
            crate::data::list_rows(&report.non_finite)
        ),
    ))
}
