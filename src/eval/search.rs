//! Exact top-k search over a corpus on disk: the one streaming pass that both
//! `nudge eval` and the fit's static scan are made of.

use crate::backend::{Backend, RowReport, ScanSpec, TopK};
use crate::data::npy::NpyMatrix;
use crate::data::stream::for_each_chunk;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Streams `corpus` through a backend scan, chunk by chunk. `on_chunk` sees
/// each raw chunk and its first row before the scan does, and may change it
/// (the fit normalises it there and gathers the rows it needs). With `into`
/// (room for the whole corpus), the chunks are read into their places there
/// and stay there (see [`for_each_chunk`]).
pub fn scan_corpus(
    backend: &dyn Backend,
    corpus: &NpyMatrix,
    spec: ScanSpec,
    into: Option<&mut [f32]>,
    mut on_chunk: impl FnMut(&mut [f32], usize) -> Result<()>,
) -> Result<(TopK, RowReport)> {
    let n = corpus.rows();
    let chunk = backend
        .chunk_rows(spec.queries.rows, corpus.cols(), corpus.rows())
        .max(1);
    let mut scan = backend.scan(spec)?;
    let mut report = RowReport::default();
    let progress = Progress::new("scanning corpus", n as u64, "rows");
    for_each_chunk(corpus, chunk, into, |rows, start| {
        on_chunk(rows, start)?;
        report.extend(scan.push(rows, start)?);
        progress.set((start + rows.len() / corpus.cols().max(1)) as u64);
        Ok(())
    })?;
    progress.finish();
    Ok((scan.finish()?, report))
}

/// Fails on non-finite rows, naming the first few.
pub fn check_finite(report: &RowReport, corpus: &NpyMatrix) -> Result<()> {
    if report.non_finite.is_empty() {
        return Ok(());
    }
    // Say what is wrong with the first one: a NaN or infinity in a column, or
    // finite values so large that the squared norm overflows f32.
    let first = report.non_finite[0];
    let mut row = Vec::new();
    corpus.read_rows(first, 1, &mut row)?;
    let detail = match NpyMatrix::first_non_finite(&row, row.len().max(1)) {
        Some((_, c)) => format!("row {first} column {c} is {}", row[c]),
        None => format!("row {first} has values so large that its norm overflows float32"),
    };
    Err(Error::data(format!(
        "{}: {} NaN or infinity ({} {}; {detail}); every corpus embedding must be finite",
        corpus.path().display(),
        rows_hold(report.non_finite.len()),
        if report.non_finite.len() == 1 {
            "row"
        } else {
            "rows"
        },
        list_rows(&report.non_finite)
    )))
}

/// "1 row holds" / "3 rows hold".
pub fn rows_hold(n: usize) -> String {
    if n == 1 {
        "1 row holds".to_string()
    } else {
        format!("{n} rows hold")
    }
}

/// "3, 17, 40 and 12 more".
pub fn list_rows(rows: &[usize]) -> String {
    let shown: Vec<String> = rows.iter().take(5).map(|r| r.to_string()).collect();
    let mut s = shown.join(", ");
    if rows.len() > 5 {
        s.push_str(&format!(" and {} more", rows.len() - 5));
    }
    s
}
