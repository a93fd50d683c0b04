//! The CPU backend: rayon across cores, the `gemm` crate for similarity
//! blocks. It is the reference the GPU backend is tested against, and the
//! fallback when there is no adapter, so it must be both exact and fast.

use rayon::prelude::*;

use super::{
    Backend, Bounds, MovedBlock, Pair, RowReport, Rows, Scan, ScanSpec, Segments, SlopeBlock, TopK,
    topk,
};
use crate::error::Result;
use crate::matrix::{Matrix, all_finite, fold_lanes};
use crate::method::{nudge_m, nudge_n};

/// Calls `body(args)` compiled for AVX-512F or else AVX2 when the CPU has
/// it (chosen at run time, so the binary stays portable), else as compiled
/// for the baseline (SSE2). For loops written lane-wise for the compiler to
/// vectorise: 8- and 16-wide vectors take a half and a quarter of the
/// baseline's 4-wide steps. No FMA is enabled (and Rust never fuses a
/// multiply and an add by itself), so every variant rounds identically.
macro_rules! with_wide {
    ($body:ident($($arg:ident: $ty:ty = $val:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512($($arg: $ty),*) {
            $body($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn avx2($($arg: $ty),*) {
            $body($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512($($val),*) };
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2($($val),*) };
        }
        $body($($val),*)
    }};
}

/// The CPU [`Backend`]: the reference implementation, and the fallback
/// when no GPU adapter is available.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

/// Columns of the output (rows of `b`) per `gemm` call in [`gemm_nt`], at
/// most; chunks of the corpus and blocks of moved records come in multiples
/// of it (see `tile_cols`).
pub const GEMM_BLOCK: usize = 512;

/// Columns per tile for an `m`-row left-hand side. With one row tile
/// (`m <= GEMM_ROWS`, e.g. a few hundred dev queries) the column tiles are the
/// only parallelism, and half-width tiles keep both cores busy (a 110 x 2210
/// block ran 17% faster); taller problems have tiles enough at full width,
/// which is a little faster per tile. A function of `m` alone, so every
/// chunking of the same problem uses the same tiles.
fn tile_cols(m: usize) -> usize {
    if m <= GEMM_ROWS {
        GEMM_BLOCK / 2
    } else {
        GEMM_BLOCK
    }
}
/// Rows of the output (rows of `a`) per `gemm` call in [`gemm_nt`], at
/// most. Each call packs its block of `b` again (a float at a time,
/// strided: `gemm` computes `out^T`, so `b` is the side it packs into
/// panels), so fewer, taller tiles pack less: 256 rather than 128 made
/// the fit's shapes 7-15% faster (1800 x 2048 x 384: 180 -> 200 GFLOP/s;
/// 5000 x 2560 x 768: 172 -> 196). Transposing `b` once per call instead,
/// so that packing is a copy, gained nothing more at 256 rows.
const GEMM_ROWS: usize = 256;

/// Ragged column tiles (the last of a chunk or block) at least this wide
/// are computed at their own width; narrower ones are padded to it.
///
/// Why not every width: each output element must come out with the same
/// bits whatever tile it falls in, and `gemm` keeps its arithmetic per
/// element (one FMA chain over k, k-blocked by cache sizes alone) only on
/// its general path. It takes other paths by shape: gemv for one row
/// (every tile of a 1-row problem alike), and a kernel of its own, blocked
/// at k = 1024, when the tile has at most 256 elements (`gemm`'s rows x
/// columns, here tile width x query rows) or both sides are at most 64.
/// At 160 and up, a tile of two or more query rows is over both limits.
/// Padding every ragged tile to the full 512 instead cost tldr's NUDGE-N
/// search a third of its last block (1,180 moved records computed as
/// 1,536). The widths and k that were checked (k 16 to 3,072, 1 to 1,800
/// rows, widths 1 to 700 at several offsets) all gave identical bits, 128
/// did not (two query rows); `gemm_nt_does_not_depend_on_the_split_of_b_or_threads`
/// keeps the cases that tell them apart.
const RAGGED_MIN: usize = 160;

thread_local! {
    /// Per-thread scratch for ragged GEMM tiles under `RAGGED_MIN`
    /// columns: the right-hand block padded to that width ([`gemm_tile`]),
    /// and [`gemm_nt`]'s output of the padded tile. Reused, because
    /// allocating (and so faulting in) 0.75 MiB per ragged tile was a third
    /// of a small fit.
    static PADDED_RHS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static PADDED_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The width a tile of `w` columns (of at most `tw`) is computed at: its
/// own from `RAGGED_MIN` up, else padded to `RAGGED_MIN` (see there).
fn computed_width(w: usize, tw: usize) -> usize {
    if w >= RAGGED_MIN {
        w
    } else {
        RAGGED_MIN.min(tw)
    }
}

/// One tile of [`gemm_nt`] and [`gemm_nt_visit`]: `lhs` (h x k) times the
/// `w` rows of `block` (w x k), computed `wp` ([`computed_width`]) columns
/// wide into `dst` (row stride `dst_rs`). A padded tile reads its
/// right-hand side from a scratch copy of `block` whose padding rows are
/// stale: each output column depends on its own right-hand row alone, so
/// they only feed the output columns `w..wp`, which the caller ignores (no
/// need to zero a fresh buffer for every ragged tile).
///
/// # Safety
/// `dst` must be valid for writes at `i * dst_rs + j` for every `i < h`,
/// `j < wp`, and no one else may access those elements meanwhile.
unsafe fn gemm_tile(
    lhs: &[f32],
    block: &[f32],
    (h, w, wp, k): (usize, usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
) {
    if wp == w {
        // SAFETY: as the caller promises.
        return unsafe { gemm_block(lhs, block, h, w, k, dst, dst_rs) };
    }
    PADDED_RHS.with(|rhs| {
        let rhs = &mut *rhs.borrow_mut();
        rhs.resize(wp * k, 0.0);
        rhs[..w * k].copy_from_slice(&block[..w * k]);
        // SAFETY: as the caller promises.
        unsafe { gemm_block(lhs, &rhs[..wp * k], h, wp, k, dst, dst_rs) };
    });
}

/// `out = a . b^T` with `a` m x k and `b` n x k, row-major.
///
/// Deterministic: every element comes out bit for bit the same whatever `n`,
/// the position of its row in `b`, or the rayon thread count. The `gemm`
/// crate alone does not give that: it picks its k-blocking and kernels (gemv
/// for one row, a small-matrix path) from the shape, so the same dot product
/// rounds differently in a 1-row corpus chunk than in a 1000-row one. Here
/// the output is cut into tiles of at most `GEMM_ROWS` x `tile_cols` (a
/// last column block narrower than `RAGGED_MIN` padded to it; the tiling
/// depends on `m` alone), and each tile is one single-threaded `gemm`
/// call; the tiles run in parallel.
pub fn gemm_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    let tw = tile_cols(m);
    let blocks = n.div_ceil(tw);
    let (row_tiles, th) = row_tiles(m);
    let dst = SendPtr(out.as_mut_ptr());
    let tile = |t: usize| {
        let (it, jb) = (t / blocks, t % blocks);
        let (i0, j0) = (it * th, jb * tw);
        let (h, w) = (th.min(m - i0), tw.min(n - j0));
        let lhs = &a[i0 * k..(i0 + h) * k];
        let (rhs, wp) = (&b[j0 * k..(j0 + w) * k], computed_width(w, tw));
        if wp == w {
            // SAFETY: rows i0..i0+h, columns j0..j0+w of the m x n
            // output (row stride n); tiles write disjoint parts.
            unsafe { gemm_tile(lhs, rhs, (h, w, wp, k), dst.at(i0 * n + j0), n) };
        } else {
            PADDED_OUT.with(|tmp| {
                let tmp = &mut *tmp.borrow_mut();
                tmp.resize(h * wp, 0.0);
                // SAFETY: tmp is h x wp with row stride wp.
                unsafe { gemm_tile(lhs, rhs, (h, w, wp, k), tmp.as_mut_ptr(), wp) };
                for i in 0..h {
                    // SAFETY: row i0+i, columns j0..j0+w of the output, which
                    // only this tile writes.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(dst.at((i0 + i) * n + j0), w) };
                    row.copy_from_slice(&tmp[i * wp..i * wp + w]);
                }
            });
        }
    };
    let tiles = row_tiles * blocks;
    if tiles == 1 || m * n * k <= 1 << 18 {
        (0..tiles).for_each(tile);
    } else {
        (0..tiles).into_par_iter().for_each(tile);
    }
}

/// How [`gemm_nt`] cuts the rows of an `m`-row product: (number of row
/// tiles, rows per tile), the last tile taking what is left. At most
/// `GEMM_ROWS` rows per tile, as even as they go (1,800 dev queries make 8
/// tiles of 225 rather than 7 of 256 and one of 8, which packed every block
/// of `b` again for 8 rows of output).
pub(crate) fn row_tiles(m: usize) -> (usize, usize) {
    let tiles = m.div_ceil(GEMM_ROWS);
    (tiles, m.div_ceil(tiles.max(1)).max(1))
}

thread_local! {
    /// Per-thread output of one tile per product for [`gemm_nt_visit`]
    /// (at most `GEMM_ROWS` x `GEMM_BLOCK`, 512 KiB, each): small enough to
    /// be read back from the core's caches, and reused rather than faulted
    /// in.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`gemm_nt`] for a consumer that reads each score once: instead of
/// writing the `m x n` products `a . b^T` of each `b` in `bs`, it hands
/// each tile of them, as soon as it is computed, to
/// `visit(state, i0, j0, tiles)`, one tile per product. The tiles hold rows
/// `i0..i0 + rows` (of the products, i.e. of `a`) and columns
/// `j0..j0 + cols` (rows of each `b`), and lie in a per-thread buffer that
/// `visit` may overwrite.
///
/// Why: a scan with thousands of queries wrote a score block of tens of MiB
/// per chunk and read it back for the top-k, a round trip through memory
/// that kept it at 73-82% of the bare GEMM's throughput, and NUDGE-M's
/// bounds read back two such blocks (S0 and the slopes) per block of moved
/// records; a tile is read back while it is still in the core's cache.
/// Each element has the bits it has in [`gemm_nt`]'s output: the tiles
/// are the same `gemm` calls, only the destination differs.
///
/// `states` has one entry per row tile ([`row_tiles`]`(m).0`): the row
/// tiles run in parallel, each computing and visiting its column tiles in
/// order on one thread, so `visit` may keep per-row state there (the
/// queries' top-k lists, the pairs' bounds) without locks.
pub(crate) fn gemm_nt_visit<const N: usize, S: Send>(
    a: &[f32],
    bs: [&[f32]; N],
    (m, n, k): (usize, usize, usize),
    states: &mut [S],
    visit: impl Fn(&mut S, usize, usize, [Tile<'_>; N]) + Sync,
) {
    assert!(a.len() >= m * k && bs.iter().all(|b| b.len() >= n * k));
    let (tiles, th) = row_tiles(m);
    assert_eq!(states.len(), tiles, "one state per row tile");
    if m == 0 || n == 0 {
        return;
    }
    let tw = tile_cols(m);
    let row_tile = |(it, state): (usize, &mut S)| {
        let i0 = it * th;
        let h = th.min(m - i0);
        let lhs = &a[i0 * k..(i0 + h) * k];
        TILE.with(|buf| {
            let buf = &mut *buf.borrow_mut();
            for j0 in (0..n).step_by(tw) {
                let w = tw.min(n - j0);
                // A ragged tile is computed as in `gemm_nt`, padded under
                // RAGGED_MIN; the padding columns' outputs are ignored.
                let wp = computed_width(w, tw);
                let size = h * wp;
                buf.resize(N * size, 0.0);
                for (b, out) in bs.iter().zip(buf.chunks_exact_mut(size)) {
                    if k == 0 {
                        out.fill(0.0);
                    } else {
                        let rhs = &b[j0 * k..(j0 + w) * k];
                        // SAFETY: out is h x wp with row stride wp.
                        unsafe { gemm_tile(lhs, rhs, (h, w, wp, k), out.as_mut_ptr(), wp) };
                    }
                }
                let mut parts = buf[..N * size].chunks_exact_mut(size);
                let tiles = std::array::from_fn(|_| Tile {
                    data: parts.next().expect("one part per product"),
                    rows: h,
                    cols: w,
                    stride: wp,
                });
                visit(state, i0, j0, tiles);
            }
        });
    };
    if tiles == 1 {
        states.iter_mut().enumerate().for_each(row_tile);
    } else {
        states.par_iter_mut().enumerate().for_each(row_tile);
    }
}

/// One tile of a product, as [`gemm_nt_visit`] hands it over: `rows` rows
/// of `cols` scores, row `i` at `data[i * stride..][..cols]`.
pub(crate) struct Tile<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl Tile<'_> {
    /// Row `i` of the tile, `cols` scores.
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// Row `i` of the tile, `cols` scores, to overwrite.
    fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// Multiplies column `j` by `by[j]`: NUDGE-M's slopes from S1, one
    /// multiply each, as [`super::slopes`] makes them from a whole block.
    fn scale_columns(&mut self, by: &[f32]) {
        for i in 0..self.rows {
            for (x, r) in self.row_mut(i).iter_mut().zip(by) {
                *x *= r;
            }
        }
    }
}

/// The pairs (in query order) of each row tile of `m` queries
/// ([`row_tiles`]): consecutive ranges of `pairs`, one per row tile.
fn pairs_by_row_tile(pairs: &[Pair], m: usize) -> Vec<std::ops::Range<usize>> {
    let th = row_tiles(m).1;
    let mut start = 0;
    (0..m)
        .step_by(th)
        .map(|i0| {
            let end = pairs.partition_point(|p| (p.query as usize) < (i0 + th).min(m));
            let run = start..end;
            start = end;
            run
        })
        .collect()
}

/// `s` cut into the consecutive `runs` that cover it from the start.
fn cut_runs<'a, T>(mut s: &'a mut [T], runs: &[std::ops::Range<usize>]) -> Vec<&'a mut [T]> {
    runs.iter()
        .map(|r| {
            let (here, rest) = std::mem::take(&mut s).split_at_mut(r.len());
            s = rest;
            here
        })
        .collect()
}

/// Runs one small GEMM in the background on a rayon worker, so that the
/// `gemm` crate's first-call set-up is not done on the fit's critical path:
/// it reads the CPU's cache sizes from some 90 files in /sys, which took a
/// millisecond of a small fit's scan. On a worker rather than a thread of
/// its own, because the worker then has its `gemm` scratch memory in place
/// for the scan, and no extra thread competes for the cores while the
/// dataset is read (SciFact fit, read and scan phases: 0.5-1 ms shorter).
pub fn warm_up_in_background() {
    rayon::spawn(|| {
        // Small enough for `gemm_nt` to run it on this thread alone.
        let (m, n, k) = (16, tile_cols(16), 64);
        let a = vec![0.0f32; m * k];
        let b = vec![0.0f32; n * k];
        let mut out = vec![0.0f32; m * n];
        gemm_nt(&a, &b, m, n, k, &mut out);
    });
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint parts of one output to rayon workers.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    /// The pointer `offset` elements in (a method, so closures capture the
    /// whole Send wrapper rather than the raw pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the output slice.
        unsafe { self.0.add(offset) }
    }
}

/// One single-threaded `gemm` of `a` (m x k) by a block of `n` rows of b
/// (`rhs`, n x k) into `dst` (m x n, row stride `dst_rs`).
///
/// # Safety
/// `dst` must be valid for writes at `i * dst_rs + j` for every `i < m`,
/// `j < n`, and no one else may access those elements meanwhile.
unsafe fn gemm_block(
    a: &[f32],
    rhs: &[f32],
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
) {
    debug_assert!(a.len() >= m * k && rhs.len() >= n * k);
    // SAFETY: lhs m x k (row stride k), rhs viewed as k x n with column
    // stride k, dst as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// L2-normalises one row in place (x / |x|, the way torch's `normalize`
/// divides); returns the norm. A zero row stays zero.
#[inline]
pub fn normalize_row(row: &mut [f32]) -> f32 {
    let norm = sum_squares(row).sqrt();
    if norm > 0.0 {
        row.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// The sum of squares in 16 interleaved lanes, folded in a fixed order.
///
/// A plain `iter().sum()` is one dependent chain of additions that the
/// compiler may not reorder: at d=384 it made normalisation a tenth of a
/// small fit. Sixteen independent lanes vectorise (plain mul and add, no FMA,
/// so the result is the same on every x86-64 CPU), and the fixed fold keeps
/// it deterministic.
pub fn sum_squares(row: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l] * c[l];
        }
    }
    for (l, x) in rest.iter().enumerate() {
        acc[l] += x * x;
    }
    fold_lanes(acc)
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

/// The norm a scan reports for `row` in `mode` ([`report_norms`] turns it
/// into the row report): its length when normalising; otherwise only
/// non-finite values are reported (1 or NaN stands in for the norm), since
/// a zero or huge row is fine as it is, and rows the caller has checked
/// are not looked at again.
fn reported_norm(mode: Rows, row: &[f32]) -> f32 {
    match mode {
        Rows::Normalize => sum_squares(row).sqrt(),
        Rows::AsStored if !all_finite(row) => f32::NAN,
        Rows::AsStored | Rows::Checked => 1.0,
    }
}

/// [`normalize_rows`] on the calling thread alone: how a device scan that
/// leaves its rows to the host ([`super::gpu::GpuOptions::host_rows`])
/// gets the CPU's rows and reports. One thread, because on a software
/// adapter the other cores run the device's kernels meanwhile, and
/// rayon's workers spin for a while after each parallel step, taking time
/// from them.
pub fn normalize_rows_serial(rows: &mut [f32], cols: usize, first_row: usize) -> RowReport {
    if cols == 0 {
        return RowReport::default();
    }
    let norms: Vec<f32> = rows.chunks_mut(cols).map(normalize_row).collect();
    report_norms(&norms, first_row)
}

/// The row report of a scan that leaves its rows as they are
/// ([`Rows::AsStored`], [`Rows::Checked`]), on the calling thread alone
/// (see [`normalize_rows_serial`]), read from a shared slice so that a
/// caller need not copy rows it only checks.
pub fn check_rows(rows: &[f32], cols: usize, first_row: usize, mode: Rows) -> RowReport {
    assert!(mode != Rows::Normalize, "normalising changes the rows");
    if cols == 0 || mode == Rows::Checked {
        return RowReport::default();
    }
    let norms: Vec<f32> = rows
        .chunks(cols)
        .map(|row| reported_norm(mode, row))
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

/// Whether [`score_and_select`] fills `m` queries' lists tile by tile.
fn by_tile(m: usize) -> bool {
    row_tiles(m).0 >= 2 * rayon::current_num_threads()
}

/// Scores `block` (row `j` is corpus row `rows[j]`) against every query
/// and offers each score to its query's top-k list; the block rows `skip`
/// marks (indexed like `rows`) are left out (scored NaN, which never enters
/// a list). `scores` is scratch for the whole score block, used only when
/// the lists are filled from it.
///
/// With enough row tiles to go round the threads (two per thread or more:
/// 1,000 queries on two cores, 10,000 on sixteen), the lists are filled tile by
/// tile as the GEMM computes them ([`gemm_nt_visit`]), so no score goes to
/// memory and back; with fewer, the row tiles alone would leave cores idle,
/// so the whole block is computed with every tile in parallel first and
/// the lists filled from it, in parallel over the queries. Both offer every
/// list the same scores, and a list does not depend on the order of its
/// offers (ties go to the lower row), so they give the same lists.
fn score_and_select(
    q: &Matrix,
    block: &[f32],
    rows: &[u32],
    skip: Option<&[bool]>,
    top: &mut TopK,
    scores: &mut Vec<f32>,
) {
    let (m, n, k) = (q.rows, rows.len(), top.k);
    if k == 0 || m == 0 || n == 0 {
        return;
    }
    let masked: Vec<usize> = skip.map_or_else(Vec::new, |s| {
        s.iter()
            .enumerate()
            .filter(|&(_, &x)| x)
            .map(|(j, _)| j)
            .collect()
    });
    if by_tile(m) {
        let th = row_tiles(m).1;
        let mut lists: Vec<(&mut [f32], &mut [u32])> = top
            .scores
            .chunks_mut(th * k)
            .zip(top.rows.chunks_mut(th * k))
            .collect();
        gemm_nt_visit(
            &q.data,
            [block],
            (m, n, q.cols),
            &mut lists,
            |(ls, lr), _, j0, [mut tile]| {
                let cols = &rows[j0..j0 + tile.cols];
                let (lo, hi) = (
                    masked.partition_point(|&j| j < j0),
                    masked.partition_point(|&j| j < j0 + tile.cols),
                );
                for i in 0..tile.rows {
                    let row = tile.row_mut(i);
                    for &j in &masked[lo..hi] {
                        row[j - j0] = f32::NAN;
                    }
                    topk::offer(
                        &mut ls[i * k..(i + 1) * k],
                        &mut lr[i * k..(i + 1) * k],
                        row,
                        cols,
                    );
                }
            },
        );
        return;
    }
    scores.resize(m * n, 0.0);
    gemm_nt(&q.data, block, m, n, q.cols, scores);
    let scores = &mut scores[..m * n];
    if !masked.is_empty() {
        scores.par_chunks_mut(n).for_each(|row| {
            for &j in &masked {
                row[j] = f32::NAN;
            }
        });
    }
    top.scores
        .par_chunks_mut(k)
        .zip(top.rows.par_chunks_mut(k))
        .enumerate()
        .for_each(|(i, (ls, lr))| topk::offer(ls, lr, &scores[i * n..(i + 1) * n], rows));
}

struct CpuScan<'a> {
    spec: ScanSpec<'a>,
    top: TopK,
    /// Rows that take part but are not scored yet, normalised if asked, and
    /// their corpus rows: what the compacting path of [`Scan::push`] keeps
    /// of each chunk. They are scored in whole GEMM tiles, the rest carried
    /// on to the next chunk (see [`CpuScan::score_pending`]).
    pending: Vec<f32>,
    pending_rows: Vec<u32>,
    /// The corpus rows of a chunk scored in place.
    index: Vec<u32>,
    scores: Vec<f32>,
}

impl CpuScan<'_> {
    /// Scores the pending rows and offers them to the lists: all of them
    /// with `all`, else as many as fill whole GEMM tiles, the others left
    /// for the next chunk. A chunk whose rows mostly move keeps a few
    /// hundred rows, and scored on their own they were a ragged tile each
    /// (then computed padded to full width, now a slower, narrower tile):
    /// tldr's scan (1,367 static rows in three chunks) did 1.9 times its
    /// GEMM work that way. Carried on, only the last tile of the scan is
    /// ragged. Each score is the same bit for bit whatever the batch
    /// ([`gemm_nt`]), and a list does not depend on the order of its offers
    /// (ties go to the lower row), so the lists are those of scoring each
    /// chunk at once.
    fn score_pending(&mut self, all: bool) {
        let q = self.spec.queries;
        let d = q.cols.max(1);
        let have = self.pending_rows.len();
        let tw = tile_cols(q.rows);
        let take = if all { have } else { have / tw * tw };
        if take == 0 {
            return;
        }
        score_and_select(
            q,
            &self.pending[..take * d],
            &self.pending_rows[..take],
            None,
            &mut self.top,
            &mut self.scores,
        );
        self.pending.drain(..take * d);
        self.pending_rows.drain(..take);
    }

    /// [`Scan::push`] for rows scored as they are, when at most a quarter of
    /// them are masked: the GEMM runs on the chunk itself, without copying
    /// it, and a masked row's scores are set to NaN, which never enters a
    /// top-k list (every comparison with NaN is false). Each score is the
    /// same, bit for bit, as from the compacting path (see [`gemm_nt`]).
    fn push_in_place(&mut self, chunk: &[f32], first_row: usize, masked: usize) -> RowReport {
        let d = self.spec.queries.cols.max(1);
        let n = chunk.len() / d;
        let q = self.spec.queries;
        // Rows the caller has checked need no second look (a pass over the
        // chunk, a tenth of a small fit's scan).
        let norms: Vec<f32> = match self.spec.rows {
            Rows::Checked => Vec::new(),
            _ => chunk
                .par_chunks(d)
                .with_min_len(256)
                .map(|row| reported_norm(Rows::AsStored, row))
                .collect(),
        };
        self.index.clear();
        self.index
            .extend((first_row..first_row + n).map(|r| r as u32));
        let skip = match masked {
            0 => None,
            _ => Some(&self.spec.skip.expect("masked rows")[first_row..first_row + n]),
        };
        score_and_select(q, chunk, &self.index, skip, &mut self.top, &mut self.scores);
        report_norms(&norms, first_row)
    }
}

impl Scan for CpuScan<'_> {
    fn push(&mut self, chunk: &[f32], first_row: usize) -> Result<RowReport> {
        let d = self.spec.queries.cols.max(1);
        let n = chunk.len() / d;
        let masked = self.spec.skip.map_or(0, |m| {
            m[first_row..first_row + n].iter().filter(|&&x| x).count()
        });
        if self.spec.rows != Rows::Normalize && masked * 4 <= n {
            return Ok(self.push_in_place(chunk, first_row, masked));
        }
        // Masked (moved) rows are left out before the GEMM, not after: when
        // most records move, the scan then costs next to nothing. The rows
        // that take part are copied out and normalised in one pass (the same
        // arithmetic as `normalize_row`) behind the rows still pending from
        // earlier chunks; every row's norm is still checked.
        let held = self.pending_rows.len();
        self.pending_rows.extend(
            (first_row..first_row + n)
                .filter(|&r| !self.spec.skip.is_some_and(|m| m[r]))
                .map(|r| r as u32),
        );
        let kept = self.pending_rows.len() - held;
        // Room for a whole chunk and a carried tile from the start: growing
        // by doubling as the kept count varies from chunk to chunk would
        // allocate (and fault in) twice the memory.
        let q = self.spec.queries;
        let room = n + tile_cols(q.rows);
        self.pending
            .reserve_exact((room * d).saturating_sub(self.pending.len()));
        if !by_tile(q.rows) {
            self.scores
                .reserve_exact((q.rows * room).saturating_sub(self.scores.len()));
        }
        self.pending.resize((held + kept) * d, 0.0);
        let mode = self.spec.rows;
        let normalize = mode == Rows::Normalize;
        let norm_of = |row: &[f32]| reported_norm(mode, row);
        let kept_norms: Vec<f32> = self.pending[held * d..]
            .par_chunks_mut(d)
            .zip(self.pending_rows[held..].par_iter())
            .with_min_len(256)
            .map(|(dst, &r)| {
                let src = &chunk[(r as usize - first_row) * d..][..d];
                let norm = norm_of(src);
                if normalize && norm > 0.0 {
                    dst.iter_mut().zip(src).for_each(|(y, x)| *y = x / norm);
                } else {
                    dst.copy_from_slice(src);
                }
                norm
            })
            .collect();
        // Every row's norm, for the report alone; the rows left out count as
        // fine (1) unless they are looked at below.
        let mut norms = vec![1.0f32; n];
        for (&r, &nm) in self.pending_rows[held..].iter().zip(&kept_norms) {
            norms[r as usize - first_row] = nm;
        }
        if kept < n && mode != Rows::Checked {
            let skip = self.spec.skip.expect("rows were skipped");
            norms
                .par_iter_mut()
                .enumerate()
                .with_min_len(256)
                .filter(|(j, _)| skip[first_row + j])
                .for_each(|(j, nm)| *nm = norm_of(&chunk[j * d..(j + 1) * d]));
        }
        let report = report_norms(&norms, first_row);
        self.score_pending(false);
        Ok(report)
    }

    fn finish(mut self: Box<Self>) -> Result<(TopK, RowReport)> {
        self.score_pending(true);
        Ok((self.top, RowReport::default()))
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn chunk_rows(&self, queries: usize, dim: usize, rows: usize) -> usize {
        // Chunks of ~4 MiB and score blocks of at most ~16 MiB: enough
        // GEMM tiles per chunk to keep every core busy, buffers small
        // enough to be reused from cache rather than faulted in afresh.
        let by_scores = (4 << 20) / queries.max(1);
        let by_rows = (1 << 20) / dim.max(1);
        let chunk = by_scores.min(by_rows).clamp(256, 65536);
        // Whole gemm blocks: a partial block is a narrower, slower tile
        // (padded, under RAGGED_MIN columns).
        let chunk = (chunk / GEMM_BLOCK * GEMM_BLOCK).max(GEMM_BLOCK);
        // A last chunk of under a quarter of a chunk is a GEMM, a top-k
        // pass and a hand-over for a few rows (SciFact's 5183 rows made
        // chunks of 2560, 2560 and 63): spread them over one chunk fewer.
        let full = rows / chunk;
        if full >= 1 && !rows.is_multiple_of(chunk) && rows % chunk < chunk / 4 {
            return rows.div_ceil(full).next_multiple_of(GEMM_BLOCK);
        }
        chunk
    }

    fn block_rows(&self, queries: usize) -> usize {
        // Whole gemm blocks: a partial one is a narrower, slower tile.
        (super::score_block_rows(queries) / GEMM_BLOCK).max(1) * GEMM_BLOCK
    }

    fn scan<'a>(&'a self, spec: ScanSpec<'a>) -> Result<Box<dyn Scan + 'a>> {
        let top = TopK::new(spec.queries.rows, spec.k);
        Ok(Box::new(CpuScan {
            spec,
            top,
            pending: Vec::new(),
            pending_rows: Vec::new(),
            index: Vec::new(),
            scores: Vec::new(),
        }))
    }

    fn similarity(&self, a: &Matrix, b: &Matrix) -> Result<Matrix> {
        assert_eq!(a.cols, b.cols);
        let mut out = Matrix::zeros(a.rows, b.rows);
        gemm_nt(&a.data, &b.data, a.rows, b.rows, a.cols, &mut out.data);
        Ok(out)
    }

    fn similarity_into(
        &self,
        a: &Matrix,
        b: &[f32],
        b_rows: usize,
        out: &mut Matrix,
    ) -> Result<()> {
        // gemm_nt writes every element: the old contents need no zeroing,
        // and a reused buffer is faulted in once per fit.
        out.rows = a.rows;
        out.cols = b_rows;
        out.data.resize(a.rows * b_rows, 0.0);
        gemm_nt(&a.data, b, a.rows, b_rows, a.cols, &mut out.data);
        Ok(())
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
        block: &SlopeBlock,
        pairs: &[Pair],
        bounds: &mut [Bounds],
    ) -> Result<()> {
        pairs
            .par_iter()
            .zip(bounds.par_iter_mut())
            .for_each(|(p, b)| {
                let q = p.query as usize;
                tighten_pair(b, p, block.records, block.s.row(q), block.t.row(q));
            });
        Ok(())
    }

    /// NUDGE-M's bounds over a block straight from its rows: with enough
    /// row tiles to go round the threads (as in `score_and_select`), S0
    /// and the slopes are computed tile by tile (`gemm_nt_visit`) and
    /// each tile tightens the bounds of its queries' pairs while it is in
    /// cache, instead of two blocks of `dev x B` written and read back
    /// (30 MiB per block at tldr's 1,800 dev queries). The bounds come out
    /// the same bit for bit: the same S0 and slopes (the slopes as
    /// [`super::slopes`] scales them), and a pair's bounds are a max, a min
    /// and an "or" over its competitors, which any split of them gives
    /// alike. Pairs not in query order, or too few row tiles, take the
    /// default way.
    fn nudge_m_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        inv_norm: &[f32],
        pairs: &[Pair],
        bounds: &mut [Bounds],
        scratch: &mut (Matrix, Matrix),
    ) -> Result<()> {
        let m = q_dev.rows;
        if !by_tile(m) || !pairs.is_sorted_by_key(|p| p.query) {
            return super::nudge_m_block_via_host(
                self, q_dev, rows, records, inv_norm, pairs, bounds, scratch,
            );
        }
        // Each row tile's pairs (and bounds): a run of the list.
        let runs = pairs_by_row_tile(pairs, m);
        let mut parts: Vec<(&[Pair], &mut [Bounds])> = runs
            .iter()
            .map(|r| &pairs[r.clone()])
            .zip(cut_runs(bounds, &runs))
            .collect();
        gemm_nt_visit(
            &q_dev.data,
            [rows.0, rows.1],
            (m, records.len(), q_dev.cols),
            &mut parts,
            |(ps, bs), i0, j0, [s0, mut t]| {
                let cols = &records[j0..j0 + t.cols];
                t.scale_columns(&inv_norm[j0..j0 + t.cols]);
                for (p, b) in ps.iter().zip(bs.iter_mut()) {
                    let i = p.query as usize - i0;
                    tighten_pair(b, p, cols, s0.row(i), t.row(i));
                }
            },
        );
        Ok(())
    }

    /// NUDGE-M's first block straight from its rows, a band of queries at
    /// a time: with enough row tiles to go round the threads (as in
    /// `score_and_select`), each row tile's S0 and slopes are computed
    /// tile by tile (`gemm_nt_visit`) into a band of `rows x B` that
    /// lives only while that row tile is worked on; once the band is whole,
    /// its pairs read their own values from it, take their static bounds
    /// and are tightened over it. A pair's bounds need only its own
    /// query's row, so bands are independent. Before, the whole block
    /// (every moved dev answer, so `dev x B` can run to hundreds of MiB
    /// with 10,000 dev queries) was written in fresh memory and read back.
    /// The bounds come out the same bit for bit: the same S0 and slopes,
    /// and each pair tightened over its whole row as
    /// [`Backend::nudge_m_bounds`] does. Pairs not in query order, or too
    /// few row tiles, take the default way.
    fn nudge_m_first_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        inv_norm: &[f32],
        pairs: &mut [Pair],
        static_bounds: &super::StaticBounds<'_>,
        scratch: &mut (Matrix, Matrix),
    ) -> Result<Vec<Bounds>> {
        let (m, n) = (q_dev.rows, records.len());
        if !by_tile(m) || n == 0 || !pairs.is_sorted_by_key(|p| p.query) {
            return super::nudge_m_first_block_via_host(
                self,
                q_dev,
                rows,
                records,
                inv_norm,
                pairs,
                static_bounds,
                scratch,
            );
        }
        let mut bounds = vec![Bounds::OPEN; pairs.len()];
        // Each row tile's pairs and bounds (a run of each list, the pairs
        // being in query order) and its band, allocated when the row tile
        // starts and freed when it ends, so at most one per thread is held.
        struct Band<'p> {
            pairs: &'p mut [Pair],
            bounds: &'p mut [Bounds],
            s: Vec<f32>,
            t: Vec<f32>,
        }
        let runs = pairs_by_row_tile(pairs, m);
        let mut bands: Vec<Band> = cut_runs(pairs, &runs)
            .into_iter()
            .zip(cut_runs(&mut bounds, &runs))
            .map(|(pairs, bounds)| Band {
                pairs,
                bounds,
                s: Vec::new(),
                t: Vec::new(),
            })
            .collect();
        gemm_nt_visit(
            &q_dev.data,
            [rows.0, rows.1],
            (m, n, q_dev.cols),
            &mut bands,
            |band, i0, j0, [s0, mut t]| {
                let (h, w) = (t.rows, t.cols);
                if j0 == 0 {
                    band.s.resize(h * n, 0.0);
                    band.t.resize(h * n, 0.0);
                }
                t.scale_columns(&inv_norm[j0..j0 + w]);
                for i in 0..h {
                    let at = i * n + j0..i * n + j0 + w;
                    band.s[at.clone()].copy_from_slice(s0.row(i));
                    band.t[at].copy_from_slice(t.row(i));
                }
                if j0 + w < n {
                    return;
                }
                let Band {
                    pairs,
                    bounds,
                    s,
                    t,
                } = band;
                for (p, b) in pairs.iter_mut().zip(bounds.iter_mut()) {
                    let row = (p.query as usize - i0) * n;
                    let (s, t) = (&s[row..row + n], &t[row..row + n]);
                    if let Ok(c) = records.binary_search(&p.record) {
                        (p.s, p.t) = (s[c], t[c]);
                    }
                    *b = static_bounds(p);
                    tighten_pair(b, p, records, s, t);
                }
                (band.s, band.t) = (Vec::new(), Vec::new());
            },
        );
        Ok(bounds)
    }

    fn nudge_n_merge(
        &self,
        block: &MovedBlock,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
    ) -> Result<()> {
        let width = block.records.len();
        let grid = tops.len();
        let (Some(first), true) = (tops.first(), width > 0) else {
            return Ok(());
        };
        let (nq, k) = (first.queries, first.k);
        // Query by query, every gamma in turn: a query's rows of S0 and S1
        // stay in cache while the (smaller) coefficients stream past. Gamma
        // by gamma instead streamed all of S0 and S1 from memory once per
        // gamma, which made this merge memory-bound. The lists are copied
        // into query-major order for that and back.
        let (mut scores, mut rows) = query_major(tops);
        let reach: Option<Reach> = block
            .planes
            .map(|planes| Reach::of_block(planes, coef, width));
        scores
            .par_chunks_mut(grid * k)
            .zip(rows.par_chunks_mut(grid * k))
            .enumerate()
            .for_each(|(q, (ls, lr))| {
                let (s0, s1) = (block.s0.row(q), block.s1.row(q));
                merge_query(
                    ls,
                    lr,
                    s0,
                    s1,
                    (coef, width, 0),
                    block.records,
                    reach.as_ref(),
                );
            });
        from_query_major(tops, &scores, &rows, nq);
        Ok(())
    }

    /// NUDGE-N's merge of a block straight from its rows: with enough row
    /// tiles to go round the threads (as in `score_and_select`), S0 and
    /// S1 are computed tile by tile (`gemm_nt_visit`) and each tile is
    /// merged into its queries' lists while it is in cache, instead of two
    /// blocks of `dev x B` written and read back. The lists come out the
    /// same bit for bit: the same scores, offered to each list in the same
    /// ascending column order, and the reach test skips the same records
    /// (its 16-column groups start at the same columns, since tiles are
    /// 512 wide).
    fn nudge_n_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        planes: Option<&[(f64, f64)]>,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
        scratch: &mut (Matrix, Matrix),
    ) -> Result<()> {
        let (m, width, grid) = (q_dev.rows, records.len(), tops.len());
        let k = tops.first().map_or(0, |t| t.k);
        if !by_tile(m) || width == 0 || k == 0 {
            return super::nudge_n_block_via_host(
                self, q_dev, rows, records, planes, coef, tops, scratch,
            );
        }
        let (mut scores, mut lrows) = query_major(tops);
        let reach: Option<Reach> = planes.map(|planes| Reach::of_block(planes, coef, width));
        let per_tile = row_tiles(m).1 * grid * k;
        let mut lists: Vec<(&mut [f32], &mut [u32])> = scores
            .chunks_mut(per_tile)
            .zip(lrows.chunks_mut(per_tile))
            .collect();
        gemm_nt_visit(
            &q_dev.data,
            [rows.0, rows.1],
            (m, width, q_dev.cols),
            &mut lists,
            |(ls, lr), _, j0, [s0, s1]| {
                let cols = &records[j0..j0 + s0.cols];
                for i in 0..s0.rows {
                    let r = i * grid * k..(i + 1) * grid * k;
                    merge_query(
                        &mut ls[r.clone()],
                        &mut lr[r],
                        s0.row(i),
                        s1.row(i),
                        (coef, width, j0),
                        cols,
                        reach.as_ref(),
                    );
                }
            },
        );
        from_query_major(tops, &scores, &lrows, m);
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
        let step = nudge_n::Step::new(gamma);
        d.data
            .par_chunks_mut(cols)
            .zip(g.data.par_chunks(cols))
            .for_each(|(d, g)| step.rotate(d, g));
        Ok(())
    }
}

/// NUDGE-N's dev score of a moved record for one gamma: `a s0 + b s1`, a
/// multiply and an add (no FMA), the one formula both CPU merges use, so a
/// pruned merge scores exactly as the full one.
#[inline(always)]
fn merged((a, b): (f32, f32), s0: f32, s1: f32) -> f32 {
    a * s0 + b * s1
}

/// What bounds each moved record's NUDGE-N dev score over every gamma of
/// the grid. Each updated record is `a d + b G` with `|a d + b G| = 1` in
/// the plane of d and G, so for a query with `x = q.d` and `y = q.G` its
/// score `a x + b y` is at most the length of the query's projection on
/// that plane, `sqrt(x^2 + u^2)` with `u = (y - v x) / w`, `v = d.G` and
/// `w = |G - v d|`. Most records fall short of every list's worst entry by
/// that bound and are skipped for all the gammas at once: on tldr 0.3% of
/// the (query, record) pairs pass, where the merge had scored every one
/// for each of 25 gammas. One array per field, so the test vectorises.
struct Reach {
    v: Vec<f32>,
    /// `1/w`; infinite for a record whose G is (nearly) parallel to d,
    /// which is always scored.
    inv_w: Vec<f32>,
    /// The largest `|a|` and `|b|` over the grid, for the margin that
    /// covers rounding (see [`Reach::may_reach`]).
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Reach {
    fn of_block(planes: &[(f64, f64)], coef: &[(f32, f32)], width: usize) -> Reach {
        let mut r = Reach {
            v: Vec::with_capacity(width),
            inv_w: Vec::with_capacity(width),
            a: vec![0.0; width],
            b: vec![0.0; width],
        };
        for &(v, c) in planes {
            let w2 = c - v * v;
            // G = 0: the record never moves (a = 1, b = 0) and u = 0 bounds
            // it. Nearly parallel: u is ill-conditioned; always score it.
            r.inv_w.push(if c <= 0.0 {
                0.0
            } else if w2 > 1e-6 * c {
                (1.0 / w2.sqrt()) as f32
            } else {
                f32::INFINITY
            });
            r.v.push(v as f32);
        }
        for g in coef.chunks_exact(width.max(1)) {
            for (j, &(a, b)) in g.iter().enumerate() {
                r.a[j] = r.a[j].max(a.abs());
                r.b[j] = r.b[j].max(b.abs());
            }
        }
        r
    }

    /// Which of records `at..at + n` (`n` at most 32) may reach `thr` for
    /// some gamma, from their `x` and `y`: bit `l` of the mask for record
    /// `at + l` (a mask rather than an array of bools, which the compiler
    /// turned into byte packing and a test per 16 records). A record's
    /// score as the merge computes it in f32 is bounded with room for every rounding on the
    /// way: u's (8 ulps of its terms), the square root's, and 1e-5 of the
    /// magnitudes `|a x| + |b y|` for the f32 coefficients and the merge's
    /// own products and sum (a few ulps), and for d and the updated records
    /// being unit length only to f32 precision. A record let through that
    /// cannot enter is only scored for nothing; the merge then decides
    /// exactly, as without the bound. Lane-wise and branch-free, so that
    /// the compiler vectorises it.
    #[inline(always)]
    fn may_reach(&self, at: usize, x: &[f32], y: &[f32], thr: f32, n: usize) -> u32 {
        debug_assert!(n <= 32);
        let r = at..at + n;
        let (v, inv_w, am, bm) = (
            &self.v[r.clone()],
            &self.inv_w[r.clone()],
            &self.a[r.clone()],
            &self.b[r],
        );
        let (x, y) = (&x[..n], &y[..n]);
        let mut mask = 0u32;
        for l in 0..n {
            let ax = x[l].abs();
            let u = ((y[l] - v[l] * x[l]) * inv_w[l]).abs();
            let eu = 8.0 * f32::EPSILON * (y[l].abs() + (v[l] * x[l]).abs()) * inv_w[l];
            let uh = u + eu;
            let bound = (ax * ax + uh * uh).sqrt();
            let margin = 1e-5 * (bound + am[l] * ax + bm[l] * y[l].abs());
            // A NaN score compares false and enters no list anyway; an
            // infinite 1/w is let through.
            mask |= (((inv_w[l] == f32::INFINITY) | (bound + margin >= thr)) as u32) << l;
        }
        mask
    }
}

/// Every query's lists, one per gamma (`tops[g]`), gathered query-major:
/// query `q`'s list for gamma `g` at `(q * grid + g) * k`.
fn query_major(tops: &[TopK]) -> (Vec<f32>, Vec<u32>) {
    let grid = tops.len();
    let Some(first) = tops.first() else {
        return (Vec::new(), Vec::new());
    };
    let (nq, k) = (first.queries, first.k);
    let mut scores = vec![0.0f32; nq * grid * k];
    let mut rows = vec![0u32; nq * grid * k];
    for (g, top) in tops.iter().enumerate() {
        for q in 0..nq {
            let at = (q * grid + g) * k;
            scores[at..at + k].copy_from_slice(top.scores(q));
            rows[at..at + k].copy_from_slice(top.rows(q));
        }
    }
    (scores, rows)
}

/// The lists of [`query_major`], back into `tops` (`nq` queries).
fn from_query_major(tops: &mut [TopK], scores: &[f32], rows: &[u32], nq: usize) {
    let grid = tops.len();
    for (g, top) in tops.iter_mut().enumerate() {
        let k = top.k;
        for q in 0..nq {
            let at = (q * grid + g) * k;
            top.scores[q * k..(q + 1) * k].copy_from_slice(&scores[at..at + k]);
            top.rows[q * k..(q + 1) * k].copy_from_slice(&rows[at..at + k]);
        }
    }
}

/// One query's NUDGE-N merge over columns `j0..j0 + rows.len()` of a block
/// (`s0`, `s1` and `rows` those columns; `coef` the block's, `stride`
/// columns per gamma): every gamma's list, `ls`/`lr` holding them `k`
/// apart; only the records `reach` lets through, when there is one.
fn merge_query(
    ls: &mut [f32],
    lr: &mut [u32],
    s0: &[f32],
    s1: &[f32],
    (coef, stride, j0): (&[(f32, f32)], usize, usize),
    rows: &[u32],
    reach: Option<&Reach>,
) {
    if let Some(reach) = reach {
        merge_reachable(ls, lr, s0, s1, (coef, stride, j0), rows, reach);
        return;
    }
    let grid = coef.len() / stride.max(1);
    let k = ls.len() / grid.max(1);
    let w = rows.len();
    for g in 0..grid {
        offer_merged(
            &mut ls[g * k..(g + 1) * k],
            &mut lr[g * k..(g + 1) * k],
            s0,
            s1,
            &coef[g * stride + j0..g * stride + j0 + w],
            rows,
        );
    }
}

/// [`offer_merged`] for every gamma of one query, skipping the records
/// that [`Reach`] shows no list can take. `ls`/`lr` hold the query's lists,
/// one per gamma, `k` apart; each list still sees its candidates in
/// ascending column order, so the result is the unpruned merge's.
///
/// `s0`, `s1` and `rows` are the block's columns `j0..j0 + rows.len()`;
/// `coef` and `reach` are the whole block's, `stride` columns per gamma.
#[allow(clippy::too_many_arguments)]
fn merge_reachable(
    ls: &mut [f32],
    lr: &mut [u32],
    s0: &[f32],
    s1: &[f32],
    (coef, stride, j0): (&[(f32, f32)], usize, usize),
    rows: &[u32],
    reach: &Reach,
) {
    #[inline(always)]
    fn body(
        ls: &mut [f32],
        lr: &mut [u32],
        s0: &[f32],
        s1: &[f32],
        (coef, stride, j0): (&[(f32, f32)], usize, usize),
        rows: &[u32],
        reach: &Reach,
    ) {
        const L: usize = 16;
        let width = rows.len();
        let grid = coef.len() / stride.max(1);
        let k = ls.len() / grid.max(1);
        if k == 0 {
            return;
        }
        // The lowest worst entry of the query's lists: a record below it
        // for every gamma enters none. Lists only get better, so a
        // threshold taken earlier is still safe.
        let lowest = |ls: &[f32]| {
            (0..grid)
                .map(|g| ls[g * k + k - 1])
                .fold(f32::INFINITY, f32::min)
        };
        let mut thr = lowest(ls);
        let (s0, s1) = (&s0[..width], &s1[..width]);
        for at in (0..width).step_by(L) {
            let n = L.min(width - at);
            let (x, y) = (&s0[at..at + n], &s1[at..at + n]);
            let mut pass = if n == L {
                // A constant width: unrolled into whole vectors.
                reach.may_reach(j0 + at, x, y, thr, L)
            } else {
                reach.may_reach(j0 + at, x, y, thr, n)
            };
            if pass == 0 {
                continue;
            }
            // The records let through, in ascending order.
            while pass != 0 {
                let j = at + pass.trailing_zeros() as usize;
                pass &= pass - 1;
                for g in 0..grid {
                    let (a, b) = coef[g * stride + j0 + j];
                    let r = g * k..(g + 1) * k;
                    topk::push_into(
                        &mut ls[r.clone()],
                        &mut lr[r],
                        merged((a, b), s0[j], s1[j]),
                        rows[j],
                    );
                }
            }
            thr = lowest(ls);
        }
    }
    with_wide!(body(
        ls: &mut [f32] = ls,
        lr: &mut [u32] = lr,
        s0: &[f32] = s0,
        s1: &[f32] = s1,
        coef: (&[(f32, f32)], usize, usize) = (coef, stride, j0),
        rows: &[u32] = rows,
        reach: &Reach = reach
    ))
}

/// Offers `a_j s0[j] + b_j s1[j]`, the NUDGE-N dev score of moved record
/// `rows[j]` for one query and one gamma, to that query's list, each score
/// computed where it is tested ([`topk::offer_by`]).
fn offer_merged(
    list_scores: &mut [f32],
    list_rows: &mut [u32],
    s0: &[f32],
    s1: &[f32],
    coef: &[(f32, f32)],
    rows: &[u32],
) {
    #[inline(always)]
    fn body(
        ls: &mut [f32],
        lr: &mut [u32],
        s0: &[f32],
        s1: &[f32],
        coef: &[(f32, f32)],
        rows: &[u32],
    ) {
        topk::offer_by(ls, lr, rows, |at, out| {
            let r = at..at + out.len();
            let (s0, s1, coef) = (&s0[r.clone()], &s1[r.clone()], &coef[r]);
            for (j, o) in out.iter_mut().enumerate() {
                *o = merged(coef[j], s0[j], s1[j]);
            }
        });
    }
    with_wide!(body(
        ls: &mut [f32] = list_scores,
        lr: &mut [u32] = list_rows,
        s0: &[f32] = s0,
        s1: &[f32] = s1,
        coef: &[(f32, f32)] = coef,
        rows: &[u32] = rows
    ))
}

/// Tightens pair `p`'s bounds over the records `records` (ascending), its
/// query's scores `s0` and slopes `t` for them; the pair's own record, if
/// among them, is no competitor and is skipped.
fn tighten_pair(b: &mut Bounds, p: &Pair, records: &[u32], s0: &[f32], t: &[f32]) {
    if nudge_m::hopeless(b) {
        return;
    }
    let (before, after) = match records.binary_search(&p.record) {
        Ok(j) => (j, j + 1),
        Err(_) => (records.len(), records.len()),
    };
    tighten_all(b, p.s, p.t, &s0[..before], &t[..before]);
    tighten_all(b, p.s, p.t, &s0[after..], &t[after..]);
}

/// [`nudge_m::tighten`] over a run of competitors, written lane-wise so the
/// compiler vectorises it. Max, min and "or" do not depend on the order in
/// which they are taken, so this equals the sequential rule bit for bit,
/// except that a pair found [`nudge_m::hopeless`] (at the start, or at a
/// check every [`HOPELESS_CHECK`] competitors) is left there: its bounds
/// are then those of the competitors seen so far, and its interval `None`
/// as with all of them. On nfcorpus (25 answers per dev query) that
/// spares most of the division per pair and competitor that dominates
/// NUDGE-M's bounds.
fn tighten_all(b: &mut Bounds, s_x: f32, t_x: f32, s: &[f32], t: &[f32]) {
    with_wide!(tighten_all_portable(
        b: &mut Bounds = b,
        s_x: f32 = s_x,
        t_x: f32 = t_x,
        s: &[f32] = s,
        t: &[f32] = t
    ))
}

/// Competitors between two checks of whether a pair is hopeless in
/// [`tighten_all`]: often enough to stop soon after it is, rarely enough
/// that the check (a fold of the lanes) costs nothing beside the divisions.
const HOPELESS_CHECK: usize = 256;

#[inline(always)]
fn tighten_all_portable(b: &mut Bounds, s_x: f32, t_x: f32, s: &[f32], t: &[f32]) {
    const L: usize = 16;
    if nudge_m::hopeless(b) {
        return;
    }
    let mut low = [b.low; L];
    let mut high = [b.high; L];
    let mut dropped = [false; L];
    // The lanes folded into `b`: at the end, or at a check that finds the
    // pair hopeless (then with the competitors seen so far).
    let fold = |b: &mut Bounds, low: &[f32; L], high: &[f32; L], dropped: &[bool; L]| {
        for l in 0..L {
            b.low = b.low.max(low[l]);
            b.high = b.high.min(high[l]);
            b.dropped |= dropped[l];
        }
    };
    let lanes = s.len() / L * L;
    for (at, (sc, tc)) in s[..lanes]
        .chunks_exact(L)
        .zip(t[..lanes].chunks_exact(L))
        .enumerate()
    {
        for l in 0..L {
            let g = t_x - tc[l];
            let d = sc[l] - s_x;
            let a = d / (g + nudge_m::EPS);
            low[l] = if g > 0.0 && a > low[l] { a } else { low[l] };
            high[l] = if g < 0.0 && a < high[l] { a } else { high[l] };
            dropped[l] |= g == 0.0 && d > 0.0;
        }
        if (at + 1) % (HOPELESS_CHECK / L) == 0 {
            // Folded into a copy, so that a pair that goes on keeps the
            // bits of the fold at the end.
            let mut so_far = *b;
            fold(&mut so_far, &low, &high, &dropped);
            if nudge_m::hopeless(&so_far) {
                *b = so_far;
                return;
            }
        }
    }
    fold(b, &low, &high, &dropped);
    for j in lanes..s.len() {
        nudge_m::tighten(b, s_x, t_x, s[j], t[j]);
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
    fn gemm_nt_does_not_depend_on_the_split_of_b_or_threads() {
        // gemm alone rounds the same dot product differently for a 1-row b
        // (its gemv path) or a small one; gemm_nt must not. m spans two row
        // tiles, then three; 2 and 3 rows make tiles that gemm would take
        // its small-tile path for if ragged tiles narrower than RAGGED_MIN
        // went unpadded (2 rows x 128 columns differ), and k = 600 is
        // blocked at 512 on that path.
        for (m, k) in [
            (2, 16),
            (2, 600),
            (3, 600),
            (GEMM_ROWS + 4, 16),
            (2 * GEMM_ROWS + 4, 600),
        ] {
            split_and_threads(m, k);
        }
    }

    fn split_and_threads(m: usize, k: usize) {
        let n = 600;
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut whole = vec![0.0; m * n];
        gemm_nt(&a, &b, m, n, k, &mut whole);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // Splits that leave ragged tiles under, at and over RAGGED_MIN.
            for split in [1, 7, RAGGED_MIN - 1, RAGGED_MIN, 300, 513, 600] {
                let mut start = 0;
                while start < n {
                    let w = split.min(n - start);
                    let mut part = vec![0.0; m * w];
                    pool.install(|| {
                        gemm_nt(&a, &b[start * k..(start + w) * k], m, w, k, &mut part)
                    });
                    for i in 0..m {
                        for j in 0..w {
                            assert_eq!(
                                part[i * w + j].to_bits(),
                                whole[i * n + start + j].to_bits(),
                                "split {split}, {threads} threads, query {i}, row {}",
                                start + j
                            );
                        }
                    }
                    // The visited tiles hold the same bits, and cover
                    // every element once.
                    let mut seen = vec![0usize; row_tiles(m).0];
                    pool.install(|| {
                        gemm_nt_visit(
                            &a,
                            [&b[start * k..(start + w) * k]],
                            (m, w, k),
                            &mut seen,
                            |count, i0, j0, [mut tile]| {
                                for i in 0..tile.rows {
                                    for (j, v) in tile.row_mut(i).iter().enumerate() {
                                        assert_eq!(
                                            v.to_bits(),
                                            whole[(i0 + i) * n + start + j0 + j].to_bits(),
                                            "visited tile, split {split}, query {}, row {}",
                                            i0 + i,
                                            start + j0 + j
                                        );
                                    }
                                }
                                *count += tile.rows * tile.cols;
                            },
                        )
                    });
                    assert_eq!(seen.iter().sum::<usize>(), m * w, "split {split}");
                    start += w;
                }
            }
        }
    }

    #[test]
    fn pruned_nudge_n_merge_equals_the_full_merge() {
        // Records of every kind the update knows: G = 0, G parallel to d,
        // v < 0, the clamp to Ghat, and rotations; queries near some of
        // them, so that lists fill with moved records too.
        let (nq, w, d, k) = (37, 61, 12, 3);
        let f = |i: usize, s: f32| ((i as f32 + 1.0) * s).sin();
        let mut dm = Matrix::zeros(w, d);
        let mut g = Matrix::zeros(w, d);
        for j in 0..w {
            let row: Vec<f32> = (0..d).map(|c| f(j * d + c, 0.37)).collect();
            dm.data[j * d..(j + 1) * d].copy_from_slice(&row);
            normalize_row(&mut dm.data[j * d..(j + 1) * d]);
            for c in 0..d {
                g.data[j * d + c] = match j % 5 {
                    0 => 0.0,
                    1 => 2.5 * dm.data[j * d + c],
                    2 => -dm.data[j * d + c] + 0.1 * f(c, 1.3),
                    3 => dm.data[j * d + c] + 0.05 * f(j + c, 0.7),
                    _ => f(j * 7 + c, 0.91),
                };
            }
        }
        let mut q = Matrix::zeros(nq, d);
        for i in 0..nq {
            for c in 0..d {
                q.data[i * d + c] = if i % 3 == 0 {
                    dm.data[(i % w) * d + c] + 0.01 * f(i + c, 0.3)
                } else {
                    f(i * d + c, 0.53)
                };
            }
        }
        let s0 = Cpu.similarity(&q, &dm).unwrap();
        let s1 = Cpu.similarity(&q, &g).unwrap();
        let planes: Vec<(f64, f64)> = (0..w).map(|j| nudge_n::dots(dm.row(j), g.row(j))).collect();
        let grid = nudge_n::grid();
        let mut coef = Vec::new();
        for &gamma in &grid {
            let step = nudge_n::Step::new(gamma);
            coef.extend(planes.iter().map(|&(v, c)| {
                let (a, b) = step.coefficients(v, c);
                (a as f32, b as f32)
            }));
        }
        let records: Vec<u32> = (0..w as u32).map(|j| 2 * j + 1).collect();
        let mut start = TopK::new(nq, k);
        for i in 0..nq {
            start.push(i, 0.2 + 0.01 * (i % 7) as f32, 1000 + i as u32);
        }
        let run = |planes: Option<&[(f64, f64)]>| {
            let block = MovedBlock {
                records: &records,
                s0: &s0,
                s1: &s1,
                planes,
            };
            let mut tops = vec![start.clone(); grid.len()];
            Cpu.nudge_n_merge(&block, &coef, &mut tops).unwrap();
            tops
        };
        let (full, pruned) = (run(None), run(Some(&planes)));
        let mut moved_in = 0;
        for (a, b) in full.iter().zip(&pruned) {
            assert_eq!(a.rows, b.rows);
            let bits = |t: &TopK| t.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b));
            moved_in += a.rows.iter().filter(|&&r| r < 1000).count();
        }
        assert!(moved_in > 0, "moved records enter some lists");
    }

    #[test]
    fn lane_wise_tighten_equals_the_sequential_rule() {
        let n = 103;
        let s: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 * 0.013).sin())
            .collect();
        let mut t: Vec<f32> = (0..n)
            .map(|i| ((i * 17 % 89) as f32 * 0.021).cos() * 0.3)
            .collect();
        t[40] = 0.1; // a zero slope difference with a higher score: dropped
        for (sx, tx) in [(0.2f32, 0.1f32), (0.9, -0.2), (-0.5, 0.35)] {
            let mut want = Bounds::OPEN;
            for j in 0..n {
                nudge_m::tighten(&mut want, sx, tx, s[j], t[j]);
            }
            let mut got = Bounds::OPEN;
            tighten_all(&mut got, sx, tx, &s, &t);
            assert_eq!(got, want);
        }
    }

    /// Over runs longer than [`HOPELESS_CHECK`], a pair that stays possible
    /// gets the sequential rule's bounds bit for bit, and one that becomes
    /// hopeless stops at the first check that finds it so, with the bounds
    /// of the competitors before that check (so its interval is `None` as
    /// with all of them). The pair scores above every competitor and its
    /// slope is in the middle of theirs, so its high bound falls all along
    /// the run; it is made hopeless by a competitor with a higher score and
    /// slope at 10, 300 or 1,500, or by one with a higher score and the
    /// same slope (dropped) at 700, and then competitors further on that
    /// lower its high bound again, which a pair that went on would see.
    /// Also one hopeless from the start.
    #[test]
    fn tighten_stops_at_the_check_that_finds_a_pair_hopeless() {
        let n = 1_700;
        let (sx, tx) = (0.6f32, 0.0f32);
        let base_s: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 1009) as f32 * 0.0013).sin() * 0.5)
            .collect();
        let base_t: Vec<f32> = (0..n)
            .map(|i| ((i * 17 % 997) as f32 * 0.0021).cos() * 0.3 - 0.1)
            .collect();
        let sequential = |b: Bounds, s: &[f32], t: &[f32]| {
            let mut b = b;
            for j in 0..s.len() {
                nudge_m::tighten(&mut b, sx, tx, s[j], t[j]);
            }
            b
        };
        let (mut stopped_early, mut went_on) = (0, 0);
        for (case, kill_at) in [None, Some(10), Some(300), Some(1_500), Some(700)]
            .into_iter()
            .enumerate()
        {
            let (mut s, mut t) = (base_s.clone(), base_t.clone());
            if let Some(at) = kill_at {
                (s[at], t[at]) = if at == 700 { (0.7, tx) } else { (0.7, 0.4) };
                // Ever stronger competitors after it: high keeps falling.
                for j in (at + 1..n).filter(|j| j % 100 == 50) {
                    (s[j], t[j]) = (0.61 + j as f32 * 1e-4, 0.05);
                }
            }
            let hopeless_start = Bounds {
                low: 0.5,
                high: 0.4,
                dropped: false,
            };
            for start in [Bounds::OPEN, hopeless_start] {
                let mut got = start;
                tighten_all(&mut got, sx, tx, &s, &t);
                let full = sequential(start, &s, &t);
                if !nudge_m::hopeless(&full) {
                    assert_eq!(
                        got, full,
                        "case {case}: a possible pair sees every competitor"
                    );
                    assert!(got.high < 1.0, "case {case}: its high bound fell");
                    went_on += 1;
                    continue;
                }
                // The first check (or the start) where it was hopeless.
                let seen = (0..=n / HOPELESS_CHECK)
                    .map(|c| c * HOPELESS_CHECK)
                    .find(|&m| nudge_m::hopeless(&sequential(start, &s[..m], &t[..m])))
                    .unwrap_or(n);
                assert_eq!(
                    got,
                    sequential(start, &s[..seen], &t[..seen]),
                    "case {case}"
                );
                if seen < n && seen > 0 {
                    assert_ne!(got, full, "case {case}: later competitors matter");
                    stopped_early += 1;
                }
            }
        }
        assert_eq!((went_on, stopped_early), (1, 4));
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
                rows: Rows::Normalize,
                skip: Some(&skip),
            })
            .unwrap();
        let r = scan.push(&[2.0, 0.0, 5.0, 0.0], 0).unwrap();
        assert_eq!(r, RowReport::default());
        let r = scan.push(&[0.0, 0.0, 0.6, 0.8], 2).unwrap();
        assert_eq!(r.zero, vec![2]);
        let (top, _) = scan.finish().unwrap();
        // Row 1 would score 1.0 but is masked; row 0 scores 1.0, row 3 0.6.
        assert_eq!(top.entries(0).collect::<Vec<_>>(), vec![(1.0, 0), (0.6, 3)]);
    }

    /// A short last chunk is spread over the chunks before it; whole GEMM
    /// blocks either way.
    #[test]
    fn chunks_leave_no_short_tail() {
        let chunk = Cpu.chunk_rows(111, 384, 1 << 20);
        assert!(chunk.is_multiple_of(GEMM_BLOCK));
        // SciFact: 2560 + 2560 + 63 rows became 3072 + 2111.
        assert_eq!(chunk, 2560);
        assert_eq!(Cpu.chunk_rows(111, 384, 5183), 3072);
        // A tail of a quarter or more, or no tail, stays as it is.
        assert_eq!(Cpu.chunk_rows(111, 384, 2 * chunk + 640), chunk);
        assert_eq!(Cpu.chunk_rows(111, 384, 2 * chunk), chunk);
        assert_eq!(Cpu.chunk_rows(111, 384, 100), chunk);
        for rows in [chunk + 1, 3 * chunk + 7, 10 * chunk + 100] {
            let c = Cpu.chunk_rows(111, 384, rows);
            let tail = rows % c;
            assert!(
                c.is_multiple_of(GEMM_BLOCK) && (tail == 0 || tail >= c / 4 || rows < c),
                "{rows}: {c}"
            );
        }
    }

    /// `f` on a pool of `threads` threads (which decides [`by_tile`]).
    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(f)
    }

    /// Values in [-0.5, 0.5) from a small LCG seeded with `seed`.
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut seed = seed;
        move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        }
    }

    /// Query `i`'s top `k` (score, row) by brute force from the full `nq x
    /// n` score matrix `all`, leaving out the rows `skip` marks.
    fn brute_topk(all: &[f32], n: usize, skip: &[bool], i: usize, k: usize) -> Vec<(f32, u32)> {
        let mut want: Vec<(f32, u32)> = (0..n)
            .filter(|&r| !skip[r])
            .map(|r| (all[i * n + r], r as u32))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        want
    }

    #[test]
    fn tile_by_tile_and_whole_block_selection_agree() {
        // 600 queries make three row tiles: on one thread the lists are
        // filled tile by tile as the GEMM goes, on two from the whole score
        // block. Row 10 has copies at 600 and 650 (ties across a column
        // tile boundary, won by the lower row); every tenth row is masked
        // (scored in place, as NaN), and chunks of 30 ending in the masked
        // tail are compacted first.
        let (n, d, nq, k) = (700usize, 24usize, 600usize, 7usize);
        let mut next = uniform(11);
        let mut corpus: Vec<f32> = (0..n * d).map(|_| next()).collect();
        for copy in [600, 650] {
            corpus.copy_within(10 * d..11 * d, copy * d);
        }
        let mut q = Matrix::new(nq, d, (0..nq * d).map(|_| next()).collect());
        // Some queries are row 10 itself, so it (and its copies) rank first.
        for i in (0..nq).step_by(50) {
            q.row_mut(i).copy_from_slice(&corpus[10 * d..11 * d]);
        }
        let skip: Vec<bool> = (0..n).map(|r| r % 10 == 3 || r >= 680).collect();
        let run = |threads: usize, chunk: usize| {
            in_pool(threads, || {
                assert_eq!(by_tile(nq), threads == 1, "{threads} threads");
                let mut scan = Cpu
                    .scan(ScanSpec {
                        queries: &q,
                        k,
                        rows: Rows::AsStored,
                        skip: Some(&skip),
                    })
                    .unwrap();
                for start in (0..n).step_by(chunk) {
                    let end = (start + chunk).min(n);
                    scan.push(&corpus[start * d..end * d], start).unwrap();
                }
                scan.finish().unwrap().0
            })
        };
        let mut all = vec![0.0f32; nq * n];
        gemm_nt(&q.data, &corpus, nq, n, d, &mut all);
        let want: Vec<Vec<(f32, u32)>> =
            (0..nq).map(|i| brute_topk(&all, n, &skip, i, k)).collect();
        for chunk in [n, 30] {
            for threads in [1, 2] {
                let top = run(threads, chunk);
                for (i, want) in want.iter().enumerate() {
                    assert_eq!(
                        &top.entries(i).collect::<Vec<_>>(),
                        want,
                        "query {i}, chunks of {chunk}, {threads} threads"
                    );
                }
            }
        }
        let top = run(1, n);
        assert_eq!(&top.rows(0)[..3], &[10, 600, 650], "ties by row");
    }

    /// One case of the NUDGE-M block tests: 600 queries of 24 dimensions
    /// and a block of `n` moved records (rows, G rows with records 40..60
    /// sharing one G, record ids `3j + 1`, 1/|G| values).
    struct BlockCase {
        n: usize,
        q: Matrix,
        rows_d: Vec<f32>,
        rows_g: Vec<f32>,
        records: Vec<u32>,
        inv_norm: Vec<f32>,
    }

    /// The block tests' cases from one seed: blocks of 700 records (two
    /// column tiles, 512 + 188) and 530 (a padded ragged one, 512 + 18).
    /// Every seventh query that has a pair (see [`pair_column`]) is made
    /// equal to its pair's record: that pair then scores highest at gamma
    /// 0 and stays possible, so its bounds are compared bit for bit (random
    /// pairs against hundreds of competitors all end hopeless).
    fn nudge_m_block_cases(seed: u64) -> Vec<BlockCase> {
        let (nq, d) = (600usize, 24usize);
        let mut next = uniform(seed);
        let q = Matrix::new(nq, d, (0..nq * d).map(|_| next()).collect());
        [700usize, 530]
            .into_iter()
            .map(|n| {
                let rows_d: Vec<f32> = (0..n * d).map(|_| next()).collect();
                let mut rows_g: Vec<f32> = (0..n * d).map(|_| next()).collect();
                for j in 41..60 {
                    rows_g.copy_within(40 * d..41 * d, j * d);
                }
                let mut q = q.clone();
                for i in (0..nq).filter(|i| i % 7 == 1 && i % 3 != 0) {
                    let j = pair_column(i, n);
                    q.row_mut(i).copy_from_slice(&rows_d[j * d..(j + 1) * d]);
                }
                BlockCase {
                    n,
                    q,
                    rows_d,
                    rows_g,
                    records: (0..n as u32).map(|j| 3 * j + 1).collect(),
                    inv_norm: (0..n).map(|j| 0.5 + (j % 7) as f32 * 0.25).collect(),
                }
            })
            .collect()
    }

    /// The block column of query `i`'s pair in the NUDGE-M block tests.
    fn pair_column(i: usize, n: usize) -> usize {
        if i.is_multiple_of(5) {
            40 + i % 20
        } else {
            (i * 37) % n
        }
    }

    /// Asserts `got` agrees with `want`: the same pairs hopeless (their
    /// bounds are then those of however many competitors a path saw before
    /// it found so, see [`tighten_all`]), the others' bounds bit for bit.
    /// `want` must make some pairs hopeless and raise some bounds (so the
    /// case exercises both).
    fn same_bounds(want: &[Bounds], got: &[Bounds], n: usize) {
        use crate::method::nudge_m::hopeless;
        assert!(want.iter().any(hopeless), "some pairs hopeless");
        assert!(
            want.iter()
                .any(|b| !hopeless(b) && (b.low > 0.0 || b.high < nudge_m::LARGE)),
            "some possible pair's bounds moved"
        );
        assert_eq!(want.len(), got.len());
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            if hopeless(w) {
                assert!(hopeless(g), "block of {n}, pair {i}: {g:?} is not hopeless");
                continue;
            }
            assert_eq!(
                (w.low.to_bits(), w.high.to_bits(), w.dropped),
                (g.low.to_bits(), g.high.to_bits(), g.dropped),
                "block of {n}, pair {i}: {w:?} against {g:?}"
            );
        }
    }

    /// NUDGE-M's bounds over a block, tile by tile (one thread, three row
    /// tiles) and the default way (S0 and the slopes in full, then
    /// `nudge_m_bounds`), agree ([`same_bounds`]): blocks of two column
    /// tiles and of a padded ragged one; pairs whose record is in the block
    /// (their own values read from it, as the search does) and pairs whose
    /// record is not; records that share a G (equal slopes, so pairs get
    /// dropped).
    #[test]
    fn nudge_m_block_by_tile_equals_the_default() {
        use crate::backend::{nudge_m_block_via_host, nudge_m_scores};
        for case in nudge_m_block_cases(5) {
            let BlockCase {
                n,
                q,
                rows_d,
                rows_g,
                records,
                inv_norm,
            } = case;
            let nq = q.rows;
            let mut full = Default::default();
            nudge_m_scores(&Cpu, &q, (&rows_d, &rows_g), &inv_norm, &mut full).unwrap();
            let (s0, t) = &full;
            // Every third query has no pair; the others one in the block
            // (own values from S0 and the slopes) and one outside it.
            let mut pairs = Vec::new();
            for i in (0..nq).filter(|i| i % 3 != 0) {
                let j = pair_column(i, n);
                pairs.push(Pair {
                    query: i as u32,
                    record: records[j],
                    s: s0.row(i)[j],
                    t: t.row(i)[j],
                });
                pairs.push(Pair {
                    query: i as u32,
                    record: 3 * j as u32 + 2,
                    s: 0.1,
                    t: 0.0,
                });
            }
            let run = |threads: usize, default: bool| {
                in_pool(threads, || {
                    assert_eq!(by_tile(nq), threads == 1);
                    let mut bounds = vec![Bounds::OPEN; pairs.len()];
                    let mut scratch = Default::default();
                    let rows = (&rows_d[..], &rows_g[..]);
                    if default {
                        nudge_m_block_via_host(
                            &Cpu,
                            &q,
                            rows,
                            &records,
                            &inv_norm,
                            &pairs,
                            &mut bounds,
                            &mut scratch,
                        )
                    } else {
                        Cpu.nudge_m_block(
                            &q,
                            rows,
                            &records,
                            &inv_norm,
                            &pairs,
                            &mut bounds,
                            &mut scratch,
                        )
                    }
                    .unwrap();
                    bounds
                })
            };
            let want = run(2, true);
            let got = run(1, false);
            same_bounds(&want, &got, n);
        }
    }

    /// NUDGE-M's first block band by band (one thread, three row tiles)
    /// and the default way (S0 and the slopes in full, own values picked,
    /// then `nudge_m_bounds`) give the pairs the same own values bit for
    /// bit and agreeing bounds ([`same_bounds`]): blocks of two column
    /// tiles and of a padded ragged one; queries with no pair, with one pair whose record is in
    /// the block, and with two (each the other's competitor) beside one
    /// whose record is static; records that share a G; a static top-1 that
    /// raises some bounds before the block does.
    #[test]
    fn nudge_m_first_block_by_band_equals_the_default() {
        use crate::backend::nudge_m_first_block_via_host;
        use crate::method::nudge_m;
        for case in nudge_m_block_cases(17) {
            let BlockCase {
                n,
                q,
                rows_d,
                rows_g,
                records,
                inv_norm,
            } = case;
            let nq = q.rows;
            let mut start = Vec::new();
            for i in (0..nq).filter(|i| i % 3 != 0) {
                let j = pair_column(i, n);
                let mut own = vec![j];
                if i % 4 == 1 {
                    own.push((j + 1 + i % 50) % n);
                }
                own.sort_unstable();
                for j in own {
                    start.push(Pair {
                        query: i as u32,
                        record: records[j],
                        s: f32::NAN,
                        t: f32::NAN,
                    });
                }
                start.push(Pair {
                    query: i as u32,
                    record: 3 * j as u32 + 2,
                    s: 0.1,
                    t: 0.0,
                });
            }
            // The best static record of query i scores 0.2 + i/3000.
            let static_bounds = |p: &Pair| {
                let top1 = (0.2 + p.query as f32 / 3000.0, 2);
                nudge_m::static_bounds(p, Some(top1))
            };
            let run = |threads: usize, default: bool| {
                in_pool(threads, || {
                    assert_eq!(by_tile(nq), threads == 1);
                    let mut pairs = start.clone();
                    let mut scratch = Default::default();
                    let rows = (&rows_d[..], &rows_g[..]);
                    let bounds = if default {
                        nudge_m_first_block_via_host(
                            &Cpu,
                            &q,
                            rows,
                            &records,
                            &inv_norm,
                            &mut pairs,
                            &static_bounds,
                            &mut scratch,
                        )
                    } else {
                        Cpu.nudge_m_first_block(
                            &q,
                            rows,
                            &records,
                            &inv_norm,
                            &mut pairs,
                            &static_bounds,
                            &mut scratch,
                        )
                    }
                    .unwrap();
                    (bounds, pairs)
                })
            };
            let (want, want_pairs) = run(2, true);
            let (got, got_pairs) = run(1, false);
            let own = |p: &Pair| (p.query, p.record, p.s.to_bits(), p.t.to_bits());
            for (i, (w, g)) in want_pairs.iter().zip(&got_pairs).enumerate() {
                assert_eq!(own(w), own(g), "block of {n}, pair {i}");
                assert!(!w.s.is_nan() && !w.t.is_nan(), "pair {i}: own values read");
            }
            same_bounds(&want, &got, n);
        }
    }

    /// NUDGE-N's merge of a block, tile by tile (one thread, three row
    /// tiles) and the default way (S0 and S1 in full, then
    /// `nudge_n_merge`), gives the same lists, with and without the reach
    /// test, for blocks of two column tiles and of a padded ragged one,
    /// into lists that already hold entries.
    #[test]
    fn nudge_n_block_by_tile_equals_the_default() {
        use crate::backend::nudge_n_block_via_host;
        let (nq, d, grid, k) = (600usize, 24usize, 4usize, 5usize);
        let mut next = uniform(9);
        let q = Matrix::new(nq, d, (0..nq * d).map(|_| next()).collect());
        for n in [700usize, 530] {
            let rows_d: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let rows_g: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let records: Vec<u32> = (0..n as u32).map(|j| 2 * j + 1).collect();
            let coef: Vec<(f32, f32)> = (0..grid * n)
                .map(|_| (1.0 + next(), next() * 0.5))
                .collect();
            let planes: Vec<(f64, f64)> = (0..n)
                .map(|_| {
                    let v = next() as f64;
                    (v, v * v + 0.5)
                })
                .collect();
            // Lists that already hold a few entries (even rows, not in the
            // block).
            let mut start = vec![TopK::new(nq, k); grid];
            for (g, top) in start.iter_mut().enumerate() {
                for i in 0..nq {
                    for e in 0..(i + g) % 4 {
                        top.push(i, 0.2 * next(), 2 * (i + e) as u32);
                    }
                }
            }
            for planes in [None, Some(&planes[..])] {
                let run = |threads: usize, default: bool| {
                    in_pool(threads, || {
                        assert_eq!(by_tile(nq), threads == 1);
                        let mut tops = start.clone();
                        let mut scratch = Default::default();
                        let rows = (&rows_d[..], &rows_g[..]);
                        if default {
                            nudge_n_block_via_host(
                                &Cpu,
                                &q,
                                rows,
                                &records,
                                planes,
                                &coef,
                                &mut tops,
                                &mut scratch,
                            )
                        } else {
                            Cpu.nudge_n_block(
                                &q,
                                rows,
                                &records,
                                planes,
                                &coef,
                                &mut tops,
                                &mut scratch,
                            )
                        }
                        .unwrap();
                        tops
                    })
                };
                let want = run(2, true);
                assert_ne!(want, start, "the block enters the lists");
                assert_eq!(
                    run(1, false),
                    want,
                    "block of {n}, planes {}",
                    planes.is_some()
                );
            }
        }
    }

    /// Rows scored as stored with few of them masked take the in-place path
    /// (masked scores set to NaN), many masked the compacting one: the lists
    /// come out the same bit for bit, equal to a brute-force top-k, and a
    /// masked row never enters one even when there are fewer than k others.
    #[test]
    fn in_place_and_compacting_scans_agree() {
        let (n, d, nq, k) = (700usize, 24usize, 9usize, 5usize);
        let mut next = uniform(7);
        let corpus: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let q = Matrix::new(nq, d, (0..nq * d).map(|_| next()).collect());
        let skip: Vec<bool> = (0..n).map(|r| r % 10 == 3 || r >= 690).collect();
        let run_as = |chunk: usize, rows: Rows| {
            let mut scan = Cpu
                .scan(ScanSpec {
                    queries: &q,
                    k,
                    rows,
                    skip: Some(&skip),
                })
                .unwrap();
            let mut report = RowReport::default();
            for start in (0..n).step_by(chunk) {
                let end = (start + chunk).min(n);
                report.extend(scan.push(&corpus[start * d..end * d], start).unwrap());
            }
            assert_eq!(
                report,
                RowReport::default(),
                "clean rows, nothing to report"
            );
            scan.finish().unwrap().0
        };
        let run = |chunk: usize| run_as(chunk, Rows::AsStored);
        // One chunk: 10% masked, in place. Chunks of 10 rows ending in the
        // masked tail (690..700): compacting. Chunks of 3: a mix. Rows the
        // caller checked are scored the same on every path.
        let whole = run(n);
        assert_eq!(whole, run(10));
        assert_eq!(whole, run(3));
        for chunk in [n, 10, 3] {
            assert_eq!(whole, run_as(chunk, Rows::Checked));
        }
        let mut all = vec![0.0f32; nq * n];
        gemm_nt(&q.data, &corpus, nq, n, d, &mut all);
        for i in 0..nq {
            assert_eq!(
                whole.entries(i).collect::<Vec<_>>(),
                brute_topk(&all, n, &skip, i, k)
            );
        }
        // In place (1 of 8 rows masked) with k larger than what is left: the
        // lists hold the 7 others and not the masked row 683.
        let mut scan = Cpu
            .scan(ScanSpec {
                queries: &q,
                k: 10,
                rows: Rows::AsStored,
                skip: Some(&skip),
            })
            .unwrap();
        scan.push(&corpus[682 * d..690 * d], 682).unwrap();
        let (top, _) = scan.finish().unwrap();
        for i in 0..nq {
            let mut rows: Vec<u32> = top.entries(i).map(|e| e.1).collect();
            rows.sort_unstable();
            assert_eq!(rows, vec![682, 684, 685, 686, 687, 688, 689]);
        }
    }
}
