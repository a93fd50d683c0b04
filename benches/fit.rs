//! Whole fits of both methods on SciFact (bundled) and, when `../shared` is
//! there, nfcorpus: `cargo bench --bench fit`.
//!
//! `fit_floor` (`cargo bench --bench fit -- fit_floor`) puts each fit beside
//! its floor, the GEMM-only time of the similarity work it must do (the
//! static records against the dev queries, S0 and S1 over the moved
//! records), timed with the same GEMM in the same run, on three shapes:
//! few moved and few dev queries (SciFact), mostly moved (tldr, from
//! `../shared`, else a synthetic stand-in), and many dev queries (synthetic,
//! 50k records and 10k dev queries); and, when `../shared` is there,
//! nfcorpus: nearly every record moved, few dev queries with many answers
//! each (about 25), so that NUDGE-M's bounds are a large share of the fit.

use std::path::{Path, PathBuf};

// The allocator the `nudge` binary uses. With glibc's, these benches
// measured glibc: it trims the heap after every fit and faults it back in on
// the next, twice the time of a fit on SciFact.
#[global_allocator]
static GLOBAL: nudge::alloc::Allocator = nudge::alloc::Allocator;

use criterion::{Criterion, criterion_group, criterion_main};
use nudge::backend::cpu::gemm_nt;
use nudge::data::synth::{SynthSpec, write as synth};
use nudge::{Control, Cpu, Dataset, FitOptions, Inputs, Method, Paths, fit};

fn datasets() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![("scifact", root.join("tests/fixtures/scifact-f32"))];
    let nf = root.join("../shared/datasets/nfcorpus");
    if nf.is_dir() {
        v.push(("nfcorpus", nf));
    }
    v
}

fn fits(c: &mut Criterion) {
    let mut g = c.benchmark_group("fit");
    g.sample_size(20);
    for (name, dir) in datasets() {
        let ds = Dataset::open(Paths::folder(&dir).unwrap()).unwrap();
        let s = ds.fit_splits(false, true).unwrap();
        let inputs = Inputs {
            corpus: (&ds.corpus).into(),
            queries: &ds.queries,
            train: &s.train,
            dev: &s.dev,
            test: s.test.as_ref(),
        };
        for method in [Method::NudgeM, Method::NudgeN] {
            g.bench_function(format!("{name}/{}", method.as_str()), |b| {
                b.iter(|| fit(&Cpu, &inputs, &FitOptions::new(method)).unwrap())
            });
        }
    }
    g.finish();
}

/// The three shapes of `fit_floor`, and a folder that keeps synthetic data
/// alive for the run.
fn floor_datasets(tmp: &Path) -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let synth_at = |name: &str, spec: SynthSpec| {
        let dir = tmp.join(name);
        synth(&dir, &spec, &Control::default()).unwrap();
        dir
    };
    let tldr = root.join("../shared/datasets/tldr");
    let mostly_moved = if tldr.is_dir() {
        tldr
    } else {
        // About tldr's shape: every record answers a training query.
        synth_at(
            "mostly-moved",
            SynthSpec {
                records: 6_600,
                dim: 384,
                train: 8_000,
                dev: 1_800,
                test: 0,
                seed: 1,
            },
        )
    };
    let mut v = vec![
        ("scifact", root.join("tests/fixtures/scifact-f32")),
        ("mostly-moved", mostly_moved),
        (
            "many-dev",
            synth_at(
                "many-dev",
                SynthSpec {
                    records: 50_000,
                    dim: 384,
                    train: 5_000,
                    dev: 10_000,
                    test: 0,
                    seed: 2,
                },
            ),
        ),
    ];
    let nf = root.join("../shared/datasets/nfcorpus");
    if nf.is_dir() {
        v.push(("nfcorpus", nf));
    }
    v
}

fn fit_floor(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("fit_floor");
    g.sample_size(10);
    for (name, dir) in floor_datasets(tmp.path()) {
        let ds = Dataset::open(Paths::folder(&dir).unwrap()).unwrap();
        let s = ds.fit_splits(false, false).unwrap();
        let inputs = Inputs {
            corpus: (&ds.corpus).into(),
            queries: &ds.queries,
            train: &s.train,
            dev: &s.dev,
            test: None,
        };
        let (n, d, dev) = (ds.corpus.rows(), ds.dim(), s.dev.queries.len());
        let moved = fit(&Cpu, &inputs, &FitOptions::new(Method::NudgeN))
            .unwrap()
            .moved
            .len();
        // The floor's GEMMs: dev x static and, twice, dev x moved.
        let q = s.dev.matrix(&ds.queries);
        let rows = ds.corpus.read_all().unwrap();
        let mut out = vec![0.0f32; dev * (n - moved).max(moved)];
        g.bench_function(format!("{name}/gemm_floor"), |b| {
            b.iter(|| {
                gemm_nt(&q.data, &rows, dev, n - moved, d, &mut out);
                for _ in 0..2 {
                    gemm_nt(&q.data, &rows, dev, moved, d, &mut out);
                }
            })
        });
        for method in [Method::NudgeM, Method::NudgeN] {
            g.bench_function(format!("{name}/{}", method.as_str()), |b| {
                b.iter(|| fit(&Cpu, &inputs, &FitOptions::new(method)).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, fits, fit_floor);
criterion_main!(benches);
