//! `nudge_rs._nudge`: the compiled half of the Python package, a thin layer
//! over the `nudge` library. Arrays come in as numpy views (read without a
//! copy when C-contiguous float32/float16), the fit runs with the GIL
//! released, progress and Ctrl-C travel through the library's `Control`,
//! and results go back as numpy arrays built without a copy. Argument
//! checking that is easier in Python (dtypes, judgement dicts) is done by
//! `nudge_rs/__init__.py`, which is the public surface.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use numpy::{
    IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use nudge::backend::device::{self, DeviceOptions};
use nudge::data::npy::NpyMatrix;
use nudge::data::table::Columns;
use nudge::data::{Durability, MatrixFile};
use nudge::fit::partial;
use nudge::{
    Backend, Cancel, Control, Corpus, Dataset, Error, EvalOptions, Fit, FitOptions, Ids, Inputs,
    Kind, MapOptions, Matrix, Method, OutDtype, Partial, Paths, ReduceInputs, Split, SplitName,
};

pyo3::create_exception!(
    _nudge,
    DataError,
    PyValueError,
    "The input data is malformed or inconsistent; the message names the array or file, the row, line or id."
);
pyo3::create_exception!(
    _nudge,
    DeviceError,
    PyRuntimeError,
    "The run failed on the machine: the GPU device, an allocation, a wait that timed out."
);

/// A 2-D matrix as the caller gave it.
#[derive(FromPyObject)]
enum Rows<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, half::f16>),
    Path(PathBuf),
}

/// Borrowed rows, or an opened file (`.npy`, Parquet, Arrow IPC), ready
/// for the library.
enum Source<'a> {
    F32(&'a [f32], usize),
    F16(&'a [half::f16], usize),
    File(MatrixFile),
}

impl Source<'_> {
    fn corpus(&self) -> Corpus<'_> {
        match self {
            Source::F32(d, c) => Corpus::F32 { data: d, cols: *c },
            Source::F16(d, c) => Corpus::F16 { data: d, cols: *c },
            Source::File(m) => m.into(),
        }
    }
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray2<'_, T>,
    what: &str,
) -> PyResult<(&'a [T], usize)> {
    let cols = a.shape()[1];
    let data = a
        .as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{what}: expected a C-contiguous array")))?;
    Ok((data, cols))
}

fn source<'a>(rows: &'a Rows<'_>, what: &str) -> PyResult<Source<'a>> {
    Ok(match rows {
        Rows::F32(a) => {
            let (d, c) = contiguous(a, what)?;
            Source::F32(d, c)
        }
        Rows::F16(a) => {
            let (d, c) = contiguous(a, what)?;
            Source::F16(d, c)
        }
        Rows::Path(p) => Source::File(MatrixFile::open(p, &Columns::default()).map_err(to_py)?),
    })
}

/// The query matrix in f32 (queries are few: a copy is cheap), checked
/// finite.
fn query_matrix(rows: &Rows<'_>) -> PyResult<Matrix> {
    let src = source(rows, "queries")?;
    let c = src.corpus();
    let m = Matrix::new(c.rows(), c.cols(), c.read_rows(0, c.rows()).map_err(to_py)?);
    if let Some((r, col)) = NpyMatrix::first_non_finite(&m.data, m.cols.max(1)) {
        let name = match &src {
            Source::File(_) => c.path_buf(),
            _ => PathBuf::from("queries"),
        };
        return Err(to_py(Error::data_row(
            name,
            r,
            format!(
                "row {r} (column {col}) is NaN or infinite; every query embedding must be finite"
            ),
        )));
    }
    Ok(m)
}

/// The error's message, with the argument that fixes it where there is one
/// (the Python twin of the CLI's flag hints).
fn describe(e: &Error) -> String {
    match e {
        Error::UnknownId { .. } => {
            format!("{e}; fix the judgements or pass skip_unknown_ids=True")
        }
        Error::ZeroRows { .. } => {
            format!("{e}. Remove them, or pass allow_zero_rows=True to keep them as they are")
        }
        Error::NoAdapter => format!("{e}, or use device=\"cpu\""),
        Error::MissingSplit { split, .. } => format!("{e} (a {split} split is required)"),
        _ => e.to_string(),
    }
}

/// A library error as the Python exception its kind calls for.
fn to_py(e: Error) -> PyErr {
    let msg = describe(&e);
    match (&e, e.kind()) {
        (Error::Io { .. }, _) => PyOSError::new_err(msg),
        (_, Kind::Data) => DataError::new_err(msg),
        (_, Kind::Usage) => PyValueError::new_err(msg),
        (_, Kind::Interrupted) => pyo3::exceptions::PyKeyboardInterrupt::new_err(msg),
        _ => DeviceError::new_err(msg),
    }
}

/// The library's progress sink for a Python caller: checks for Ctrl-C at
/// every report (the GIL is released during the fit, so Python's own
/// handler cannot run until we ask it to) and forwards to the caller's
/// callable `(phase, done, total)`. An exception from either cancels the
/// run and is re-raised once the library has cleaned up.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    cancel: Cancel,
    phase: Mutex<(String, u64)>,
    error: Mutex<Option<PyErr>>,
}

impl PyProgress {
    fn report(&self, done: u64) {
        if self.cancel.is_cancelled() {
            return;
        }
        let result = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                let (phase, total) = self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
                cb.call1(py, (phase, done, total))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            self.cancel.cancel();
        }
    }

    /// The exception that stopped the run, if one did.
    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl nudge::Progress for PyProgress {
    fn start(&self, phase: &str, total: u64, _unit: &str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = (phase.to_string(), total);
        self.report(0);
    }
    fn set(&self, done: u64) {
        self.report(done);
    }
    fn finish(&self) {}
}

fn control(callback: Option<Py<PyAny>>) -> (Control, Arc<PyProgress>) {
    let cancel = Cancel::new();
    let progress = Arc::new(PyProgress {
        callback,
        cancel: cancel.clone(),
        phase: Mutex::new((String::new(), 0)),
        error: Mutex::new(None),
    });
    let control = Control {
        progress: Some(progress.clone()),
        cancel,
    };
    (control, progress)
}

/// Runs `f` without the GIL; an error caused by a Python exception raised
/// in a progress report (Ctrl-C, or the callback's own) becomes that
/// exception.
fn run_detached<T: Send>(
    py: Python<'_>,
    progress: &PyProgress,
    f: impl FnOnce() -> nudge::Result<T> + Send,
) -> PyResult<T> {
    let result = py.detach(f);
    match (result, progress.take_error()) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(pyerr)) => Err(pyerr),
        (Err(e), None) => Err(to_py(e)),
    }
}

fn backend(device: &str, adapter: Option<String>, flops: f64) -> PyResult<Box<dyn Backend>> {
    let mut opts = DeviceOptions {
        device: device.parse().map_err(to_py)?,
        ..Default::default()
    };
    opts.gpu.adapter = adapter;
    let (b, _) = device::open(&opts, Some(flops)).map_err(to_py)?;
    Ok(b)
}

/// BEIR-style judgements, `{query_id: {corpus_id: score}}` (ids `str` or
/// `int`), walked in place: no list of tuples, no `String` per id (NFCorpus
/// has 60k judgements, and building them in Python cost more than the fit).
type Judgements<'py> = Bound<'py, PyDict>;

// `PyUnicode_AsUTF8AndSize` is in the limited API from Python 3.10 on, and
// exported by every CPython 3: pyo3 does not declare it for an abi3-py39
// build, so it is declared here and called only where the running
// interpreter is 3.10 or newer (`UTF8_IN_PLACE`). It returns the string's
// cached UTF-8, borrowed: no bytes object per id (60k of them cost NFCorpus
// a sixth of its fit).
unsafe extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

static UTF8_IN_PLACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// An id key as text: a `str` borrowed in place where the interpreter
/// allows it, otherwise (and for an `int`) written into `buf`, which is
/// reused, so no allocation per id.
fn key<'a>(k: &'a Bound<'_, PyAny>, buf: &'a mut String, what: &str) -> PyResult<&'a str> {
    buf.clear();
    if let Ok(s) = k.cast::<PyString>() {
        if *UTF8_IN_PLACE.get_or_init(|| s.py().version_info() >= (3, 10)) {
            let mut len: pyo3::ffi::Py_ssize_t = 0;
            // SAFETY: `s` is a live str (the GIL is held, `k` borrows it for
            // 'a); the UTF-8 buffer belongs to the str object and lives as
            // long as it does; `len` receives its length in bytes.
            let ptr = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut len) };
            if ptr.is_null() {
                return Err(PyErr::fetch(s.py()));
            }
            // SAFETY: CPython guarantees `len` bytes of valid UTF-8 at `ptr`.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) };
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        buf.push_str(&s.to_cow()?);
        return Ok(buf.as_str());
    }
    if let Ok(i) = k.extract::<i64>() {
        use std::fmt::Write;
        let _ = write!(buf, "{i}");
        return Ok(buf.as_str());
    }
    Err(PyTypeError::new_err(format!(
        "{what}: ids must be str or int, got {}",
        k.get_type().name()?
    )))
}

fn ids(names: Option<Vec<String>>, rows: usize, what: &str) -> PyResult<Ids> {
    match names {
        None => Ok(Ids::rows(rows)),
        Some(n) => {
            if n.len() != rows {
                return Err(PyValueError::new_err(format!(
                    "{what}: {} ids for {rows} rows; expected one id per row",
                    n.len()
                )));
            }
            Ids::from_names(&n, what).map_err(to_py)
        }
    }
}

fn split(
    name: SplitName,
    j: &Judgements<'_>,
    query_ids: &Ids,
    corpus_ids: &Ids,
    skip_unknown: bool,
    warnings: &mut Vec<String>,
) -> PyResult<Split> {
    let what = name.as_str();
    let mut rows = Vec::with_capacity(j.len());
    let (mut qbuf, mut cbuf) = (String::new(), String::new());
    let mut position = 0;
    for (q, answers) in j.iter() {
        let answers = answers.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}: expected {{query_id: {{corpus_id: score}}}}"
            ))
        })?;
        let q = key(&q, &mut qbuf, what)?;
        let q_row = query_ids.row(q);
        for (c, score) in answers.iter() {
            position += 1;
            let c = key(&c, &mut cbuf, what)?;
            let score: f64 = score.extract().map_err(|_| {
                PyTypeError::new_err(format!("{what}[{q:?}][{c:?}]: the score must be a number"))
            })?;
            match (q_row, corpus_ids.row(c)) {
                (Some(qr), Some(cr)) => rows.push(Some((qr, cr, score as f32))),
                _ if skip_unknown => rows.push(None),
                (qr, _) => {
                    let (kind, id) = match qr {
                        None => (nudge::IdKind::Query, q),
                        Some(_) => (nudge::IdKind::Corpus, c),
                    };
                    return Err(to_py(Error::UnknownId {
                        path: PathBuf::from(what),
                        line: position,
                        what: kind,
                        id: id.to_string(),
                    }));
                }
            }
        }
    }
    let judged =
        Split::from_rows(name, rows, query_ids.len(), std::path::Path::new(what)).map_err(to_py)?;
    warnings.extend(judged.warnings);
    Ok(judged.split)
}

/// The fit as the dict `FitResult` is made from.
///
/// `measured` is what the backend measured (`nudge::report::backend_timings`:
/// per-kernel GPU times, the feeding thread's steps, the tuned tile), added
/// to the report's `timings` as the CLI adds it.
fn fit_dict<'py>(
    py: Python<'py>,
    fit: Fit,
    measured: serde_json::Map<String, serde_json::Value>,
    corpus_ids: &Ids,
    mut warnings: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let mut report = fit.report();
    if let Some(t) = report["timings"].as_object_mut() {
        t.extend(measured);
    }
    // As JSON text: `FitResult.report` parses it when first read, so a
    // caller who never looks pays nothing for it.
    let report = serde_json::to_string(&report).expect("report serialises");
    d.set_item("report_json", report)?;
    d.set_item("method", fit.method.as_str())?;
    d.set_item("gamma", fit.gamma)?;
    d.set_item("gamma_reason", fit.gamma_reason.clone())?;
    let names: Vec<String> = fit
        .moved
        .iter()
        .map(|&r| corpus_ids.name(r as usize))
        .collect();
    d.set_item("moved_ids", names)?;
    let moved: Vec<i64> = fit.moved.iter().map(|&r| r as i64).collect();
    d.set_item("moved", moved.into_pyarray(py))?;
    let (rows, cols) = (fit.updated.rows, fit.updated.cols);
    let vectors = fit.updated.data.into_pyarray(py).reshape([rows, cols])?;
    d.set_item("vectors", vectors)?;
    let metrics = |s: &Option<nudge::Scores>| -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(s) = s else { return Ok(None) };
        let m = PyDict::new(py);
        m.set_item(format!("recall@{}", s.k), s.recall)?;
        m.set_item(format!("ndcg@{}", s.k), s.ndcg)?;
        m.set_item("queries", s.queries)?;
        Ok(Some(m))
    };
    d.set_item("before", metrics(&fit.before)?)?;
    d.set_item("after", metrics(&fit.after)?)?;
    warnings.extend(fit.warnings);
    d.set_item("warnings", PyList::new(py, warnings)?)?;
    Ok(d)
}

fn flops(queries: usize, rows: usize, dim: usize) -> f64 {
    2.0 * queries as f64 * rows as f64 * dim as f64
}

/// The fit settings `fit` and `fit_dataset` share.
struct Settings {
    method: Method,
    gamma: Option<f64>,
    val_k: usize,
    eval_k: usize,
    allow_zero_rows: bool,
}

/// Runs a fit of `inputs` the way both entry points do: on the device asked
/// for (`auto` judged by the job's similarity work), with the GIL released,
/// Ctrl-C and the progress callable wired in.
fn run_fit(
    py: Python<'_>,
    inputs: &Inputs,
    s: &Settings,
    device: &str,
    adapter: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Fit, serde_json::Map<String, serde_json::Value>)> {
    let scanned = inputs.dev.queries.len() + inputs.test.map_or(0, |t| t.queries.len());
    let c = inputs.corpus;
    let backend = backend(device, adapter, flops(scanned, c.rows(), c.cols()))?;
    let (control, sink) = control(progress);
    let opts = FitOptions {
        gamma: s.gamma,
        val_k: s.val_k,
        eval_k: s.eval_k,
        allow_zero_rows: s.allow_zero_rows,
        control,
        ..FitOptions::new(s.method)
    };
    let fit = run_detached(py, &sink, || nudge::fit(backend.as_ref(), inputs, &opts))?;
    Ok((fit, nudge::report::backend_timings(backend.as_ref())))
}

/// Fits NUDGE over arrays or `.npy` paths (see `nudge_rs.fit`).
#[pyfunction]
#[pyo3(signature = (corpus, queries, train, dev, test, corpus_ids, query_ids, method, gamma, val_k, eval_k, allow_zero_rows, skip_unknown_ids, device, adapter, progress))]
#[allow(clippy::too_many_arguments)]
fn fit<'py>(
    py: Python<'py>,
    corpus: Rows<'py>,
    queries: Rows<'py>,
    train: Judgements<'py>,
    dev: Judgements<'py>,
    test: Option<Judgements<'py>>,
    corpus_ids: Option<Vec<String>>,
    query_ids: Option<Vec<String>>,
    method: &str,
    gamma: Option<f64>,
    val_k: usize,
    eval_k: usize,
    allow_zero_rows: bool,
    skip_unknown_ids: bool,
    device: &str,
    adapter: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let method: Method = method.parse().map_err(to_py)?;
    let src = source(&corpus, "corpus")?;
    let c = src.corpus();
    let q = query_matrix(&queries)?;
    let corpus_ids = ids(corpus_ids, c.rows(), "corpus_ids")?;
    let query_ids = ids(query_ids, q.rows, "query_ids")?;
    let mut warnings = Vec::new();
    let train = split(
        SplitName::Train,
        &train,
        &query_ids,
        &corpus_ids,
        skip_unknown_ids,
        &mut warnings,
    )?;
    let dev = split(
        SplitName::Dev,
        &dev,
        &query_ids,
        &corpus_ids,
        skip_unknown_ids,
        &mut warnings,
    )?;
    let test = match &test {
        Some(t) => Some(split(
            SplitName::Test,
            t,
            &query_ids,
            &corpus_ids,
            skip_unknown_ids,
            &mut warnings,
        )?),
        None => None,
    };
    let inputs = Inputs {
        corpus: c,
        queries: &q,
        train: &train,
        dev: &dev,
        test: test.as_ref(),
    };
    let settings = Settings {
        method,
        gamma,
        val_k,
        eval_k,
        allow_zero_rows,
    };
    let (fit, measured) = run_fit(py, &inputs, &settings, device, adapter, progress)?;
    fit_dict(py, fit, measured, &corpus_ids, warnings)
}

/// A dataset folder, opened, with the splits a fit (or a map or reduce of
/// one) reads.
fn open_folder(
    path: &std::path::Path,
    skip_unknown_ids: bool,
    with_test: bool,
) -> PyResult<(Dataset, nudge::FitSplits)> {
    let ds = Dataset::open(Paths::folder(path).map_err(to_py)?).map_err(to_py)?;
    let splits = ds.fit_splits(skip_unknown_ids, with_test).map_err(to_py)?;
    Ok((ds, splits))
}

/// Fits NUDGE on a dataset folder (see `nudge_rs.fit_dataset`).
#[pyfunction]
#[pyo3(signature = (path, method, gamma, val_k, eval_k, allow_zero_rows, skip_unknown_ids, with_test, device, adapter, progress))]
#[allow(clippy::too_many_arguments)]
fn fit_dataset<'py>(
    py: Python<'py>,
    path: PathBuf,
    method: &str,
    gamma: Option<f64>,
    val_k: usize,
    eval_k: usize,
    allow_zero_rows: bool,
    skip_unknown_ids: bool,
    with_test: bool,
    device: &str,
    adapter: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let method: Method = method.parse().map_err(to_py)?;
    let (ds, splits) = open_folder(&path, skip_unknown_ids, with_test)?;
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
    };
    let settings = Settings {
        method,
        gamma,
        val_k,
        eval_k,
        allow_zero_rows,
    };
    let (fit, measured) = run_fit(py, &inputs, &settings, device, adapter, progress)?;
    let mut warnings = ds.notes.clone();
    warnings.extend(splits.warnings.iter().cloned());
    fit_dict(py, fit, measured, &ds.corpus_ids, warnings)
}

/// Maps one part of a dataset folder's corpus into a partial directory
/// `out` (see `nudge_rs.map_dataset`); returns its manifest as JSON text,
/// and the dataset's notes and the splits' warnings (skipped unknown ids),
/// which the wrapper raises as Python warnings as `fit_dataset` does.
#[pyfunction]
#[pyo3(signature = (path, out, rows, part, k, allow_zero_rows, lean, skip_unknown_ids, with_test, device, adapter, sync, progress))]
#[allow(clippy::too_many_arguments)]
fn map_dataset(
    py: Python<'_>,
    path: PathBuf,
    out: PathBuf,
    rows: Option<(usize, usize)>,
    part: Option<(usize, usize)>,
    k: usize,
    allow_zero_rows: bool,
    lean: bool,
    skip_unknown_ids: bool,
    with_test: bool,
    device: &str,
    adapter: Option<String>,
    sync: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<(String, Vec<String>)> {
    let (ds, splits) = open_folder(&path, skip_unknown_ids, with_test)?;
    let mut warnings = ds.notes.clone();
    warnings.extend(splits.warnings.iter().cloned());
    let n = ds.corpus.rows();
    let range = match (rows, part) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err("give rows or part, not both"));
        }
        (Some((a, b)), None) => a..b,
        (None, Some((i, parts))) => partial::part(i, parts, n).map_err(to_py)?,
        (None, None) => 0..n,
    };
    let scanned = splits.dev.queries.len() + splits.test.as_ref().map_or(0, |t| t.queries.len());
    let backend = backend(device, adapter, flops(scanned, range.len(), ds.dim()))?;
    let (control, sink) = control(progress);
    let opts = MapOptions {
        k,
        allow_zero_rows,
        lean,
        chunk_rows: None,
        control,
    };
    let inputs = Inputs {
        corpus: (&ds.corpus).into(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
    };
    let p = run_detached(py, &sink, || {
        let p = partial::map(backend.as_ref(), &inputs, range, &opts)?;
        nudge::data::commit_all(
            p.stage(&out)?,
            &opts.control.cancel,
            Durability::from_sync(sync),
        )?;
        Ok(p)
    })?;
    Ok((p.manifest().to_string(), warnings))
}

/// Fits from the partials of every part of a dataset folder's corpus, and
/// writes the delta to `delta` if given (see `nudge_rs.reduce_dataset`).
#[pyfunction]
#[pyo3(signature = (path, partials, method, delta, gamma, val_k, eval_k, skip_unknown_ids, with_test, device, adapter, sync, progress))]
#[allow(clippy::too_many_arguments)]
fn reduce_dataset<'py>(
    py: Python<'py>,
    path: PathBuf,
    partials: Vec<PathBuf>,
    method: &str,
    delta: Option<PathBuf>,
    gamma: Option<f64>,
    val_k: usize,
    eval_k: usize,
    skip_unknown_ids: bool,
    with_test: bool,
    device: &str,
    adapter: Option<String>,
    sync: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let method: Method = method.parse().map_err(to_py)?;
    let (ds, splits) = open_folder(&path, skip_unknown_ids, with_test)?;
    let (control, sink) = control(progress);
    let opts = FitOptions {
        gamma,
        val_k,
        eval_k,
        control,
        ..FitOptions::new(method)
    };
    let loaded: Vec<Partial> = py
        .detach(|| {
            partials
                .iter()
                .map(|p| Partial::load(p))
                .collect::<nudge::Result<_>>()
        })
        .map_err(to_py)?;
    let moved: usize = loaded.iter().map(|p| p.moved_rows.len()).sum();
    let backend = backend(
        device,
        adapter,
        flops(splits.dev.queries.len(), moved, ds.dim()),
    )?;
    let inputs = ReduceInputs {
        records: ds.corpus.rows(),
        queries: &ds.queries,
        train: &splits.train,
        dev: &splits.dev,
        test: splits.test.as_ref(),
        corpus: Some((&ds.corpus).into()),
    };
    let fit = run_detached(py, &sink, || {
        let fit = partial::reduce(backend.as_ref(), &inputs, &loaded, &opts)?;
        if let Some(dir) = &delta {
            // The same files, byte for byte, as `nudge fit --delta`.
            let names: Vec<String> = fit
                .moved
                .iter()
                .map(|&r| ds.corpus_ids.name(r as usize))
                .collect();
            let staged = nudge::fit::output::stage_delta(dir, &names, &fit.updated, OutDtype::F32)?;
            nudge::data::commit_all(staged, &opts.control.cancel, Durability::from_sync(sync))?;
        }
        Ok(fit)
    })?;
    let measured = nudge::report::backend_timings(backend.as_ref());
    let mut warnings = ds.notes.clone();
    warnings.extend(splits.warnings.iter().cloned());
    fit_dict(py, fit, measured, &ds.corpus_ids, warnings)
}

/// Recall@k and NDCG@k of a corpus on judgements (see `nudge_rs.evaluate`).
#[pyfunction]
#[pyo3(signature = (corpus, queries, qrels, corpus_ids, query_ids, ks, cosine, skip_unknown_ids, device, adapter, progress))]
#[allow(clippy::too_many_arguments)]
fn evaluate<'py>(
    py: Python<'py>,
    corpus: Rows<'py>,
    queries: Rows<'py>,
    qrels: Judgements<'py>,
    corpus_ids: Option<Vec<String>>,
    query_ids: Option<Vec<String>>,
    ks: Vec<usize>,
    cosine: bool,
    skip_unknown_ids: bool,
    device: &str,
    adapter: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let src = source(&corpus, "corpus")?;
    let c = src.corpus();
    let q = query_matrix(&queries)?;
    let corpus_ids = ids(corpus_ids, c.rows(), "corpus_ids")?;
    let query_ids = ids(query_ids, q.rows, "query_ids")?;
    let mut warnings = Vec::new();
    let split = split(
        SplitName::Test,
        &qrels,
        &query_ids,
        &corpus_ids,
        skip_unknown_ids,
        &mut warnings,
    )?;
    let backend = backend(
        device,
        adapter,
        flops(split.queries.len(), c.rows(), c.cols()),
    )?;
    let (control, sink) = control(progress);
    let opts = EvalOptions {
        ks,
        cosine,
        chunk_rows: None,
        control,
    };
    let result = run_detached(py, &sink, || {
        nudge::evaluate(backend.as_ref(), c, &q, &split, &opts)
    })?;
    let d = PyDict::new(py);
    for s in &result.scores {
        d.set_item(format!("recall@{}", s.k), s.recall)?;
        d.set_item(format!("ndcg@{}", s.k), s.ndcg)?;
    }
    d.set_item("queries", split.queries.len())?;
    d.set_item("warnings", PyList::new(py, warnings)?)?;
    Ok(d)
}

/// Turns `out` (a copy of the corpus, float32, C order) into the tuned
/// corpus in place: rows normalised, moved rows replaced by `vectors`.
#[pyfunction]
fn apply(
    py: Python<'_>,
    mut out: PyReadwriteArray2<'_, f32>,
    moved: PyReadonlyArray1<'_, i64>,
    vectors: PyReadonlyArray2<'_, f32>,
) -> PyResult<()> {
    let cols = out.shape()[1];
    let n = out.shape()[0];
    let vec_cols = vectors.shape()[1];
    if vec_cols != cols {
        return Err(PyValueError::new_err(format!(
            "the corpus has {cols} columns but the fit's vectors have {vec_cols}"
        )));
    }
    let moved: Vec<u32> = moved
        .as_slice()
        .map_err(|_| PyTypeError::new_err("moved: expected a C-contiguous array"))?
        .iter()
        .map(|&r| {
            if r < 0 || r as usize >= n {
                Err(PyValueError::new_err(format!(
                    "moved row {r} is outside the corpus of {n} rows: apply the fit to the corpus it was fitted on"
                )))
            } else {
                Ok(r as u32)
            }
        })
        .collect::<PyResult<_>>()?;
    let updated = vectors
        .as_slice()
        .map_err(|_| PyTypeError::new_err("vectors: expected a C-contiguous array"))?;
    if vectors.shape()[0] != moved.len() {
        return Err(PyValueError::new_err(format!(
            "{} moved rows but {} vectors",
            moved.len(),
            vectors.shape()[0]
        )));
    }
    let data = out
        .as_slice_mut()
        .map_err(|_| PyTypeError::new_err("out: expected a C-contiguous float32 array"))?;
    py.detach(|| nudge::fit::apply(data, cols.max(1), &moved, updated));
    Ok(())
}

/// The self-contained HTML report of a fit, from its report as JSON text.
#[pyfunction]
fn report_html(report: &str) -> PyResult<String> {
    let json: serde_json::Value = serde_json::from_str(report)
        .map_err(|e| PyValueError::new_err(format!("report: not JSON: {e}")))?;
    nudge::report::fit_html(&json).map_err(to_py)
}

/// The GPU adapters wgpu can see, best first, as dicts.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for a in py.detach(nudge::backend::gpu::list_adapters) {
        let d = PyDict::new(py);
        d.set_item("name", a.name)?;
        d.set_item("backend", a.backend)?;
        d.set_item("device_type", a.device_type)?;
        d.set_item("software", a.software)?;
        d.set_item("driver", a.driver)?;
        d.set_item("max_buffer_size", a.max_buffer_size)?;
        d.set_item("max_storage_binding", a.max_storage_binding)?;
        d.set_item("shader_f16", a.shader_f16)?;
        d.set_item("subgroups", a.subgroups)?;
        list.append(d)?;
    }
    Ok(list)
}

#[pymodule]
fn _nudge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(map_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(apply, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(report_html, m)?)?;
    m.add("DataError", m.py().get_type::<DataError>())?;
    m.add("DeviceError", m.py().get_type::<DeviceError>())?;
    Ok(())
}
