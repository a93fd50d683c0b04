//! The one-shot steps (`src/backend/gpu/ops.rs`) against their CPU twins on
//! random inputs of awkward sizes: row counts that are not multiples of the
//! 64-wide tiles, dimensions that are not multiples of 4 or 16 (1, 3, 17,
//! 33) up to 1024, zero and NaN rows, exact ties, dropped pairs. Tolerances:
//! see `super`.

use super::{DOT_TOL, Rng, assert_topk_close, random, unit_rows};
use crate::common::backends::{backend_tests, every_gpu};
use nudge::backend::cpu::{self, Cpu};
use nudge::backend::{Backend, Bounds, MovedBlock, Pair, Segments, SlopeBlock, TopK};

fn bounds_close(a: &Bounds, b: &Bounds) -> bool {
    // One division each, allowed 2.5 ulp on a GPU.
    let close = |x: f32, y: f32| x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs());
    a.dropped == b.dropped && close(a.low, b.low) && close(a.high, b.high)
}

backend_tests! {
    fn normalize_matches_cpu_on_awkward_shapes(g in every_gpu()) {
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

    fn normalize_reports_zero_and_non_finite_rows(g in every_gpu()) {
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

    fn similarity_matches_cpu_gemm(g in every_gpu()) {
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

    fn aggregate_is_exact(g in every_gpu()) {
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

    fn nudge_m_bounds_match_cpu(g in every_gpu()) {
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
                    // Every fourth pair scores above every competitor, so
                    // that some stay possible (random pairs against hundreds
                    // of competitors all end hopeless).
                    s: if i % 4 == 1 { 2.0 + rng.f().abs() } else { rng.f() },
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
            nudge::fit::slopes(&mut t, &inv);
            let block = SlopeBlock {
                records: &records,
                s: &s0,
                t: &t,
            };
            // The rule itself over every competitor (all but the pair's own
            // record): what the device computes. The CPU stops tightening a
            // pair once it is hopeless, so it is held to the same
            // hopeless pairs and, for the others, the same bounds.
            use nudge::method::nudge_m::{hopeless, tighten};
            let full: Vec<Bounds> = pairs
                .iter()
                .zip(&start)
                .map(|(p, &b)| {
                    let mut b = b;
                    let q = p.query as usize;
                    for j in (0..width).filter(|&j| records[j] != p.record) {
                        tighten(&mut b, p.s, p.t, s0.row(q)[j], t.row(q)[j]);
                    }
                    b
                })
                .collect();
            let mut cpu = start.clone();
            let mut got = start.clone();
            Cpu.nudge_m_bounds(&block, &pairs, &mut cpu).unwrap();
            g.nudge_m_bounds(&block, &pairs, &mut got).unwrap();
            if npairs > 50 {
                assert!(
                    full.iter().any(|b| b.dropped),
                    "the test should cover dropped pairs"
                );
                assert!(
                    full.iter().any(|b| !hopeless(b)),
                    "the test should cover pairs that stay possible"
                );
            }
            for (i, ((a, c), b)) in got.iter().zip(&cpu).zip(&full).enumerate() {
                assert!(bounds_close(a, b), "pair {i}: {a:?} vs {b:?}");
                if hopeless(b) {
                    assert!(hopeless(c), "pair {i}: the CPU's {c:?} against {b:?}");
                } else {
                    assert_eq!(c, b, "pair {i}: the CPU");
                }
            }
        }
    }

    fn nudge_n_merge_matches_cpu(g in every_gpu()) {
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
                planes: None,
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

    fn nudge_m_block_on_the_device_equals_the_host_path(g in every_gpu()) {
        // S0 and the slopes kept on the device give the bounds the host
        // path gives, bit for bit: the same GEMM, the same one multiply per
        // slope, the same bounds kernel. Records 1 and 2 share their G, so
        // their slopes must come out equal on both paths.
        let mut rng = Rng::new(11);
        for (nq, width, d, npairs) in [(1, 1, 3, 1), (9, 70, 24, 20), (130, 300, 40, 260)] {
            let (q, rows_d, rows_g, inv_norm, records) = nudge_m_case(&mut rng, nq, width, d);
            let pairs: Vec<Pair> = (0..npairs)
                .map(|i| Pair {
                    query: (i % nq) as u32,
                    record: records[(i * 7) % width],
                    s: rng.f() * 0.5,
                    t: rng.f() * 0.3,
                })
                .collect();
            let start = vec![Bounds::OPEN; npairs];
            let rows = (&rows_d.data[..], &rows_g.data[..]);
            let run = |b: &dyn Backend, host: bool| {
                let mut bounds = start.clone();
                let mut scratch = Default::default();
                if host {
                    nudge::backend::nudge_m_block_via_host(
                        b, &q, rows, &records, &inv_norm, &pairs, &mut bounds, &mut scratch,
                    )
                } else {
                    b.nudge_m_block(&q, rows, &records, &inv_norm, &pairs, &mut bounds, &mut scratch)
                }
                .map(|_| bounds)
            };
            let (device, host) = (run(g, false), run(g, true));
            let (Ok(device), Ok(host)) = (&device, &host) else {
                assert!(device.is_err() && host.is_err(), "nq {nq}: one path failed");
                continue;
            };
            assert_eq!(device, host, "nq {nq}");
            // The host path's agreement with the CPU is the similarity
            // and bounds tests' (on random pairs like these, a bound that
            // divides by a slope difference of 1e-3 amplifies the GEMMs'
            // few-ulp differences past any fixed tolerance). Here: the
            // bounds did move (a lone column is the pair's own record).
            assert!(width == 1 || device.iter().any(|b| *b != Bounds::OPEN), "nq {nq}");
        }
    }

    fn nudge_m_first_block_on_the_device_equals_the_host_path(g in every_gpu()) {
        // The first block read on the device (only the pairs' own elements
        // come back) gives the pairs the own values the host path reads
        // from its copy of the block, and ends with the same bounds, bit
        // for bit. Records 1 and 2 share their G; query 0 has a pair on
        // each; every fifth pair's record is static (not in the block).
        let mut rng = Rng::new(13);
        for (nq, width, d, npairs) in [(1, 1, 3, 1), (9, 70, 24, 20), (130, 300, 40, 260)] {
            let (q, rows_d, rows_g, inv_norm, records) = nudge_m_case(&mut rng, nq, width, d);
            let mut start: Vec<Pair> = (0..npairs)
                .map(|i| {
                    let query = (i % nq) as u32;
                    if i % 5 == 4 {
                        Pair { query, record: 2, s: 0.05, t: 0.0 }
                    } else {
                        let record = records[(i * 7 + 1) % width];
                        Pair { query, record, s: f32::NAN, t: f32::NAN }
                    }
                })
                .collect();
            if width > 3 {
                for c in [1, 2] {
                    start.push(Pair { query: 0, record: records[c], s: f32::NAN, t: f32::NAN });
                }
            }
            // Bounds so far: a static record just below each pair.
            let static_bounds =
                |p: &Pair| nudge::method::nudge_m::static_bounds(p, Some((p.s - 0.01, 0)));
            let rows = (&rows_d.data[..], &rows_g.data[..]);
            let run = |b: &dyn Backend, host: bool| {
                let mut pairs = start.clone();
                let mut scratch = Default::default();
                let bounds = if host {
                    nudge::backend::nudge_m_first_block_via_host(
                        b, &q, rows, &records, &inv_norm, &mut pairs, &static_bounds,
                        &mut scratch,
                    )
                } else {
                    b.nudge_m_first_block(
                        &q, rows, &records, &inv_norm, &mut pairs, &static_bounds, &mut scratch,
                    )
                };
                bounds.map(|bounds| (bounds, pairs))
            };
            let (device, host) = (run(g, false), run(g, true));
            let (Ok(device), Ok(host)) = (&device, &host) else {
                assert!(device.is_err() && host.is_err(), "nq {nq}: one path failed");
                continue;
            };
            assert_eq!(device.0, host.0, "nq {nq}: bounds");
            let bits = |v: &[Pair]| {
                v.iter().map(|p| (p.query, p.record, p.s.to_bits(), p.t.to_bits())).collect::<Vec<_>>()
            };
            assert_eq!(bits(&device.1), bits(&host.1), "nq {nq}: own values");
            assert!(host.1.iter().all(|p| !p.s.is_nan() && !p.t.is_nan()), "nq {nq}: every own value read");
            if width > 3 {
                // Same G: the same slope bits for the same query.
                let n = host.1.len();
                assert_eq!(host.1[n - 2].t.to_bits(), host.1[n - 1].t.to_bits(), "nq {nq}");
            }
        }
    }

    fn nudge_n_block_on_the_device_equals_the_host_path(g in every_gpu()) {
        // S0 and S1 kept on the device and merged there give the lists the
        // host path gives (the same kernels, so the same bits), and the
        // CPU's within an FMA's rounding.
        let mut rng = Rng::new(10);
        for (nq, width, d, gammas, k) in [(1, 1, 3, 1, 1), (9, 70, 24, 4, 2), (130, 300, 40, 25, 3)] {
            let q = random(&mut rng, nq, d);
            let rows_d = unit_rows(random(&mut rng, width, d));
            let rows_g = random(&mut rng, width, d);
            let records: Vec<u32> = (0..width as u32).map(|j| j * 3 + 1).collect();
            let coef: Vec<(f32, f32)> = (0..gammas * width)
                .map(|_| (1.0 - rng.f().abs() * 0.5, rng.f().abs() * 0.3))
                .collect();
            let mut start = TopK::new(nq, k);
            for i in 0..nq {
                start.push(i, rng.f(), 100_000 + i as u32);
            }
            let rows = (&rows_d.data[..], &rows_g.data[..]);
            let run = |b: &dyn Backend, host: bool| {
                let mut tops = vec![start.clone(); gammas];
                let mut scratch = Default::default();
                if host {
                    nudge::backend::nudge_n_block_via_host(
                        b, &q, rows, &records, None, &coef, &mut tops, &mut scratch,
                    )
                } else {
                    b.nudge_n_block(&q, rows, &records, None, &coef, &mut tops, &mut scratch)
                }
                .map(|_| tops)
            };
            let (device, host) = (run(g, false), run(g, true));
            // A device too small for the lists fails the same either way.
            let (Ok(device), Ok(host)) = (&device, &host) else {
                assert!(device.is_err() && host.is_err(), "nq {nq}: one path failed");
                continue;
            };
            let cpu = run(&Cpu, false).unwrap();
            for gi in 0..gammas {
                assert_eq!(device[gi].rows, host[gi].rows, "nq {nq} gamma {gi}");
                assert_eq!(device[gi].scores, host[gi].scores, "nq {nq} gamma {gi}");
                assert_topk_close(&device[gi], &cpu[gi], 1e-5, &format!("nq {nq} gamma {gi}"));
            }
        }
    }

    fn update_m_matches_cpu(g in every_gpu()) {
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

    fn update_n_matches_cpu(g in every_gpu()) {
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
}

/// A NUDGE-M block of `width` moved records for `nq` dev queries in `d`
/// dimensions: the queries, unit rows, gradients (records 1 and 2 share
/// theirs), the gradients' inverse norms and the records' corpus rows.
fn nudge_m_case(
    rng: &mut Rng,
    nq: usize,
    width: usize,
    d: usize,
) -> (
    nudge::matrix::Matrix,
    nudge::matrix::Matrix,
    nudge::matrix::Matrix,
    Vec<f32>,
    Vec<u32>,
) {
    let q = random(rng, nq, d);
    let rows_d = unit_rows(random(rng, width, d));
    let mut rows_g = random(rng, width, d);
    if width > 3 {
        let g1 = rows_g.row(1).to_vec();
        rows_g.row_mut(2).copy_from_slice(&g1);
    }
    let inv_norm: Vec<f32> = (0..width)
        .map(|j| 1.0 / rows_g.row(j).iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    let records: Vec<u32> = (0..width as u32).map(|j| j * 3 + 1).collect();
    (q, rows_d, rows_g, inv_norm, records)
}
