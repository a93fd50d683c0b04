//! Whole fits of both methods on SciFact (bundled) and, when `../shared` is
//! there, nfcorpus: `cargo bench --bench fit`.

use std::path::{Path, PathBuf};

// The allocator the `nudge` binary uses. With glibc's, these benches
// measured glibc: it trims the heap after every fit and faults it back in on
// the next, twice the time of a fit on SciFact.
#[global_allocator]
static GLOBAL: nudge::alloc::Allocator = nudge::alloc::Allocator;

use criterion::{Criterion, criterion_group, criterion_main};
use nudge::{Cpu, Dataset, FitOptions, Inputs, Method, Paths, fit};

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

criterion_group!(benches, fits);
criterion_main!(benches);
