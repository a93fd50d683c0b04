//! The streaming top-k scan on the GPU: per pushed chunk, normalise (or only
//! check) the rows, score them against the resident queries, and fold the
//! scores into running top-k lists that stay on the device until `finish`.
//!
//! Why it is shaped this way: the host must never wait for the device while
//! it has chunks to read. Each push records one submission (normalise or
//! check, copy the per-row status to a mappable buffer, GEMM, top-k) into a
//! slot of a ring of [`RING`] and returns at once; the host blocks only when
//! the ring is full, for the slot's previous chunk, whose row status it then
//! reads back and reports (so a push reports the rows of an earlier push,
//! and `finish` the rest, as [`Scan`] allows). Several chunks are thus in
//! flight: the device computes while the host reads, checks and uploads the
//! next ones. Waiting for each chunk's status before going on, as the scan
//! first did, also waited for the previous chunk's GEMM (one queue), so the
//! host and the device took turns. A fit's pass has checked its rows on the
//! host already (`Rows::Checked`): then there is no status at all. The ring
//! also bounds wgpu's staging memory. Only the top-k lists (and the small
//! status arrays) are ever read back.
//!
//! The f32 scan fuses the top-k into the GEMM (see [`Fused`]): the score
//! block is written only when a chunk overflows a candidate list and is
//! redone the unfused way (`topk.wgsl`). The f16 scan, and an f32 scan whose
//! k is too large for the merge's workgroup memory, always run unfused.
//!
//! With f16 precision the host converts each chunk to f16 before the upload
//! (half the bytes over the bus, which bounds a scan on a fast GPU), and the
//! chunk is normalised and scored as f16 with f32 sums. A chunk whose values
//! f16 cannot hold goes up as f32 instead, so the row report never changes.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::context::Uniform;
use super::kernel::{
    CandParams, FusedParams, GemmFused, GemmParams, GemmTiled, NormParams, Normalize, NormalizeF16,
    TiledKernels, TiledParams, ToF16, TopkFusedArm, TopkFusedMerge, TopkMerge, TopkParams,
    TopkPartial, grid, grid_items,
};
use super::ops::{self, SEG};
use super::tiled::Tile;
use super::{Gpu, Precision, d4, pad_block, pad_rows_to};
use crate::backend::{Backend, cpu};
use crate::backend::{RowReport, Rows, Scan, ScanSpec, TopK};
use crate::error::{Error, Result};

/// Chunks in flight at most: one being read and uploaded by the host, one
/// queued, one computing.
pub const RING: usize = 3;

struct Slot {
    /// The chunk's upload staging, persistent and host-visible: filled
    /// through its mapping, copied into `chunk` (or `packed`) by the
    /// slot's submission, mapped again right after it.
    upload: wgpu::Buffer,
    /// The pending map of `upload` (`None`: mapped and ready to fill).
    mapping: Option<std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>>,
    chunk: wgpu::Buffer,
    packed: Option<wgpu::Buffer>,
    status: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// The slot's last submission, until the host has waited for it.
    last: Option<wgpu::SubmissionIndex>,
    /// `(first_row, rows)` whose status that submission copies to
    /// `staging`, still to be reported; `None` for a chunk that was not
    /// checked.
    checks: Option<(usize, usize)>,
}

impl Slot {
    /// Waits until `upload` is mapped again (its last copy done).
    fn ready_upload(&mut self, ctx: &super::context::Context) -> Result<()> {
        let Some(rx) = self.mapping.take() else {
            return Ok(());
        };
        ctx.wait_mapped(&rx)?.map_err(|e| {
            Error::gpu(format!(
                "GPU {}: cannot map an upload buffer: {e}",
                ctx.info.name
            ))
        })
    }

    /// Waits for the slot's last submission and returns its rows' report
    /// (empty when it had no checks).
    fn settle(&mut self, ctx: &super::context::Context, zero_counts: bool) -> Result<RowReport> {
        let Some(idx) = self.last.take() else {
            return Ok(RowReport::default());
        };
        match self.checks.take() {
            Some((first_row, n)) => {
                let status: Vec<u32> = ctx.read_mapped(&self.staging, n as u64 * 4, Some(idx))?;
                Ok(ops::report_from_status(&status, first_row, zero_counts))
            }
            None => {
                ctx.wait(Some(idx))?;
                Ok(RowReport::default())
            }
        }
    }
}

/// A running top-k scan on the device (see the module comment).
pub struct GpuScan<'a> {
    gpu: &'a Gpu,
    q: usize,
    d: usize,
    k: usize,
    normalize: bool,
    /// The rows were checked (and normalised) by the caller: no checks here.
    checked: bool,
    /// Reports of settled chunks not yet handed to the caller.
    late: RowReport,
    f16: bool,
    /// f32 chunks are scored by the register-blocked GEMM (`tiled.rs`) on
    /// shapes padded to its tile: queries to `q_pad` rows, chunks to whole
    /// column tiles, rows to `w4` vec4s.
    tiled: bool,
    /// The tiled GEMMs (and their tile) this scan runs.
    tk: Arc<TiledKernels>,
    q_pad: usize,
    /// vec4s per padded row of the queries and the chunk.
    w4: usize,
    /// Most rows per slot; larger pushes are split.
    cap: usize,
    seg_len: usize,
    queries: wgpu::Buffer,
    skip: wgpu::Buffer,
    use_skip: bool,
    run_s: wgpu::Buffer,
    run_r: wgpu::Buffer,
    /// Per-chunk buffers, sized by the largest chunk pushed so far (a small
    /// corpus never pays for a `cap`-row chunk).
    bufs: Option<ChunkBuffers>,
    next: usize,
    /// Parameter blocks, one per kernel family, rewritten each push. One
    /// block serves both slots: a queued write lands after every earlier
    /// submission, so chunk i's GEMM still reads chunk i's sizes while
    /// chunk i+1's are being written.
    norm_params: Uniform<NormParams>,
    gemm_params: Uniform<GemmParams>,
    tiled_params: Uniform<TiledParams>,
    topk_params: Uniform<TopkParams>,
    /// The fused top-k's state, where it runs (see [`Fused`]).
    fused: Option<Fused>,
    /// Rows pushed so far: while fewer than k, every list still has room
    /// and all of a chunk's scores are candidates, so the unfused path runs.
    pushed: usize,
    /// When the last push returned (`None` before the first, and while a
    /// push is in progress): the start of the caller's time between pushes.
    returned: Option<std::time::Instant>,
}

/// The fused top-k of the f32 scan (tiled GEMM only): the GEMM's epilogue
/// (`Tile::wgsl_fused`) compares each score with its query's k-th best so
/// far (the last entry of the running list, on the device) and appends
/// those that can still enter the list to the query's candidate list;
/// `topk_fused.wgsl::merge` folds them in, one workgroup per query. The
/// score block is never written. A chunk in which any candidate list
/// overflows is redone exactly by the unfused kernels, dispatched
/// indirectly with grids that `topk_fused.wgsl::arm` zeroes when nothing
/// overflowed, so the host never waits to find out.
struct Fused {
    /// Entries per candidate list.
    cap: usize,
    /// `q * cap` (score bits, row) pairs.
    cand: wgpu::Buffer,
    /// `q` candidate counts and the overflow flag (all zero between chunks).
    counts: wgpu::Buffer,
    /// The fallback's three indirect grids.
    args: wgpu::Buffer,
    params: Uniform<FusedParams>,
    cand_params: Uniform<CandParams>,
}

/// Running list plus candidates that `topk_fused.wgsl::merge` holds in
/// workgroup memory (its `MERGE_ENTRIES`; 8 KiB, within WebGPU's 16 KiB
/// minimum).
const MERGE_ENTRIES: usize = 1024;

struct ChunkBuffers {
    rows: usize,
    scores: wgpu::Buffer,
    part_s: wgpu::Buffer,
    part_r: wgpu::Buffer,
    slots: Vec<Slot>,
}

impl<'a> GpuScan<'a> {
    /// Uploads the queries (and the skip mask) and sizes the chunks; fails
    /// when they or the top-k lists cannot fit in one binding.
    pub fn new(gpu: &'a Gpu, spec: ScanSpec<'a>) -> Result<GpuScan<'a>> {
        let ctx = &gpu.ctx;
        let (q, d, k) = (spec.queries.rows, spec.queries.cols, spec.k);
        // The tuned shape for this job (the default where tuning is off).
        let tk = gpu.tiled_for(d, q)?;
        let tile = tk.tile;
        let budget = gpu.budget() as usize;
        // The tiled GEMM needs the padded queries, one whole column tile of
        // chunk rows and its padded score block in one binding each; where
        // a tiny buffer limit leaves no room (tests), the simple GEMM runs.
        let (tw, tq, bn) = (tile.width(d) / 4, Tile::pad(q, tile.bm), tile.bn as usize);
        let tiled_cap = (budget / (tq * 4) / bn * bn).min(budget / (tw * 16) / bn * bn);
        let tiled = gpu.precision == Precision::F32 && tiled_cap > 0 && tq * tw * 16 <= budget;
        let (w, q_pad) = if tiled { (tw, tq) } else { (d4(d).max(1), q) };
        if q_pad * w * 16 > gpu.max_binding() as usize {
            return Err(Error::gpu(format!(
                "{q} queries of dimension {d} do not fit in one GPU storage binding; run on the CPU instead"
            )));
        }
        let mut cap = gpu
            .chunk_rows(q, d, usize::MAX)
            .min(ops::MAX_GEMM_ROWS)
            .min(u32::MAX as usize / w);
        if tiled {
            // Whole tiles of padded chunk rows and scores still fit.
            cap = cap.min(tiled_cap);
        }
        // Scratch lists of the partial top-k: q * segs * k entries.
        let per_list = (q * k.max(1) * 4).max(1);
        let max_segs = (budget / per_list).max(1);
        let seg_len = SEG.max(cap.div_ceil(max_segs));
        let segs = cap.div_ceil(seg_len);
        if (q * segs * k * 4).max(q * k * 4) > gpu.max_binding() as usize {
            return Err(Error::gpu(format!(
                "top-{k} lists of {q} queries do not fit in GPU memory bindings; run on the CPU instead"
            )));
        }
        let qdata = pad_block(&spec.queries.data, d, w * 4, q_pad);
        let queries = ctx.upload("queries", &qdata);
        let (skip, use_skip) = match spec.skip {
            Some(mask) => {
                let mut bits = vec![0u32; mask.len().div_ceil(32).max(1)];
                for (i, &m) in mask.iter().enumerate() {
                    if m {
                        bits[i / 32] |= 1 << (i % 32);
                    }
                }
                (ctx.upload("skip", &bits), true)
            }
            None => (ctx.upload("skip", &[0u32]), false),
        };
        let top = TopK::new(q, k);
        let fused = if tiled && gpu.fused_topk && q > 0 && k > 0 && 2 * k <= MERGE_ENTRIES {
            // As many candidates as the merge holds next to the list (or
            // as asked), and as fit in one binding.
            let cap = gpu
                .topk_candidates
                .unwrap_or(MERGE_ENTRIES)
                .min(MERGE_ENTRIES - k)
                .min(budget / (q * 8));
            (cap > 0).then(|| Fused {
                cap,
                cand: ctx.storage("candidates", (q * cap * 8) as u64),
                counts: ctx.upload("candidate counts", &vec![0u32; q + 1]),
                args: ctx.indirect("fallback grids", 9),
                params: Uniform::new(ctx),
                cand_params: Uniform::new(ctx),
            })
        } else {
            None
        };
        Ok(GpuScan {
            gpu,
            q,
            d,
            k,
            normalize: spec.rows == Rows::Normalize,
            checked: spec.rows == Rows::Checked,
            late: RowReport::default(),
            f16: gpu.precision == Precision::F16,
            tiled,
            tk,
            q_pad,
            w4: w,
            cap,
            seg_len,
            queries,
            skip,
            use_skip,
            run_s: ctx.upload("run scores", &top.scores),
            run_r: ctx.upload("run rows", &top.rows),
            bufs: None,
            next: 0,
            norm_params: Uniform::new(ctx),
            gemm_params: Uniform::new(ctx),
            tiled_params: Uniform::new(ctx),
            topk_params: Uniform::new(ctx),
            fused,
            pushed: 0,
            returned: None,
        })
    }

    /// Makes the per-chunk buffers hold at least `rows` rows.
    fn ensure(&mut self, rows: usize) -> Result<()> {
        if self.bufs.as_ref().is_some_and(|b| b.rows >= rows) {
            return Ok(());
        }
        let ctx = &self.gpu.ctx;
        // Settle the old ring (oldest first) so the new one starts with no
        // chunk in flight; the old buffers are freed once the device is
        // done with them.
        self.settle_all()?;
        ctx.wait(None)?;
        let w = self.w4;
        let segs = rows.div_ceil(self.seg_len);
        let cols = self.padded_cols(rows);
        let slot = || Slot {
            upload: ctx.upload_staging((cols * w * 16) as u64),
            mapping: None,
            chunk: ctx.storage("chunk", (cols * w * 16) as u64),
            packed: self
                .f16
                .then(|| ctx.storage("chunk f16", (rows * w * 8) as u64)),
            status: ctx.storage("status", rows as u64 * 4),
            staging: ctx.staging(rows as u64 * 4),
            last: None,
            checks: None,
        };
        self.bufs = Some(ChunkBuffers {
            rows,
            scores: ctx.storage("scores", (self.q_pad * cols * 4) as u64),
            part_s: ctx.storage("part scores", (self.q * segs * self.k * 4) as u64),
            part_r: ctx.storage("part rows", (self.q * segs * self.k * 4) as u64),
            slots: (0..RING).map(|_| slot()).collect(),
        });
        Ok(())
    }

    /// Settles every slot, oldest first, keeping their reports in `late`.
    fn settle_all(&mut self) -> Result<()> {
        let Some(bufs) = self.bufs.as_mut() else {
            return Ok(());
        };
        for i in 0..RING {
            let slot = &mut bufs.slots[(self.next + i) % RING];
            self.late
                .extend(slot.settle(&self.gpu.ctx, self.normalize)?);
        }
        Ok(())
    }

    /// The top-k kernels' parameters for a piece of `n` rows (`ld` apart in
    /// the score block, in segments of `seg_len`) starting at corpus row
    /// `first_row`: the unfused path's, and the fused path's fallback.
    fn topk_params_for(&self, n: usize, ld: usize, first_row: usize) -> TopkParams {
        let segs = n.div_ceil(self.seg_len);
        TopkParams {
            lists: self.q as u32,
            n: n as u32,
            ld: ld as u32,
            k: self.k as u32,
            seg_len: self.seg_len as u32,
            segs: segs as u32,
            first_row: first_row as u32,
            use_skip: self.use_skip as u32,
            neg_inf: f32::NEG_INFINITY,
            ..TopkParams::zeroed()
        }
    }

    /// Columns of the score block (and rows of the chunk buffer) for a
    /// chunk of `rows` rows: whole column tiles for the tiled GEMM.
    fn padded_cols(&self, rows: usize) -> usize {
        if self.tiled {
            Tile::pad(rows, self.tk.tile.bn)
        } else {
            rows
        }
    }

    /// Rows of the next piece of a push with `left` rows to go: at most
    /// `cap`. With the fused top-k, the scan starts in small pieces: until
    /// k rows are in, every score is a candidate and the unfused path runs,
    /// so that piece is just the whole tiles that fill the lists; after
    /// that, of `rows` new rows (in no particular order) about
    /// `k * rows / pushed` beat the k-th best of the `pushed` so far, so a
    /// piece grows with `pushed` to keep that near an eighth of a candidate
    /// list: far from overflowing into the fallback, and cheap to merge
    /// (the merge's work grows with the square of the candidates; at half
    /// a list it took 900 ms of a 54 s scan on lavapipe). Results do not
    /// depend on the pieces: the lists are the same however the corpus is
    /// cut.
    fn piece_rows(&self, left: usize) -> usize {
        let rows = self.cap.min(left);
        let Some(f) = &self.fused else {
            return rows;
        };
        let bn = self.tk.tile.bn as usize;
        let limit = if self.pushed < self.k {
            Tile::pad(self.k - self.pushed, bn as u32)
        } else {
            let grow = (f.cap / (8 * self.k)).max(1);
            (self.pushed.saturating_mul(grow) / bn).max(1) * bn
        };
        rows.min(limit)
    }

    fn push_piece(&mut self, src: Src<'_>, first_row: usize) -> Result<RowReport> {
        let gpu = self.gpu;
        let ctx = &gpu.ctx;
        let d = self.d;
        let n = src.len() / d;
        let w = self.w4;
        let ld = self.padded_cols(n);
        let topk_params = self.topk_params_for(n, ld, first_row);
        self.ensure(n)?;
        let bufs = self
            .bufs
            .as_mut()
            .expect("chunk buffers are made when the scan starts");
        let slot = &mut bufs.slots[self.next];
        self.next = (self.next + 1) % RING;
        // Ring full: the slot's previous chunk must be consumed before its
        // buffers are overwritten; its row status is ready then, and
        // reported now. Its upload staging is mapped again once its copy
        // is done, which is no later.
        let waited = std::time::Instant::now();
        let mut report = std::mem::take(&mut self.late);
        report.extend(slot.settle(ctx, self.normalize)?);
        slot.ready_upload(ctx)?;
        let filled = std::time::Instant::now();
        ctx.profiler.add_host("wait_slot", filled - waited);
        let np = &self.norm_params;
        np.set(
            ctx,
            &NormParams {
                rows: n as u32,
                cols: d as u32,
                stride: (w * 4) as u32,
                check_only: !self.normalize as u32,
            },
        );
        // f16: upload half the bytes: f16 rows as they are, f32 rows when
        // every value survives the trip (see `to_f16_exact`); otherwise
        // upload f32 and pack on the device.
        let wide;
        let (chunk, halves) = match (src, &slot.packed) {
            (Src::F16(h), Some(_)) => (None, Some(std::borrow::Cow::Borrowed(h))),
            (Src::F16(h), None) => {
                // Not a path the scans take (`scan_takes_f16` is the f16
                // precision, which packs); correct all the same.
                wide = h.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
                (Some(&wide[..]), None)
            }
            (Src::F32(c), Some(_)) if self.f16 => (
                Some(c),
                to_f16_exact(&pad_rows_to(c, d, w * 4)).map(std::borrow::Cow::Owned),
            ),
            (Src::F32(c), _) => (Some(c), None),
        };
        // The rows go straight into the mapped staging (padded to `w`
        // vec4s), in parallel: the only host copy of a chunk on its way up.
        let bytes = match &halves {
            Some(_) => n * w * 8,
            None => n * w * 16,
        };
        {
            let mut view = slot
                .upload
                .get_mapped_range_mut(..bytes as u64)
                .map_err(|e| {
                    Error::gpu(format!(
                        "GPU {}: cannot fill an upload buffer: {e}",
                        ctx.info.name
                    ))
                })?;
            match (&halves, chunk) {
                // Padded already (`to_f16_exact` of padded rows), or a
                // stored f16 chunk of `d` halves a row.
                (Some(h), _) if h.len() == n * w * 4 => {
                    fill_rows(view.slice(..), bytemuck::cast_slice(h), w * 8, w * 8)
                }
                (Some(h), _) => fill_rows(view.slice(..), bytemuck::cast_slice(h), d * 2, w * 8),
                (None, Some(c)) => {
                    fill_rows(view.slice(..), bytemuck::cast_slice(c), d * 4, w * 16)
                }
                (None, None) => unreachable!("a chunk goes up as f16 or as f32"),
            }
        }
        slot.upload.unmap();
        let submitted = std::time::Instant::now();
        ctx.profiler.add_host("fill_upload", submitted - filled);

        // Upload, normalise (or check) and copy the row status out, then
        // score: one submission, not waited for.
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let check = !self.checked;
        match (&halves, &slot.packed) {
            (Some(_), Some(packed)) => {
                enc.copy_buffer_to_buffer(&slot.upload, 0, packed, 0, bytes as u64);
                if check {
                    let b = NormalizeF16 {
                        p: np,
                        status: &slot.status,
                        words: packed,
                    };
                    gpu.k.normalize_f16.dispatch(ctx, &mut enc, b, grid(n));
                }
            }
            _ => {
                enc.copy_buffer_to_buffer(&slot.upload, 0, &slot.chunk, 0, bytes as u64);
                if check {
                    let b = Normalize {
                        p: np,
                        x: &slot.chunk,
                        status: &slot.status,
                    };
                    gpu.k.normalize.dispatch(ctx, &mut enc, b, grid(n));
                }
            }
        }
        if check {
            enc.copy_buffer_to_buffer(
                &slot.status,
                0,
                &slot.staging,
                0,
                (n as u64 * 4).next_multiple_of(4),
            );
        }
        // Which copy the GEMM reads. A chunk that could not go up as f16 is
        // packed on the device once normalised (unit rows always fit f16);
        // unnormalised, it is scored in f32 rather than overflow.
        let (b, f16) = match &slot.packed {
            Some(packed) if halves.is_some() => (packed, true),
            Some(packed) if self.f16 && self.normalize => {
                let b = ToF16 {
                    p: np,
                    xv: &slot.chunk,
                    packed,
                };
                gpu.k.to_f16.dispatch(ctx, &mut enc, b, grid_items(n * w));
                (packed, true)
            }
            _ => (&slot.chunk, false),
        };
        let fused = self.fused.as_ref().filter(|_| self.pushed >= self.k);
        if let Some(f) = fused.filter(|_| self.k > 0 && self.q > 0) {
            let flops = 2.0 * self.q as f64 * n as f64 * d as f64;
            let t = self.tk.tile;
            let gemm_grid = (
                (ld / t.bn as usize) as u32,
                (self.q_pad / t.bm as usize) as u32,
            );
            let segs = n.div_ceil(self.seg_len);
            let (part, fold) = (grid_items(self.q * segs), grid_items(self.q));
            f.params.set(
                ctx,
                &FusedParams {
                    m: self.q_pad as u32,
                    n: ld as u32,
                    d4: w as u32,
                    queries: self.q as u32,
                    rows: n as u32,
                    k: self.k as u32,
                    cap: f.cap as u32,
                    first_row: first_row as u32,
                    use_skip: self.use_skip as u32,
                    pad: [0; 3],
                },
            );
            f.cand_params.set(
                ctx,
                &CandParams {
                    lists: self.q as u32,
                    k: self.k as u32,
                    cap: f.cap as u32,
                    gemm_x: gemm_grid.0,
                    gemm_y: gemm_grid.1,
                    part_x: part.0,
                    part_y: part.1,
                    fold_x: fold.0,
                    fold_y: fold.1,
                    pad: [0; 3],
                },
            );
            // The fallback's parameters, read only if it runs.
            self.tiled_params.set(
                ctx,
                &TiledParams {
                    m: self.q_pad as u32,
                    n: ld as u32,
                    d4: w as u32,
                    ldc4: (ld / 4) as u32,
                },
            );
            self.topk_params.set(ctx, &topk_params);
            let k = &gpu.k;
            let fp = &f.params;
            let cp = &f.cand_params;
            let gf = GemmFused {
                p: fp,
                a: &self.queries,
                b,
                run_s: &self.run_s,
                skip: &self.skip,
                cand: &f.cand,
                counts: &f.counts,
            };
            self.tk
                .gemm_fused
                .dispatch_counted(ctx, &mut enc, gf, gemm_grid, flops);
            let m = TopkFusedMerge {
                p: cp,
                cand: &f.cand,
                counts: &f.counts,
                run_s: &self.run_s,
                run_r: &self.run_r,
            };
            k.topk_fused_merge.dispatch(ctx, &mut enc, m, grid(self.q));
            let arm = TopkFusedArm {
                p: cp,
                counts: &f.counts,
                args: &f.args,
            };
            k.topk_fused_arm.dispatch(ctx, &mut enc, arm, (1, 1));
            // The exact fallback: zero-sized grids unless a list overflowed.
            let tp = &self.topk_params;
            let g = GemmTiled {
                p: &self.tiled_params,
                a: &self.queries,
                b,
                c: &bufs.scores,
            };
            self.tk.gemm_tiled.dispatch_indirect(
                ctx,
                &mut enc,
                g,
                &f.args,
                0,
                "gemm_tiled_fallback",
            );
            let partial = TopkPartial {
                p: tp,
                scores: &bufs.scores,
                skip: &self.skip,
                part_s: &bufs.part_s,
                part_r: &bufs.part_r,
            };
            k.topk_partial.dispatch_indirect(
                ctx,
                &mut enc,
                partial,
                &f.args,
                12,
                "topk_partial_fallback",
            );
            let merge = TopkMerge {
                p: tp,
                part_s: &bufs.part_s,
                part_r: &bufs.part_r,
                run_s: &self.run_s,
                run_r: &self.run_r,
            };
            k.topk_merge.dispatch_indirect(
                ctx,
                &mut enc,
                merge,
                &f.args,
                24,
                "topk_merge_fallback",
            );
        } else if self.k > 0 && self.q > 0 && self.tiled {
            let flops = 2.0 * self.q as f64 * n as f64 * d as f64;
            ops::record_gemm_tiled(
                gpu,
                &self.tk,
                &mut enc,
                &self.tiled_params,
                &self.queries,
                b,
                &bufs.scores,
                (self.q_pad, ld, w),
                flops,
            );
        } else if self.k > 0 && self.q > 0 {
            ops::record_gemm(
                gpu,
                &mut enc,
                &self.gemm_params,
                &self.queries,
                b,
                &bufs.scores,
                (self.q, n, w),
                f16,
            );
        }
        if self.k > 0 && self.q > 0 && fused.is_none() {
            let segs = n.div_ceil(self.seg_len);
            let tp = &self.topk_params;
            tp.set(ctx, &topk_params);
            let partial = TopkPartial {
                p: tp,
                scores: &bufs.scores,
                skip: &self.skip,
                part_s: &bufs.part_s,
                part_r: &bufs.part_r,
            };
            let merge = TopkMerge {
                p: tp,
                part_s: &bufs.part_s,
                part_r: &bufs.part_r,
                run_s: &self.run_s,
                run_r: &self.run_r,
            };
            gpu.k
                .topk_partial
                .dispatch(ctx, &mut enc, partial, grid_items(self.q * segs));
            gpu.k
                .topk_merge
                .dispatch(ctx, &mut enc, merge, grid_items(self.q));
        }
        slot.last = Some(ctx.queue.submit([enc.finish()]));
        slot.checks = check.then_some((first_row, n));
        // Mapped again once the GPU has copied it out: by the slot's next
        // turn, as a rule, so that turn waits for nothing.
        let (tx, rx) = std::sync::mpsc::channel();
        slot.upload.map_async(wgpu::MapMode::Write, .., move |r| {
            let _ = tx.send(r);
        });
        slot.mapping = Some(rx);
        ctx.profiler.add_host("submit", submitted.elapsed());
        self.pushed += n;
        Ok(report)
    }
}

/// A chunk as pushed: f32 rows, or rows stored as f16.
#[derive(Clone, Copy)]
enum Src<'c> {
    F32(&'c [f32]),
    F16(&'c [half::f16]),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::F32(c) => c.len(),
            Src::F16(c) => c.len(),
        }
    }

    /// Values `range` of the chunk.
    fn part(&self, range: std::ops::Range<usize>) -> Src<'_> {
        match self {
            Src::F32(c) => Src::F32(&c[range]),
            Src::F16(c) => Src::F16(&c[range]),
        }
    }
}

impl GpuScan<'_> {
    /// Adds the time since the last push returned to the host step
    /// `between_pushes`: what the feeding thread spent outside the scan
    /// between two chunks (waiting for the reader, the caller's own work
    /// on each chunk). With `wait_slot` it says which side bounds a pass:
    /// a GPU that keeps up leaves `wait_slot` near zero, a reader that
    /// does not makes `between_pushes` large.
    pub(super) fn end_of_gap(&mut self) {
        if let Some(t) = self.returned.take() {
            self.gpu
                .ctx
                .profiler
                .add_host("between_pushes", t.elapsed());
        }
    }

    fn push_src(&mut self, chunk: Src<'_>, first_row: usize) -> Result<RowReport> {
        self.end_of_gap();
        let report = self.push_pieces(chunk, first_row);
        self.returned = Some(std::time::Instant::now());
        report
    }

    /// Pushes a chunk in the pieces `piece_rows` cuts it into.
    fn push_pieces(&mut self, chunk: Src<'_>, first_row: usize) -> Result<RowReport> {
        let mut report = RowReport::default();
        if self.d == 0 || chunk.len() == 0 {
            return Ok(report);
        }
        let n = chunk.len() / self.d;
        if first_row + n > u32::MAX as usize {
            return Err(Error::gpu(
                "corpus rows beyond 2^32 cannot be ranked on the GPU",
            ));
        }
        let gpu = self.gpu;
        gpu.ctx.scoped("scanning a chunk", || {
            let mut start = 0;
            while start < n {
                let cnt = self.piece_rows(n - start);
                let piece = chunk.part(start * self.d..(start + cnt) * self.d);
                report.extend(self.push_piece(piece, first_row + start)?);
                start += cnt;
            }
            gpu.collect_if_low()
        })?;
        Ok(report)
    }
}

/// A scan whose rows the host normalises or checks before the device
/// scores them as checked ([`GpuOptions::host_rows`]): each push is
/// reported at once, from the host's own pass
/// ([`cpu::normalize_rows_serial`] or [`cpu::check_rows`], the CPU
/// backend's arithmetic). The f16 default of [`Scan::push_f16`] widens and
/// comes here too.
///
/// [`GpuOptions::host_rows`]: super::GpuOptions::host_rows
pub(super) struct HostRows<'a> {
    inner: GpuScan<'a>,
    mode: Rows,
    cols: usize,
    /// The chunk's rows normalised for the device, reused push after
    /// push (a scan that only checks its rows pushes them as they are).
    rows: Vec<f32>,
}

impl<'a> HostRows<'a> {
    pub(super) fn new(inner: GpuScan<'a>, mode: Rows, cols: usize) -> HostRows<'a> {
        HostRows {
            inner,
            mode,
            cols,
            rows: Vec::new(),
        }
    }
}

impl Scan for HostRows<'_> {
    fn push(&mut self, chunk: &[f32], first_row: usize) -> Result<RowReport> {
        // The caller's time up to here, then this step's own.
        self.inner.end_of_gap();
        let started = std::time::Instant::now();
        // Rows that are only checked go to the device as they are, with no
        // copy of the chunk (51 MB on lavapipe at 1,000 queries; the copy
        // was not measurably slower there, but it is work for nothing).
        let (rows, report) = if self.mode == Rows::Normalize {
            self.rows.clear();
            self.rows.extend_from_slice(chunk);
            let report = cpu::normalize_rows_serial(&mut self.rows, self.cols, first_row);
            (&self.rows[..], report)
        } else {
            (
                chunk,
                cpu::check_rows(chunk, self.cols, first_row, self.mode),
            )
        };
        let profiler = &self.inner.gpu.ctx.profiler;
        profiler.add_host("host_rows", started.elapsed());
        // Checked rows: the device reports nothing of its own.
        let mut late = self.inner.push(rows, first_row)?;
        late.extend(report);
        Ok(late)
    }

    fn finish(self: Box<Self>) -> Result<(TopK, RowReport)> {
        Box::new(self.inner).finish()
    }
}

impl Scan for GpuScan<'_> {
    fn push(&mut self, chunk: &[f32], first_row: usize) -> Result<RowReport> {
        self.push_src(Src::F32(chunk), first_row)
    }

    fn push_f16(&mut self, chunk: &[half::f16], first_row: usize) -> Result<RowReport> {
        self.push_src(Src::F16(chunk), first_row)
    }

    fn finish(mut self: Box<Self>) -> Result<(TopK, RowReport)> {
        self.gpu
            .ctx
            .scoped("scanning a chunk", || self.settle_all())?;
        let report = std::mem::take(&mut self.late);
        let ctx = &self.gpu.ctx;
        let mut top = TopK::new(self.q, self.k);
        if self.q * self.k == 0 {
            return Ok((top, report));
        }
        let len = (self.q * self.k * 4) as u64;
        top.scores = ctx.read(&self.run_s, len)?;
        top.rows = ctx.read(&self.run_r, len)?;
        Ok((top, report))
    }
}

/// Copies rows of `row` bytes from `src` into `dst` as rows of `stride`
/// bytes, zero padded, a block of rows per task: one core's copy is far
/// slower than the bus behind it (about 5 against 10-25 GB/s).
fn fill_rows(dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8], row: usize, stride: usize) {
    use rayon::prelude::*;
    /// Bytes per task: large enough to amortise the task, small enough
    /// to spread a chunk over every core.
    const BLOCK: usize = 1 << 20;
    let rows = src.len().checked_div(row).unwrap_or(0);
    let per = (BLOCK / stride.max(1)).max(1);
    let mut pieces = Vec::with_capacity(rows.div_ceil(per));
    let (mut rest, mut r) = (dst, 0);
    while r < rows {
        let cnt = per.min(rows - r);
        let (head, tail) = rest.split_at(cnt * stride);
        pieces.push((Piece(head), &src[r * row..(r + cnt) * row]));
        (rest, r) = (tail, r + cnt);
    }
    pieces.into_par_iter().for_each(|(Piece(mut d), s)| {
        if row == stride {
            d.copy_from_slice(s);
            return;
        }
        for (i, x) in s.chunks_exact(row).enumerate() {
            d.slice(i * stride..i * stride + row).copy_from_slice(x);
            d.slice(i * stride + row..(i + 1) * stride).fill(0);
        }
    });
}

/// One task's bytes of a mapped range.
struct Piece<'a>(wgpu::WriteOnly<'a, [u8]>);

// SAFETY: a `WriteOnly<[u8]>` is a unique, write-only pointer to its bytes,
// like `&mut [u8]`, which is `Send`; wgpu declares `Send` only for sized
// targets (its impl's `T: Send` bound implies `T: Sized`). The pieces are
// disjoint (`split_at`) and all end before the view they came from.
unsafe impl Send for Piece<'_> {}

/// `data` as f16, or `None` if a value would not survive the conversion in
/// a way that changes the row report: a finite value that overflows to
/// infinity, or a non-zero one that flushes to zero. (Rounding within the
/// f16 range is the precision the user asked for.)
fn to_f16_exact(data: &[f32]) -> Option<Vec<half::f16>> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![half::f16::ZERO; data.len()];
    out.convert_from_f32_slice(data);
    let lossy = data.iter().zip(&out).any(|(x, h)| {
        (x.is_finite() && !h.is_finite()) || (*x != 0.0 && h.to_bits() & 0x7fff == 0)
    });
    (!lossy).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fill_rows` writes what `pad_rows_to` makes (its twin on the old
    /// upload path), bit for bit, pads included, over one and many tasks.
    #[test]
    fn fill_rows_pads_as_pad_rows_to() {
        for (rows, cols, stride) in [
            (0, 3, 4),
            (1, 3, 4),
            (3001, 5, 8),
            (70_000, 7, 8),
            (5000, 384, 384),
        ] {
            let data: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
            let want = pad_rows_to(&data, cols, stride);
            // NaN where nothing was written would not compare equal.
            let mut got = vec![f32::NAN; rows * stride];
            fill_rows(
                wgpu::WriteOnly::from_mut(bytemuck::cast_slice_mut::<f32, u8>(&mut got)),
                bytemuck::cast_slice(&data),
                cols * 4,
                stride * 4,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{rows} x {cols} in rows of {stride}"
            );
        }
    }
}
