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
use std::sync::Mutex;

pub mod context;
pub mod kernel;
mod measure;
mod ops;
pub mod profile;
mod scan;
pub mod tiled;

use super::{
    Backend, Bounds, MovedBlock, Pair, RowReport, Scan, ScanSpec, Segments, SlopeBlock, TopK,
};
use crate::error::Result;
use crate::matrix::Matrix;
use context::Context;
pub use context::{AdapterSummary, GpuOptions, Precision, list_adapters};
use kernel::Kernels;
pub use measure::{Peak, fma_peak_twin};
pub use profile::KernelTime;

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
        let k = Kernels::new(&ctx)?;
        Ok(Gpu {
            ctx,
            k,
            precision: opts.precision,
            buffer_limit: opts.buffer_limit.unwrap_or(u64::MAX).max(256),
            fused_topk: opts.fused_topk,
            topk_candidates: opts.topk_candidates,
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

    fn kernel_timings(&self) -> Vec<KernelTime> {
        // A failure to read the times back is not the step's failure.
        Gpu::kernel_timings(self).unwrap_or_default()
    }

    fn scan<'a>(&'a self, spec: ScanSpec<'a>) -> Result<Box<dyn Scan + 'a>> {
        Ok(Box::new(self.ctx.scoped("starting a scan", || {
            scan::GpuScan::new(self, spec)
        })?))
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
