//! The one streaming pass over a corpus: chunks read ahead of the compute,
//! fed to a backend scan for the top-k of every query. The fit's pass
//! (normalise, gather the moved rows, write the output) and
//! [`crate::evaluate`] are both made of it.

use crate::backend::{Backend, RowReport, Scan, ScanSpec, TopK};
use crate::control::Control;
use crate::data::Corpus;
use crate::data::stream::{for_each_chunk, for_each_chunk_f16};
use crate::error::{Error, Result};

/// Streams rows `range` of `corpus` through a backend scan, chunk by chunk
/// (`chunk_rows` rows, or the backend's choice; the lists name corpus rows). `on_chunk` sees each raw chunk and its
/// first row before the scan does, and may change it (the fit normalises it
/// there and gathers the rows it needs). With `into` (room for the whole
/// corpus), the chunks are read into their places there and stay there
/// (see [`for_each_chunk`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_corpus(
    backend: &dyn Backend,
    corpus: Corpus,
    range: std::ops::Range<usize>,
    spec: ScanSpec,
    chunk_rows: Option<usize>,
    into: Option<&mut [f32]>,
    control: &Control,
    mut on_chunk: impl FnMut(&mut [f32], usize) -> Result<()>,
) -> Result<(TopK, RowReport)> {
    let stream = |chunk, f: &mut dyn FnMut(&mut [f32], usize) -> Result<()>| {
        for_each_chunk(corpus, range.clone(), chunk, into, &control.cancel, f)
    };
    pass(
        backend,
        corpus,
        range.clone(),
        spec,
        chunk_rows,
        control,
        stream,
        |s, rows, start| {
            on_chunk(rows, start)?;
            s.push(rows, start)
        },
    )
}

/// [`scan_corpus`] of an f16 corpus ([`Corpus::is_f16`]) whose rows the
/// host does not need: read and pushed as stored ([`Scan::push_f16`]), for
/// a backend that takes f16 as it is ([`Backend::scan_takes_f16`]).
pub(crate) fn scan_corpus_f16(
    backend: &dyn Backend,
    corpus: Corpus,
    range: std::ops::Range<usize>,
    spec: ScanSpec,
    chunk_rows: Option<usize>,
    control: &Control,
) -> Result<(TopK, RowReport)> {
    let stream = |chunk, f: &mut dyn FnMut(&mut [half::f16], usize) -> Result<()>| {
        for_each_chunk_f16(corpus, range.clone(), chunk, &control.cancel, f)
    };
    pass(
        backend,
        corpus,
        range.clone(),
        spec,
        chunk_rows,
        control,
        stream,
        |s, rows, start| s.push_f16(rows, start),
    )
}

/// The pass of both: `stream(chunk_rows, f)` reads the chunks of `range`
/// into `f`, which hands each to `push` with the scan, reports its rows
/// and shows the progress.
#[allow(clippy::too_many_arguments)]
fn pass<T>(
    backend: &dyn Backend,
    corpus: Corpus,
    range: std::ops::Range<usize>,
    spec: ScanSpec,
    chunk_rows: Option<usize>,
    control: &Control,
    stream: impl FnOnce(usize, &mut dyn FnMut(&mut [T], usize) -> Result<()>) -> Result<()>,
    mut push: impl FnMut(&mut dyn Scan, &mut [T], usize) -> Result<RowReport>,
) -> Result<(TopK, RowReport)> {
    let n = range.len();
    let first = range.start;
    let chunk = chunk_rows
        .unwrap_or_else(|| backend.chunk_rows(spec.queries.rows, corpus.cols(), n))
        .max(1);
    let mut scan = backend.scan(spec)?;
    let mut report = RowReport::default();
    let phase = control.phase("scanning corpus", n as u64, "rows");
    stream(chunk, &mut |rows, start| {
        report.extend(push(scan.as_mut(), rows, start)?);
        phase.set((start - first + rows.len() / corpus.cols().max(1)) as u64);
        Ok(())
    })?;
    drop(phase);
    let (top, rest) = scan.finish()?;
    report.extend(rest);
    Ok((top, report))
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

/// Runs `f(index, backend, rows, control)` on one share of `range` per
/// backend, all at the same time (one thread, and so one stream, per
/// device), and returns the results in row order: how a corpus pass uses
/// every GPU of a machine. The shares are consecutive and equal to a row
/// ([`crate::fit::partial::part`]); each part reports its rows into one
/// `phase` of `control`, and the first part to fail stops the others (its
/// error is the one returned).
pub(crate) fn across<T: Send>(
    backends: &[&dyn Backend],
    range: std::ops::Range<usize>,
    control: &Control,
    phase: &str,
    f: impl Fn(usize, &dyn Backend, std::ops::Range<usize>, &Control) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let n = backends.len();
    assert!(n > 0, "at least one backend");
    let (controls, stop) = control.parts(n);
    let shown = control.phase(phase, range.len() as u64, "rows");
    let results: Vec<Result<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = backends
            .iter()
            .zip(&controls)
            .enumerate()
            .map(|(i, (&b, c))| {
                let part = crate::fit::partial::part(i, n, range.len()).expect("a part of n parts");
                let rows = range.start + part.start..range.start + part.end;
                let (f, stop) = (&f, &stop);
                s.spawn(move || {
                    let r = f(i, b, rows, c);
                    if r.is_err() {
                        stop.cancel();
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic in a part is a bug: carry it on here.
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    drop(shown);
    control.check()?;
    // The error that stopped the others, not their Interrupted.
    if let Some(i) = results
        .iter()
        .position(|r| matches!(r, Err(e) if !matches!(e, Error::Interrupted)))
    {
        return Err(results
            .into_iter()
            .nth(i)
            .expect("index")
            .err()
            .expect("an error"));
    }
    results.into_iter().collect()
}
