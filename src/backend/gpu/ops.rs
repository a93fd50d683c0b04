//! The one-shot steps (normalize, similarity, aggregate, NUDGE-M bounds,
//! NUDGE-N merge, updates): upload, dispatch, read back.
//!
//! Each input larger than one storage binding is cut into pieces here, in a
//! way that cannot change the result (row blocks for row-wise steps, column
//! sub-blocks for the order-free bound and top-k reductions), so the kernels
//! never see more than `device.limits()` allows.
//!
//! Each step makes its parameter blocks once per call and rewrites them per
//! piece (see `Uniform`), rather than allocating one per dispatch; buffers
//! are bound by name through the kernel's bindings struct (see `kernel`).

use std::borrow::Cow;

use bytemuck::{Pod, Zeroable};

use super::context::Uniform;
use super::kernel::{
    AggParams, Aggregate, BoundsParams, Gemm, GemmF16, GemmF16Native, GemmParams, GemmTiled,
    MergeParams, NormParams, Normalize, NudgeMBounds, NudgeNPartial, Pick, PickParams, SlopeParams,
    Slopes, TiledKernels, TiledParams, TopkMerge, TopkParams, UpdateM, UpdateN, UpdateParams, grid,
    grid_items,
};
use super::tiled::Tile;
use super::{Gpu, d4, pad_block, pad_rows};
use crate::backend::{Bounds, MovedBlock, Pair, RowReport, Segments, SlopeBlock, TopK};
use crate::error::{Error, Result};
use crate::matrix::Matrix;

/// Top-k segment length: long enough that the partial lists stay small,
/// short enough that a chunk is spread over many invocations.
pub(super) const SEG: usize = 128;
/// Output tile side of `similarity.wgsl`.
pub(super) const TILE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuPair {
    query: u32,
    record: u32,
    s: f32,
    t: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuBounds {
    low: f32,
    high: f32,
    dropped: u32,
    pad: u32,
}

fn too_big(what: &str) -> Error {
    Error::gpu(format!(
        "{what} does not fit in one GPU storage binding on this device; run on the CPU instead"
    ))
}

/// The status codes of `normalize.wgsl` as a report.
pub(super) fn report_from_status(status: &[u32], first_row: usize, zero_counts: bool) -> RowReport {
    let mut r = RowReport::default();
    for (i, &s) in status.iter().enumerate() {
        match s {
            2 => r.non_finite.push(first_row + i),
            1 if zero_counts => r.zero.push(first_row + i),
            _ => {}
        }
    }
    r
}

fn submit(gpu: &Gpu, enc: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
    gpu.ctx.queue.submit([enc.finish()])
}

fn encoder(gpu: &Gpu) -> wgpu::CommandEncoder {
    gpu.ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
}

/// [`crate::backend::Backend::normalize`]: rows in blocks of one binding.
pub fn normalize(gpu: &Gpu, rows: &mut [f32], cols: usize, first_row: usize) -> Result<RowReport> {
    let mut report = RowReport::default();
    if cols == 0 || rows.is_empty() {
        return Ok(report);
    }
    let ctx = &gpu.ctx;
    let n = rows.len() / cols;
    let w = d4(cols) * 4;
    let per = (gpu.budget() as usize / (w * 4)).max(1);
    if w * 4 > gpu.max_binding() as usize {
        return Err(too_big("one corpus row"));
    }
    let params = Uniform::new(ctx);
    for start in (0..n).step_by(per) {
        let cnt = per.min(n - start);
        let slice = &mut rows[start * cols..(start + cnt) * cols];
        let buf = gpu.put("rows", &pad_rows(slice, cols));
        let status = gpu.scratch("status", cnt as u64 * 4);
        params.set(
            ctx,
            &NormParams {
                rows: cnt as u32,
                cols: cols as u32,
                stride: w as u32,
                check_only: 0,
            },
        );
        let mut enc = encoder(gpu);
        gpu.k.normalize.dispatch(
            ctx,
            &mut enc,
            Normalize {
                p: &params,
                x: &buf,
                status: &status,
            },
            grid(cnt),
        );
        submit(gpu, enc);
        let out: Vec<f32> = gpu.read(&buf, (cnt * w * 4) as u64)?;
        let st: Vec<u32> = gpu.read(&status, cnt as u64 * 4)?;
        for (dst, src) in slice.chunks_exact_mut(cols).zip(out.chunks_exact(w)) {
            dst.copy_from_slice(&src[..cols]);
        }
        report.extend(report_from_status(&st, first_row + start, true));
    }
    Ok(report)
}

/// Records one GEMM `c = a . b^T` of `m x n` (rows padded to `w4` vec4s),
/// with `b` as f16 (native where the device has it, else packed pairs) when
/// `f16`. `params` is the caller's block, rewritten here: one per step or
/// scan, since a submission reads the value last written before it.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_gemm(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    params: &Uniform<GemmParams>,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    (m, n, w4): (usize, usize, usize),
    f16: bool,
) {
    let ctx = &gpu.ctx;
    params.set(
        ctx,
        &GemmParams {
            m: m as u32,
            n: n as u32,
            d4: w4 as u32,
            ldc: n as u32,
        },
    );
    let groups = (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32);
    let p = params;
    // The useful work, 2 m n d (padding columns of d included).
    let flops = 2.0 * m as f64 * n as f64 * (w4 * 4) as f64;
    match (&gpu.k.gemm_f16_native, f16) {
        (Some(k), true) => {
            k.dispatch_counted(ctx, enc, GemmF16Native { p, a, c, b16h: b }, groups, flops)
        }
        (None, true) => {
            let b = GemmF16 { p, a, c, b16: b };
            gpu.k.gemm_f16.dispatch_counted(ctx, enc, b, groups, flops)
        }
        (_, false) => gpu
            .k
            .gemm
            .dispatch_counted(ctx, enc, Gemm { p, a, b, c }, groups, flops),
    }
}

/// Records the register-blocked GEMM `c = a . b^T` on shapes already
/// padded to the device's tile (`m`, `n` rows, `w4` vec4s per row, both
/// multiples of the tile; `c` has `n` columns).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_gemm_tiled(
    gpu: &Gpu,
    tk: &TiledKernels,
    enc: &mut wgpu::CommandEncoder,
    params: &Uniform<TiledParams>,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    (m, n, w4): (usize, usize, usize),
    flops: f64,
) {
    let t = tk.tile;
    debug_assert!(
        m % t.bm as usize == 0 && n % t.bn as usize == 0 && (w4 * 4) % t.bk as usize == 0,
        "tiled GEMM on unpadded shapes"
    );
    let ctx = &gpu.ctx;
    params.set(
        ctx,
        &TiledParams {
            m: m as u32,
            n: n as u32,
            d4: w4 as u32,
            ldc4: (n / 4) as u32,
        },
    );
    let groups = ((n / t.bn as usize) as u32, (m / t.bm as usize) as u32);
    tk.gemm_tiled
        .dispatch_counted(ctx, enc, GemmTiled { p: params, a, b, c }, groups, flops);
}

/// Most rows one GEMM dispatch may cover in either operand (the workgroup
/// grid is at most 65535 tiles per dimension).
pub(super) const MAX_GEMM_ROWS: usize = 65535 * TILE;

/// [`crate::backend::Backend::similarity`]: `a . b^T` in blocks that fit,
/// by the register-blocked GEMM the scan runs (the tuned tile for this d
/// and query count), on operands padded to its tile; the simple GEMM where
/// a padded block of either operand would not fit one binding (tiny test
/// limits). Every element is one dot product summed in ascending k by one
/// kernel, so it has the same bits whatever else is in the call, as the
/// NUDGE-M search needs.
pub fn similarity(gpu: &Gpu, a: &Matrix, b: &Matrix) -> Result<Matrix> {
    if a.cols != b.cols {
        panic!(
            "similarity of {}-column and {}-column matrices",
            a.cols, b.cols
        );
    }
    let (m, n, d) = (a.rows, b.rows, a.cols);
    let mut out = Matrix::zeros(m, n);
    if m == 0 || n == 0 || d == 0 {
        return Ok(out);
    }
    let budget = gpu.budget() as usize;
    let tk = gpu.tiled_for(d, m)?;
    let t = tk.tile;
    let wt = t.width(d);
    // Rows per block of each operand: whole tiles within one binding, a
    // grid within wgpu's limit, and the output block within one binding.
    let (bm, bn) = (t.bm as usize, t.bn as usize);
    let rows_fit = budget / (wt * 4);
    let ma = Tile::pad(m, t.bm).min(rows_fit / bm * bm).min(65535 * bm);
    let nb = match (budget / 4).checked_div(ma) {
        Some(out_rows) => Tile::pad(n, t.bn)
            .min(rows_fit.min(out_rows) / bn * bn)
            .min(65535 * bn),
        None => 0,
    };
    if ma == 0 || nb == 0 {
        return similarity_simple(gpu, a, b, out);
    }
    let params = Uniform::new(&gpu.ctx);
    for a0 in (0..m).step_by(ma) {
        let mc = ma.min(m - a0);
        let mp = Tile::pad(mc, t.bm);
        let abuf = gpu.put("a", &pad_block(&a.data[a0 * d..(a0 + mc) * d], d, wt, mp));
        for b0 in (0..n).step_by(nb) {
            let nc = nb.min(n - b0);
            let np = Tile::pad(nc, t.bn);
            let bbuf = gpu.put("b", &pad_block(&b.data[b0 * d..(b0 + nc) * d], d, wt, np));
            let cbuf = gpu.scratch("c", (mp * np * 4) as u64);
            let mut enc = encoder(gpu);
            let flops = 2.0 * mc as f64 * nc as f64 * d as f64;
            record_gemm_tiled(
                gpu,
                &tk,
                &mut enc,
                &params,
                &abuf,
                &bbuf,
                &cbuf,
                (mp, np, wt / 4),
                flops,
            );
            submit(gpu, enc);
            let c: Vec<f32> = gpu.read(&cbuf, (mc * np * 4) as u64)?;
            for i in 0..mc {
                out.data[(a0 + i) * n + b0..(a0 + i) * n + b0 + nc]
                    .copy_from_slice(&c[i * np..i * np + nc]);
            }
        }
    }
    Ok(out)
}

/// [`similarity`] by the simple GEMM, for limits too small for a padded
/// tile.
fn similarity_simple(gpu: &Gpu, a: &Matrix, b: &Matrix, mut out: Matrix) -> Result<Matrix> {
    let (m, n, d) = (a.rows, b.rows, a.cols);
    let w = d4(d);
    let budget = gpu.budget() as usize;
    let rows_fit = budget / (w * 16);
    if rows_fit == 0 {
        return Err(too_big("one embedding row"));
    }
    let ma = m.min(rows_fit).min(MAX_GEMM_ROWS);
    // budget / 4 / ma >= 4 since ma <= rows_fit.
    let nb = n.min(rows_fit).min(budget / 4 / ma).min(MAX_GEMM_ROWS);
    let params = Uniform::new(&gpu.ctx);
    for a0 in (0..m).step_by(ma) {
        let mc = ma.min(m - a0);
        let abuf = gpu.put("a", &pad_rows(&a.data[a0 * d..(a0 + mc) * d], d));
        for b0 in (0..n).step_by(nb) {
            let nc = nb.min(n - b0);
            let bbuf = gpu.put("b", &pad_rows(&b.data[b0 * d..(b0 + nc) * d], d));
            let cbuf = gpu.scratch("c", (mc * nc * 4) as u64);
            let mut enc = encoder(gpu);
            record_gemm(
                gpu,
                &mut enc,
                &params,
                &abuf,
                &bbuf,
                &cbuf,
                (mc, nc, w),
                false,
            );
            submit(gpu, enc);
            let c: Vec<f32> = gpu.read(&cbuf, (mc * nc * 4) as u64)?;
            for i in 0..mc {
                out.data[(a0 + i) * n + b0..(a0 + i) * n + b0 + nc]
                    .copy_from_slice(&c[i * nc..(i + 1) * nc]);
            }
        }
    }
    Ok(out)
}

/// [`crate::backend::Backend::aggregate`]: segment sums, bit for bit the
/// CPU's (long segments are summed in pieces that carry the sum so far).
pub fn aggregate(gpu: &Gpu, rows: &Matrix, seg: &Segments) -> Result<Matrix> {
    let d = rows.cols;
    let s = seg.len();
    let mut out = Matrix::zeros(s, d);
    if d == 0 || s == 0 {
        return Ok(out);
    }
    let off = &seg.offsets;
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(off.windows(2).any(|w| w[0] > w[1]) || off[s] as usize > seg.indices.len()),
        "aggregate: segment offsets are not ascending"
    );
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(seg.indices.iter().any(|&i| i as usize >= rows.rows)),
        "aggregate: a segment index is out of range"
    );
    let ctx = &gpu.ctx;
    let w = d4(d);
    let row_bytes = w * 16;
    let budget = gpu.budget() as usize;
    let max_rows = budget / row_bytes;
    if max_rows == 0 {
        return Err(too_big("one embedding row"));
    }
    // Rows that fit are uploaded once; otherwise each batch gathers the rows
    // it sums, in CSR order.
    let direct = rows.rows <= max_rows;
    let all = direct.then(|| gpu.put("rows", &pad_rows(&rows.data, d)));
    let max_nnz = if direct { budget / 4 } else { max_rows };
    let mut r0 = 0;
    // Rows of segment r0 already summed, when it is too long for one piece.
    let mut done = 0usize;
    let params = Uniform::new(ctx);
    while r0 < s {
        let left = off[r0 + 1] as usize - off[r0] as usize - done;
        let (r1, o0, o1, carry) = if done == 0 && left <= max_nnz {
            // As many whole segments as fit.
            let mut r1 = r0 + 1;
            while r1 < s && r1 - r0 < max_rows && (off[r1 + 1] - off[r0]) as usize <= max_nnz {
                r1 += 1;
            }
            (r1, off[r0] as usize, off[r1] as usize, false)
        } else {
            // One long segment in pieces; each piece starts from the sum so
            // far, so the additions keep their order and the result is the
            // one-piece sum exactly.
            let o0 = off[r0] as usize + done;
            (r0 + 1, o0, o0 + left.min(max_nnz), done > 0)
        };
        let local_off: Vec<u32> = if r1 == r0 + 1 {
            vec![0, (o1 - o0) as u32]
        } else {
            off[r0..=r1].iter().map(|o| o - off[r0]).collect()
        };
        let (rbuf, idx): (Cow<wgpu::Buffer>, Vec<u32>) = match &all {
            Some(b) => (Cow::Borrowed(b), seg.indices[o0..o1].to_vec()),
            None => {
                let mut g = Vec::with_capacity((o1 - o0) * d);
                for &i in &seg.indices[o0..o1] {
                    g.extend_from_slice(rows.row(i as usize));
                }
                (
                    Cow::Owned(gpu.put("gathered", &pad_rows(&g, d))),
                    (0..(o1 - o0) as u32).collect(),
                )
            }
        };
        let segs = r1 - r0;
        let obuf = if carry {
            gpu.put("sums", &pad_rows(out.row(r0), d))
        } else {
            gpu.scratch("sums", (segs * row_bytes) as u64)
        };
        params.set(
            ctx,
            &AggParams {
                segments: segs as u32,
                d4: w as u32,
                carry: carry as u32,
                pad: 0,
            },
        );
        let obuf_off = gpu.put("offsets", &local_off);
        let ibuf = gpu.put("indices", &idx);
        let mut enc = encoder(gpu);
        gpu.k.aggregate.dispatch(
            ctx,
            &mut enc,
            Aggregate {
                p: &params,
                rows: &rbuf,
                offsets: &obuf_off,
                indices: &ibuf,
                out: &obuf,
            },
            grid_items(segs * w),
        );
        submit(gpu, enc);
        let sums: Vec<f32> = gpu.read(&obuf, (segs * row_bytes) as u64)?;
        for (i, src) in sums.chunks_exact(w * 4).enumerate() {
            out.row_mut(r0 + i).copy_from_slice(&src[..d]);
        }
        if segs == 1 && o1 < off[r0 + 1] as usize {
            done += o1 - o0;
        } else {
            done = 0;
            r0 = r1;
        }
    }
    Ok(out)
}

/// Columns `c0..c1` of a row-major matrix, borrowed when that is all of it.
fn columns(m: &Matrix, c0: usize, c1: usize) -> Cow<'_, [f32]> {
    if c0 == 0 && c1 == m.cols {
        return Cow::Borrowed(&m.data);
    }
    let mut out = Vec::with_capacity(m.rows * (c1 - c0));
    for r in 0..m.rows {
        out.extend_from_slice(&m.row(r)[c0..c1]);
    }
    Cow::Owned(out)
}

fn check_block(block: &MovedBlock) -> Result<()> {
    let w = block.records.len();
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(block.s0.cols != w || block.s1.cols != w || block.s0.rows != block.s1.rows),
        "moved block: S0, S1 and the record list disagree in shape"
    );
    Ok(())
}

/// The pairs and their running bounds in the pooled "pairs" and "bounds"
/// buffers, in the layout of `nudge_m_bounds.wgsl`.
fn put_pairs(gpu: &Gpu, pairs: &[Pair], bounds: &[Bounds]) -> (wgpu::Buffer, wgpu::Buffer) {
    let gp: Vec<GpuPair> = pairs
        .iter()
        .map(|p| GpuPair {
            query: p.query,
            record: p.record,
            s: p.s,
            t: p.t,
        })
        .collect();
    let gb: Vec<GpuBounds> = bounds
        .iter()
        .map(|b| GpuBounds {
            low: b.low,
            high: b.high,
            dropped: b.dropped as u32,
            pad: 0,
        })
        .collect();
    (gpu.put("pairs", &gp), gpu.put("bounds", &gb))
}

/// Reads the bounds of [`put_pairs`] back into `bounds`.
fn read_bounds(gpu: &Gpu, buf: &wgpu::Buffer, bounds: &mut [Bounds]) -> Result<()> {
    let back: Vec<GpuBounds> = gpu.read(buf, (bounds.len() * 16) as u64)?;
    for (b, g) in bounds.iter_mut().zip(back) {
        *b = Bounds {
            low: g.low,
            high: g.high,
            dropped: g.dropped != 0,
        };
    }
    Ok(())
}

/// [`crate::backend::Backend::nudge_m_bounds`]: pairs in blocks, the block's
/// columns in pieces (the bounds reduction is order-free).
pub fn nudge_m_bounds(
    gpu: &Gpu,
    block: &SlopeBlock,
    pairs: &[Pair],
    bounds: &mut [Bounds],
) -> Result<()> {
    let width = block.records.len();
    let q = block.s.rows;
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(block.s.cols != width || block.t.cols != width || block.t.rows != q),
        "slope block: S0, slopes and the record list disagree in shape"
    );
    if width == 0 || pairs.is_empty() {
        return Ok(());
    }
    // A caller that breaks this is a bug, not bad input.
    assert!(
        bounds.len() == pairs.len(),
        "nudge-m bounds: argument lengths disagree"
    );
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(pairs.iter().any(|p| p.query as usize >= q)),
        "nudge-m bounds: a pair's query is out of range"
    );
    let ctx = &gpu.ctx;
    let budget = gpu.budget() as usize;
    let cols_fit = budget / (q * 4);
    if cols_fit == 0 {
        return Err(too_big("one row of S0"));
    }
    let max_pairs = budget / 16;
    let params = Uniform::new(ctx);
    for p0 in (0..pairs.len()).step_by(max_pairs) {
        let p1 = (p0 + max_pairs).min(pairs.len());
        let (pbuf, bbuf) = put_pairs(gpu, &pairs[p0..p1], &bounds[p0..p1]);
        for c0 in (0..width).step_by(cols_fit) {
            let c1 = (c0 + cols_fit).min(width);
            let s0 = gpu.put("s0", &columns(block.s, c0, c1));
            // Scaled S1, in the pooled S1 buffer.
            let t = gpu.put("s1", &columns(block.t, c0, c1));
            let rec = gpu.put("records", &block.records[c0..c1]);
            params.set(
                ctx,
                &BoundsParams {
                    pairs: (p1 - p0) as u32,
                    width: (c1 - c0) as u32,
                    ld: (c1 - c0) as u32,
                    pad: 0,
                },
            );
            let mut enc = encoder(gpu);
            gpu.k.nudge_m_bounds.dispatch(
                ctx,
                &mut enc,
                NudgeMBounds {
                    p: &params,
                    pairs: &pbuf,
                    s0: &s0,
                    slope: &t,
                    records: &rec,
                    bounds: &bbuf,
                },
                grid_items(p1 - p0),
            );
            submit(gpu, enc);
        }
        read_bounds(gpu, &bbuf, &mut bounds[p0..p1])?;
    }
    Ok(())
}

/// [`crate::backend::Backend::nudge_n_merge`]: the block's columns in
/// pieces that fit, each uploaded and merged ([`Merge`]).
pub fn nudge_n_merge(
    gpu: &Gpu,
    block: &MovedBlock,
    coef: &[(f32, f32)],
    tops: &mut [TopK],
) -> Result<()> {
    check_block(block)?;
    let width = block.records.len();
    // A caller that breaks this is a bug, not bad input.
    assert!(
        tops.first().is_none_or(|t| t.queries == block.s0.rows),
        "nudge-n merge: the lists and S0 have different query counts"
    );
    let Some(merge) = Merge::new(gpu, tops, coef, width)? else {
        return Ok(());
    };
    for c0 in (0..width).step_by(merge.cols_fit) {
        let c1 = (c0 + merge.cols_fit).min(width);
        let s0 = gpu.put("s0", &columns(block.s0, c0, c1));
        let s1 = gpu.put("s1", &columns(block.s1, c0, c1));
        let mut enc = encoder(gpu);
        merge.piece(&mut enc, (&s0, &s1, c1 - c0), c0..c1, coef, block.records);
        submit(gpu, enc);
    }
    merge.finish(tops)
}

/// A block's S0 and S1, computed on the device into the pooled "s0" and
/// "s1" buffers, rows `ld` floats apart.
struct OnDevice {
    s0: wgpu::Buffer,
    s1: wgpu::Buffer,
    ld: usize,
    /// The GEMMs' parameter block, kept until the submission.
    _params: Uniform<TiledParams>,
}

/// Records `S0 = q_dev . rows.0^T` and `S1 = q_dev . rows.1^T` (`n` rows
/// each) by the tiled GEMM into `enc`, for the moved-set steps to read on
/// the device. `None` when the padded operands and outputs, or `extra`
/// more bytes, do not fit one binding each, or the grid is too large.
fn gemm_pair(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    q_dev: &Matrix,
    (rows_d, rows_g): (&[f32], &[f32]),
    n: usize,
    extra: usize,
) -> Result<Option<OnDevice>> {
    let (m, d) = (q_dev.rows, q_dev.cols);
    let budget = gpu.budget() as usize;
    let tk = gpu.tiled_for(d, m)?;
    let t = tk.tile;
    let wt = t.width(d);
    let (mp, np) = (Tile::pad(m, t.bm), Tile::pad(n, t.bn));
    let fits = [mp * wt * 4, np * wt * 4, mp * np * 4, extra]
        .iter()
        .all(|&b| b <= budget)
        && mp / t.bm as usize <= 65535
        && np / t.bn as usize <= 65535;
    if !fits {
        return Ok(None);
    }
    let pad = |data: &[f32], rows: usize| pad_block(data, d, wt, rows);
    // Pooled by role: each operand needs a role of its own.
    let a = gpu.put("a", &pad(&q_dev.data, mp));
    let bd = gpu.put("moved rows", &pad(rows_d, np));
    let bg = gpu.put("moved gradients", &pad(rows_g, np));
    let s0 = gpu.scratch("s0", (mp * np * 4) as u64);
    let s1 = gpu.scratch("s1", (mp * np * 4) as u64);
    // Both GEMMs have the same shape: one parameter block serves both.
    let params = Uniform::new(&gpu.ctx);
    let flops = 2.0 * m as f64 * n as f64 * d as f64;
    for (b, c) in [(&bd, &s0), (&bg, &s1)] {
        record_gemm_tiled(gpu, &tk, enc, &params, &a, b, c, (mp, np, wt / 4), flops);
    }
    Ok(Some(OnDevice {
        s0,
        s1,
        ld: np,
        _params: params,
    }))
}

/// [`crate::backend::Backend::nudge_m_block`] on the device: S0 and S1 by
/// the tiled GEMM into device buffers, S1 scaled into the slopes there
/// (`slopes.wgsl`), the bounds taken from there; only the bounds come
/// back. `Ok(false)` when the block does not fit that way (then the caller
/// takes the host path).
pub fn nudge_m_block(
    gpu: &Gpu,
    q_dev: &Matrix,
    (rows_d, rows_g): (&[f32], &[f32]),
    records: &[u32],
    inv_norm: &[f32],
    pairs: &[Pair],
    bounds: &mut [Bounds],
) -> Result<bool> {
    let (m, d, n) = (q_dev.rows, q_dev.cols, records.len());
    // A caller that breaks this is a bug, not bad input.
    assert!(
        rows_d.len() == n * d && rows_g.len() == n * d && inv_norm.len() == n,
        "nudge-m block: rows, norms and records disagree"
    );
    assert!(
        bounds.len() == pairs.len() && pairs.iter().all(|p| (p.query as usize) < m),
        "nudge-m block: pairs, bounds and queries disagree"
    );
    if m == 0 || n == 0 || d == 0 || pairs.is_empty() {
        return Ok(true);
    }
    let mut enc = encoder(gpu);
    let Some(dev) = gemm_pair(gpu, &mut enc, q_dev, (rows_d, rows_g), n, pairs.len() * 16)? else {
        return Ok(false);
    };
    let _slopes = record_slopes(gpu, &mut enc, &dev, inv_norm, m);
    let (_bounds, bbuf) = record_bounds(gpu, &mut enc, &dev, records, pairs, bounds);
    submit(gpu, enc);
    read_bounds(gpu, &bbuf, bounds)?;
    Ok(true)
}

/// Records the scaling of the block's S1 into the NUDGE-M slopes on the
/// device (`slopes.wgsl`), for `m` dev queries; the parameters returned
/// stay alive until the encoder is submitted.
fn record_slopes(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    dev: &OnDevice,
    inv_norm: &[f32],
    m: usize,
) -> Uniform<SlopeParams> {
    let (ctx, n) = (&gpu.ctx, inv_norm.len());
    let inv = gpu.put("inverse norms", inv_norm);
    let sp = Uniform::new(ctx);
    sp.set(
        ctx,
        &SlopeParams {
            rows: m as u32,
            width: n as u32,
            ld: dev.ld as u32,
            pad: 0,
        },
    );
    let scale = Slopes {
        p: &sp,
        s1: &dev.s1,
        inv_norm: &inv,
    };
    gpu.k.slopes.dispatch(ctx, enc, scale, grid_items(m * n));
    sp
}

/// Records the bounds kernel (`nudge_m_bounds.wgsl`) of `pairs` against
/// the block kept on the device, from `bounds` so far; returns its
/// parameters (alive until the submit) and the buffer the bounds end in.
fn record_bounds(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    dev: &OnDevice,
    records: &[u32],
    pairs: &[Pair],
    bounds: &[Bounds],
) -> (Uniform<BoundsParams>, wgpu::Buffer) {
    let ctx = &gpu.ctx;
    let rec = gpu.put("records", records);
    let (pbuf, bbuf) = put_pairs(gpu, pairs, bounds);
    let bp = Uniform::new(ctx);
    bp.set(
        ctx,
        &BoundsParams {
            pairs: pairs.len() as u32,
            width: records.len() as u32,
            ld: dev.ld as u32,
            pad: 0,
        },
    );
    let b = NudgeMBounds {
        p: &bp,
        pairs: &pbuf,
        s0: &dev.s0,
        slope: &dev.s1,
        records: &rec,
        bounds: &bbuf,
    };
    gpu.k
        .nudge_m_bounds
        .dispatch(ctx, enc, b, grid_items(pairs.len()));
    (bp, bbuf)
}

/// [`crate::backend::Backend::nudge_m_first_block`] on the device: S0 and
/// the slopes as [`nudge_m_block`] makes them, then only the pairs' own
/// elements come back (`pick.wgsl`); they become the pairs' own values,
/// `static_bounds` their bounds so far, and the bounds kernel takes the
/// block into those from the same device buffers. `Ok(None)` when the block does
/// not fit that way (then the caller takes the host path).
#[allow(clippy::too_many_arguments)]
pub fn nudge_m_first_block(
    gpu: &Gpu,
    q_dev: &Matrix,
    (rows_d, rows_g): (&[f32], &[f32]),
    records: &[u32],
    inv_norm: &[f32],
    pairs: &mut [Pair],
    static_bounds: &crate::backend::StaticBounds<'_>,
) -> Result<Option<Vec<Bounds>>> {
    let (m, d, n) = (q_dev.rows, q_dev.cols, records.len());
    // A caller that breaks this is a bug, not bad input.
    assert!(
        rows_d.len() == n * d && rows_g.len() == n * d && inv_norm.len() == n,
        "nudge-m first block: rows, norms and records disagree"
    );
    assert!(
        pairs.iter().all(|p| (p.query as usize) < m),
        "nudge-m first block: pairs and the block disagree"
    );
    if m == 0 || n == 0 || d == 0 || pairs.is_empty() {
        // Nothing to read or bound on the device: the host path is exact
        // and costs nothing here.
        return Ok(None);
    }
    let own = crate::backend::own_columns(pairs, records);
    let picks: Vec<(u32, u32)> = own.iter().map(|&(_, q, c)| (q, c)).collect();
    let extra = (pairs.len() * 16).max(picks.len() * 8);
    let mut enc = encoder(gpu);
    let Some(dev) = gemm_pair(gpu, &mut enc, q_dev, (rows_d, rows_g), n, extra)? else {
        return Ok(None);
    };
    let (s0, s1, np) = (&dev.s0, &dev.s1, dev.ld);
    let ctx = &gpu.ctx;
    let _slopes = record_slopes(gpu, &mut enc, &dev, inv_norm, m);
    let values: Vec<(f32, f32)> = if picks.is_empty() {
        submit(gpu, enc);
        Vec::new()
    } else {
        let flat: Vec<u32> = picks.iter().flat_map(|&(q, c)| [q, c]).collect();
        let pbuf = gpu.put("picks", &flat);
        let out = gpu.scratch("picked", (picks.len() * 8) as u64);
        let pp = Uniform::new(ctx);
        pp.set(
            ctx,
            &PickParams {
                count: picks.len() as u32,
                ld: np as u32,
                pad: [0; 2],
            },
        );
        let b = Pick {
            p: &pp,
            picks: &pbuf,
            s0,
            slope: s1,
            out: &out,
        };
        gpu.k
            .pick
            .dispatch(ctx, &mut enc, b, grid_items(picks.len()));
        submit(gpu, enc);
        let back: Vec<f32> = gpu.read(&out, (picks.len() * 8) as u64)?;
        back.chunks_exact(2).map(|v| (v[0], v[1])).collect()
    };
    let mut bounds = crate::backend::own_values(&own, &values, pairs, static_bounds);
    let mut enc = encoder(gpu);
    let (_bounds, bbuf) = record_bounds(gpu, &mut enc, &dev, records, pairs, &bounds);
    submit(gpu, enc);
    read_bounds(gpu, &bbuf, &mut bounds)?;
    Ok(Some(bounds))
}

/// [`crate::backend::Backend::nudge_n_block`] on the device: S0 and S1 by
/// the tiled GEMM into device buffers, merged from there; only the lists
/// come back. `Ok(false)` when the block does not fit that way (then the
/// caller takes the host path).
pub fn nudge_n_block(
    gpu: &Gpu,
    q_dev: &Matrix,
    (rows_d, rows_g): (&[f32], &[f32]),
    records: &[u32],
    coef: &[(f32, f32)],
    tops: &mut [TopK],
) -> Result<bool> {
    let (m, d, n) = (q_dev.rows, q_dev.cols, records.len());
    // A caller that breaks this is a bug, not bad input.
    assert!(
        rows_d.len() == n * d && rows_g.len() == n * d,
        "nudge-n block: rows and records disagree"
    );
    assert!(
        tops.first().is_none_or(|t| t.queries == m),
        "nudge-n block: the lists and the queries disagree"
    );
    if m == 0 || n == 0 || d == 0 {
        return Ok(true);
    }
    let Some(merge) = Merge::new(gpu, tops, coef, n)? else {
        return Ok(true);
    };
    if merge.cols_fit < n {
        return Ok(false);
    }
    let mut enc = encoder(gpu);
    let Some(dev) = gemm_pair(gpu, &mut enc, q_dev, (rows_d, rows_g), n, 0)? else {
        return Ok(false);
    };
    merge.piece(&mut enc, (&dev.s0, &dev.s1, dev.ld), 0..n, coef, records);
    submit(gpu, enc);
    merge.finish(tops)?;
    Ok(true)
}

/// The NUDGE-N merge's device state: the running lists of every (gamma,
/// query), the per-segment scratch and the parameter blocks, for the
/// pieces of columns merged into them one after another.
struct Merge<'g> {
    gpu: &'g Gpu,
    /// Columns per piece at most.
    cols_fit: usize,
    lists: usize,
    queries: usize,
    k: usize,
    seg_len: usize,
    run_s: wgpu::Buffer,
    run_r: wgpu::Buffer,
    part_s: wgpu::Buffer,
    part_r: wgpu::Buffer,
    mp: Uniform<MergeParams>,
    tp: Uniform<TopkParams>,
}

impl<'g> Merge<'g> {
    /// The lists of `tops` on the device, for pieces of at most `width`
    /// columns; `None` when there is nothing to merge.
    fn new(
        gpu: &'g Gpu,
        tops: &[TopK],
        coef: &[(f32, f32)],
        width: usize,
    ) -> Result<Option<Merge<'g>>> {
        let g = tops.len();
        if g == 0 || width == 0 {
            return Ok(None);
        }
        let (q, k) = (tops[0].queries, tops[0].k);
        // A caller that breaks this is a bug, not bad input.
        assert!(
            !(tops.iter().any(|t| t.queries != q || t.k != k) || coef.len() < g * width),
            "nudge-n merge: argument shapes disagree"
        );
        if q == 0 || k == 0 {
            return Ok(None);
        }
        let budget = gpu.budget() as usize;
        let lists = g * q;
        if lists * k * 4 > budget {
            return Err(too_big("the NUDGE-N top-k lists"));
        }
        let cols_fit = (budget / (q * 4)).min(budget / (g * 8));
        if cols_fit == 0 {
            return Err(too_big("one row of S0"));
        }
        let run_s: Vec<f32> = tops.iter().flat_map(|t| t.scores.iter().copied()).collect();
        let run_r: Vec<u32> = tops.iter().flat_map(|t| t.rows.iter().copied()).collect();
        let max_segs = (budget / (lists * k * 4)).max(1);
        let sub = cols_fit.min(width);
        let seg_len = SEG.max(sub.div_ceil(max_segs));
        let part_len = lists * sub.div_ceil(seg_len) * k * 4;
        Ok(Some(Merge {
            gpu,
            cols_fit,
            lists,
            queries: q,
            k,
            seg_len,
            run_s: gpu.put("run scores", &run_s),
            run_r: gpu.put("run rows", &run_r),
            part_s: gpu.scratch("part scores", part_len as u64),
            part_r: gpu.scratch("part rows", part_len as u64),
            mp: Uniform::new(&gpu.ctx),
            tp: Uniform::new(&gpu.ctx),
        }))
    }

    /// Records the merge of columns `cols` of the block (at most
    /// `cols_fit`), whose S0 and S1 are in `s0`/`s1` with rows `ld` floats
    /// apart, column `cols.start` first.
    fn piece(
        &self,
        enc: &mut wgpu::CommandEncoder,
        (s0, s1, ld): (&wgpu::Buffer, &wgpu::Buffer, usize),
        cols: std::ops::Range<usize>,
        coef: &[(f32, f32)],
        records: &[u32],
    ) {
        let (gpu, ctx) = (self.gpu, &self.gpu.ctx);
        let g = self.lists / self.queries;
        let width = records.len();
        let n = cols.len();
        let segs = n.div_ceil(self.seg_len);
        let mut cf: Vec<[f32; 2]> = Vec::with_capacity(g * n);
        for gi in 0..g {
            cf.extend(
                coef[gi * width + cols.start..gi * width + cols.end]
                    .iter()
                    .map(|c| [c.0, c.1]),
            );
        }
        let cbuf = gpu.put("coef", &cf);
        let rec = gpu.put("records", &records[cols]);
        self.mp.set(
            ctx,
            &MergeParams {
                lists: self.lists as u32,
                queries: self.queries as u32,
                width: n as u32,
                ld: ld as u32,
                k: self.k as u32,
                seg_len: self.seg_len as u32,
                segs: segs as u32,
                neg_inf: f32::NEG_INFINITY,
            },
        );
        self.tp.set(
            ctx,
            &TopkParams {
                lists: self.lists as u32,
                n: n as u32,
                ld: n as u32,
                k: self.k as u32,
                seg_len: self.seg_len as u32,
                segs: segs as u32,
                first_row: 0,
                use_skip: 0,
                neg_inf: f32::NEG_INFINITY,
                pad: [0; 3],
            },
        );
        gpu.k.nudge_n_partial.dispatch(
            ctx,
            enc,
            NudgeNPartial {
                p: &self.mp,
                s0,
                s1,
                coef: &cbuf,
                records: &rec,
                part_s: &self.part_s,
                part_r: &self.part_r,
            },
            grid_items(self.lists * segs),
        );
        gpu.k.topk_merge.dispatch(
            ctx,
            enc,
            TopkMerge {
                p: &self.tp,
                part_s: &self.part_s,
                part_r: &self.part_r,
                run_s: &self.run_s,
                run_r: &self.run_r,
            },
            grid_items(self.lists),
        );
    }

    /// Reads the lists back into `tops`.
    fn finish(self, tops: &mut [TopK]) -> Result<()> {
        let (q, k) = (self.queries, self.k);
        let len = (self.lists * k * 4) as u64;
        let back_s: Vec<f32> = self.gpu.read(&self.run_s, len)?;
        let back_r: Vec<u32> = self.gpu.read(&self.run_r, len)?;
        for (i, t) in tops.iter_mut().enumerate() {
            t.scores
                .copy_from_slice(&back_s[i * q * k..(i + 1) * q * k]);
            t.rows.copy_from_slice(&back_r[i * q * k..(i + 1) * q * k]);
        }
        Ok(())
    }
}

/// Which embedding update [`update`] applies.
pub enum Update {
    /// NUDGE-M: `d += gamma * g / |g|` per row (`update.wgsl::update_m`).
    M {
        /// Step size.
        gamma: f32,
    },
    /// NUDGE-N: the rotation of `update.wgsl::update_n`.
    N {
        /// Step size (the rotation angle comes from it, in f64).
        gamma: f64,
    },
}

/// [`crate::backend::Backend::update_m`] and `update_n`: `d` updated from
/// `g` in row blocks.
pub fn update(gpu: &Gpu, d: &mut Matrix, g: &Matrix, how: Update) -> Result<()> {
    let (rows, cols) = (d.rows, d.cols);
    // A caller that breaks this is a bug, not bad input.
    assert!(
        !(g.rows != rows || g.cols != cols),
        "update: D and G differ in shape"
    );
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let ctx = &gpu.ctx;
    let per = gpu.budget() as usize / (cols * 4);
    if per == 0 {
        return Err(too_big("one embedding row"));
    }
    let m = matches!(how, Update::M { .. });
    let base = match how {
        Update::M { gamma } => UpdateParams {
            rows: 0,
            cols: cols as u32,
            gamma,
            sin_t: 0.0,
            cos_t: 1.0,
            clamp_at: 0.0,
            pad: [0; 2],
        },
        Update::N { gamma } => {
            let crate::method::nudge_n::Step { sin, cos, .. } =
                crate::method::nudge_n::Step::new(gamma);
            UpdateParams {
                rows: 0,
                cols: cols as u32,
                gamma: gamma as f32,
                sin_t: sin as f32,
                cos_t: cos as f32,
                clamp_at: (1.0 - gamma / 2.0) as f32,
                pad: [0; 2],
            }
        }
    };
    let params = Uniform::new(ctx);
    for r0 in (0..rows).step_by(per) {
        let n = per.min(rows - r0);
        let range = r0 * cols..(r0 + n) * cols;
        let dbuf = gpu.put("d", &d.data[range.clone()]);
        let gbuf = gpu.put("g", &g.data[range.clone()]);
        params.set(
            ctx,
            &UpdateParams {
                rows: n as u32,
                ..base
            },
        );
        let mut enc = encoder(gpu);
        // Two kernels with the same bindings, hence two structs.
        let groups = grid_items(n);
        if m {
            let b = UpdateM {
                p: &params,
                d: &dbuf,
                g: &gbuf,
            };
            gpu.k.update_m.dispatch(ctx, &mut enc, b, groups);
        } else {
            let b = UpdateN {
                p: &params,
                d: &dbuf,
                g: &gbuf,
            };
            gpu.k.update_n.dispatch(ctx, &mut enc, b, groups);
        }
        submit(gpu, enc);
        let out: Vec<f32> = gpu.read(&dbuf, (n * cols * 4) as u64)?;
        d.data[range].copy_from_slice(&out);
    }
    Ok(())
}
