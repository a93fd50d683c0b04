//! `--device`: which backend runs the steps.

use clap::{Args, ValueEnum};

use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Device {
    /// A GPU adapter if there is one, else the CPU (with a notice).
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
}

impl DeviceArgs {
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match self.device {
            Device::Cpu | Device::Auto => Ok(Box::new(Cpu)),
            Device::Gpu => Err(Error::runtime(
                "--device gpu: this build has no GPU backend yet; use --device cpu",
            )),
        }
    }
}
