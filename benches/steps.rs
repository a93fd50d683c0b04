//! Criterion benches of the CPU backend steps at a few shapes, so a change
//! can be compared against main (`cargo bench --bench steps`).
//!
//! `gemm_choice` is the measurement behind the choice of GEMM crate: the
//! similarity block `Q . chunk^T` for 1000 queries x 384 dims, against the
//! `matrixmultiply` crate on the same shape.

// The allocator the `nudge` binary uses (see benches/fit.rs).
#[global_allocator]
static GLOBAL: nudge::alloc::Allocator = nudge::alloc::Allocator;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nudge::backend::cpu::{Cpu, gemm_nt};
use nudge::backend::{
    Backend, Bounds, MovedBlock, Pair, Rows, ScanSpec, Segments, SlopeBlock, TopK,
};
use nudge::matrix::Matrix;

fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Matrix::new(rows, cols, data)
}

fn gemm_choice(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_choice");
    g.sample_size(10);
    let (m, k) = (1000, 384);
    for n in [4096, 16384] {
        let a = random(m, k, 1);
        let b = random(n, k, 2);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64)); // flops
        g.bench_with_input(BenchmarkId::new("gemm", n), &n, |bench, _| {
            bench.iter(|| gemm_nt(&a.data, &b.data, m, n, k, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("matrixmultiply", n), &n, |bench, _| {
            bench.iter(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.data.as_ptr(),
                    k as isize,
                    1,
                    b.data.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
    }
    g.finish();
}

fn scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan_topk");
    g.sample_size(10);
    for (nq, n, k) in [(110, 5183, 10), (1000, 16384, 1), (1000, 16384, 10)] {
        let q = random(nq, 384, 3);
        let corpus = random(n, 384, 4);
        let skip: Vec<bool> = (0..n).map(|i| i % 10 == 0).collect();
        g.throughput(Throughput::Elements((2 * nq * n * 384) as u64));
        g.bench_function(format!("{nq}q_{n}rows_k{k}"), |b| {
            b.iter(|| {
                let spec = ScanSpec {
                    queries: &q,
                    k,
                    rows: Rows::Normalize,
                    skip: Some(&skip),
                };
                let mut s = Cpu.scan(spec).unwrap();
                s.push(&corpus.data, 0).unwrap();
                s.finish().unwrap()
            })
        });
    }
    g.finish();
}

/// The streaming similarity + top-k against the bare GEMM of the same
/// shapes, in one run: the scan must keep at least 85% of the GEMM's
/// throughput (the top-k selection, the masking and the chunk hand-over
/// under 15%). The corpus goes through in the chunks the fit would use.
fn scan_vs_gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan_vs_gemm");
    g.sample_size(10);
    let d = 384;
    for (nq, n) in [(100, 65536), (1000, 16384), (10000, 4096)] {
        let q = random(nq, d, 5);
        let corpus = random(n, d, 6);
        let chunk = Cpu.chunk_rows(nq, d, n);
        g.throughput(Throughput::Elements((2 * nq * n * d) as u64)); // flops
        g.bench_function(BenchmarkId::new("scan", nq), |b| {
            b.iter(|| {
                let spec = ScanSpec {
                    queries: &q,
                    k: 10,
                    rows: Rows::Checked,
                    skip: None,
                };
                let mut s = Cpu.scan(spec).unwrap();
                for (i, rows) in corpus.data.chunks(chunk * d).enumerate() {
                    s.push(rows, i * chunk).unwrap();
                }
                s.finish().unwrap()
            })
        });
        let mut out = vec![0.0f32; nq * chunk];
        g.bench_function(BenchmarkId::new("gemm", nq), |b| {
            b.iter(|| {
                for rows in corpus.data.chunks(chunk * d) {
                    gemm_nt(&q.data, rows, nq, rows.len() / d, d, &mut out);
                }
            })
        });
    }
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    let q = random(10_000, 384, 5);
    let m = 8000;
    let mut seg = Segments {
        offsets: vec![0],
        indices: Vec::new(),
    };
    for r in 0..m {
        for t in 0..(1 + r % 3) {
            seg.indices.push(((r * 7 + t * 13) % 10_000) as u32);
        }
        seg.offsets.push(seg.indices.len() as u32);
    }
    c.bench_function("aggregate_10k_queries_8k_records", |b| {
        b.iter(|| Cpu.aggregate(&q, &seg).unwrap())
    });
}

fn updates(c: &mut Criterion) {
    let d = random(10_000, 384, 6);
    let gm = random(10_000, 384, 7);
    c.bench_function("update_n_10k", |b| {
        b.iter(|| {
            let mut x = d.clone();
            Cpu.update_n(&mut x, &gm, 0.1).unwrap();
            x
        })
    });
    c.bench_function("update_m_10k", |b| {
        b.iter(|| {
            let mut x = d.clone();
            Cpu.update_m(&mut x, &gm, 0.1).unwrap();
            x
        })
    });
}

fn gamma_scoring(c: &mut Criterion) {
    let (dev, width) = (1000, 4096);
    let s0 = random(dev, width, 8);
    let s1 = random(dev, width, 9);
    let records: Vec<u32> = (0..width as u32).map(|j| j * 3).collect();
    let block = MovedBlock {
        records: &records,
        s0: &s0,
        s1: &s1,
        planes: None,
    };
    let slopes = SlopeBlock {
        records: &records,
        s: &s0,
        t: &s1,
    };
    let pairs: Vec<Pair> = (0..dev * 3)
        .map(|i| Pair {
            query: (i / 3) as u32,
            record: (i * 5) as u32,
            s: 0.1,
            t: 0.05,
        })
        .collect();
    c.bench_function("nudge_m_bounds_3k_pairs_x_4k", |b| {
        b.iter(|| {
            let mut bounds = vec![Bounds::OPEN; pairs.len()];
            Cpu.nudge_m_bounds(&slopes, &pairs, &mut bounds).unwrap();
            bounds
        })
    });
    let coef: Vec<(f32, f32)> = (0..25 * width)
        .map(|i| (1.0 - (i % 7) as f32 * 0.01, 0.01))
        .collect();
    c.bench_function("nudge_n_merge_25_gammas_1k_x_4k", |b| {
        b.iter(|| {
            let mut tops = vec![TopK::new(dev, 1); 25];
            Cpu.nudge_n_merge(&block, &coef, &mut tops).unwrap();
            tops
        })
    });
}

criterion_group!(
    benches,
    gemm_choice,
    scan,
    scan_vs_gemm,
    aggregate,
    updates,
    gamma_scoring
);
criterion_main!(benches);
