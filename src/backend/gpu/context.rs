//! Instance, adapter and device setup, and the few primitives every kernel
//! call needs (upload, bounded wait, read-back, error capture).
//!
//! It exists so that the rest of the GPU backend never touches a wgpu failure
//! mode directly: no adapter, an allocation that fails, a lost device or a
//! wait that never returns all surface here as `Error::Gpu` instead of a
//! panic (wgpu's default uncaptured-error handler panics) or a hang.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::profile::Profiler;
use crate::error::{Error, Result};

/// How the corpus chunk is stored on the device during a scan.
///
/// Parsed from and printed as `f32` / `f16` (the library does not depend on
/// a command-line parser; the CLI parses it through [`FromStr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats end to end.
    #[default]
    F32,
    /// Corpus chunk stored as f16 (half the bandwidth), accumulated in f32.
    F16,
}

impl Precision {
    /// The name the command line and the logs use: `f32` or `f16`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// `f32` or `f16` (as [`Precision::as_str`] writes them); anything else
    /// is a usage error.
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(Error::invalid(format!(
                "GPU precision {s:?}: expected f32 or f16"
            ))),
        }
    }
}

/// How long one wait on the device may take unless [`GpuOptions::timeout`]
/// says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the user asked for when choosing a device.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Keep only adapters whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Of the adapters left, take this one (counting from 0, best first as
    /// [`list_adapters`] lists them) rather than the best: how a job picks
    /// each of several identical GPUs.
    pub adapter_index: Option<usize>,
    /// How the corpus chunk is stored on the device during a scan.
    pub precision: Precision,
    /// Read f16 chunks as packed u32 pairs even where the adapter has
    /// `SHADER_F16` (so tests can cover both paths on one device).
    pub packed_f16_only: bool,
    /// Cap every buffer at this many bytes, below the device's own limits.
    /// Inputs larger than a buffer are split on the host; a tiny cap makes
    /// tests walk those paths with small data.
    pub buffer_limit: Option<u64>,
    /// Longest any single wait on the device (a submission, a read-back)
    /// may take before it is an error rather than a hang: a lost or wedged
    /// GPU must not stall a batch job forever. The library reads no
    /// environment; the caller decides (default 600 s).
    pub timeout: Duration,
    /// Time every kernel dispatch with timestamp queries where the adapter
    /// has them (see [`super::Gpu::kernel_timings`]). On by default: two
    /// timestamps per dispatch cost next to nothing.
    pub timestamps: bool,
    /// Fuse the f32 scan's top-k into its GEMM (see `scan.rs`): the score
    /// block is never written, only the scores that can still enter a
    /// list. On by default; off runs the unfused path (for comparisons).
    pub fused_topk: bool,
    /// Entries per query's candidate list of the fused top-k (default: as
    /// many as its merge holds). A chunk in which a list overflows is
    /// redone the unfused way, so the answers never change; a tiny value
    /// makes tests walk that fallback.
    pub topk_candidates: Option<usize>,
    /// Autotune the f32 GEMM's tile shape per job shape (`tune.rs`): the
    /// first scan of a `d` and query-count bucket times the variants (or
    /// takes the cached winner) and runs with the winner. `None` (the
    /// default): every scan runs the device's default tile.
    pub tune: Option<super::tune::TuneOptions>,
    /// The tile shape of every untuned scan (which must fit the adapter:
    /// [`super::tiled::Tile::fits`]); `None` (the default): the adapter's
    /// own ([`super::tiled::Tile::for_device`]). How tests run the staged
    /// and the direct GEMMs on one adapter.
    pub tile: Option<super::tiled::Tile>,
    /// Normalise (or check) a scan's corpus rows on the host rather than
    /// on the device; `None` (the default): on the host for software
    /// adapters with f32 chunks. On llvmpipe the device's normalise, a
    /// workgroup reduction per row whose every barrier is a coroutine
    /// switch, took 1.2 s of a 200k x 384 eval that the CPU does in
    /// milliseconds. Tests set it to walk both paths on one adapter.
    pub host_rows: Option<bool>,
}

// By hand rather than derived: the timeout's default is not zero.
impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions {
            adapter: None,
            adapter_index: None,
            precision: Precision::default(),
            packed_f16_only: false,
            buffer_limit: None,
            timeout: DEFAULT_TIMEOUT,
            timestamps: true,
            fused_topk: true,
            topk_candidates: None,
            tune: None,
            tile: None,
            host_rows: None,
        }
    }
}

/// One adapter as `nudge devices` describes it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// The adapter's name, as `--adapter` matches it.
    pub name: String,
    /// The wgpu backend (Vulkan, ...).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// A rasteriser running on the CPU (lavapipe/llvmpipe, SwiftShader):
    /// correct, but slower than the CPU backend.
    pub software: bool,
    /// Driver name and version information.
    pub driver: String,
    /// Largest buffer the adapter allows, in bytes.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_binding: u64,
    /// Largest compute workgroup per dimension.
    pub max_workgroup_size: [u32; 3],
    /// Most invocations in one compute workgroup.
    pub max_invocations: u32,
    /// The adapter has `SHADER_F16` (native f16 reads).
    pub shader_f16: bool,
    /// The adapter has subgroup operations.
    pub subgroups: bool,
    /// Smallest and largest subgroup size.
    pub subgroup_sizes: (u32, u32),
    /// The adapter has timestamp queries (per-kernel GPU times).
    pub timestamps: bool,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::all();
    wgpu::Instance::new(desc)
}

fn adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu can see, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut list = adapters();
    list.sort_by_key(|a| rank(&a.get_info()));
    list.iter()
        .map(|a| {
            let info = a.get_info();
            let l = a.limits();
            let f = a.features();
            AdapterSummary {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                software: info.device_type == wgpu::DeviceType::Cpu,
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                max_buffer_size: l.max_buffer_size,
                max_storage_binding: l.max_storage_buffer_binding_size,
                max_workgroup_size: [
                    l.max_compute_workgroup_size_x,
                    l.max_compute_workgroup_size_y,
                    l.max_compute_workgroup_size_z,
                ],
                max_invocations: l.max_compute_invocations_per_workgroup,
                shader_f16: f.contains(wgpu::Features::SHADER_F16),
                subgroups: f.contains(wgpu::Features::SUBGROUP),
                subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
                timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            }
        })
        .collect()
}

/// Real GPUs before software rasterisers, so `auto` never picks lavapipe
/// over a discrete card.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Errors wgpu reports outside an error scope (and device loss); kept here
/// so the next wait turns them into an `Error` instead of a panic.
#[derive(Default)]
struct Faults {
    first: Option<String>,
}

/// An open device and queue, with the error capture and bounded waits that
/// every kernel call goes through.
pub struct Context {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue (one: submissions execute in order).
    pub queue: wgpu::Queue,
    /// The adapter the device was opened on (its name prefixes errors).
    pub info: wgpu::AdapterInfo,
    /// The device's limits (the adapter's own, not wgpu's defaults).
    pub limits: wgpu::Limits,
    /// `SHADER_F16` was requested (f16 precision on an adapter that has it).
    pub native_f16: bool,
    /// The smallest subgroup of the device where it was opened with
    /// `SUBGROUP` (software adapters that have it: the direct GEMM tile
    /// shares its loads across a subgroup's lanes), measured by
    /// `shaders/subgroup_size.wgsl`; `None` elsewhere.
    pub subgroup_size: Option<u32>,
    /// Per-kernel timestamps (inert without `TIMESTAMP_QUERY`).
    pub profiler: Profiler,
    faults: Arc<Mutex<Faults>>,
    timeout: Duration,
}

impl Context {
    /// Opens the best adapter matching `opts`, or fails with a message that
    /// says how to get one.
    pub fn new(opts: &GpuOptions) -> Result<Context> {
        let mut list = adapters();
        if list.is_empty() {
            return Err(Error::NoAdapter);
        }
        if let Some(want) = &opts.adapter {
            let w = want.to_lowercase();
            let names: Vec<String> = list.iter().map(|a| a.get_info().name).collect();
            list.retain(|a| a.get_info().name.to_lowercase().contains(&w));
            if list.is_empty() {
                return Err(Error::NoSuchAdapter {
                    wanted: want.clone(),
                    available: names,
                });
            }
        }
        list.sort_by_key(|a| rank(&a.get_info()));
        let index = opts.adapter_index.unwrap_or(0);
        if index >= list.len() {
            return Err(Error::NoSuchAdapter {
                wanted: format!("adapter {index}"),
                available: list.iter().map(|a| a.get_info().name).collect(),
            });
        }
        let adapter = list.swap_remove(index);
        let info = adapter.get_info();
        let native_f16 = opts.precision == Precision::F16
            && !opts.packed_f16_only
            && adapter.features().contains(wgpu::Features::SHADER_F16);
        let mut features = wgpu::Features::empty();
        if native_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Only software adapters run the direct tile by default, the one
        // kernel that uses subgroups.
        let subgroups = info.device_type == wgpu::DeviceType::Cpu
            && adapter.features().contains(wgpu::Features::SUBGROUP);
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let timestamps =
            opts.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // The adapter's own limits: the defaults cap buffers at 256 MiB.
        let desc = wgpu::DeviceDescriptor {
            label: Some("nudge"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::gpu(format!("{}: cannot open the device: {e}", info.name)))?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.first.get_or_insert_with(|| e.to_string());
        }));
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.first
                .get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        let profiler = Profiler::new(&device, &queue, timestamps);
        let mut ctx = Context {
            profiler,
            limits: device.limits(),
            device,
            queue,
            info,
            native_f16,
            subgroup_size: None,
            faults,
            timeout: opts.timeout,
        };
        if subgroups {
            ctx.subgroup_size = Some(super::kernel::probe_subgroup_size(&ctx)?);
        }
        Ok(ctx)
    }

    /// Lanes a direct GEMM tile shares its loads across on this device
    /// ([`super::tiled::share_lanes`]).
    pub fn share_lanes(&self) -> u32 {
        super::tiled::share_lanes(self.subgroup_size)
    }

    /// The largest storage binding, also bounded by the buffer size limit.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Fails with the first error wgpu reported outside a scope, if any.
    pub fn check(&self) -> Result<()> {
        let f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match &f.first {
            Some(msg) => Err(Error::gpu(format!("GPU {}: {msg}", self.info.name))),
            None => Ok(()),
        }
    }

    /// Runs `f` inside error scopes so that an allocation failure or a
    /// validation error becomes an `Error` (wgpu reports both asynchronously).
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        // A device that already failed (lost, or an error outside any scope)
        // is not used again.
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let e_val = pollster::block_on(val.pop());
        let e_oom = pollster::block_on(oom.pop());
        if let Some(e) = e_oom {
            return Err(Error::gpu(format!(
                "GPU {}: out of device memory during {what}: {e}",
                self.info.name
            )));
        }
        if let Some(e) = e_val {
            return Err(Error::gpu(format!(
                "GPU {}: {what} failed: {e}",
                self.info.name
            )));
        }
        self.check()?;
        out
    }

    /// A storage buffer of at least `size` bytes (16 at least, a multiple
    /// of 16), which copies may read and fill.
    pub fn storage(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data` (at least 16 bytes, so that empty
    /// inputs still bind). Written through the queue rather than mapped at
    /// creation: wgpu's `create_buffer_init` panics when the buffer could not
    /// be made (out of memory, lost device), a queued write only reports.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let b = self.storage(label, bytes.len() as u64);
        self.write(&b, bytes);
        b
    }

    /// Queues `bytes` into the start of `buf` (padded to 4 bytes).
    pub fn write(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.queue.write_buffer(buf, 0, &padded);
        }
    }

    /// A storage buffer of `words` u32 that the device may also read
    /// dispatch grids from (`dispatch_workgroups_indirect`).
    pub fn indirect(&self, label: &str, words: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words * 4).max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::INDIRECT
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A mappable buffer of at least `size` bytes that copies can fill, for
    /// reading results back.
    pub fn staging(&self, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: size.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A host-visible buffer of at least `size` bytes that the host fills
    /// through a mapping and copies read: the scan's upload staging, made
    /// once per ring slot and mapped again after each use (unlike
    /// `write_buffer`, which makes and frees a staging buffer per call: on
    /// a discrete GPU that is pinned host memory, costly to make, for every
    /// chunk). Made mapped, so that its first fill waits for nothing.
    pub fn upload_staging(&self, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: size.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        })
    }

    /// Waits (bounded) until `index` has executed, then fails on any fault
    /// reported meanwhile.
    pub fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(self.timeout),
        });
        self.check()?;
        r.map(|_| ()).map_err(|e| {
            Error::gpu(format!(
                "GPU {}: waiting for the device failed after at most {} s (the GPU timeout): {e}",
                self.info.name,
                self.timeout.as_secs()
            ))
        })
    }

    /// Maps `staging` (already filled by a submitted copy) and returns its
    /// first `len` bytes as `T`s.
    pub fn read_mapped<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
        index: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<T>> {
        let size = len.max(4).next_multiple_of(4);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        // A failure while the map is pending or done cancels it, so that a
        // pooled staging buffer is never left mapped for the next submission
        // (not after a map that failed: unmapping an unmapped buffer is a
        // device error of its own).
        let fail = |e: Error| {
            staging.unmap();
            e
        };
        self.wait(index).map_err(fail)?;
        self.wait_mapped(&rx).map_err(fail)?.map_err(|e| {
            Error::gpu(format!(
                "GPU {}: cannot map a read-back buffer: {e}",
                self.info.name
            ))
        })?;
        let out = {
            let view = staging.get_mapped_range(..size).map_err(|e| {
                fail(Error::gpu(format!(
                    "GPU {}: cannot read back: {e}",
                    self.info.name
                )))
            })?;
            let n = len as usize / std::mem::size_of::<T>();
            let mut out = vec![T::zeroed(); n];
            bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&view[..len as usize]);
            out
        };
        staging.unmap();
        Ok(out)
    }

    /// Waits for a `map_async` callback that sends into `rx`, and returns
    /// what it reported.
    ///
    /// The callback fires in whichever thread's poll finds the mapping
    /// done: with several threads polling one device (parallel tests, the
    /// scan's pipelined slots), ours can return while another thread is
    /// still about to run it. So this waits for the callback itself,
    /// polling meanwhile in case nobody else does, up to the device
    /// timeout.
    pub fn wait_mapped(
        &self,
        rx: &std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    ) -> Result<std::result::Result<(), wgpu::BufferAsyncError>> {
        let start = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(r) => return Ok(r),
                Err(RecvTimeoutError::Timeout) if start.elapsed() < self.timeout => {
                    let _ = self.device.poll(wgpu::PollType::Poll);
                }
                Err(_) => {
                    return Err(Error::gpu(format!(
                        "GPU {}: a buffer mapping never completed within {} s (the GPU timeout)",
                        self.info.name,
                        self.timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// Copies `len` bytes of `src` back to the host through a new staging
    /// buffer (see [`Context::read_through`]).
    pub fn read<T: bytemuck::Pod>(&self, src: &wgpu::Buffer, len: u64) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.read_through(src, len, &self.staging(len))
    }

    /// Copies `len` bytes of `src` into `staging` (at least that large) and
    /// reads them back with [`Context::read_mapped`].
    ///
    /// The one way a whole buffer comes back to the host: [`Context::read`]
    /// passes a fresh staging buffer, the one-shot steps a pooled one (they
    /// run one at a time, so one staging buffer serves them all).
    pub fn read_through<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        len: u64,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, 0, staging, 0, len.next_multiple_of(4));
        let idx = self.queue.submit([enc.finish()]);
        self.read_mapped(staging, len, Some(idx))
    }
}

impl Context {
    /// Adds the times of every dispatch that has executed to the
    /// profiler's totals (see `Profiler::collect`); nothing without
    /// timestamps.
    pub fn collect_timings(&self) -> Result<()> {
        self.profiler.collect(|resolve, staging| {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.copy_buffer_to_buffer(resolve, 0, staging, 0, resolve.size());
            // In the same submission: a slot resolved after this copy is
            // read by the next collection, never lost to the clear.
            enc.clear_buffer(resolve, 0, None);
            let idx = self.queue.submit([enc.finish()]);
            self.read_mapped(staging, staging.size(), Some(idx))
        })
    }
}

/// A uniform buffer holding one `T` parameter block.
///
/// Made once per step (or per scan) and rewritten with [`Uniform::set`]
/// before each dispatch, rather than allocated per dispatch: a queued write
/// lands before the next submission and after every earlier one, so each
/// submission still sees the value written just before it, and hot loops
/// (a chunk per scan push, a block per moved-set step) no longer allocate.
/// Its type ties it to the kernels whose `Params` it matches.
pub struct Uniform<T> {
    buffer: wgpu::Buffer,
    _params: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> Uniform<T> {
    /// A zeroed parameter block; [`Uniform::set`] it before each dispatch.
    pub fn new(ctx: &Context) -> Uniform<T> {
        let size = std::mem::size_of::<T>() as u64;
        Uniform {
            buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: size.max(16).next_multiple_of(16),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            _params: PhantomData,
        }
    }

    /// Queues `value` as the block every later submission reads.
    pub fn set(&self, ctx: &Context, value: &T) {
        ctx.write(&self.buffer, bytemuck::bytes_of(value));
    }
}

impl<T> Uniform<T> {
    /// The underlying buffer, for binding.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}
