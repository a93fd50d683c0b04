//! The GPU backend: the [`Backend`] steps as WGSL kernels run through wgpu.
//!
//! It exists to run the O(n) part of a fit (normalise + score + top-k over a
//! streamed corpus) and the dense moved-set steps on a GPU, and to do so with
//! results that match the CPU reference closely enough that the two are
//! interchangeable (every kernel has a CPU twin it is tested against).
//!
//! Layout: [`context`] opens the device and turns wgpu failures into errors,
//! [`kernel`] builds the pipelines (once, here in [`Gpu::new`]), `ops` runs
//! the one-shot steps, `scan` the streaming top-k. Buffers are sized from
//! `device.limits()`: anything larger than one storage binding is split into
//! pieces on the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub mod context;
pub mod kernel;
mod measure;
mod ops;
pub mod profile;
mod scan;
pub mod tiled;
pub mod tune;

use super::{
    Backend, Bounds, MovedBlock, Pair, RowReport, Rows, Scan, ScanSpec, Segments, SlopeBlock, TopK,
};
use crate::error::Result;
use crate::matrix::Matrix;
use context::Context;
pub use context::{AdapterSummary, GpuOptions, Precision, list_adapters};
use kernel::{GemmTiled, Kernels, TiledKernels, TiledParams};
pub use measure::{Peak, fma_peak_twin};
pub use profile::KernelTime;
use tiled::Tile;
use tune::{Outcome, Source, Trial, TuneKey, TuneOptions, TuneReport};

/// No single buffer of a streamed step grows beyond this, whatever the
/// device allows: larger ones gain nothing and cost memory.
const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Corpus bytes per streamed chunk.
const CHUNK_BYTES: u64 = 64 << 20;

/// The GPU [`Backend`]: one device, its compiled kernels and the buffers the
/// one-shot steps reuse.
pub struct Gpu {
    ctx: Context,
    k: Kernels,
    precision: Precision,
    buffer_limit: u64,
    /// [`GpuOptions::fused_topk`].
    fused_topk: bool,
    /// [`GpuOptions::topk_candidates`].
    topk_candidates: Option<usize>,
    /// [`GpuOptions::host_rows`], resolved for this adapter.
    host_rows: bool,
    /// [`GpuOptions::tune`].
    tune: Option<TuneOptions>,
    /// The tiled GEMMs chosen per (d, query bucket) when tuning is on.
    tuned: Mutex<HashMap<(usize, usize), Arc<TiledKernels>>>,
    /// The autotuner's reports, in the order the shapes were met.
    reports: Mutex<Vec<TuneReport>>,
    /// One-shot steps run one at a time: they share the pooled buffers.
    op: Mutex<()>,
    pool: Mutex<Pool>,
}

/// Device buffers kept between calls of the one-shot steps, one per role
/// ("a", "s0", ...), replaced by a larger one when a call needs more: a fit
/// calls the same steps block after block with inputs of similar size.
#[derive(Default)]
struct Pool {
    storage: HashMap<&'static str, wgpu::Buffer>,
    staging: Option<wgpu::Buffer>,
}

impl Gpu {
    /// Opens an adapter (see [`GpuOptions`]) and compiles every kernel.
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let ctx = Context::new(opts)?;
        let k = Kernels::new(&ctx, opts.tile)?;
        let host_rows = opts.host_rows.unwrap_or(
            ctx.info.device_type == wgpu::DeviceType::Cpu && opts.precision == Precision::F32,
        );
        Ok(Gpu {
            ctx,
            k,
            precision: opts.precision,
            buffer_limit: opts.buffer_limit.unwrap_or(u64::MAX).max(256),
            fused_topk: opts.fused_topk,
            topk_candidates: opts.topk_candidates,
            host_rows,
            tune: opts.tune.clone(),
            tuned: Mutex::new(HashMap::new()),
            reports: Mutex::new(Vec::new()),
            op: Mutex::new(()),
            pool: Mutex::new(Pool::default()),
        })
    }

    /// L2-normalises rows (`cols` values each) in place on the device, as
    /// the scan does with [`super::Rows::Normalize`]; zero rows stay zero.
    /// The twin of [`super::cpu::normalize_rows`], which the fit uses.
    pub fn normalize(&self, rows: &mut [f32], cols: usize, first_row: usize) -> Result<RowReport> {
        self.one_shot("normalize", || ops::normalize(self, rows, cols, first_row))
    }

    /// Whether scans normalise (or check) their rows on the host rather
    /// than by the device's kernel ([`GpuOptions::host_rows`]).
    pub fn host_rows(&self) -> bool {
        self.host_rows
    }

    /// How corpus chunks are stored on the device during a scan.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// f16 chunks are read as native `f16` (the device has `SHADER_F16`)
    /// rather than unpacked from u32 pairs.
    pub fn native_f16(&self) -> bool {
        self.k.gemm_f16_native.is_some()
    }

    /// The largest buffer any kernel may bind.
    pub fn max_binding(&self) -> u64 {
        self.ctx.max_binding().min(self.buffer_limit)
    }

    /// Pool size for a request of `bytes`: some slack so that slightly
    /// larger later calls reuse the buffer, never beyond a binding.
    fn pool_size(&self, bytes: u64) -> u64 {
        let want = bytes.max(256).next_multiple_of(16);
        let slack = if want < (1 << 20) {
            want.next_power_of_two()
        } else {
            want.next_multiple_of(1 << 20)
        };
        slack.min(self.ctx.max_binding() / 16 * 16).max(want)
    }

    /// The pooled storage buffer of `role`, at least `bytes` long.
    fn scratch(&self, role: &'static str, bytes: u64) -> wgpu::Buffer {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = pool.storage.get(role)
            && b.size() >= bytes.max(16)
        {
            return b.clone();
        }
        let b = self.ctx.storage(role, self.pool_size(bytes));
        pool.storage.insert(role, b.clone());
        b
    }

    /// The pooled buffer of `role` holding `data` (queued writes land
    /// before the next submission, after every earlier one).
    fn put<T: bytemuck::Pod>(&self, role: &'static str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let b = self.scratch(role, bytes.len() as u64);
        self.ctx.write(&b, bytes);
        b
    }

    /// Reads `len` bytes of `src` back through the pooled staging buffer
    /// (`Context::read_through`, the one read-back path).
    fn read<T: bytemuck::Pod>(&self, src: &wgpu::Buffer, len: u64) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let staging = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            match &pool.staging {
                Some(b) if b.size() >= len => b.clone(),
                _ => {
                    let b = self.ctx.staging(self.pool_size(len));
                    pool.staging = Some(b.clone());
                    b
                }
            }
        };
        self.ctx.read_through(src, len, &staging)
    }

    /// Runs one one-shot step: alone (the pool is shared) and inside error
    /// scopes.
    fn one_shot<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _alone = self.op.lock().unwrap_or_else(|p| p.into_inner());
        let out = self.ctx.scoped(what, f)?;
        self.collect_if_low()?;
        Ok(out)
    }

    /// Collects the kernel times when few timestamp slots are left (called
    /// between steps, so that a long fit keeps timing every dispatch).
    fn collect_if_low(&self) -> Result<()> {
        if self.ctx.profiler.running_low() {
            self.ctx.collect_timings()?;
        }
        Ok(())
    }

    /// The adapter has timestamp queries and dispatches are being timed.
    pub fn timestamps(&self) -> bool {
        self.ctx.profiler.enabled()
    }

    /// GPU time per kernel since the device was opened (or the last
    /// [`Gpu::reset_kernel_timings`]), from timestamp queries; empty where
    /// the adapter has none. Waits for the work submitted so far.
    pub fn kernel_timings(&self) -> Result<Vec<KernelTime>> {
        self.ctx.wait(None)?;
        self.ctx.collect_timings()?;
        Ok(self.ctx.profiler.totals())
    }

    /// Forgets the per-kernel times so far.
    pub fn reset_kernel_timings(&self) {
        self.ctx.profiler.reset();
    }

    /// Dispatches that ran untimed because every timestamp slot was in use.
    pub fn untimed_dispatches(&self) -> u64 {
        self.ctx.profiler.untimed()
    }

    /// The collected total of one kernel (zero when it has none).
    fn kernel_time(&self, name: &str) -> KernelTime {
        self.ctx
            .profiler
            .totals()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_default()
    }

    /// Bytes one buffer of a streamed or split step may use.
    fn budget(&self) -> u64 {
        self.max_binding().min(MAX_CHUNK_BYTES)
    }

    /// The autotuner's cache key of a job of `queries` queries of
    /// dimension `d` on this device.
    pub fn tune_key(&self, d: usize, queries: usize) -> TuneKey {
        TuneKey::new(&self.ctx.info, d, queries, self.precision)
    }

    /// The device's limits (what [`Tile::fits`] checks a shape against).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.ctx.limits
    }

    /// The tile shape every scan runs where tuning is off.
    pub fn default_tile(&self) -> Tile {
        self.k.tiled.tile
    }

    /// The shapes the autotuner tries on this adapter
    /// ([`tune::variants`]).
    pub fn tune_variants(&self) -> Vec<Tile> {
        tune::variants(&self.ctx.info)
    }

    /// The autotuner's reports so far (one per job shape met with
    /// [`GpuOptions::tune`] on), for the caller to show their choice and
    /// warnings.
    pub fn tune_reports(&self) -> Vec<TuneReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tiled GEMMs a scan of `queries` queries of dimension `d` runs:
    /// the default ones unless tuning is on, else those of the cached or
    /// timed winner for the shape, found once per (d, query bucket).
    pub(crate) fn tiled_for(&self, d: usize, queries: usize) -> Result<Arc<TiledKernels>> {
        let Some(opts) = &self.tune else {
            return Ok(self.k.tiled.clone());
        };
        if self.precision != Precision::F32 {
            // Only the f32 scan runs the tiled GEMM.
            return Ok(self.k.tiled.clone());
        }
        let key = (d, tune::query_bucket(queries));
        // Held while tuning: a second scan of the shape waits for the
        // winner instead of timing the variants again.
        let mut map = self.tuned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tk) = map.get(&key) {
            return Ok(tk.clone());
        }
        let report = self.autotune(d, queries, opts, false)?;
        let tk = if report.tile == self.k.tiled.tile {
            self.k.tiled.clone()
        } else {
            Arc::new(TiledKernels::new(&self.ctx, report.tile)?)
        };
        map.insert(key, tk.clone());
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report);
        Ok(tk)
    }

    /// `a . b^T` by the generated GEMM of `tile` (which must fit the
    /// device: [`Tile::fits`]), for small blocks that fit one binding per
    /// operand: how the autotuner checks a variant against the CPU before
    /// it may win, and how the tests check every variant.
    pub fn tiled_similarity(&self, tile: Tile, a: &Matrix, b: &Matrix) -> Result<Matrix> {
        tile.check_fits(&self.ctx)?;
        let kern = self.ctx.scoped("compiling a tiled GEMM variant", || {
            Ok(kernel::generated::<GemmTiled<'static>>(
                &self.ctx,
                tile.wgsl_for(self.ctx.share_lanes()),
            ))
        })?;
        self.one_shot("tiled similarity", || self.run_tiled(tile, &kern, a, b))
    }

    fn run_tiled(
        &self,
        tile: Tile,
        kern: &kernel::Kernel<GemmTiled<'static>>,
        a: &Matrix,
        b: &Matrix,
    ) -> Result<Matrix> {
        assert_eq!(a.cols, b.cols, "tiled similarity of unequal widths");
        let (m, n, d) = (a.rows, b.rows, a.cols);
        let w = tile.width(d);
        let (mp, np) = (Tile::pad(m, tile.bm), Tile::pad(n, tile.bn));
        let too_big = [mp * w * 4, np * w * 4, mp * np * 4]
            .iter()
            .any(|&s| s as u64 > self.budget());
        if too_big || mp / tile.bm as usize > 65535 || np / tile.bn as usize > 65535 {
            return Err(crate::error::Error::gpu(
                "tiled similarity: block too large for one dispatch",
            ));
        }
        let ad = pad_block(&a.data, d, w, mp);
        let bd = pad_block(&b.data, d, w, np);
        let ab = self.ctx.upload("tune a", &ad);
        let bb = self.ctx.upload("tune b", &bd);
        let cb = self.ctx.storage("tune c", (mp * np * 4) as u64);
        let params = context::Uniform::new(&self.ctx);
        params.set(
            &self.ctx,
            &TiledParams {
                m: mp as u32,
                n: np as u32,
                d4: (w / 4) as u32,
                ldc4: (np / 4) as u32,
            },
        );
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let groups = (
            (np / tile.bn as usize) as u32,
            (mp / tile.bm as usize) as u32,
        );
        let g = GemmTiled {
            p: &params,
            a: &ab,
            b: &bb,
            c: &cb,
        };
        kern.dispatch_labelled(&self.ctx, &mut enc, g, groups, 0.0, "gemm_tune_check");
        self.ctx.queue.submit([enc.finish()]);
        let c: Vec<f32> = self.read(&cb, (mp * np * 4) as u64)?;
        let mut out = Matrix::zeros(m, n);
        for i in 0..m {
            out.data[i * n..(i + 1) * n].copy_from_slice(&c[i * np..i * np + n]);
        }
        Ok(out)
    }

    /// The fastest of `reps` timed dispatches of `kern` on `q` queries by
    /// `n` rows of dimension `d` (zeros: the values do not change the
    /// time), as (ms, GFLOP/s); `None` when no dispatch was timed.
    fn time_tiled(
        &self,
        tile: Tile,
        kern: &kernel::Kernel<GemmTiled<'static>>,
        (q, n, d): (usize, usize, usize),
        reps: u32,
    ) -> Result<Option<(f64, f64)>> {
        let ctx = &self.ctx;
        let w = tile.width(d);
        let (mp, np) = (Tile::pad(q, tile.bm), Tile::pad(n, tile.bn));
        let ab = ctx.storage("tune a", (mp * w * 4) as u64);
        let bb = ctx.storage("tune b", (np * w * 4) as u64);
        let cb = ctx.storage("tune c", (mp * np * 4) as u64);
        let params = context::Uniform::new(ctx);
        params.set(
            ctx,
            &TiledParams {
                m: mp as u32,
                n: np as u32,
                d4: (w / 4) as u32,
                ldc4: (np / 4) as u32,
            },
        );
        let flops = 2.0 * q as f64 * n as f64 * d as f64;
        let groups = (
            (np / tile.bn as usize) as u32,
            (mp / tile.bm as usize) as u32,
        );
        let mut best: Option<f64> = None;
        for _ in 0..reps.max(1) {
            ctx.collect_timings()?;
            let before = self.kernel_time("gemm_tune");
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            let g = GemmTiled {
                p: &params,
                a: &ab,
                b: &bb,
                c: &cb,
            };
            kern.dispatch_labelled(ctx, &mut enc, g, groups, flops, "gemm_tune");
            let idx = ctx.queue.submit([enc.finish()]);
            ctx.wait(Some(idx))?;
            ctx.collect_timings()?;
            let after = self.kernel_time("gemm_tune");
            if after.calls > before.calls {
                let ms = after.ms - before.ms;
                best = Some(best.map_or(ms, |b: f64| b.min(ms)));
            }
        }
        Ok(best.map(|ms| (ms, flops / (ms.max(1e-9) * 1e6))))
    }

    /// Chooses the tile shape for scans of `queries` queries of dimension
    /// `d` (see `tune.rs`): the cached winner when `opts.cache` holds one
    /// for this key and `force` is off; else, with timestamps, every
    /// variant that fits is checked against the CPU twin on a small block
    /// and timed on the job's shape, and the fastest is cached; without
    /// them the per-vendor default. Installs nothing: a scan takes the
    /// winner through [`GpuOptions::tune`].
    pub fn autotune(
        &self,
        d: usize,
        queries: usize,
        opts: &TuneOptions,
        force: bool,
    ) -> Result<TuneReport> {
        let info = &self.ctx.info;
        let limits = &self.ctx.limits;
        let key = TuneKey::new(info, d, queries, self.precision);
        let mut warnings = Vec::new();
        let report = |tile, source, trials, timed_shape, warnings| TuneReport {
            key: key.clone(),
            tile,
            source,
            trials,
            timed_shape,
            warnings,
        };
        if let Some(path) = &opts.cache
            && !force
            && let Some(tile) = tune::lookup(path, &key, limits, &mut warnings)
        {
            return Ok(report(
                tile,
                Source::Cached,
                Vec::new(),
                (0, 0, 0),
                warnings,
            ));
        }
        if !self.timestamps() {
            let tile = tune::default_tile(info, limits);
            return Ok(report(
                tile,
                Source::Default,
                Vec::new(),
                (0, 0, 0),
                warnings,
            ));
        }
        // The job's d and queries (capped: a larger GEMM times the same),
        // by rows in whole tiles of the widest variant, as many as fit.
        let q = queries.clamp(1, 16384);
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let want = opts
            .timing_rows
            .unwrap_or(if software { 2048 } else { 32768 });
        let w = Tile::pad(d.max(1), 64);
        let budget = self.budget() as usize;
        let fit_rows = (budget / (Tile::pad(q, 256) * 4)).min(budget / (w * 4));
        let n = (want.min(fit_rows) / 256 * 256).max(256);
        let shape = (q, n, d.max(1));
        // The parity block: a few queries and rows past a tile boundary.
        let (cm, cn, cd) = (q.min(13), 150, d.max(1));
        let ca = Matrix {
            rows: cm,
            cols: cd,
            data: tune::check_values(cm * cd, 1),
        };
        let cb = Matrix {
            rows: cn,
            cols: cd,
            data: tune::check_values(cn * cd, 2),
        };
        let reps = opts.reps.unwrap_or(3);
        let mut trials = Vec::new();
        for tile in tune::variants(info) {
            let outcome = if !tile.fits(limits) {
                Outcome::Refused("beyond the adapter's workgroup limits".into())
            } else {
                let kern = self.ctx.scoped("compiling a tiled GEMM variant", || {
                    Ok(kernel::generated::<GemmTiled<'static>>(
                        &self.ctx,
                        tile.wgsl_for(self.ctx.share_lanes()),
                    ))
                });
                match kern {
                    Err(e) => Outcome::Refused(format!("does not compile: {e}")),
                    Ok(kern) => {
                        let got = self
                            .one_shot("tuning check", || self.run_tiled(tile, &kern, &ca, &cb))?;
                        match tune::parity(&ca.data, &cb.data, cm, cn, cd, &got.data) {
                            Some(why) => Outcome::Refused(format!("differs from the CPU: {why}")),
                            None => match self
                                .one_shot("tuning", || self.time_tiled(tile, &kern, shape, reps))?
                            {
                                Some((ms, gflops)) => Outcome::Timed { ms, gflops },
                                None => Outcome::Untimed,
                            },
                        }
                    }
                }
            };
            trials.push(Trial { tile, outcome });
        }
        let best = trials
            .iter()
            .filter_map(|t| match t.outcome {
                Outcome::Timed { ms, gflops } => Some((t.tile, ms, gflops)),
                _ => None,
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((tile, _, gflops)) = best else {
            let tile = tune::default_tile(info, limits);
            return Ok(report(tile, Source::Default, trials, shape, warnings));
        };
        if let Some(path) = &opts.cache {
            tune::store(path, &key, tile, Some(gflops), &mut warnings);
        }
        Ok(report(tile, Source::Timed, trials, shape, warnings))
    }
}

/// vec4s per row once `cols` floats are padded to a multiple of 4.
pub(crate) fn d4(cols: usize) -> usize {
    cols.div_ceil(4)
}

/// Rows of `cols` floats padded with zeros to `d4(cols) * 4` floats (zeros
/// change neither dot products nor norms); borrowed when already aligned.
pub(crate) fn pad_rows(data: &[f32], cols: usize) -> std::borrow::Cow<'_, [f32]> {
    pad_rows_to(data, cols, d4(cols) * 4)
}

/// Rows of `cols` floats padded with zeros to `w >= cols` floats, and with
/// zero rows to `rows` rows: an operand of the tiled GEMM, whose shapes are
/// whole tiles.
pub(crate) fn pad_block(data: &[f32], cols: usize, w: usize, rows: usize) -> Vec<f32> {
    let mut out = pad_rows_to(data, cols, w).into_owned();
    out.resize(rows * w, 0.0);
    out
}

/// Rows of `cols` floats padded with zeros to `w >= cols` floats.
pub(crate) fn pad_rows_to(data: &[f32], cols: usize, w: usize) -> std::borrow::Cow<'_, [f32]> {
    if w == cols {
        return std::borrow::Cow::Borrowed(data);
    }
    let rows = data.len() / cols.max(1);
    let mut out = vec![0.0f32; rows * w];
    for (o, r) in out.chunks_exact_mut(w).zip(data.chunks_exact(cols)) {
        o[..cols].copy_from_slice(r);
    }
    std::borrow::Cow::Owned(out)
}

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device_name(&self) -> String {
        let p = match (self.precision, self.native_f16()) {
            (Precision::F32, _) => "",
            (Precision::F16, true) => ", f16 corpus",
            (Precision::F16, false) => ", packed f16 corpus",
        };
        format!("{}{p}", self.ctx.info.name)
    }

    fn chunk_rows(&self, queries: usize, dim: usize, _rows: usize) -> usize {
        // Chunks of at most 64 MiB: big enough to fill any GPU, small enough
        // that reading chunk i+1 on the host overlaps the GEMM of chunk i
        // many times per corpus. The score block may be larger.
        let by_chunk = self.budget().min(CHUNK_BYTES) / (d4(dim).max(1) as u64 * 16);
        let by_scores = self.budget() / (queries.max(1) as u64 * 4);
        by_chunk.min(by_scores).clamp(1, 1 << 20) as usize
    }

    fn tune_reports(&self) -> Vec<TuneReport> {
        Gpu::tune_reports(self)
    }

    fn kernel_timings(&self) -> Vec<KernelTime> {
        // A failure to read the times back is not the step's failure.
        Gpu::kernel_timings(self).unwrap_or_default()
    }

    fn scan_takes_f16(&self) -> bool {
        // The f16 scan uploads f16 rows as they are (half the bytes);
        // widening them first would only be narrowed back.
        self.precision == Precision::F16
    }

    fn host_timings(&self) -> Vec<KernelTime> {
        self.ctx.profiler.host_totals()
    }

    fn scan<'a>(&'a self, spec: ScanSpec<'a>) -> Result<Box<dyn Scan + 'a>> {
        // Rows the host prepares reach the device as checked.
        let on_host = self.host_rows && spec.rows != Rows::Checked;
        let device_spec = ScanSpec {
            rows: if on_host { Rows::Checked } else { spec.rows },
            ..spec
        };
        let scan = self
            .ctx
            .scoped("starting a scan", || scan::GpuScan::new(self, device_spec))?;
        Ok(if on_host {
            Box::new(scan::HostRows::new(scan, spec.rows, spec.queries.cols))
        } else {
            Box::new(scan)
        })
    }

    fn similarity(&self, a: &Matrix, b: &Matrix) -> Result<Matrix> {
        self.one_shot("similarity", || ops::similarity(self, a, b))
    }

    fn aggregate(&self, rows: &Matrix, segments: &Segments) -> Result<Matrix> {
        self.one_shot("aggregate", || ops::aggregate(self, rows, segments))
    }

    fn nudge_m_bounds(
        &self,
        block: &SlopeBlock,
        pairs: &[Pair],
        bounds: &mut [Bounds],
    ) -> Result<()> {
        self.one_shot("nudge-m bounds", || {
            ops::nudge_m_bounds(self, block, pairs, bounds)
        })
    }

    fn nudge_n_merge(
        &self,
        block: &MovedBlock,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
    ) -> Result<()> {
        self.one_shot("nudge-n merge", || {
            ops::nudge_n_merge(self, block, coef, tops)
        })
    }

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
        let on_device = self.one_shot("nudge-m block", || {
            ops::nudge_m_block(self, q_dev, rows, records, inv_norm, pairs, bounds)
        })?;
        if on_device {
            return Ok(());
        }
        crate::backend::nudge_m_block_via_host(
            self, q_dev, rows, records, inv_norm, pairs, bounds, scratch,
        )
    }

    fn nudge_m_first_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        inv_norm: &[f32],
        pairs: &mut [Pair],
        static_bounds: &crate::backend::StaticBounds<'_>,
        scratch: &mut (Matrix, Matrix),
    ) -> Result<Vec<Bounds>> {
        // The device path changes `pairs` only once it has read the own
        // values back, and hands the block back (`Ok(None)`) only before.
        let on_device = self.one_shot("nudge-m first block", || {
            ops::nudge_m_first_block(self, q_dev, rows, records, inv_norm, pairs, static_bounds)
        })?;
        if let Some(bounds) = on_device {
            return Ok(bounds);
        }
        crate::backend::nudge_m_first_block_via_host(
            self,
            q_dev,
            rows,
            records,
            inv_norm,
            pairs,
            static_bounds,
            scratch,
        )
    }

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
        let on_device = self.one_shot("nudge-n block", || {
            ops::nudge_n_block(self, q_dev, rows, records, coef, tops)
        })?;
        if on_device {
            return Ok(());
        }
        crate::backend::nudge_n_block_via_host(
            self, q_dev, rows, records, planes, coef, tops, scratch,
        )
    }

    fn update_m(&self, d: &mut Matrix, g: &Matrix, gamma: f32) -> Result<()> {
        self.one_shot("nudge-m update", || {
            ops::update(self, d, g, ops::Update::M { gamma })
        })
    }

    fn update_n(&self, d: &mut Matrix, g: &Matrix, gamma: f64) -> Result<()> {
        self.one_shot("nudge-n update", || {
            ops::update(self, d, g, ops::Update::N { gamma })
        })
    }
}
