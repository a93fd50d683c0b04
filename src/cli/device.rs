//! `--device`, `--adapter`, `--gpu-precision`: which backend runs the steps.
//!
//! Kept in one place so that every subcommand chooses (and falls back)
//! alike: `auto` takes a GPU adapter when wgpu finds one and otherwise the
//! CPU, saying so in one line.

use clap::{Args, ValueEnum};

use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::backend::gpu::{Gpu, GpuOptions, Precision, list_adapters};
use crate::error::{Kind, Result};
use crate::log;

/// Below this much similarity work (about 0.1 s on two CPU cores) `auto`
/// does not look for a GPU.
pub const SMALL_JOB_FLOPS: f64 = 20e9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Device {
    /// A hardware GPU adapter if there is one, else the CPU (with a notice).
    /// Software adapters (lavapipe) are used only when named by --adapter.
    #[default]
    Auto,
    /// The CPU path (rayon + gemm), the reference.
    Cpu,
    /// A GPU adapter through wgpu; an error if there is none.
    Gpu,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Where to run: auto, gpu or cpu
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// Use the GPU adapter whose name contains TEXT (see `nudge devices`)
    #[arg(long, value_name = "TEXT")]
    pub adapter: Option<String>,
    /// How the GPU stores the corpus chunk: f32, or f16 (half the bandwidth, f32 sums)
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub gpu_precision: Precision,
}

impl DeviceArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions {
            adapter: self.adapter.clone(),
            precision: self.gpu_precision,
            ..Default::default()
        }
    }

    /// The backend for a job of about `flops` similarity work. Under `auto`
    /// a small job runs on the CPU without probing for adapters: loading the
    /// Vulkan drivers and compiling the kernels takes longer than the CPU
    /// needs for the whole job.
    pub fn backend_for(&self, flops: f64) -> Result<Box<dyn Backend>> {
        if self.device == Device::Auto && self.adapter.is_none() && flops < SMALL_JOB_FLOPS {
            log::notice(format!(
                "small job ({:.1} GFLOP): running on the CPU, faster than starting a GPU (--device gpu forces it)",
                flops / 1e9
            ));
            return Ok(Box::new(Cpu));
        }
        self.backend()
    }

    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match self.device {
            Device::Cpu => Ok(Box::new(Cpu)),
            Device::Gpu => Ok(Box::new(Gpu::new(&self.options())?)),
            Device::Auto if self.adapter.is_none() => {
                let list = list_adapters();
                if list.is_empty() {
                    log::notice(
                        "no GPU adapter found; running on the CPU (`nudge devices` explains)",
                    );
                    return Ok(Box::new(Cpu));
                }
                // A software adapter (lavapipe) is many times slower than the
                // CPU backend: `auto` takes it only when asked by name.
                if list.iter().all(|a| a.software) {
                    log::notice(format!(
                        "only a software GPU adapter ({}) found; running on the CPU, which is faster (--device gpu uses it anyway)",
                        list[0].name
                    ));
                    return Ok(Box::new(Cpu));
                }
                self.gpu_or_cpu()
            }
            Device::Auto => self.gpu_or_cpu(),
        }
    }

    /// `auto` once an adapter is worth trying: the GPU, or the CPU if it
    /// cannot be opened.
    fn gpu_or_cpu(&self) -> Result<Box<dyn Backend>> {
        match Gpu::new(&self.options()) {
            Ok(gpu) => Ok(Box::new(gpu)),
            // A bad --adapter is the user's to fix, not a reason to fall back.
            Err(e) if e.kind == Kind::Usage => Err(e),
            Err(e) => {
                log::notice(format!("no usable GPU ({e}); running on the CPU"));
                Ok(Box::new(Cpu))
            }
        }
    }
}
