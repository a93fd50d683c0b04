//! Autotuning of the generated GEMM's tile shape, per adapter and job shape.
//!
//! Why: the best tile depends on the adapter (registers, workgroup memory,
//! how its compiler schedules an unrolled loop) and on the shape (a d of
//! 384 wastes little of a k-tile of 16, a thousand queries fill 8 row tiles
//! of 128). No single default is best everywhere, and vendor figures do not
//! hold for a software adapter, so the shapes in [`VARIANTS`] are timed with
//! timestamp queries on the job's own `d` and query count the first time an
//! adapter meets that shape, and the winner is cached on disk.
//!
//! A variant may win only if it computes the same scores: each is first run
//! on a small block of the job's `d` and compared with the CPU twin
//! (`cpu::gemm_nt`) within [`DOT_TOL`], the GEMM parity tolerance the GPU
//! tests use. (Every tile sums in ascending k, so the tiles agree with one
//! another bit for bit; the tolerance is for the CPU's different order.)
//!
//! The cache is a JSON file the caller names ([`TuneOptions::cache`]; the
//! library reads no environment). Entries are keyed by adapter, driver,
//! nudge version, the candidates tried (a hash of their generated
//! kernels), `d`, query-count bucket and precision ([`TuneKey`]). A
//! file that does not parse, or that another nudge version wrote, is
//! ignored with a warning (returned in the [`TuneReport`], never printed)
//! and replaced, atomically, by the next tuning that times something.
//!
//! Without timestamps nothing is timed: the shape is a per-vendor default
//! ([`default_tile`]) and nothing is cached.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::context::Precision;
use super::tiled::Tile;

/// The GEMM parity tolerance: a GPU dot product may differ from the CPU's
/// by at most `DOT_TOL * sum |a_i b_i|` (see `tests/it/gpu/mod.rs` for why
/// that bound holds for d <= 1024; the tests use this constant).
pub const DOT_TOL: f32 = 1e-5;

/// The nudge version that writes (and alone may read) a cache file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The shapes the autotuner tries, every one [`Tile::valid`]; those beyond
/// an adapter's limits ([`Tile::fits`]) are skipped there. They span the
/// trade-off the template has: outputs per thread (register reuse against
/// register pressure), threads per workgroup (64 or 256), output tile
/// (reuse per staged slice against workgroups to fill the device) and the
/// k-tile (barriers per FMA against workgroup memory).
pub const VARIANTS: [Tile; 7] = [
    Tile::LARGE,
    Tile {
        bm: 128,
        bn: 128,
        tm: 8,
        tn: 8,
        bk: 8,
        direct: false,
    },
    Tile {
        bm: 64,
        bn: 128,
        tm: 4,
        tn: 8,
        bk: 16,
        direct: false,
    },
    Tile {
        bm: 64,
        bn: 64,
        tm: 4,
        tn: 4,
        bk: 16,
        direct: false,
    },
    Tile {
        bm: 64,
        bn: 64,
        tm: 8,
        tn: 8,
        bk: 16,
        direct: false,
    },
    Tile::SMALL,
    Tile {
        bm: 32,
        bn: 32,
        tm: 4,
        tn: 4,
        bk: 16,
        direct: false,
    },
];

/// The direct (unstaged) shapes the autotuner also tries on software
/// adapters, every one [`Tile::valid`]. Only there: on a GPU a thread's
/// hundred-odd accumulators and its uncoalesced reads of `b` are what the
/// staged shapes exist to avoid. They span rows of `a` per workgroup
/// (uniform loads per FMA) against accumulators per lane.
pub const DIRECT_VARIANTS: [Tile; 4] = [
    Tile::DIRECT,
    Tile {
        bm: 16,
        bn: 512,
        tm: 16,
        tn: 8,
        bk: 4,
        direct: true,
    },
    Tile {
        bm: 24,
        bn: 256,
        tm: 24,
        tn: 8,
        bk: 4,
        direct: true,
    },
    Tile {
        bm: 8,
        bn: 512,
        tm: 8,
        tn: 16,
        bk: 4,
        direct: true,
    },
];

/// How the autotuner runs (see [`super::GpuOptions::tune`]).
#[derive(Debug, Clone, Default)]
pub struct TuneOptions {
    /// The cache file (the CLI passes `$XDG_CACHE_HOME/nudge/tune.json`);
    /// `None`: tune per process, remember nothing.
    pub cache: Option<PathBuf>,
    /// Corpus rows of each timed dispatch (rounded to whole tiles, capped
    /// by what one binding holds). `None`: 32768 on a hardware adapter (a
    /// scan's chunk is about that large), 2048 on a software one, where a
    /// dispatch of a thousand queries by 32768 rows takes seconds.
    pub timing_rows: Option<usize>,
    /// Timed dispatches per variant, the fastest counting (default 3): the
    /// minimum is what the shape can do, the rest is other load.
    pub reps: Option<u32>,
}

/// What the cache is keyed by: a winner holds for this adapter and driver,
/// this nudge (whose template generated it), these candidates, this `d`,
/// this query-count bucket and this precision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneKey {
    /// The adapter's name.
    pub adapter: String,
    /// Driver name and version.
    pub driver: String,
    /// The nudge version ([`VERSION`]).
    pub nudge: String,
    /// A fingerprint of the variants tried on this adapter and of the
    /// kernels generated for them ([`candidates`]). A winner is only the
    /// best of what was tried: when the candidates or their generator
    /// change (a build that adds a tile, or a faster template), the old
    /// winner no longer answers. The version alone did not say so: within
    /// one version, lavapipe kept a staged 128x128 winner (4.7 GFLOP/s)
    /// cached before the direct tiles existed (20-35). Absent in older
    /// files, which then match nothing and are retuned.
    #[serde(default)]
    pub candidates: String,
    /// Embedding dimension.
    pub d: usize,
    /// Query count rounded up to a power of two ([`query_bucket`]).
    pub queries: usize,
    /// `f32` or `f16`.
    pub precision: String,
}

/// The query-count bucket of the cache key: the next power of two, so that
/// jobs of 900 and 1000 queries share a winner and 100 and 1000 do not.
pub fn query_bucket(queries: usize) -> usize {
    queries.max(1).next_power_of_two()
}

impl TuneKey {
    /// The key of a job of `d` and `queries` on the adapter `info`.
    pub fn new(
        info: &wgpu::AdapterInfo,
        d: usize,
        queries: usize,
        precision: Precision,
    ) -> TuneKey {
        TuneKey {
            adapter: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            nudge: VERSION.to_string(),
            candidates: candidates(info),
            d,
            queries: query_bucket(queries),
            precision: precision.as_str().to_string(),
        }
    }
}

/// Where the chosen shape came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A winner in the cache file: nothing was timed.
    Cached,
    /// The variants were checked and timed now.
    Timed,
    /// No timestamps (or no variant timed): the per-vendor default.
    Default,
}

impl Source {
    /// `cached`, `tuned` or `default`, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cached => "cached",
            Source::Timed => "tuned",
            Source::Default => "default",
        }
    }
}

/// What became of one variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Checked and timed: the fastest of its dispatches.
    Timed {
        /// GPU milliseconds of the fastest dispatch.
        ms: f64,
        /// Its GFLOP/s (`2 q n d` over `ms`).
        gflops: f64,
    },
    /// Checked, but no dispatch got a timestamp slot.
    Untimed,
    /// Not eligible: beyond the adapter's limits, failed to compile, or
    /// gave scores beyond the tolerance (the reason says which).
    Refused(String),
}

/// One variant's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The shape tried.
    pub tile: Tile,
    /// How it fared.
    pub outcome: Outcome,
}

/// The autotuner's answer for one job shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneReport {
    /// What the answer is keyed by.
    pub key: TuneKey,
    /// The shape to use.
    pub tile: Tile,
    /// Cached, timed now, or the default.
    pub source: Source,
    /// Every variant's result when timed now (empty otherwise).
    pub trials: Vec<Trial>,
    /// Queries, corpus rows and `d` of each timed dispatch.
    pub timed_shape: (usize, usize, usize),
    /// Problems with the cache (unreadable, corrupt, stale, not written):
    /// for the caller to show; none of them fails the job.
    pub warnings: Vec<String>,
}

/// The shapes the autotuner tries on the adapter `info`: [`VARIANTS`],
/// and on a software adapter [`DIRECT_VARIANTS`] too.
pub fn variants(info: &wgpu::AdapterInfo) -> Vec<Tile> {
    let mut v = VARIANTS.to_vec();
    if info.device_type == wgpu::DeviceType::Cpu {
        v.extend(DIRECT_VARIANTS);
    }
    v
}

/// The fingerprint of [`variants`] on the adapter `info` and of the
/// kernels generated for them (each variant's name and WGSL, hashed with
/// xxh3; hex): what [`TuneKey::candidates`] holds.
pub fn candidates(info: &wgpu::AdapterInfo) -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::new();
    for t in variants(info) {
        h.write(t.to_string().as_bytes());
        h.write(t.wgsl().as_bytes());
        h.write(t.wgsl_fused().as_bytes());
    }
    format!("{:016x}", h.finish())
}

/// The shape without timestamps: large tiles where the vendor's GPUs are
/// known to run them well (NVIDIA, AMD), 64x64 on Intel and Apple (smaller
/// register files per thread), the direct tile on software adapters and
/// small tiles on unknown vendors (mobile GPUs), each only where it fits
/// the limits.
pub fn default_tile(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Tile {
    let want = if info.device_type == wgpu::DeviceType::Cpu {
        Tile::DIRECT
    } else {
        match info.vendor {
            0x10de | 0x1002 => Tile::LARGE,
            0x8086 | 0x106b => VARIANTS[3],
            _ => Tile::SMALL,
        }
    };
    [want, Tile::SMALL, VARIANTS[6]]
        .into_iter()
        .find(|t| t.fits(limits))
        // Every WebGPU device takes 64 invocations and 16 KiB.
        .unwrap_or(VARIANTS[6])
}

/// The file's form: every entry written by one nudge version.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    nudge: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: TuneKey,
    tile: Tile,
    /// The winner's measured GFLOP/s, for people reading the file.
    gflops: Option<f64>,
}

/// The entries of `path` (none when it does not exist), with a warning for
/// a file that cannot be read, does not parse or is of another version.
fn load(path: &Path, warnings: &mut Vec<String>) -> Vec<Entry> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warnings.push(format!(
                "cannot read the GPU tuning cache {}: {e}; ignored",
                path.display()
            ));
            return Vec::new();
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Err(e) => {
            warnings.push(format!(
                "the GPU tuning cache {} is corrupt ({e}); ignored, and replaced once tuned",
                path.display()
            ));
            Vec::new()
        }
        Ok(f) if f.nudge != VERSION => {
            warnings.push(format!(
                "the GPU tuning cache {} was written by nudge {} (this is {VERSION}); ignored as stale, and replaced once tuned",
                path.display(),
                f.nudge
            ));
            Vec::new()
        }
        Ok(f) => f.entries,
    }
}

/// The cached winner of `key` in `path` if there is one that an adapter
/// of `limits` can run; warnings (appended) say why a file was ignored.
pub fn lookup(
    path: &Path,
    key: &TuneKey,
    limits: &wgpu::Limits,
    warnings: &mut Vec<String>,
) -> Option<Tile> {
    let e = load(path, warnings).into_iter().find(|e| &e.key == key)?;
    if e.tile.fits(limits) {
        Some(e.tile)
    } else {
        warnings.push(format!(
            "the GPU tuning cache {} holds tile {} for this adapter, which it cannot run; ignored",
            path.display(),
            e.tile
        ));
        None
    }
}

/// Records `tile` as the winner of `key` in `path`, keeping the other
/// entries of a current file (a corrupt or stale one is replaced whole),
/// written atomically so that a crash or a concurrent job never leaves half
/// a file. A failure is a warning: the job has its shape either way.
pub fn store(
    path: &Path,
    key: &TuneKey,
    tile: Tile,
    gflops: Option<f64>,
    warnings: &mut Vec<String>,
) {
    // Its warnings were given when the file was looked up.
    let mut entries: Vec<Entry> = load(path, &mut Vec::new());
    entries.retain(|e| &e.key != key);
    entries.push(Entry {
        key: key.clone(),
        tile,
        gflops,
    });
    let file = CacheFile {
        nudge: VERSION.to_string(),
        entries,
    };
    let text = serde_json::to_vec_pretty(&file).expect("the cache serialises");
    let written = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::invalid(e.to_string()))
        }
        _ => Ok(()),
    }
    .and_then(|()| crate::data::atomic_write(path, &text));
    if let Err(e) = written {
        warnings.push(format!(
            "cannot write the GPU tuning cache {}: {e}",
            path.display()
        ));
    }
}

/// A reproducible block of values in [-1, 1) for the parity check
/// (xorshift64*, no dependency).
pub(crate) fn check_values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Why `got` (m x n, a GPU result) is not `a . b^T` within [`DOT_TOL`] of
/// the CPU twin, or `None` when it is.
pub(crate) fn parity(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    d: usize,
    got: &[f32],
) -> Option<String> {
    let mut want = vec![0.0f32; m * n];
    crate::backend::cpu::gemm_nt(a, b, m, n, d, &mut want);
    for i in 0..m {
        for j in 0..n {
            let mag: f32 = (0..d).map(|t| (a[i * d + t] * b[j * d + t]).abs()).sum();
            let (g, w) = (got[i * n + j], want[i * n + j]);
            if !g.is_finite() || (g - w).abs() > DOT_TOL * mag {
                return Some(format!(
                    "score ({i}, {j}) is {g}, the CPU's {w} (tolerance {})",
                    DOT_TOL * mag
                ));
            }
        }
    }
    None
}
