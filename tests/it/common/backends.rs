//! Every backend a test can run on, each opened once per test binary, and
//! [`backend_tests!`], which runs one test body on each of a set of them.
//!
//! Without a GPU adapter the GPU devices are left out (with a hint on how
//! to get one, printed once per device); with `NUDGE_REQUIRE_GPU=1` a
//! missing adapter is a failure instead:
//!
//! ```text
//! NUDGE_REQUIRE_GPU=1 XDG_RUNTIME_DIR=/tmp cargo test --release --test it
//! ```
//!
//! The sets:
//! - [`all`]: the CPU, the GPU, and the GPU with buffers capped at 128 KiB
//!   (the fixtures' queries still fit in one buffer, but every corpus is
//!   scanned in many pieces and the moved-set steps are split), which also
//!   runs the small staged GEMM tile where the adapter's own is another.
//! - [`all_with_f16`]: those, and the GPU with the corpus chunk stored as
//!   f16 (native where the adapter has `SHADER_F16`, and packed in u32
//!   pairs): for tests whose tolerance allows f16 scan scores.
//! - [`every_gpu`]: the GPU, and the GPU with buffers capped at 8 KiB, for a
//!   kernel against its CPU twin (CPU against CPU cannot fail). 8 KiB is too
//!   small for a whole fit (the queries of a scan must fit in one buffer) but
//!   sends small kernel inputs down every path that splits an input.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use nudge::backend::gpu::tiled::Tile;
use nudge::{Backend, Cpu, Gpu, GpuOptions, Precision};

/// A backend and the label failures name it by.
pub type On<T> = (&'static str, &'static T);

fn open(opts: GpuOptions) -> Option<Gpu> {
    match Gpu::new(&opts) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("NUDGE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("NUDGE_REQUIRE_GPU=1 but no GPU backend: {e}");
            }
            eprintln!(
                "skipping the GPU cases: {e}\n  (install mesa-vulkan-drivers and libvulkan1 to run them on the CPU-emulated lavapipe device; set NUDGE_REQUIRE_GPU=1 to make this a failure)"
            );
            None
        }
    }
}

/// One `OnceLock` per device: opened by the first test that asks.
macro_rules! device {
    ($(#[$doc:meta])* $name:ident, $opts:expr) => {
        $(#[$doc])*
        pub fn $name() -> Option<&'static Gpu> {
            static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
            GPU.get_or_init(|| open($opts)).as_ref()
        }
    };
}

device!(
    /// A second f32 device on the same adapter: with [`gpu`], the two
    /// "adapters" a job spread over several devices is tested on.
    gpu_twin,
    GpuOptions::default()
);

device!(
    /// The f32 device; `None` (after a skip hint) without an adapter.
    gpu,
    GpuOptions::default()
);
device!(
    /// Buffers capped at 8 KiB: small inputs take every path that splits
    /// inputs too large for one buffer.
    gpu_8k,
    GpuOptions {
        buffer_limit: Some(8 << 10),
        ..Default::default()
    }
);
device!(
    /// Buffers capped at 128 KiB: a fit of a fixture in many pieces. Its
    /// scans run the small staged tile, so that whole fits run a staged
    /// GEMM on software adapters too (whose own tile is the direct one).
    gpu_128k,
    GpuOptions {
        buffer_limit: Some(128 << 10),
        tile: Some(Tile::SMALL),
        ..Default::default()
    }
);
device!(
    /// The scan's GEMM in the large staged tile, whatever the adapter's own.
    gpu_large,
    GpuOptions {
        tile: Some(Tile::LARGE),
        ..Default::default()
    }
);
device!(
    /// The scan's GEMM in the direct (unstaged) tile, whatever the
    /// adapter's own.
    gpu_direct,
    GpuOptions {
        tile: Some(Tile::DIRECT),
        ..Default::default()
    }
);
device!(
    /// Rows normalised (or checked) by the device's kernel, whatever the
    /// adapter's default.
    gpu_device_rows,
    GpuOptions {
        host_rows: Some(false),
        ..Default::default()
    }
);
device!(
    /// Rows normalised (or checked) on the host, whatever the adapter's
    /// default (software adapters do so by default).
    gpu_host_rows,
    GpuOptions {
        host_rows: Some(true),
        ..Default::default()
    }
);
device!(
    /// The corpus chunk stored as f16 (native f16 where the adapter has it).
    gpu_f16,
    GpuOptions {
        precision: Precision::F16,
        ..Default::default()
    }
);
device!(
    /// f16 read as packed u32 pairs even where the adapter has SHADER_F16.
    gpu_f16_packed,
    GpuOptions {
        precision: Precision::F16,
        packed_f16_only: true,
        ..Default::default()
    }
);

device!(
    /// The f32 scan with its top-k unfused (score block + `topk.wgsl`).
    gpu_unfused,
    GpuOptions {
        fused_topk: false,
        ..Default::default()
    }
);
device!(
    /// The fused top-k with candidate lists of 3 entries: most chunks
    /// overflow and take the exact fallback.
    gpu_cand3,
    GpuOptions {
        topk_candidates: Some(3),
        ..Default::default()
    }
);

/// One of the device functions above.
type Open = fn() -> Option<&'static Gpu>;

fn gpus(list: &[(&'static str, Open)]) -> Vec<On<Gpu>> {
    list.iter()
        .filter_map(|&(label, open)| open().map(|g| (label, g)))
        .collect()
}

fn with_cpu(gpus: Vec<On<Gpu>>) -> Vec<On<dyn Backend>> {
    let mut out: Vec<On<dyn Backend>> = vec![("cpu", &Cpu)];
    out.extend(
        gpus.into_iter()
            .map(|(l, g)| (l, g as &'static dyn Backend)),
    );
    out
}

/// The CPU and the f32 GPU devices a whole fit runs on (see the module doc).
pub fn all() -> Vec<On<dyn Backend>> {
    with_cpu(gpus(&[("gpu", gpu), ("gpu-128k", gpu_128k)]))
}

/// The CPU and the default GPU device: for cases whose queries do not fit
/// the small-binding device of [`all`].
pub fn cpu_and_gpu() -> Vec<On<dyn Backend>> {
    with_cpu(gpus(&[("gpu", gpu)]))
}

/// [`all`] and the f16 GPU devices.
pub fn all_with_f16() -> Vec<On<dyn Backend>> {
    with_cpu(gpus(&[
        ("gpu", gpu),
        ("gpu-128k", gpu_128k),
        ("gpu-f16", gpu_f16),
        ("gpu-f16-packed", gpu_f16_packed),
    ]))
}

/// The f32 devices whose scans differ in the top-k: fused with room for
/// every candidate (in the adapter's own tile, the large staged one and
/// the direct one, whose epilogues differ), fused with 3-entry candidate
/// lists (overflow), and unfused.
pub fn topk_variants() -> Vec<On<Gpu>> {
    gpus(&[
        ("gpu", gpu),
        ("gpu-large", gpu_large),
        ("gpu-direct", gpu_direct),
        ("gpu-cand3", gpu_cand3),
        ("gpu-unfused", gpu_unfused),
    ])
}

/// The devices a scan is compared with the CPU's on: [`every_gpu`], and
/// the rows normalised and checked on the device and on the host.
pub fn scan_devices() -> Vec<On<Gpu>> {
    gpus(&[
        ("gpu", gpu),
        ("gpu-8k", gpu_8k),
        ("gpu-device-rows", gpu_device_rows),
        ("gpu-host-rows", gpu_host_rows),
    ])
}

/// The GPU devices a kernel is compared with its CPU twin on.
pub fn every_gpu() -> Vec<On<Gpu>> {
    gpus(&[("gpu", gpu), ("gpu-8k", gpu_8k)])
}

/// Runs `body` on every backend of `set`, all of them even when one fails,
/// then fails with the label and panic message of each that failed.
#[track_caller]
pub fn run_each<T: ?Sized>(test: &str, set: Vec<On<T>>, body: impl Fn(&'static T)) {
    let mut failed = Vec::new();
    for (label, backend) in set {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(backend))) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failed.push(format!("[{label}] {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{test} failed on {} backend(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Tests run on every backend of a set: each `fn name(b) { ... }` becomes one
/// `#[test] fn name()` that runs the body with `b` bound to each backend of
/// [`all`] in turn (`&'static dyn Backend`), and `fn name(b in set()) {...}`
/// does the same over another set ([`all_with_f16`]; [`every_gpu`], where
/// `b` is a `&'static Gpu`). A failure names the backend's label.
macro_rules! backend_tests {
    () => {};
    ($(#[$meta:meta])* fn $name:ident($b:ident in $set:expr) $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::common::backends::run_each(stringify!($name), $set, |$b| $body);
        }
        $crate::common::backends::backend_tests! { $($rest)* }
    };
    ($(#[$meta:meta])* fn $name:ident($b:ident) $body:block $($rest:tt)*) => {
        $crate::common::backends::backend_tests! {
            $(#[$meta])* fn $name($b in $crate::common::backends::all()) $body $($rest)*
        }
    };
}

pub(crate) use backend_tests;
