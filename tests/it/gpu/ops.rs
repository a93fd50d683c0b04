//! Every GPU kernel against its CPU twin on random inputs of awkward sizes:
//! row counts that are not multiples of the 64-wide tiles, dimensions that
//! are not multiples of 4 or 16 (1, 3, 17, 33) up to 1024, chunks with fewer
//! rows than k, exact ties (duplicate rows), masked rows, zero and NaN rows.
//!
//! Tolerances. Both backends compute in f32 but sum in different orders (the
//! CPU's `gemm` crate blocks and uses FMA; the GPU sums a dot product in index
//! order, a norm as a tree). For a dot product of length d <= 1024 the
//! rounding error of any order is at most about d * 2^-24 * sum|a_i b_i|
//! (6e-5 relative to sum|a_i b_i| at d = 1024) and in practice near
//! sqrt(d) * 2^-24 (2e-6); we allow 1e-5 * sum|a_i b_i|. Steps that use the
//! same order of the same correctly rounded operations (segment sums) must
//! agree bit for bit. Top-k lists are compared by scores within the score
//! tolerance at every position and by row ids wherever the CPU's scores are
//! separated by more than twice that tolerance.
//!
//! Each test runs twice: on the device as it is, and with every buffer
//! capped at 8 KiB so that the same small inputs go through the paths that
//! split inputs too large for one storage binding.
//!
//! Run with `NUDGE_REQUIRE_GPU=1 XDG_RUNTIME_DIR=/tmp cargo test --release`
//! to make a missing adapter a failure instead of a skip.

mod gpu_support;

use gpu_support::{Rng, gpu, gpu_f16, gpu_f16_packed, gpus};
use nudge::backend::cpu::{self, Cpu};
use nudge::backend::gpu::Gpu;
use nudge::backend::topk::EMPTY;
use nudge::backend::{
    Backend, Bounds, MovedBlock, Pair, Rows, ScanSpec, Segments, SlopeBlock, TopK,
};
use nudge::matrix::Matrix;

const DOT_TOL: f32 = 1e-5;

fn random(rng: &mut Rng, rows: usize, cols: usize) -> Matrix {
    Matrix::new(rows, cols, rng.vec(rows * cols))
}

fn unit_rows(mut m: Matrix) -> Matrix {
    cpu::normalize_rows(&mut m.data, m.cols, 0);
    m
}

/// Lists agree up to the score tolerance `tol` (see the module comment).
fn assert_topk_close(got: &TopK, want: &TopK, tol: f32, what: &str) {
    assert_eq!(
        (got.queries, got.k),
        (want.queries, want.k),
        "{what}: shape"
    );
    for q in 0..want.queries {
        let (gs, gr) = (got.scores(q), got.rows(q));
        let (ws, wr) = (want.scores(q), want.rows(q));
        for i in 0..want.k {
            if wr[i] == EMPTY || gr[i] == EMPTY {
                assert_eq!(
                    gr[i], wr[i],
                    "{what}: query {q} slot {i} filled on one side only"
                );
                continue;
            }
            assert!(
                (gs[i] - ws[i]).abs() <= tol,
                "{what}: query {q} slot {i}: score {} vs {}",
                gs[i],
                ws[i]
            );
            if gr[i] != wr[i] {
                // Only a near-tie may reorder rows: some other CPU entry (or
                // the unseen k+1-th one, for the last slot) is within 2 tol.
                let near = (0..want.k).any(|j| j != i && (ws[j] - ws[i]).abs() <= 2.0 * tol)
                    || i == want.k - 1;
                assert!(
                    near,
                    "{what}: query {q} slot {i}: row {} vs {} with separated scores {:?}",
                    gr[i], wr[i], ws
                );
            }
        }
    }
}

/// Scale of the dot products of unit rows with queries of entries in [-1,1].
fn score_tol(q: &Matrix) -> f32 {
    let max_norm = (0..q.rows)
        .map(|i| q.row(i).iter().map(|x| x * x).sum::<f32>().sqrt())
        .fold(0.0f32, f32::max);
    DOT_TOL * max_norm.max(1.0)
}

#[test]
fn backend_describes_itself() {
    for g in gpus() {
        backend_describes_itself_on(g);
    }
}

fn backend_describes_itself_on(g: &Gpu) {
    assert_eq!(g.name(), "gpu");
    assert!(!g.device_name().is_empty());
    assert!(g.chunk_rows(100, 384, 1 << 20) >= 1);
    assert!(g.chunk_rows(1, 1, 1) >= 1);
}

#[test]
fn normalize_matches_cpu_on_awkward_shapes() {
    for g in gpus() {
        normalize_matches_cpu_on_awkward_shapes_on(g);
    }
}

fn normalize_matches_cpu_on_awkward_shapes_on(g: &Gpu) {
    let mut rng = Rng::new(1);
    for (rows, cols) in [(1, 1), (7, 3), (65, 17), (130, 33), (5, 1024), (3, 64)] {
        let mut want = rng.vec(rows * cols);
        if rows > 2 {
            want[cols..2 * cols].fill(0.0); // a zero row
        }
        let mut got = want.clone();
        let rw = cpu::normalize_rows(&mut want, cols, 10);
        let rg = g.normalize(&mut got, cols, 10).unwrap();
        assert_eq!(rg, rw, "report {rows}x{cols}");
        // Unit rows: a norm summed in another order differs by ~1 ulp * sqrt(d).
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= DOT_TOL, "{rows}x{cols} [{i}]: {a} vs {b}");
        }
    }
}

#[test]
fn normalize_reports_zero_and_non_finite_rows() {
    for g in gpus() {
        normalize_reports_zero_and_non_finite_rows_on(g);
    }
}

fn normalize_reports_zero_and_non_finite_rows_on(g: &Gpu) {
    let cols = 5;
    let mut rows = vec![1.0f32; 6 * cols];
    rows[cols..2 * cols].fill(0.0);
    rows[2 * cols + 3] = f32::NAN;
    rows[4 * cols] = f32::INFINITY;
    let mut want = rows.clone();
    let rw = cpu::normalize_rows(&mut want, cols, 100);
    let rg = g.normalize(&mut rows, cols, 100).unwrap();
    assert_eq!(rg.zero, vec![101]);
    assert_eq!(rg.non_finite, vec![102, 104]);
    assert_eq!(rg, rw);
    // Healthy rows are normalised, the zero row stays zero.
    assert!(
        rows[..cols]
            .iter()
            .all(|x| (x - 1.0 / 5f32.sqrt()).abs() < 1e-6)
    );
    assert!(rows[cols..2 * cols].iter().all(|&x| x == 0.0));
}

#[test]
fn similarity_matches_cpu_gemm() {
    for g in gpus() {
        similarity_matches_cpu_gemm_on(g);
    }
}

fn similarity_matches_cpu_gemm_on(g: &Gpu) {
    let mut rng = Rng::new(2);
    for (m, n, d) in [
        (1, 1, 1),
        (3, 5, 3),
        (17, 70, 17),
        (65, 130, 33),
        (5, 9, 1024),
        (70, 200, 64),
        (2, 3, 0),
        (0, 4, 8),
    ] {
        let a = random(&mut rng, m, d);
        let b = random(&mut rng, n, d);
        let want = Cpu.similarity(&a, &b).unwrap();
        let got = g.similarity(&a, &b).unwrap();
        assert_eq!((got.rows, got.cols), (m, n));
        for i in 0..m {
            for j in 0..n {
                let mag: f32 = a
                    .row(i)
                    .iter()
                    .zip(b.row(j))
                    .map(|(x, y)| (x * y).abs())
                    .sum();
                let (x, y) = (got.data[i * n + j], want.data[i * n + j]);
                assert!(
                    (x - y).abs() <= DOT_TOL * mag + 1e-7,
                    "{m}x{n}x{d} [{i},{j}]: {x} vs {y}"
                );
            }
        }
    }
}

/// Runs the same scan on both backends, pushing `chunks` rows at a time.
fn both_scans(
    g: &dyn Backend,
    q: &Matrix,
    corpus: &[f32],
    chunks: &[usize],
    k: usize,
    normalize: bool,
    skip: Option<&[bool]>,
) -> (
    TopK,
    TopK,
    nudge::backend::RowReport,
    nudge::backend::RowReport,
) {
    let d = q.cols;
    let mut out = Vec::new();
    for b in [g, &Cpu as &dyn Backend] {
        let mut scan = b
            .scan(ScanSpec {
                queries: q,
                k,
                rows: if normalize {
                    Rows::Normalize
                } else {
                    Rows::AsStored
                },
                skip,
            })
            .unwrap();
        let mut report = nudge::backend::RowReport::default();
        let mut start = 0;
        for &c in chunks {
            let end = (start + c).min(corpus.len() / d);
            report.extend(scan.push(&corpus[start * d..end * d], start).unwrap());
            start = end;
        }
        out.push((scan.finish().unwrap(), report));
    }
    let (c, rc) = out.pop().unwrap();
    let (g, rg) = out.pop().unwrap();
    (g, c, rg, rc)
}

#[test]
fn scan_matches_cpu() {
    for g in gpus() {
        scan_matches_cpu_on(g);
    }
}

fn scan_matches_cpu_on(g: &Gpu) {
    let mut rng = Rng::new(3);
    for (nq, n, d, k, chunks) in [
        (3, 10, 1, 4, vec![3, 3, 4]),
        (5, 300, 3, 7, vec![130, 1, 169]),
        (17, 500, 17, 10, vec![64, 200, 236]),
        (9, 257, 33, 5, vec![257]),
        (4, 40, 1024, 3, vec![2, 38]),
        (2, 5, 8, 12, vec![2, 3]), // k larger than the corpus
    ] {
        let q = random(&mut rng, nq, d);
        let mut corpus = rng.vec(n * d);
        if nq * d.div_ceil(4) * 16 > g.max_binding() as usize {
            // The queries stay in one binding; too many is an error.
            let spec = ScanSpec {
                queries: &q,
                k,
                rows: Rows::Normalize,
                skip: None,
            };
            assert!(g.scan(spec).is_err());
            continue;
        }
        // Duplicate rows give exact ties.
        for r in (0..n).step_by(7).skip(1) {
            let src = rng.below(r);
            corpus.copy_within(src * d..(src + 1) * d, r * d);
        }
        let skip: Vec<bool> = (0..n).map(|r| r % 5 == 2).collect();
        for normalize in [true, false] {
            for mask in [None, Some(&skip[..])] {
                let (got, want, rg, rc) = both_scans(g, &q, &corpus, &chunks, k, normalize, mask);
                assert_eq!(rg, rc);
                let what = format!(
                    "n={n} d={d} k={k} normalize={normalize} mask={}",
                    mask.is_some()
                );
                // Unnormalised rows have entries up to 1 in magnitude.
                let tol = score_tol(&q) * if normalize { 1.0 } else { (d as f32).sqrt() };
                assert_topk_close(&got, &want, tol, &what);
                if let Some(m) = mask {
                    assert!(
                        got.rows.iter().all(|&r| r == EMPTY || !m[r as usize]),
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn scan_ties_go_to_the_lower_row() {
    for g in gpus() {
        scan_ties_go_to_the_lower_row_on(g);
    }
}

fn scan_ties_go_to_the_lower_row_on(g: &Gpu) {
    let mut rng = Rng::new(4);
    let (n, d) = (150, 19);
    let mut corpus = unit_rows(random(&mut rng, n, d)).data;
    // Rows 3, 40 and 120 are one vector; the query is that vector, so the
    // three tie at the top (bit-identical scores) far above everything else.
    for r in [40, 120] {
        corpus.copy_within(3 * d..4 * d, r * d);
    }
    let q = Matrix::new(1, d, corpus[3 * d..4 * d].to_vec());
    // Pushed in an order that puts the higher rows in earlier chunks of
    // the GPU's segments too.
    let (got, want, _, _) = both_scans(g, &q, &corpus, &[100, 50], 4, false, None);
    assert_eq!(&got.rows(0)[..3], &[3, 40, 120]);
    assert_eq!(got.scores(0)[0], got.scores(0)[2]);
    assert_eq!(&got.rows(0)[..3], &want.rows(0)[..3]);
    // Masking the first of them hands its place to the next.
    let skip: Vec<bool> = (0..n).map(|r| r == 3).collect();
    let (got, _, _, _) = both_scans(g, &q, &corpus, &[150], 2, false, Some(&skip));
    assert_eq!(got.rows(0), &[40, 120]);
}

#[test]
fn scan_reports_and_excludes_bad_rows() {
    for g in gpus() {
        scan_reports_and_excludes_bad_rows_on(g);
    }
}

fn scan_reports_and_excludes_bad_rows_on(g: &Gpu) {
    let d = 6;
    let mut corpus = vec![0.5f32; 8 * d];
    corpus[d..2 * d].fill(0.0);
    corpus[3 * d + 2] = f32::NAN;
    corpus[6 * d] = f32::NEG_INFINITY;
    let q = Matrix::new(2, d, vec![1.0; 2 * d]);
    for normalize in [true, false] {
        let (got, want, rg, rc) = both_scans(g, &q, &corpus, &[4, 4], 8, normalize, None);
        assert_eq!(rg, rc, "normalize={normalize}");
        assert_eq!(rg.non_finite, vec![3, 6]);
        assert_eq!(rg.zero, if normalize { vec![1] } else { vec![] });
        assert_eq!(got.rows, want.rows, "normalize={normalize}");
        // NaN scores never enter a list (a -inf one may, as on the CPU).
        assert!(!got.rows.contains(&3));
    }
}

#[test]
fn scan_in_f16_is_close_to_f32() {
    let Some(g) = gpu_f16() else { return };
    let has_f16 = nudge::backend::gpu::list_adapters()
        .first()
        .is_some_and(|a| a.shader_f16);
    assert_eq!(g.native_f16(), has_f16);
    check_f16_scan(g);
}

#[test]
fn scan_in_packed_f16_is_close_to_f32() {
    let Some(g) = gpu_f16_packed() else { return };
    assert!(!g.native_f16());
    check_f16_scan(g);
}

fn check_f16_scan(g: &dyn Backend) {
    let mut rng = Rng::new(5);
    let (nq, n, d, k) = (6, 400, 33, 5);
    let q = random(&mut rng, nq, d);
    let mut corpus = rng.vec(n * d);
    // The second chunk holds a value beyond the f16 range (and a tiny one
    // that f16 flushes to zero), so it is uploaded as f32 and packed on the
    // device; the first goes up as f16.
    corpus[200 * d + 5] = 1e5;
    corpus[300 * d + 7] = 1e-9;
    let max_q = (0..nq)
        .map(|i| q.row(i).iter().map(|x| x * x).sum::<f32>().sqrt())
        .fold(0.0f32, f32::max);
    for normalize in [true, false] {
        let (got, want, rg, rc) = both_scans(g, &q, &corpus, &[150, 250], k, normalize, None);
        assert_eq!(rg, rc);
        // f16 keeps 11 significant bits. A unit row is rounded twice (raw
        // values on upload, normalised values after) and its norm comes
        // from rounded values: each element is off by at most ~1.5 * 2^-11
        // of itself, so a score by at most 1.5 * 2^-11 |q| (Cauchy-Schwarz);
        // we allow 2^-10 |q|. Unnormalised rows (entries up to 1) are
        // rounded once: 2^-11 |q| |x| <= 2^-11 |q| sqrt(d); the chunk with
        // 1e5 in it is scored in f32 (it would overflow f16).
        let tol = if normalize {
            max_q * 2f32.powi(-10)
        } else {
            max_q * (d as f32).sqrt() * 2f32.powi(-11)
        };
        assert_topk_close(&got, &want, tol, &format!("f16 normalize={normalize}"));
        // And the f16 storage is really in effect.
        assert_ne!(got.scores, want.scores);
    }
}

#[test]
fn device_errors_become_runtime_errors() {
    use nudge::backend::gpu::context::Context;
    use nudge::backend::gpu::{GpuOptions, Precision};
    if gpu().is_none() {
        return;
    }
    let ctx = Context::new(&GpuOptions {
        adapter: None,
        precision: Precision::F32,
        ..Default::default()
    })
    .unwrap();
    // A buffer over the device's limit is a validation error in wgpu, which
    // would panic in its default handler.
    let too_big = ctx.limits.max_buffer_size.saturating_add(1 << 20);
    let err = ctx
        .scoped("allocating", || {
            // Using the failed buffer must not panic either.
            let b = ctx.storage("huge", too_big);
            ctx.write(&b, &[0u8; 16]);
            ctx.read::<f32>(&b, 16)
        })
        .unwrap_err();
    assert_eq!(err.kind, nudge::Kind::Runtime);
    assert!(err.message.contains("allocating"), "{}", err.message);
    // The device is still usable afterwards.
    let b = ctx.upload("small", &[1.0f32, 2.0, 3.0, 4.0]);
    assert_eq!(ctx.read::<f32>(&b, 16).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn an_adapter_filter_that_matches_nothing_is_a_usage_error() {
    use nudge::backend::gpu::{Gpu, GpuOptions, Precision};
    if gpu().is_none() {
        return;
    }
    let err = Gpu::new(&GpuOptions {
        adapter: Some("no such adapter 1234".into()),
        precision: Precision::F32,
        ..Default::default()
    })
    .err()
    .expect("no adapter should match");
    assert_eq!(err.kind, nudge::Kind::Usage);
}

#[test]
fn aggregate_is_exact() {
    for g in gpus() {
        aggregate_is_exact_on(g);
    }
}

fn aggregate_is_exact_on(g: &Gpu) {
    let mut rng = Rng::new(6);
    for (rows, d, segs) in [
        (1, 1, 1),
        (20, 3, 7),
        (100, 33, 40),
        (30, 1024, 5),
        (10, 17, 0),
    ] {
        let m = random(&mut rng, rows, d);
        let mut seg = Segments {
            offsets: vec![0],
            indices: Vec::new(),
        };
        for s in 0..segs {
            // Some empty segments, some with repeated rows.
            let len = if s % 4 == 3 { 0 } else { 1 + rng.below(6) };
            for _ in 0..len {
                seg.indices.push(rng.below(rows) as u32);
            }
            seg.offsets.push(seg.indices.len() as u32);
        }
        if segs == 0 {
            seg.offsets.clear();
        }
        let want = Cpu.aggregate(&m, &seg).unwrap();
        let got = g.aggregate(&m, &seg).unwrap();
        // Same additions in the same order, each correctly rounded.
        assert_eq!(got, want, "rows={rows} d={d} segs={segs}");
    }
}

fn bounds_close(a: &Bounds, b: &Bounds) -> bool {
    // One division each, allowed 2.5 ulp on a GPU.
    let close = |x: f32, y: f32| x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs());
    a.dropped == b.dropped && close(a.low, b.low) && close(a.high, b.high)
}

#[test]
fn nudge_m_bounds_match_cpu() {
    for g in gpus() {
        nudge_m_bounds_match_cpu_on(g);
    }
}

fn nudge_m_bounds_match_cpu_on(g: &Gpu) {
    let mut rng = Rng::new(7);
    for (nq, width, npairs) in [(1, 1, 1), (5, 13, 9), (20, 300, 70), (3, 1000, 600)] {
        let records: Vec<u32> = (0..width as u32).map(|j| j * 3 + 1).collect();
        let s0 = random(&mut rng, nq, width);
        let mut s1 = random(&mut rng, nq, width);
        let mut inv: Vec<f32> = (0..width).map(|_| 0.5 + rng.f().abs()).collect();
        // Some unmoved columns (slope 0) to meet pairs of slope 0: t_x - t_j
        // is exactly 0 there, the case that drops a pair.
        for j in (0..width).step_by(4) {
            inv[j] = 0.0;
        }
        s1.data.iter_mut().step_by(11).for_each(|x| *x = 0.0);
        let pairs: Vec<Pair> = (0..npairs)
            .map(|i| Pair {
                query: rng.below(nq) as u32,
                // Every third pair's own record is in the block.
                record: if i % 3 == 0 {
                    records[rng.below(width)]
                } else {
                    1_000_000 + i as u32
                },
                s: rng.f(),
                t: if i % 5 == 0 { 0.0 } else { rng.f() },
            })
            .collect();
        let start: Vec<Bounds> = (0..npairs)
            .map(|i| {
                if i % 7 == 0 {
                    Bounds {
                        low: 0.1,
                        high: 0.9,
                        dropped: false,
                    }
                } else {
                    Bounds::OPEN
                }
            })
            .collect();
        let mut t = s1;
        nudge::nudge::slopes(&mut t, &inv);
        let block = SlopeBlock {
            records: &records,
            s: &s0,
            t: &t,
        };
        let mut want = start.clone();
        let mut got = start.clone();
        Cpu.nudge_m_bounds(&block, &pairs, &mut want).unwrap();
        g.nudge_m_bounds(&block, &pairs, &mut got).unwrap();
        if npairs > 50 {
            assert!(
                want.iter().any(|b| b.dropped),
                "the test should cover dropped pairs"
            );
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(bounds_close(a, b), "pair {i}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn nudge_n_merge_matches_cpu() {
    for g in gpus() {
        nudge_n_merge_matches_cpu_on(g);
    }
}

fn nudge_n_merge_matches_cpu_on(g: &Gpu) {
    let mut rng = Rng::new(8);
    for (nq, width, gammas, k) in [
        (1, 1, 1, 1),
        (7, 50, 3, 1),
        (12, 333, 25, 3),
        (4, 20, 2, 30),
    ] {
        let records: Vec<u32> = (0..width as u32).map(|j| j * 2 + 5).collect();
        let mut s0 = random(&mut rng, nq, width);
        let mut s1 = random(&mut rng, nq, width);
        let mut coef: Vec<(f32, f32)> = (0..gammas * width)
            .map(|_| (1.0 - rng.f().abs() * 0.5, rng.f().abs() * 0.3))
            .collect();
        // Columns 1 and 2 identical: exact ties between two records.
        if width > 3 {
            for q in 0..nq {
                s0.data[q * width + 2] = s0.data[q * width + 1];
                s1.data[q * width + 2] = s1.data[q * width + 1];
            }
            for gi in 0..gammas {
                coef[gi * width + 2] = coef[gi * width + 1];
            }
        }
        // Running lists that already hold static entries.
        let mut start = TopK::new(nq, k);
        for q in 0..nq {
            for r in 0..2 {
                start.push(q, rng.f(), 10_000 + r);
            }
        }
        let block = MovedBlock {
            records: &records,
            s0: &s0,
            s1: &s1,
        };
        let mut want = vec![start.clone(); gammas];
        let mut got = vec![start.clone(); gammas];
        Cpu.nudge_n_merge(&block, &coef, &mut want).unwrap();
        g.nudge_n_merge(&block, &coef, &mut got).unwrap();
        for gi in 0..gammas {
            // a*s0 + b*s1 may be fused into one FMA on the GPU: 1 ulp.
            assert_topk_close(&got[gi], &want[gi], 1e-6, &format!("gamma {gi} k={k}"));
            // The tied records 7 and 9 (columns 1 and 2) rank lower row first.
            for q in 0..nq {
                let rows = got[gi].rows(q);
                let pos = |r: u32| rows.iter().position(|&x| x == r);
                if let (Some(a), Some(b)) = (pos(7), pos(9)) {
                    assert_eq!(a + 1, b, "gamma {gi} query {q}: {rows:?}");
                }
            }
        }
    }
}

#[test]
fn update_m_matches_cpu() {
    for g in gpus() {
        update_m_matches_cpu_on(g);
    }
}

fn update_m_matches_cpu_on(g: &Gpu) {
    let mut rng = Rng::new(9);
    for (rows, d) in [(1, 1), (9, 3), (70, 33), (4, 1024)] {
        let d0 = unit_rows(random(&mut rng, rows, d));
        let mut gr = random(&mut rng, rows, d);
        gr.row_mut(0).fill(0.0); // G = 0: unchanged
        for gamma in [0.0f32, 0.05, 0.55, 3.0] {
            let (mut want, mut got) = (d0.clone(), d0.clone());
            Cpu.update_m(&mut want, &gr, gamma).unwrap();
            g.update_m(&mut got, &gr, gamma).unwrap();
            assert_eq!(got.row(0), d0.row(0));
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + gamma),
                    "d={d} gamma={gamma}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn update_n_matches_cpu() {
    for g in gpus() {
        update_n_matches_cpu_on(g);
    }
}

fn update_n_matches_cpu_on(g: &Gpu) {
    let mut rng = Rng::new(10);
    for (rows, d) in [(1, 1), (12, 3), (70, 33), (4, 1024)] {
        let d0 = unit_rows(random(&mut rng, rows, d));
        let mut gr = random(&mut rng, rows, d);
        for r in 0..rows {
            match r % 4 {
                0 => gr.row_mut(r).fill(0.0), // G = 0
                1 => {
                    // Nearly parallel to d: the clamp to Ghat.
                    let dr = d0.row(r).to_vec();
                    for (x, y) in gr.row_mut(r).iter_mut().zip(dr) {
                        *x = 3.0 * y + 1e-3 * *x;
                    }
                }
                _ => {}
            }
        }
        for gamma in [0.0, 0.02, 0.1, 0.48] {
            let (mut want, mut got) = (d0.clone(), d0.clone());
            Cpu.update_n(&mut want, &gr, gamma).unwrap();
            g.update_n(&mut got, &gr, gamma).unwrap();
            // f32 case analysis against the CPU's f64 one: a few ulp of the
            // unit-norm result; d = 1 rows are always parallel or opposite.
            for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "d={d} gamma={gamma} [{i}]: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    use nudge::backend::gpu::GpuOptions;
    use nudge::backend::gpu::context::Context;
    if gpu().is_none() {
        return;
    }
    let ctx = Context::new(&GpuOptions::default()).unwrap();
    ctx.device.destroy();
    let r = ctx.scoped("reading after loss", || {
        let b = ctx.upload("x", &[1.0f32; 4]);
        ctx.read::<f32>(&b, 16)
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind, nudge::Kind::Runtime);
}

/// Read-backs while other threads poll the same device, as parallel tests
/// and the scan's pipelined slots do. A map callback fires in whichever
/// thread's poll finds the copy done, so the reader's own wait can return
/// before the callback has run. An early version gave up after one extra
/// poll ("read-back never completed", about one CI run in thirty) and left
/// the buffer mapped, which failed the next submission too. Here six threads
/// do nothing but poll, so that they often win that race: the old code failed
/// this test in ten runs out of ten on a 2-core machine (lavapipe).
#[test]
fn read_backs_complete_while_other_threads_poll() {
    use nudge::backend::gpu::context::Context;
    use std::sync::atomic::{AtomicBool, Ordering};
    if gpu().is_none() {
        return;
    }
    const POLLERS: usize = 6;
    const READERS: usize = 6;
    let ctx = Context::new(&Default::default()).unwrap();
    let data: Vec<u32> = (0..16).collect();
    let buf = ctx.upload("data", &data);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..POLLERS {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let _ = ctx.device.poll(wgpu::PollType::Poll);
                }
            });
        }
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..6000 {
                        assert_eq!(ctx.read::<u32>(&buf, 64).unwrap(), data);
                    }
                })
            })
            .collect();
        let ok = readers.into_iter().all(|r| r.join().is_ok());
        done.store(true, Ordering::Relaxed);
        assert!(ok, "a read-back failed");
    });
}

/// What a WGSL source says about one `@group(0) @binding(n)` variable.
#[derive(Debug, Clone, PartialEq)]
struct WgslBinding {
    slot: u32,
    /// What stands between `var<` and `>`, without spaces.
    access: String,
    name: String,
    ty: String,
}

/// `src` with `//` comments removed (the shaders use no block comments).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `@group(g) @binding(n) var<...> name: T;` of a module; other
/// groups are a failure (every kernel binds group 0 only).
fn wgsl_bindings(src: &str) -> Vec<WgslBinding> {
    let mut out = Vec::new();
    for line in strip_comments(src).lines() {
        let Some(at) = line.find("@binding(") else {
            continue;
        };
        let num = |s: &str| -> u32 {
            let s = &s[s.find('(').unwrap() + 1..];
            s[..s.find(')').unwrap()].trim().parse().unwrap()
        };
        let group = line.find("@group(").map(|g| num(&line[g..]));
        assert_eq!(group, Some(0), "not group 0: {line}");
        let slot = num(&line[at..]);
        let var = &line[line.find("var<").expect(line) + 4..];
        let close = var.find('>').unwrap();
        let access: String = var[..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let rest = &var[close + 1..];
        let colon = rest.find(':').unwrap();
        out.push(WgslBinding {
            slot,
            access,
            name: rest[..colon].trim().to_string(),
            ty: rest[colon + 1..]
                .trim()
                .trim_end_matches(';')
                .trim()
                .to_string(),
        });
    }
    out
}

/// Identifiers of a piece of WGSL, leaving out member names after `.`
/// (`p.rows` uses `p`, not a global called `rows`).
fn identifiers(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if word(b[i]) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let member = text[..start].trim_end().ends_with('.');
            if !member && !b[start].is_ascii_digit() {
                out.push(&text[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Each `fn name(...) { body }` of a module: name -> signature and body.
fn wgsl_functions(src: &str) -> std::collections::HashMap<String, String> {
    let src = strip_comments(src);
    let mut out = std::collections::HashMap::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("fn ") {
        let start = from + pos;
        from = start + 3;
        let at_word = start == 0 || !src.as_bytes()[start - 1].is_ascii_alphanumeric();
        if !at_word {
            continue;
        }
        let name: String = src[start + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let open = start + src[start..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (i, c) in src[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.insert(name, src[start..=end].to_string());
        from = end;
    }
    out
}

/// Bytes of WGSL `struct name` when all its members are 4-byte scalars (as
/// every `Params` is); `None` if it has other members.
fn wgsl_scalar_struct_size(src: &str, name: &str) -> Option<usize> {
    let src = strip_comments(src);
    let head = format!("struct {name} {{");
    let body = &src[src.find(&head)? + head.len()..];
    let body = &body[..body.find('}')?];
    let mut bytes = 0;
    for member in body.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let ty = member.split(':').nth(1)?.trim();
        match ty {
            "u32" | "i32" | "f32" => bytes += 4,
            _ => return None,
        }
    }
    Some(bytes)
}

/// Every way the Rust binding declaration of a kernel disagrees with its
/// WGSL: a binding declared on one side only, at another slot, with another
/// access or (for the parameter block) another size; empty when they agree.
fn binding_mismatches(
    source: &str,
    entry: &str,
    declared: &[nudge::backend::gpu::kernel::BindingDecl],
) -> Vec<String> {
    use nudge::backend::gpu::kernel::Access;
    let globals = wgsl_bindings(source);
    let fns = wgsl_functions(source);
    let mut problems = Vec::new();
    if !fns.contains_key(entry) {
        return vec![format!("no fn {entry} in the shader")];
    }
    // Globals the entry point reaches through the functions it calls.
    let mut used = std::collections::BTreeSet::new();
    let mut todo = vec![entry.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        for id in identifiers(&fns[&f]) {
            if fns.contains_key(id) && id != f {
                todo.push(id.to_string());
            } else if globals.iter().any(|g| g.name == id) {
                used.insert(id.to_string());
            }
        }
    }
    let mut slots = std::collections::HashSet::new();
    for d in declared {
        if !slots.insert(d.slot) {
            problems.push(format!("slot {} declared twice", d.slot));
        }
        let Some(g) = globals.iter().find(|g| g.name == d.name) else {
            problems.push(format!("{}: no such binding in the WGSL", d.name));
            continue;
        };
        if g.slot != d.slot {
            problems.push(format!(
                "{}: Rust binds slot {}, WGSL says @binding({})",
                d.name, d.slot, g.slot
            ));
        }
        let want: String = d
            .access
            .wgsl()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if g.access != want {
            problems.push(format!(
                "{}: Rust says var<{}>, WGSL var<{}>",
                d.name,
                d.access.wgsl(),
                g.access
            ));
        }
        if d.access == Access::Uniform {
            match wgsl_scalar_struct_size(source, &g.ty) {
                Some(n) if n == d.size => {}
                n => problems.push(format!(
                    "{}: Rust block of {} bytes, WGSL struct {} of {n:?}",
                    d.name, d.size, g.ty
                )),
            }
        }
        if !used.contains(d.name) {
            problems.push(format!("{}: declared but unused by {entry}", d.name));
        }
    }
    for u in &used {
        if !declared.iter().any(|d| d.name == u.as_str()) {
            problems.push(format!("{u}: used by {entry} but not declared in Rust"));
        }
    }
    problems
}

/// The bindings each kernel's Rust struct declares (`kernel::SPECS`, which
/// also builds the bind-group layouts and the bind groups) are exactly the
/// `@group(0) @binding(n) var<...> name` globals its WGSL entry point uses:
/// same names, slots, access, and parameter-block size. Needs no device.
#[test]
fn kernel_bindings_match_the_wgsl() {
    use nudge::backend::gpu::kernel::SPECS;
    let mut names = std::collections::HashSet::new();
    let mut all = Vec::new();
    for spec in SPECS {
        assert!(names.insert(spec.name), "kernel {} twice", spec.name);
        for p in binding_mismatches(spec.shader.source, spec.entry, spec.bindings) {
            all.push(format!(
                "kernel {} ({}::{}): {p}",
                spec.name, spec.shader.name, spec.entry
            ));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
    assert_eq!(SPECS.len(), 13, "a kernel was added or lost");

    // The check is not vacuous: swapping two same-typed buffers (S0 and the
    // slopes of NUDGE-M), or binding the wrong access, is caught.
    let bounds = SPECS.iter().find(|s| s.name == "nudge_m_bounds").unwrap();
    let mut swapped = bounds.bindings.to_vec();
    let (i, j) = (
        swapped.iter().position(|b| b.name == "s0").unwrap(),
        swapped.iter().position(|b| b.name == "slope").unwrap(),
    );
    let (si, sj) = (swapped[i].slot, swapped[j].slot);
    swapped[i].slot = sj;
    swapped[j].slot = si;
    let p = binding_mismatches(bounds.shader.source, bounds.entry, &swapped);
    assert_eq!(p.len(), 2, "{p:?}");
    let mut wrong_access = bounds.bindings.to_vec();
    wrong_access[i].access = nudge::backend::gpu::kernel::Access::Write;
    assert_eq!(
        binding_mismatches(bounds.shader.source, bounds.entry, &wrong_access).len(),
        1
    );
    let missing = &bounds.bindings[..bounds.bindings.len() - 1];
    assert_eq!(
        binding_mismatches(bounds.shader.source, bounds.entry, missing).len(),
        1
    );
}

/// `Precision` parses and prints its command-line names without clap, and
/// `GpuOptions` waits 600 s by default. Needs no device.
#[test]
fn precision_names_and_option_defaults() {
    use nudge::backend::gpu::{GpuOptions, Precision};
    for p in [Precision::F32, Precision::F16] {
        assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
    let err = "f64".parse::<Precision>().unwrap_err();
    assert_eq!(err.kind, nudge::Kind::Usage);
    let opts = GpuOptions::default();
    assert_eq!(opts.timeout, std::time::Duration::from_secs(600));
    assert_eq!(opts.precision, Precision::F32);
    assert!(opts.adapter.is_none() && opts.buffer_limit.is_none() && !opts.packed_f16_only);
}
