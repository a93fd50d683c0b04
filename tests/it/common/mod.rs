//! Helpers shared by the test modules: fixtures fitted through the library
//! and their reference outputs (here), hand-written `.npy` files, fixture
//! copies in temp dirs and runs of the built binary ([`cases`]), and the
//! backends a test runs on ([`backends`]).

use std::path::{Path, PathBuf};

use nudge::backend::Backend;
use nudge::data::npy::NpyMatrix;
use nudge::{
    Corpus, Dataset, DevScores, Fit, FitOptions, Inputs, Method, OutDtype, Paths, Split,
    WriteOptions,
};

pub mod backends;
mod cases;

pub use cases::*;

// ---- fits compared ---------------------------------------------------------

pub fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Two fits agree bit for bit: gamma, the moved records and their new rows,
/// how gamma was chosen, and the test metrics before and after.
#[track_caller]
pub fn assert_same_fit(a: &Fit, b: &Fit, what: &str) {
    assert_eq!(
        a.gamma.to_bits(),
        b.gamma.to_bits(),
        "{what}: gamma {} vs {}",
        a.gamma,
        b.gamma
    );
    assert_eq!(a.moved, b.moved, "{what}: moved records");
    assert_eq!(
        (a.updated.rows, a.updated.cols),
        (b.updated.rows, b.updated.cols),
        "{what}: updated rows"
    );
    assert!(
        bits(&a.updated.data) == bits(&b.updated.data),
        "{what}: updated rows differ"
    );
    assert_eq!(a.dev_scores, b.dev_scores, "{what}: dev scores");
    assert!(
        a.before.is_some() && a.after.is_some(),
        "{what}: no test split"
    );
    assert_eq!(a.before, b.before, "{what}: test metrics before");
    assert_eq!(a.after, b.after, "{what}: test metrics after");
    assert_eq!(a.zero_rows, b.zero_rows, "{what}: zero rows");
}

// ---- fixtures through the library -----------------------------------------

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixtures that have reference outputs of nudge-ft 0.1.2.
pub const FIXTURES: [&str; 4] = ["small", "edge", "f16", "rawnorms-stringids"];

/// A dataset folder, opened, with its train, dev and test splits.
pub struct Loaded {
    pub ds: Dataset,
    pub train: Split,
    pub dev: Split,
    pub test: Option<Split>,
}

impl Loaded {
    /// What a fit of the whole dataset reads, the corpus from its file.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            corpus: Corpus::from(&self.ds.corpus),
            queries: &self.ds.queries,
            train: &self.train,
            dev: &self.dev,
            test: self.test.as_ref(),
        }
    }
}

pub fn load(dir: &Path) -> Loaded {
    let ds = Dataset::open(Paths::folder(dir).unwrap()).unwrap();
    let splits = ds.fit_splits(false, true).unwrap();
    Loaded {
        ds,
        train: splits.train,
        dev: splits.dev,
        test: splits.test,
    }
}

/// Fits and returns the fit plus the full output corpus as written to disk.
pub fn fit_and_write(backend: &dyn Backend, l: &Loaded, opts: &FitOptions) -> (Fit, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let f = nudge::fit_to_file(backend, &l.inputs(), opts, &out, &WriteOptions::default()).unwrap();
    (f, read_npy(&out))
}

pub fn read_npy(path: &Path) -> Vec<f32> {
    NpyMatrix::open(path).unwrap().read_all().unwrap()
}

/// A fixture's `reference/reference.json`: gamma and test metrics of
/// nudge-ft 0.1.2 per method, and the untuned metrics under `no_ft`.
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

/// Writes a dataset in which every dev answer has a twin: a record that
/// answers the same training query (so it has the same G, the same slope)
/// and scores higher for the dev query. The reference then sees
/// `t_x - t_j == 0` with `s_j > s_x` for every dev pair and drops it:
/// NUDGE-M finds no interval and gamma is 0. A fit that computes a pair's
/// own slope differently from its twin's turns the exact 0 into a rounding
/// error and keeps some pairs, with bounds like 1e6.
pub fn write_twins(dir: &Path, groups: usize, dim: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut normal = move || {
        // Sum of uniforms: close enough to normal for random directions.
        (0..4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .sum::<f32>()
    };
    let unit = |v: &[f32]| -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    // Records 2i (the answer a_i) and 2i+1 (its twin b_i); queries i (train,
    // answered by both) and groups + i (dev, answered by a_i, close to b_i).
    let mut corpus = Vec::new();
    let mut train = Vec::new();
    let mut dev = Vec::new();
    for _ in 0..groups {
        let a: Vec<f32> = (0..dim).map(|_| normal()).collect();
        let b: Vec<f32> = (0..dim).map(|_| normal()).collect();
        let bu = unit(&b);
        let d: Vec<f32> = bu.iter().map(|x| x + 0.02 * normal()).collect();
        // The training query is close to the dev query too, so that a_i and
        // b_i have the steepest slopes: no other record bounds a_i's
        // interval from above, only the (broken) tie could.
        let t: Vec<f32> = d.iter().map(|x| x + 0.02 * normal()).collect();
        corpus.extend(a);
        corpus.extend(b);
        train.extend(unit(&t));
        dev.extend(unit(&d));
    }
    let mut queries = train;
    queries.extend(dev);
    let f32_out = OutDtype::F32;
    nudge::data::npy::write_matrix(&dir.join("corpus.npy"), &corpus, dim, f32_out).unwrap();
    nudge::data::npy::write_matrix(&dir.join("queries.npy"), &queries, dim, f32_out).unwrap();
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let mut tr = String::from("query-id\tcorpus-id\tscore\n");
    let mut dv = tr.clone();
    for i in 0..groups {
        tr += &format!("{i}\t{}\t1\n{i}\t{}\t1\n", 2 * i, 2 * i + 1);
        dv += &format!("{}\t{}\t1\n", groups + i, 2 * i);
    }
    std::fs::write(dir.join("qrels/train.tsv"), tr).unwrap();
    std::fs::write(dir.join("qrels/dev.tsv"), dv).unwrap();
}

/// Fits `write_twins` data with NUDGE-M, in the backend's blocks of moved
/// records (one block here) and in blocks of 7 (the search then computes
/// each block twice), and checks that every dev pair was dropped.
pub fn check_twins(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    write_twins(dir.path(), 40, 384);
    let l = load(dir.path());
    for block in [None, Some(7)] {
        let mut opts = FitOptions::new(Method::NudgeM);
        opts.block_rows = block;
        let (fit, _) = fit_and_write(backend, &l, &opts);
        match fit.dev_scores {
            DevScores::Intervals {
                intervals, pairs, ..
            } => assert_eq!(
                (intervals, pairs),
                (0, 40),
                "block {block:?}: gamma {}",
                fit.gamma
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(fit.gamma, 0.0);
    }
}
