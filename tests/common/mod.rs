//! Helpers shared by the integration tests: load a fixture, fit it, read the
//! reference outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nudge::backend::Backend;
use nudge::data::dataset::{Dataset, Paths, Split};
use nudge::data::npy::{NpyMatrix, OutDtype};
use nudge::nudge::{Fit, FitOptions, Inputs, Method, output};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub const FIXTURES: [&str; 4] = ["small", "edge", "f16", "rawnorms-stringids"];

pub struct Loaded {
    pub ds: Dataset,
    pub train: Split,
    pub dev: Split,
    pub test: Option<Split>,
}

pub fn load(dir: &Path) -> Loaded {
    let ds = Dataset::open(Paths::default().with_folder(Some(dir)).unwrap()).unwrap();
    let (train, dev, test) = ds.fit_splits(false, true).unwrap();
    Loaded {
        ds,
        train,
        dev,
        test,
    }
}

/// Fits and returns the fit plus the full output corpus as written to disk.
pub fn fit_and_write(backend: &dyn Backend, l: &Loaded, opts: &FitOptions) -> (Fit, Vec<f32>) {
    let inputs = Inputs {
        corpus: &l.ds.corpus,
        queries: &l.ds.queries,
        train: &l.train,
        dev: &l.dev,
        test: l.test.as_ref(),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let f = output::fit_to_file(backend, &inputs, opts, &out, OutDtype::F32).unwrap();
    let rows = NpyMatrix::open(&out).unwrap().read_all().unwrap();
    (f, rows)
}

pub fn read_npy(path: &Path) -> Vec<f32> {
    NpyMatrix::open(path).unwrap().read_all().unwrap()
}

pub fn reference(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference/reference.json")).unwrap())
        .unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "outputs differ in size");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn method_key(m: Method) -> &'static str {
    m.as_str()
}
