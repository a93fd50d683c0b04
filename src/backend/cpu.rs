//! The CPU backend: rayon across cores, the `gemm` crate for similarity
//! blocks. It is the reference the GPU backend is tested against, and the
//! fallback when there is no adapter, so it must be both exact and fast.

use rayon::prelude::*;

use super::{Backend, Bounds, MovedBlock, Pair, RowReport, Scan, ScanSpec, Segments, TopK, topk};
use crate::error::Result;
use crate::matrix::Matrix;
use crate::nudge::{nudge_m, nudge_n};

#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

/// `out = a . b^T` with `a` m x k and `b` n x k, row-major.
pub fn gemm_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    let parallelism = if m * n * k > 1 << 18 && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every strided access inside the slices:
    // dst is m x n (row stride n), lhs m x k (row stride k), rhs is b viewed
    // as k x n with column stride k.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `NUDGE_CHUNK_ROWS`: a hidden override of the rows per streamed chunk (the
/// corpus scan and the output pass), so tests can force many small chunks and
/// check that the result does not depend on the chunking.
pub fn chunk_rows_override() -> Option<usize> {
    std::env::var("NUDGE_CHUNK_ROWS")
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
}

/// L2-normalises one row in place (x / |x|, the way torch's `normalize`
/// divides); returns the norm. A zero row stays zero.
#[inline]
pub fn normalize_row(row: &mut [f32]) -> f32 {
    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        row.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// Normalises rows in parallel and reports zero and non-finite ones.
pub fn normalize_rows(rows: &mut [f32], cols: usize, first_row: usize) -> RowReport {
    if cols == 0 {
        return RowReport::default();
    }
    let norms: Vec<f32> = rows
        .par_chunks_mut(cols)
        .with_min_len(256)
        .map(normalize_row)
        .collect();
    report_norms(&norms, first_row)
}

fn report_norms(norms: &[f32], first_row: usize) -> RowReport {
    let mut r = RowReport::default();
    for (i, n) in norms.iter().enumerate() {
        if !n.is_finite() {
            r.non_finite.push(first_row + i);
        } else if *n == 0.0 {
            r.zero.push(first_row + i);
        }
    }
    r
}

/// Offers row `j` of every query's scores to its top-k, skipping masked rows.
fn select_topk(scores: &[f32], n: usize, first_row: usize, skip: Option<&[bool]>, top: &mut TopK) {
    let k = top.k;
    if k == 0 {
        return;
    }
    top.scores
        .par_chunks_mut(k)
        .zip(top.rows.par_chunks_mut(k))
        .enumerate()
        .for_each(|(q, (ts, tr))| {
            let row = &scores[q * n..(q + 1) * n];
            for (j, &s) in row.iter().enumerate() {
                // Cheap reject first: most rows do not enter the list.
                if s < ts[k - 1] {
                    continue;
                }
                let abs = first_row + j;
                if skip.is_some_and(|m| m[abs]) {
                    continue;
                }
                topk::push_into(ts, tr, s, abs as u32);
            }
        });
}

struct CpuScan<'a> {
    spec: ScanSpec<'a>,
    top: TopK,
    rows: Vec<f32>,
    scores: Vec<f32>,
}

impl Scan for CpuScan<'_> {
    fn push(&mut self, chunk: &[f32], first_row: usize) -> Result<RowReport> {
        let d = self.spec.queries.cols;
        let n = chunk.len() / d.max(1);
        let report = if self.spec.normalize {
            self.rows.clear();
            self.rows.extend_from_slice(chunk);
            normalize_rows(&mut self.rows, d, first_row)
        } else {
            let norms: Vec<f32> = chunk
                .par_chunks(d.max(1))
                .map(|r| {
                    if r.iter().all(|x| x.is_finite()) {
                        1.0
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            report_norms(&norms, first_row)
        };
        let rows = if self.spec.normalize {
            &self.rows[..]
        } else {
            chunk
        };
        let q = self.spec.queries;
        self.scores.resize(q.rows * n, 0.0);
        gemm_nt(&q.data, rows, q.rows, n, d, &mut self.scores);
        select_topk(&self.scores, n, first_row, self.spec.skip, &mut self.top);
        Ok(report)
    }

    fn finish(self: Box<Self>) -> Result<TopK> {
        Ok(self.top)
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn chunk_rows(&self, queries: usize, dim: usize) -> usize {
        if let Some(rows) = chunk_rows_override() {
            return rows;
        }
        // Keep the score block (queries x rows) and the chunk near 32 MiB each
        // so both stay cache-friendly and memory stays bounded.
        let by_scores = (8 << 20) / queries.max(1);
        let by_rows = (8 << 20) / dim.max(1);
        by_scores.min(by_rows).clamp(256, 65536)
    }

    fn normalize(&self, rows: &mut [f32], cols: usize, first_row: usize) -> Result<RowReport> {
        Ok(normalize_rows(rows, cols, first_row))
    }

    fn scan<'a>(&'a self, spec: ScanSpec<'a>) -> Result<Box<dyn Scan + 'a>> {
        let top = TopK::new(spec.queries.rows, spec.k);
        Ok(Box::new(CpuScan {
            spec,
            top,
            rows: Vec::new(),
            scores: Vec::new(),
        }))
    }

    fn similarity(&self, a: &Matrix, b: &Matrix) -> Result<Matrix> {
        assert_eq!(a.cols, b.cols);
        let mut out = Matrix::zeros(a.rows, b.rows);
        gemm_nt(&a.data, &b.data, a.rows, b.rows, a.cols, &mut out.data);
        Ok(out)
    }

    fn aggregate(&self, rows: &Matrix, segments: &Segments) -> Result<Matrix> {
        let d = rows.cols;
        let mut out = Matrix::zeros(segments.len(), d);
        if d == 0 {
            return Ok(out);
        }
        out.data.par_chunks_mut(d).enumerate().for_each(|(r, acc)| {
            for &i in segments.segment(r) {
                for (a, x) in acc.iter_mut().zip(rows.row(i as usize)) {
                    *a += x;
                }
            }
        });
        Ok(out)
    }

    fn nudge_m_bounds(
        &self,
        block: &MovedBlock,
        inv_norm: &[f32],
        pairs: &[Pair],
        bounds: &mut [Bounds],
    ) -> Result<()> {
        pairs
            .par_iter()
            .zip(bounds.par_iter_mut())
            .for_each(|(p, b)| {
                let s0 = block.s0.row(p.query as usize);
                let s1 = block.s1.row(p.query as usize);
                for j in 0..block.records.len() {
                    if block.records[j] == p.record {
                        continue;
                    }
                    nudge_m::tighten(b, p.s, p.t, s0[j], s1[j] * inv_norm[j]);
                }
            });
        Ok(())
    }

    fn nudge_n_merge(
        &self,
        block: &MovedBlock,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
    ) -> Result<()> {
        let width = block.records.len();
        tops.par_iter_mut().enumerate().for_each(|(g, top)| {
            let coef = &coef[g * width..(g + 1) * width];
            for q in 0..top.queries {
                let (s0, s1) = (block.s0.row(q), block.s1.row(q));
                for j in 0..width {
                    let (a, b) = coef[j];
                    top.push(q, a * s0[j] + b * s1[j], block.records[j]);
                }
            }
        });
        Ok(())
    }

    fn update_m(&self, d: &mut Matrix, g: &Matrix, gamma: f32) -> Result<()> {
        let cols = d.cols.max(1);
        d.data
            .par_chunks_mut(cols)
            .zip(g.data.par_chunks(cols))
            .for_each(|(d, g)| nudge_m::shift(d, g, gamma));
        Ok(())
    }

    fn update_n(&self, d: &mut Matrix, g: &Matrix, gamma: f64) -> Result<()> {
        let cols = d.cols.max(1);
        d.data
            .par_chunks_mut(cols)
            .zip(g.data.par_chunks(cols))
            .for_each(|(d, g)| nudge_n::rotate(d, g, gamma));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_nt_matches_naive() {
        let (m, n, k) = (5, 7, 13);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![0.0; m * n];
        gemm_nt(&a, &b, m, n, k, &mut out);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[j * k + t]).sum();
                assert!((out[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn scan_skips_masked_rows_and_reports_bad_ones() {
        let q = Matrix::new(1, 2, vec![1.0, 0.0]);
        let skip = vec![false, true, false, false];
        let cpu = Cpu;
        let mut scan = cpu
            .scan(ScanSpec {
                queries: &q,
                k: 2,
                normalize: true,
                skip: Some(&skip),
            })
            .unwrap();
        let r = scan.push(&[2.0, 0.0, 5.0, 0.0], 0).unwrap();
        assert_eq!(r, RowReport::default());
        let r = scan.push(&[0.0, 0.0, 0.6, 0.8], 2).unwrap();
        assert_eq!(r.zero, vec![2]);
        let top = scan.finish().unwrap();
        // Row 1 would score 1.0 but is masked; row 0 scores 1.0, row 3 0.6.
        assert_eq!(top.entries(0).collect::<Vec<_>>(), vec![(1.0, 0), (0.6, 3)]);
    }
}
