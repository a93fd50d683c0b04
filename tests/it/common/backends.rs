//! Shared by the GPU test files: one device per test binary, skipped with a
//! hint when the machine has no adapter, and a small deterministic RNG.

#![allow(dead_code)]

use std::sync::OnceLock;

use nudge::backend::gpu::{Gpu, GpuOptions, Precision};

fn open(precision: Precision, packed_f16_only: bool) -> Option<Gpu> {
    open_with(GpuOptions {
        precision,
        packed_f16_only,
        ..Default::default()
    })
}

fn open_with(opts: GpuOptions) -> Option<Gpu> {
    match Gpu::new(&opts) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("NUDGE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("NUDGE_REQUIRE_GPU=1 but no GPU backend: {e}");
            }
            eprintln!(
                "skipping GPU test: {e}\n  (install mesa-vulkan-drivers and libvulkan1 to run it on the CPU-emulated lavapipe device; set NUDGE_REQUIRE_GPU=1 to make this a failure)"
            );
            None
        }
    }
}

/// The f32 device, opened once per test binary; `None` (after a skip
/// message) if there is no adapter and `NUDGE_REQUIRE_GPU` is not 1.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| open(Precision::F32, false)).as_ref()
}

/// A device whose buffers are capped at 8 KiB, so that small inputs take
/// every path that splits inputs too large for one buffer.
pub fn gpu_small() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        open_with(GpuOptions {
            buffer_limit: Some(8 << 10),
            ..Default::default()
        })
    })
    .as_ref()
}

/// A device whose buffers are capped at 128 KiB: the fixtures' queries
/// still fit in one buffer, but every corpus is scanned in many pieces and
/// the moved-set steps are split.
pub fn gpu_128k() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        open_with(GpuOptions {
            buffer_limit: Some(128 << 10),
            ..Default::default()
        })
    })
    .as_ref()
}

/// The plain device and the 8 KiB-buffer one (none without an adapter).
pub fn gpus() -> Vec<&'static Gpu> {
    [gpu(), gpu_small()].into_iter().flatten().collect()
}

/// The same with the corpus chunk stored as f16.
pub fn gpu_f16() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| open(Precision::F16, false)).as_ref()
}

/// f16 read as packed u32 pairs even where the adapter has SHADER_F16.
pub fn gpu_f16_packed() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| open(Precision::F16, true)).as_ref()
}

/// xorshift64*: reproducible inputs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}
