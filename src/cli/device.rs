//! `--device`, `--adapter`, `--gpu-precision`: which backend runs the steps.
//!
//! The choice itself is the library's (`nudge::backend::device::open`);
//! here the flags become its options and its reasons become one line on
//! stderr.

use clap::{Args, ValueEnum};

use super::log;
use nudge::backend::device::{self, Choice, DeviceOptions};
use nudge::{Backend, Device, Error, GpuOptions, Precision, Result};

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DeviceArg {
    /// A hardware GPU adapter if there is one, else the CPU (with a notice).
    /// Software adapters (lavapipe) are used only when named by --adapter.
    #[default]
    Auto,
    /// The CPU path (rayon + gemm), the reference.
    Cpu,
    /// A GPU adapter through wgpu; an error if there is none.
    Gpu,
}

/// `--gpu-precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PrecisionArg {
    /// 32-bit floats end to end.
    #[default]
    F32,
    /// Corpus chunks stored as f16 (half the bandwidth), summed in f32.
    F16,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Where to run: auto, gpu or cpu
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Use the GPU adapter whose name contains TEXT (see `nudge devices`)
    #[arg(long, value_name = "TEXT")]
    pub adapter: Option<String>,
    /// How the GPU stores the corpus chunk: f32, or f16 (half the bandwidth, f32 sums)
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub gpu_precision: PrecisionArg,
    /// Spread the corpus pass over several GPU adapters at once (fit, eval, map):
    /// `all`, or a comma-separated list of indices (as `nudge devices` numbers them) or names
    #[arg(long, value_name = "all|LIST", conflicts_with = "adapter")]
    pub adapters: Option<String>,
}

impl DeviceArgs {
    /// `--device` as given (auto, cpu, gpu).
    pub fn device_name(&self) -> &'static str {
        match self.device {
            DeviceArg::Auto => "auto",
            DeviceArg::Cpu => "cpu",
            DeviceArg::Gpu => "gpu",
        }
    }

    /// The library's options for these flags (and `NUDGE_GPU_TIMEOUT_S`).
    pub fn options(&self) -> DeviceOptions {
        let mut gpu = GpuOptions {
            adapter: self.adapter.clone(),
            precision: match self.gpu_precision {
                PrecisionArg::F32 => Precision::F32,
                PrecisionArg::F16 => Precision::F16,
            },
            ..Default::default()
        };
        if let Some(s) = super::env_knob("NUDGE_GPU_TIMEOUT_S") {
            gpu.timeout = std::time::Duration::from_secs(s);
        }
        // The tile shape is tuned per adapter and job shape, once: the
        // winner is cached in the user's cache directory. NUDGE_GPU_TUNE=0
        // runs the default shape (comparisons, hermetic tests).
        if super::env_knob("NUDGE_GPU_TUNE") != Some(0) {
            gpu.tune = Some(nudge::backend::gpu::tune::TuneOptions {
                cache: tune_cache(),
                ..Default::default()
            });
        }
        DeviceOptions {
            device: match self.device {
                DeviceArg::Auto => Device::Auto,
                DeviceArg::Cpu => Device::Cpu,
                DeviceArg::Gpu => Device::Gpu,
            },
            gpu,
        }
    }

    /// The backend for a job of about `flops` similarity work, saying on
    /// stderr why when `auto` did not take a GPU. For commands that run on
    /// one device: `--adapters` is refused.
    pub fn backend_for(&self, flops: f64) -> Result<Box<dyn Backend>> {
        if self.adapters.is_some() {
            return Err(Error::invalid(
                "--adapters spreads `fit`, `eval` and `map` over several adapters; this command runs on one (choose it with --adapter)",
            ));
        }
        self.open(Some(flops))
    }

    /// The backends of a job that can spread its corpus pass over several
    /// (fit, eval, map): one per adapter of `--adapters`, or the one
    /// [`Self::backend_for`] chooses.
    pub fn backends_for(&self, flops: f64) -> Result<Vec<Box<dyn Backend>>> {
        let Some(list) = &self.adapters else {
            return Ok(vec![self.open(Some(flops))?]);
        };
        if self.device == DeviceArg::Cpu {
            return Err(Error::invalid(
                "--adapters names GPU adapters; it cannot go with --device cpu",
            ));
        }
        let which: device::Adapters = list.parse()?;
        let backends = device::open_adapters(&self.options().gpu, &which)?;
        log::notice(format!(
            "corpus pass spread over {} adapter{}: {}",
            backends.len(),
            if backends.len() == 1 { "" } else { "s" },
            backends
                .iter()
                .map(|b| b.device_name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(backends)
    }

    /// Starts opening the GPU at once, on a thread of its own, when the
    /// flags alone decide it: `--device gpu` on one adapter. Opening one
    /// (instance, device, kernel compiles) took 0.17-0.21 s on an H200,
    /// about as long as reading a million-row dataset, and neither needs
    /// the other: overlapped, the fit waits for the longer of the two
    /// instead of their sum. Any other choice depends on the job's size
    /// (`auto`) or opens several adapters (`--adapters`), and waits for
    /// [`Self::backends_after`].
    pub fn open_early(&self) -> Early {
        if self.device != DeviceArg::Gpu || self.adapters.is_some() {
            return Early(None);
        }
        let opts = self.options().gpu;
        // A thread that cannot be started only means no overlap.
        Early(
            std::thread::Builder::new()
                .name("open-gpu".into())
                .spawn(move || nudge::backend::gpu::Gpu::new(&opts))
                .ok(),
        )
    }

    /// [`Self::backends_for`], taking the GPU that [`Self::open_early`]
    /// started, if it did, once it is open (its error, if opening failed,
    /// is the same as opening it here would give).
    pub fn backends_after(&self, mut early: Early, flops: f64) -> Result<Vec<Box<dyn Backend>>> {
        match early.0.take() {
            Some(opening) => match opening.join() {
                Ok(gpu) => Ok(vec![Box::new(gpu?)]),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            None => self.backends_for(flops),
        }
    }

    fn open(&self, flops: Option<f64>) -> Result<Box<dyn Backend>> {
        let (backend, choice) = device::open(&self.options(), flops)?;
        match choice {
            Choice::AsAsked => {}
            Choice::SmallJob { flops } => log::notice(format!(
                "small job ({:.1} GFLOP): running on the CPU, faster than starting a GPU (--device gpu forces it)",
                flops / 1e9
            )),
            Choice::NoAdapter => {
                log::notice("no GPU adapter found; running on the CPU (`nudge devices` explains)")
            }
            Choice::SoftwareOnly { adapter } => log::notice(format!(
                "only a software GPU adapter ({adapter}) found; running on the CPU, which is faster (--device gpu uses it anyway)"
            )),
            Choice::GpuFailed { error } => {
                log::notice(format!("no usable GPU ({error}); running on the CPU"))
            }
            // A new reason from a newer library: say nothing rather than
            // something wrong.
            #[allow(unreachable_patterns)]
            _ => {}
        }
        Ok(backend)
    }
}

/// A GPU being opened while the dataset is read ([`DeviceArgs::open_early`]),
/// or nothing to wait for.
pub struct Early(Option<std::thread::JoinHandle<Result<nudge::backend::gpu::Gpu>>>);

impl Drop for Early {
    /// A run that fails before it takes the device (a bad dataset) still
    /// waits for the opening to end: a process that exits while a thread
    /// is inside the GPU driver's initialisation may crash on the way out,
    /// and the user must get the error and its exit code, not a signal.
    fn drop(&mut self) {
        if let Some(opening) = self.0.take() {
            let _ = opening.join();
        }
    }
}

/// The autotuner's cache file: `$XDG_CACHE_HOME/nudge/tune.json`, else
/// `~/.cache/nudge/tune.json`; `None` (tune per run) without either.
pub fn tune_cache() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
            .join(".cache"),
    };
    Some(dir.join("nudge").join("tune.json"))
}
