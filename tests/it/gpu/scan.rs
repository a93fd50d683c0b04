//! The streaming top-k scan (`src/backend/gpu/scan.rs`) against the CPU's:
//! chunks with fewer rows than k, exact ties (duplicate rows), masked rows,
//! zero and NaN rows, and the f16 corpus chunk; the rows normalised on the
//! device and on the host. Tolerances: see `super`.

use super::{Rng, assert_topk_close, random, score_tol, unit_rows};
use crate::common::backends::{backend_tests, gpu_f16, gpu_f16_packed, scan_devices};
use nudge::Cpu;
use nudge::backend::topk::EMPTY;
use nudge::backend::{Backend, RowReport, Rows, ScanSpec, TopK};
use nudge::matrix::Matrix;

/// Runs the same scan on both backends, pushing `chunks` rows at a time.
fn both_scans(
    g: &dyn Backend,
    q: &Matrix,
    corpus: &[f32],
    chunks: &[usize],
    k: usize,
    normalize: bool,
    skip: Option<&[bool]>,
) -> (TopK, TopK, RowReport, RowReport) {
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
        let mut report = RowReport::default();
        let mut start = 0;
        for &c in chunks {
            let end = (start + c).min(corpus.len() / d);
            report.extend(scan.push(&corpus[start * d..end * d], start).unwrap());
            start = end;
        }
        let (top, rest) = scan.finish().unwrap();
        report.extend(rest);
        out.push((top, report));
    }
    let (c, rc) = out.pop().unwrap();
    let (g, rg) = out.pop().unwrap();
    (g, c, rg, rc)
}

backend_tests! {
    fn scan_matches_cpu(g in scan_devices()) {
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
                    let (got, want, rg, rc) =
                        both_scans(g, &q, &corpus, &chunks, k, normalize, mask);
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

    fn scan_ties_go_to_the_lower_row(g in scan_devices()) {
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

    fn scan_reports_and_excludes_bad_rows(g in scan_devices()) {
        let d = 6;
        let mut corpus = vec![0.5f32; 8 * d];
        corpus[d..2 * d].fill(0.0);
        corpus[3 * d + 2] = f32::NAN;
        corpus[6 * d] = f32::NEG_INFINITY;
        let q = Matrix::new(2, d, vec![1.0; 2 * d]);
        // More chunks than the GPU scan has slots: the statuses it reads
        // back late still come back whole and in row order.
        for (normalize, chunks) in [(true, &[4, 4][..]), (false, &[4, 4]), (true, &[1; 8]), (false, &[3, 1, 2, 2])] {
            let (got, want, rg, rc) = both_scans(g, &q, &corpus, chunks, 8, normalize, None);
            assert_eq!(rg, rc, "normalize={normalize}");
            assert_eq!(rg.non_finite, vec![3, 6]);
            assert_eq!(rg.zero, if normalize { vec![1] } else { vec![] });
            assert_eq!(got.rows, want.rows, "normalize={normalize}");
            // NaN scores never enter a list (a -inf one may, as on the CPU).
            assert!(!got.rows.contains(&3));
        }
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

backend_tests! {
    fn scan_scores_do_not_depend_on_the_chunking(g in scan_devices()) {
        // The GEMM sums each score in ascending k whatever the tile, the
        // chunk or the position in it: lists are bit-identical however the
        // corpus is cut (ragged tiles, chunks narrower than a tile).
        let mut rng = Rng::new(8);
        let (nq, n, d, k) = (20, 700, 70, 9);
        let q = random(&mut rng, nq, d);
        let corpus = rng.vec(n * d);
        let scan = |chunks: &[usize]| {
            let mut s = g
                .scan(ScanSpec { queries: &q, k, rows: Rows::Normalize, skip: None })
                .unwrap();
            let mut start = 0;
            for &c in chunks {
                let end = (start + c).min(n);
                s.push(&corpus[start * d..end * d], start).unwrap();
                start = end;
            }
            s.finish().unwrap().0
        };
        let whole = scan(&[n]);
        for chunks in [vec![1, 130, 129, 440], vec![64; 11], vec![333, 367]] {
            let got = scan(&chunks);
            assert_eq!(got.rows, whole.rows, "{chunks:?}");
            let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&whole), "{chunks:?}");
        }
    }
}

/// An f16 corpus goes up as stored (`push_f16`): the same halves as its
/// f32 widening narrowed back, so the same lists and row reports bit for
/// bit, on the native and the packed f16 paths, with NaN, infinite and
/// zero rows; and the default `push_f16` (the CPU's) widens exactly.
#[test]
fn f16_rows_go_up_as_stored() {
    use half::f16;
    let mut rng = Rng::new(12);
    for (nq, n, d, k, chunks) in [
        (6, 400, 33, 5, vec![150, 250]),
        (4, 300, 384, 7, vec![300]),
        (3, 50, 8, 4, vec![7, 43]),
    ] {
        let q = random(&mut rng, nq, d);
        let mut halves: Vec<f16> = rng.vec(n * d).into_iter().map(f16::from_f32).collect();
        halves[10 * d + 1] = f16::NAN;
        halves[20 * d] = f16::INFINITY;
        halves[30 * d..31 * d].fill(f16::ZERO);
        let wide: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        let mut backends: Vec<(&str, &dyn Backend)> = vec![("cpu", &Cpu)];
        for (label, g) in [("gpu-f16", gpu_f16()), ("gpu-f16-packed", gpu_f16_packed())] {
            if let Some(g) = g {
                assert!(g.scan_takes_f16(), "{label}");
                backends.push((label, g));
            }
        }
        for (label, b) in backends {
            for normalize in [true, false] {
                let scan = |f16_rows: bool| {
                    let mut s = b
                        .scan(ScanSpec {
                            queries: &q,
                            k,
                            rows: if normalize {
                                Rows::Normalize
                            } else {
                                Rows::AsStored
                            },
                            skip: None,
                        })
                        .unwrap();
                    let (mut report, mut start) = (RowReport::default(), 0);
                    for &c in &chunks {
                        let r = start * d..(start + c) * d;
                        report.extend(if f16_rows {
                            s.push_f16(&halves[r], start).unwrap()
                        } else {
                            s.push(&wide[r], start).unwrap()
                        });
                        start += c;
                    }
                    let (top, rest) = s.finish().unwrap();
                    report.extend(rest);
                    (top, report)
                };
                let ((t16, r16), (t32, r32)) = (scan(true), scan(false));
                let what = format!("{label} {nq}x{n}x{d} normalize={normalize}");
                assert_eq!(t16.rows, t32.rows, "{what}");
                let bits = |t: &TopK| t.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&t16), bits(&t32), "{what}");
                assert_eq!(r16, r32, "{what}");
                assert_eq!(r16.non_finite, vec![10, 20], "{what}");
            }
        }
    }
}

/// `evaluate` streams an f16 file unwidened on the f16 devices, and
/// scores exactly what it scores on the file's rows widened to f32 (which
/// go up narrowed back), in small chunks and in one.
#[test]
fn evaluating_an_f16_file_equals_evaluating_its_widening() {
    use crate::common::{fixture, load};
    use nudge::EvalOptions;
    use nudge::data::Corpus;
    let l = load(&fixture("f16"));
    let corpus = l.inputs().corpus;
    assert!(corpus.is_f16());
    let wide = corpus.read_rows(0, corpus.rows()).unwrap();
    let widened = Corpus::f32(&wide, corpus.cols()).unwrap();
    for g in [gpu_f16(), gpu_f16_packed()].into_iter().flatten() {
        for (cosine, chunk_rows) in [(true, Some(7)), (false, Some(100)), (true, None)] {
            let opts = EvalOptions {
                ks: vec![10, 1],
                cosine,
                chunk_rows,
                ..EvalOptions::default()
            };
            let a = nudge::evaluate(g, corpus, &l.ds.queries, &l.dev, &opts).unwrap();
            let b = nudge::evaluate(g, widened, &l.ds.queries, &l.dev, &opts).unwrap();
            assert_eq!(a, b, "cosine={cosine} chunk_rows={chunk_rows:?}");
        }
    }
}
