//! The fused top-k of the f32 scan (`src/backend/gpu/scan.rs`, the epilogue
//! of `tiled.rs`, `shaders/topk_fused.wgsl`) on the three top-k variants of
//! the device: fused with room for every candidate, fused with 3-entry
//! candidate lists (most chunks overflow and are redone by the exact
//! fallback), and unfused.
//!
//! The corpus and queries hold small integers and are scored as stored, so
//! every score is an exact integer on the CPU and on the GPU whatever the
//! order of the sums: the lists must equal the CPU's bit for bit, ties and
//! all, with no tolerance.

use super::Rng;
use crate::common::backends::{backend_tests, topk_variants};
use nudge::backend::topk::EMPTY;
use nudge::backend::{Backend, RowReport, Rows, ScanSpec, TopK};
use nudge::matrix::Matrix;
use nudge::{Cpu, Gpu};

/// `rows x cols` integers in -2..=2 (as f32).
fn small_ints(rng: &mut Rng, rows: usize, cols: usize) -> Matrix {
    let data = (0..rows * cols)
        .map(|_| rng.below(5) as f32 - 2.0)
        .collect();
    Matrix::new(rows, cols, data)
}

/// The scan's lists and row report, pushing `chunks` rows at a time.
fn scan(
    b: &dyn Backend,
    q: &Matrix,
    corpus: &[f32],
    chunks: &[usize],
    k: usize,
    skip: Option<&[bool]>,
) -> (TopK, RowReport) {
    let d = q.cols;
    let n = corpus.len() / d;
    let mut s = b
        .scan(ScanSpec {
            queries: q,
            k,
            rows: Rows::AsStored,
            skip,
        })
        .unwrap();
    let mut report = RowReport::default();
    let mut start = 0;
    for &c in chunks.iter().cycle() {
        if start >= n {
            break;
        }
        let end = (start + c).min(n);
        report.extend(s.push(&corpus[start * d..end * d], start).unwrap());
        start = end;
    }
    let (top, rest) = s.finish().unwrap();
    report.extend(rest);
    (top, report)
}

/// The GPU's lists equal the CPU's exactly (scores by their bits), and the
/// row reports agree; returns the lists.
fn assert_exact(
    g: &Gpu,
    q: &Matrix,
    corpus: &[f32],
    chunks: &[usize],
    k: usize,
    skip: Option<&[bool]>,
    what: &str,
) -> TopK {
    let (got, rg) = scan(g, q, corpus, chunks, k, skip);
    let (want, rc) = scan(&Cpu, q, corpus, chunks, k, skip);
    assert_eq!(rg, rc, "{what}: row reports");
    assert_eq!(got.rows, want.rows, "{what}: rows");
    let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want), "{what}: scores");
    got
}

backend_tests! {
    fn fused_topk_ties_across_chunk_boundaries(g in topk_variants()) {
        let mut rng = Rng::new(21);
        let (nq, n, d) = (13, 700, 24);
        let q = small_ints(&mut rng, nq, d);
        let mut corpus = small_ints(&mut rng, n, d).data;
        // Copies of earlier rows, so equal scores straddle every boundary.
        for r in (0..n).step_by(3).skip(1) {
            let src = rng.below(r);
            corpus.copy_within(src * d..(src + 1) * d, r * d);
        }
        let skip: Vec<bool> = (0..n).map(|r| r % 9 == 4).collect();
        for k in [1, 5, 16] {
            for chunks in [vec![5, 64, 3, 128, 200], vec![700], vec![129, 1]] {
                for mask in [None, Some(&skip[..])] {
                    let what = format!("k={k} chunks={chunks:?} mask={}", mask.is_some());
                    let got = assert_exact(g, &q, &corpus, &chunks, k, mask, &what);
                    // Ties are really there: some list holds equal scores.
                    if k > 1 {
                        assert!(
                            got.scores.windows(2).any(|w| w[0] == w[1]),
                            "{what}: no tie in any list"
                        );
                    }
                }
            }
        }
    }

    fn fused_topk_all_equal_scores(g in topk_variants()) {
        // A zero query scores every row 0: the best k are the first k rows,
        // and every later row ties with the k-th (it passes the filter and
        // must lose the tie in the merge).
        let mut rng = Rng::new(22);
        let (n, d, k) = (400, 16, 7);
        let mut q = small_ints(&mut rng, 2, d);
        q.data[..d].fill(0.0);
        // The second query: every row the same vector.
        let row = small_ints(&mut rng, 1, d).data;
        let corpus: Vec<f32> = (0..n).flat_map(|_| row.iter().copied()).collect();
        for chunks in [vec![10, 300, 90], vec![3], vec![400]] {
            let got = assert_exact(g, &q, &corpus, &chunks, k, None, &format!("{chunks:?}"));
            for qi in 0..2 {
                assert_eq!(got.rows(qi), &[0, 1, 2, 3, 4, 5, 6], "{chunks:?}");
            }
            assert!(got.scores(0).iter().all(|&s| s == 0.0));
        }
    }

    fn fused_topk_leaves_out_nan_and_keeps_infinite_scores(g in topk_variants()) {
        let mut rng = Rng::new(23);
        let (n, d, k) = (300, 8, 6);
        // Positive queries, so an all-infinite row scores +-inf, not NaN.
        let q = Matrix::new(3, d, (0..3 * d).map(|i| (1 + i % 2) as f32).collect());
        let mut corpus = small_ints(&mut rng, n, d).data;
        for r in [0, 17, 150, 299] {
            corpus[r * d + 3] = f32::NAN;
        }
        // A NaN row high among the scores, a +inf row that wins, a -inf row.
        corpus[40 * d..41 * d].fill(f32::NAN);
        corpus[200 * d..201 * d].fill(f32::INFINITY);
        corpus[260 * d..261 * d].fill(f32::NEG_INFINITY);
        for chunks in [vec![16, 100], vec![300], vec![1, 7]] {
            let what = format!("{chunks:?}");
            let got = assert_exact(g, &q, &corpus, &chunks, k, None, &what);
            for r in [0, 17, 40, 150, 299] {
                assert!(!got.rows.contains(&r), "{what}: NaN row {r} entered");
            }
            for qi in 0..3 {
                assert_eq!(got.rows(qi)[0], 200, "{what}");
            }
        }
        // With room for every row, the -inf score enters (as on the CPU),
        // after every finite one; the NaN rows still do not.
        let k = 300;
        let got = assert_exact(g, &q, &corpus, &[64, 100], k, None, "k=300");
        let filled: Vec<u32> = got.rows(0).iter().copied().filter(|&r| r != EMPTY).collect();
        assert_eq!(filled.len(), n - 5);
        assert_eq!(filled[filled.len() - 1], 260);
    }

    fn fused_topk_leaves_out_masked_rows(g in topk_variants()) {
        let mut rng = Rng::new(24);
        let (nq, n, d, k) = (9, 500, 20, 8);
        let q = small_ints(&mut rng, nq, d);
        let corpus = small_ints(&mut rng, n, d).data;
        // Mask the unmasked winners of every query (and every 11th row).
        let (best, _) = scan(&Cpu, &q, &corpus, &[n], k, None);
        let mut skip: Vec<bool> = (0..n).map(|r| r % 11 == 0).collect();
        for &r in &best.rows {
            skip[r as usize] = true;
        }
        for chunks in [vec![50, 7, 200], vec![500], vec![2]] {
            let what = format!("{chunks:?}");
            let got = assert_exact(g, &q, &corpus, &chunks, k, Some(&skip), &what);
            assert!(got.rows.iter().all(|&r| r == EMPTY || !skip[r as usize]), "{what}");
        }
    }

    fn fused_topk_with_k_larger_than_a_chunk(g in topk_variants()) {
        let mut rng = Rng::new(25);
        let (nq, n, d) = (5, 300, 12);
        let q = small_ints(&mut rng, nq, d);
        let corpus = small_ints(&mut rng, n, d).data;
        for k in [40, 100] {
            for chunks in [vec![7], vec![13, 1, 29]] {
                assert_exact(g, &q, &corpus, &chunks, k, None, &format!("k={k} {chunks:?}"));
            }
        }
    }

    fn fused_topk_overflowing_candidate_lists(g in topk_variants()) {
        // Ascending scores: every row beats the whole list so far, so every
        // chunk's candidates are all its rows (more than 3: the 3-entry
        // lists overflow and the chunk must be redone exactly), then
        // descending ones, which the filter drops.
        let (n, d, k) = (400, 4, 4);
        let q = Matrix::new(2, d, vec![1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]);
        let mut corpus = vec![0.0f32; n * d];
        for r in 0..n {
            corpus[r * d] = if r < 300 { r as f32 } else { (599 - r) as f32 };
        }
        for chunks in [vec![4, 10, 50, 100], vec![8], vec![64]] {
            let got = assert_exact(g, &q, &corpus, &chunks, k, None, &format!("{chunks:?}"));
            assert_eq!(got.rows(0), &[299, 300, 298, 301], "{chunks:?}");
            assert_eq!(got.rows(1), &[0, 1, 2, 3], "{chunks:?}");
        }
    }
}

/// The variants really differ: the fused devices run the fused GEMM and
/// merge, the unfused one never does. (Needs timestamp queries, which
/// lavapipe has; on an adapter without them there is nothing to check.)
#[test]
fn fused_topk_runs_on_the_fused_devices_only() {
    let mut rng = Rng::new(26);
    let q = small_ints(&mut rng, 4, 8);
    let corpus = small_ints(&mut rng, 200, 8).data;
    for (label, g) in topk_variants() {
        scan(g, &q, &corpus, &[50], 3, None);
        let t = g.kernel_timings().unwrap();
        if t.is_empty() {
            continue;
        }
        let calls = |name: &str| t.iter().find(|k| k.name == name).map_or(0, |k| k.calls);
        let fused = label != "gpu-unfused";
        for name in ["gemm_fused", "topk_fused_merge", "topk_fused_arm"] {
            assert_eq!(calls(name) > 0, fused, "[{label}] {name}: {t:?}");
        }
    }
}

/// On real-valued, normalised data (scores are not exact, so the CPU's may
/// differ in the last bits) the fused variants give the unfused lists bit
/// for bit: the fused GEMM sums like the unfused one, and the filter and
/// merge lose nothing.
#[test]
fn fused_topk_equals_unfused_bit_for_bit() {
    use crate::common::backends::gpu_unfused;
    let Some(unfused) = gpu_unfused() else { return };
    let mut rng = Rng::new(27);
    let (nq, n, d) = (30, 2000, 40);
    let q = super::random(&mut rng, nq, d);
    let mut corpus = rng.vec(n * d);
    for r in (0..n).step_by(13).skip(1) {
        let src = rng.below(r);
        corpus.copy_within(src * d..(src + 1) * d, r * d);
    }
    let skip: Vec<bool> = (0..n).map(|r| r % 17 == 5).collect();
    let run = |g: &Gpu, k: usize, chunks: &[usize], mask: Option<&[bool]>| {
        let mut s = g
            .scan(ScanSpec {
                queries: &q,
                k,
                rows: Rows::Normalize,
                skip: mask,
            })
            .unwrap();
        let mut start = 0;
        for &c in chunks.iter().cycle() {
            if start >= n {
                break;
            }
            let end = (start + c).min(n);
            s.push(&corpus[start * d..end * d], start).unwrap();
            start = end;
        }
        s.finish().unwrap().0
    };
    let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
    for (label, g) in topk_variants() {
        for k in [1, 10, 64] {
            for chunks in [vec![2000], vec![300, 7, 555]] {
                for mask in [None, Some(&skip[..])] {
                    let (got, want) = (run(g, k, &chunks, mask), run(unfused, k, &chunks, mask));
                    let what = format!("[{label}] k={k} {chunks:?} mask={}", mask.is_some());
                    assert_eq!(got.rows, want.rows, "{what}");
                    assert_eq!(bits(&got), bits(&want), "{what}");
                }
            }
        }
    }
}
