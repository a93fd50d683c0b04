//! Which backend runs a job: the CPU, a GPU adapter, or the best of the two
//! for the job's size ([`Device::Auto`]). Every entry point (the CLI's
//! commands, the Python package) chooses and falls back alike through
//! [`open`].

use super::Backend;
use super::cpu::Cpu;
use super::gpu::{Gpu, GpuOptions, list_adapters};
use crate::error::{Error, Kind, Result};

/// Below this much similarity work (about 0.1 s on two CPU cores)
/// [`Device::Auto`] does not look for a GPU: loading the Vulkan drivers and
/// compiling the kernels takes longer than the CPU needs for the whole job.
pub const SMALL_JOB_FLOPS: f64 = 20e9;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A hardware GPU adapter if there is one and the job is large enough,
    /// else the CPU. Software adapters (lavapipe) are used only when named.
    #[default]
    Auto,
    /// The CPU path (rayon + gemm), the reference.
    Cpu,
    /// A GPU adapter through wgpu; an error if there is none.
    Gpu,
}

impl Device {
    /// `auto`, `cpu` or `gpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;

    /// `auto`, `cpu` or `gpu` (any case).
    fn from_str(s: &str) -> Result<Device> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => Err(Error::invalid(format!(
                "device {s:?}: expected auto, cpu or gpu"
            ))),
        }
    }
}

/// What [`open`] needs: the device, and how to open a GPU.
#[derive(Debug, Clone, Default)]
pub struct DeviceOptions {
    /// Where to run.
    pub device: Device,
    /// Adapter choice, precision and limits of a GPU.
    pub gpu: GpuOptions,
}

/// Why [`open`] chose what it chose when that is not what was asked for in
/// so many words (`auto` falling back to the CPU): for the caller to tell
/// the user.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Choice {
    /// The device asked for.
    AsAsked,
    /// `auto` on a job under [`SMALL_JOB_FLOPS`]: the CPU, without probing.
    SmallJob {
        /// The job's similarity work.
        flops: f64,
    },
    /// `auto` found no adapter.
    NoAdapter,
    /// `auto` found only software adapters (named), slower than the CPU.
    SoftwareOnly {
        /// The first software adapter's name.
        adapter: String,
    },
    /// `auto` found an adapter that could not be opened.
    GpuFailed {
        /// Why.
        error: String,
    },
}

/// The backend for a job of about `flops` similarity work (if known), and
/// why it is that one.
pub fn open(opts: &DeviceOptions, flops: Option<f64>) -> Result<(Box<dyn Backend>, Choice)> {
    let auto = opts.device == Device::Auto;
    if let Some(flops) = flops
        && auto
        && opts.gpu.adapter.is_none()
        && flops < SMALL_JOB_FLOPS
    {
        return Ok((Box::new(Cpu), Choice::SmallJob { flops }));
    }
    match opts.device {
        Device::Cpu => Ok((Box::new(Cpu), Choice::AsAsked)),
        Device::Gpu => Ok((Box::new(Gpu::new(&opts.gpu)?), Choice::AsAsked)),
        Device::Auto if opts.gpu.adapter.is_none() => {
            let list = list_adapters();
            if list.is_empty() {
                return Ok((Box::new(Cpu), Choice::NoAdapter));
            }
            // A software adapter (lavapipe) is many times slower than the
            // CPU backend: `auto` takes it only when asked by name.
            if list.iter().all(|a| a.software) {
                let adapter = list[0].name.clone();
                return Ok((Box::new(Cpu), Choice::SoftwareOnly { adapter }));
            }
            gpu_or_cpu(&opts.gpu)
        }
        Device::Auto => gpu_or_cpu(&opts.gpu),
    }
}

/// `auto` once an adapter is worth trying: the GPU, or the CPU if it cannot
/// be opened.
fn gpu_or_cpu(opts: &GpuOptions) -> Result<(Box<dyn Backend>, Choice)> {
    match Gpu::new(opts) {
        Ok(gpu) => Ok((Box::new(gpu), Choice::AsAsked)),
        // An adapter name that matches nothing is the caller's to fix, not
        // a reason to fall back.
        Err(e) if e.kind() == Kind::Usage => Err(e),
        Err(e) => Ok((
            Box::new(Cpu),
            Choice::GpuFailed {
                error: e.to_string(),
            },
        )),
    }
}

/// Which GPU adapters a job spreads its corpus pass over ([`open_adapters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapters {
    /// Every hardware adapter (software ones such as lavapipe only when
    /// there is nothing else).
    All,
    /// These, in this order: each an index into [`list_adapters`]'s order
    /// (`0` is the best) or text an adapter's name contains. One adapter
    /// may be named more than once: each mention opens a device of its own.
    List(Vec<String>),
}

impl std::str::FromStr for Adapters {
    type Err = Error;
    fn from_str(s: &str) -> Result<Adapters> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Adapters::All);
        }
        let list: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
        if list.iter().any(String::is_empty) {
            return Err(Error::invalid(format!(
                "adapters {s:?}: expected `all` or a comma-separated list of adapter indices or names (see `nudge devices`)"
            )));
        }
        Ok(Adapters::List(list))
    }
}

/// One GPU backend per adapter of `which`, with the other settings of
/// `gpu`; each is opened as [`Gpu::new`] opens one, so a job split across
/// them gives what one of them gives.
pub fn open_adapters(gpu: &GpuOptions, which: &Adapters) -> Result<Vec<Box<dyn Backend>>> {
    let picks: Vec<GpuOptions> = match which {
        Adapters::All => {
            let list = list_adapters();
            if list.is_empty() {
                return Err(Error::NoAdapter);
            }
            let hardware = list.iter().filter(|a| !a.software).count();
            list.iter()
                .enumerate()
                .filter(|(_, a)| hardware == 0 || !a.software)
                .map(|(i, _)| GpuOptions {
                    adapter: None,
                    adapter_index: Some(i),
                    ..gpu.clone()
                })
                .collect()
        }
        Adapters::List(items) => items
            .iter()
            .map(|item| match item.parse::<usize>() {
                Ok(i) => GpuOptions {
                    adapter: None,
                    adapter_index: Some(i),
                    ..gpu.clone()
                },
                Err(_) => GpuOptions {
                    adapter: Some(item.clone()),
                    adapter_index: None,
                    ..gpu.clone()
                },
            })
            .collect(),
    };
    picks
        .iter()
        .map(|o| Ok(Box::new(Gpu::new(o)?) as Box<dyn Backend>))
        .collect()
}
