//! Compiled pipelines, their bindings, and dispatch sizing.
//!
//! Every kernel's bindings are declared exactly once, in the `kernels!` table
//! below: slot, WGSL name, access and (for the parameter block) Rust type.
//! From that one declaration come the bind-group layout the pipeline is built
//! with, the typed struct a caller fills to bind buffers (one field per WGSL
//! binding, named like it), and the public [`SPECS`] table that a test
//! compares with the `@group(0) @binding(n) var<...> name` lines of the
//! shaders. So a buffer can only be bound by the name the WGSL gives it:
//! there is no positional list to match by hand against the shader, and two
//! buffers of the same type (S0 and the slopes, say) cannot be swapped
//! without the swap being visible as a wrong field name.

use std::marker::PhantomData;

use bytemuck::{Pod, Zeroable};

use super::context::{Context, Uniform};
use crate::error::Result;

/// Threads per workgroup of every one-dimensional kernel (the WGSL files say
/// `@workgroup_size(64)`).
pub(crate) const WG: u32 = 64;
/// Workgroup count limit per dimension that WebGPU guarantees.
const MAX_GROUPS: u32 = 65535;

/// How a kernel accesses one of its bindings, as its WGSL declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>`: a parameter block.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
}

impl Access {
    /// The address space and access mode between `var<` and `>`, as the
    /// shaders spell them.
    pub fn wgsl(self) -> &'static str {
        match self {
            Access::Uniform => "uniform",
            Access::Read => "storage, read",
            Access::Write => "storage, read_write",
        }
    }
}

/// One `@group(0) @binding(slot) var<access> name` that a kernel binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingDecl {
    /// The `@binding(n)` number.
    pub slot: u32,
    /// The WGSL variable's name (and the Rust field's).
    pub name: &'static str,
    /// Uniform, read-only or read-write storage.
    pub access: Access,
    /// Bytes of the Rust parameter block for a uniform binding, 0 for a
    /// storage buffer (so the test can compare it with the WGSL struct).
    pub size: usize,
}

/// A WGSL module as it is compiled: some files of `shaders/` concatenated.
#[derive(Debug)]
pub struct Shader {
    /// Label of the module (and key of the compiled-module cache).
    pub name: &'static str,
    /// The full source handed to wgpu.
    pub source: &'static str,
    /// Why every access of the module is in bounds and every loop ends
    /// without wgpu's runtime checks (index clamping, loop-bounding
    /// counters), for a module that release builds create with
    /// `create_shader_module_trusted`; `None`: always built checked.
    /// Debug builds (and so debug tests) build every module checked.
    pub in_bounds: Option<&'static str>,
}

/// One compute entry point of a shader and every binding it uses.
#[derive(Debug)]
pub struct KernelSpec {
    /// The field of the kernel table that holds it (`topk_partial`).
    pub name: &'static str,
    /// The module the entry point lives in.
    pub shader: &'static Shader,
    /// The `@compute fn` name.
    pub entry: &'static str,
    /// Bindings in slot order; also the bind-group layout.
    pub bindings: &'static [BindingDecl],
}

/// `normalize.wgsl`: row normalisation, status, f16 packing.
pub const NORMALIZE: Shader = Shader {
    name: "normalize",
    source: include_str!("../../../shaders/normalize.wgsl"),
    in_bounds: Some(
        "main indexes x below rows * stride and status below rows (row < p.rows, column < p.cols <= p.stride), the buffers the host makes for p.rows rows of p.stride floats; to_f16 stops at i < rows * stride / 4 of buffers that large; main_f16 stays below stride / 2 words per row; the workgroup reduction reads partial[lid + s] with lid < s <= 32 of 64; every loop has a fixed step towards a uniform bound",
    ),
};
/// `similarity.wgsl`: the tiled GEMM (f32 and packed-f16 corpus).
pub const SIMILARITY: Shader = Shader {
    name: "similarity",
    source: include_str!("../../../shaders/similarity.wgsl"),
    in_bounds: None,
};
/// The GEMM with native f16 reads (`enable f16;` must open the module, hence
/// the separate prefix file); compiled only where the device has
/// `SHADER_F16`.
pub const SIMILARITY_F16: Shader = Shader {
    name: "similarity_f16",
    source: concat!(
        include_str!("../../../shaders/similarity_f16.wgsl"),
        include_str!("../../../shaders/similarity.wgsl")
    ),
    in_bounds: None,
};
/// `topk.wgsl` with the shared order and list helpers of `topk_order.wgsl`
/// and `topk_list.wgsl`.
pub const TOPK: Shader = Shader {
    name: "topk",
    source: concat!(
        include_str!("../../../shaders/topk_order.wgsl"),
        include_str!("../../../shaders/topk_list.wgsl"),
        include_str!("../../../shaders/topk.wgsl")
    ),
    in_bounds: None,
};
/// `aggregate.wgsl`: CSR segment sums.
pub const AGGREGATE: Shader = Shader {
    name: "aggregate",
    source: include_str!("../../../shaders/aggregate.wgsl"),
    in_bounds: None,
};
/// `nudge_m_bounds.wgsl`: the NUDGE-M interval bounds.
pub const NUDGE_M_BOUNDS: Shader = Shader {
    name: "nudge_m_bounds",
    source: include_str!("../../../shaders/nudge_m_bounds.wgsl"),
    in_bounds: None,
};
/// `slopes.wgsl`: S1 scaled by column into the NUDGE-M slopes.
pub const SLOPES: Shader = Shader {
    name: "slopes",
    source: include_str!("../../../shaders/slopes.wgsl"),
    in_bounds: None,
};
/// `pick.wgsl`: chosen elements of S0 and the slopes, for the host.
pub const PICK: Shader = Shader {
    name: "pick",
    source: include_str!("../../../shaders/pick.wgsl"),
    in_bounds: None,
};
/// `nudge_n_merge.wgsl` with the shared order and list helpers of
/// `topk_order.wgsl` and `topk_list.wgsl`.
pub const NUDGE_N_MERGE: Shader = Shader {
    name: "nudge_n_merge",
    source: concat!(
        include_str!("../../../shaders/topk_order.wgsl"),
        include_str!("../../../shaders/topk_list.wgsl"),
        include_str!("../../../shaders/nudge_n_merge.wgsl")
    ),
    in_bounds: None,
};
/// `update.wgsl`: the NUDGE-M and NUDGE-N embedding updates.
pub const UPDATE: Shader = Shader {
    name: "update",
    source: include_str!("../../../shaders/update.wgsl"),
    in_bounds: None,
};

/// The register-blocked GEMM of `tiled.rs`. Its source here is only the
/// interface every generated variant opens with; the module is built from
/// [`super::tiled::Tile::wgsl`] of the adapter's tile shape.
pub const GEMM_TILED: Shader = Shader {
    name: "gemm_tiled",
    source: super::tiled::INTERFACE,
    in_bounds: Some(
        "see tiled.rs: every index is below grid * tile of buffers padded to whole tiles, and the k loop runs p.d4 / (bk / 4) times (p.d4 times in a direct tile)",
    ),
};

/// `topk_fused.wgsl`: the per-query merge of the fused top-k's candidates
/// and the arming of its exact fallback, with the order of
/// `topk_order.wgsl`.
pub const TOPK_FUSED: Shader = Shader {
    name: "topk_fused",
    source: concat!(
        include_str!("../../../shaders/topk_order.wgsl"),
        include_str!("../../../shaders/topk_fused.wgsl")
    ),
    in_bounds: Some(
        "merge reads the list at q * k + i (q < p.lists, i < k) of lists * k entries and the candidates at q * cap + j (j < min(count, cap)) of lists * cap pairs; its workgroup arrays below k + n <= MERGE_ENTRIES (n is clamped to MERGE_ENTRIES - k and the host keeps 2 k <= MERGE_ENTRIES); bisection and counting loops are bounded by k and n; arm writes 9 words of a 9-word buffer and reads counts[lists] of lists + 1 (scan.rs sizes all of them)",
    ),
};

/// The register-blocked GEMM fused with the top-k epilogue
/// ([`super::tiled::Tile::wgsl_fused`]); as for [`GEMM_TILED`], the source
/// here is only its interface.
pub const GEMM_FUSED: Shader = Shader {
    name: "gemm_fused",
    source: super::tiled::FUSED_INTERFACE,
    in_bounds: Some(
        "as GEMM_TILED, and the epilogue indexes the running lists only for real queries, the skip mask below its arrayLength, the candidates below queries * cap and the counts below queries + 1 (see tiled::OFFER)",
    ),
};

/// `Params` of the fused GEMM (`tiled::FUSED_INTERFACE`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct FusedParams {
    /// Rows of `a` (padded to the tile).
    pub m: u32,
    /// Rows of `b` (padded to the tile).
    pub n: u32,
    /// vec4s per row of `a` and `b` (padded to the k-tile).
    pub d4: u32,
    /// Real queries (rows of `a` that are not padding).
    pub queries: u32,
    /// Real chunk rows (rows of `b` that are not padding).
    pub rows: u32,
    /// List length.
    pub k: u32,
    /// Entries per candidate list.
    pub cap: u32,
    /// Absolute corpus row of chunk row 0.
    pub first_row: u32,
    /// 1: leave out the rows set in `skip`.
    pub use_skip: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: [u32; 3],
}

/// `Params` of `topk_fused.wgsl` (both entry points).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct CandParams {
    /// Queries (running lists).
    pub lists: u32,
    /// List length.
    pub k: u32,
    /// Entries per candidate list.
    pub cap: u32,
    /// Fallback grid of the tiled GEMM (x, y).
    pub gemm_x: u32,
    /// See `gemm_x`.
    pub gemm_y: u32,
    /// Fallback grid of `topk.wgsl::partial`.
    pub part_x: u32,
    /// See `part_x`.
    pub part_y: u32,
    /// Fallback grid of `topk.wgsl::merge`.
    pub fold_x: u32,
    /// See `fold_x`.
    pub fold_y: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: [u32; 3],
}

/// `Params` of the generated GEMM (`tiled::INTERFACE`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct TiledParams {
    /// Rows of `a` (padded to the tile).
    pub m: u32,
    /// Rows of `b` (padded to the tile).
    pub n: u32,
    /// vec4s per row of `a` and `b` (padded to the k-tile).
    pub d4: u32,
    /// vec4s between rows of `c`.
    pub ldc4: u32,
}

/// `subgroup_size.wgsl`: the subgroup-size probe of software adapters.
pub const SUBGROUP_SIZE: Shader = Shader {
    name: "subgroup_size",
    source: include_str!("../../../shaders/subgroup_size.wgsl"),
    in_bounds: None,
};

/// `peak.wgsl`: the FP32 FMA-throughput probe.
pub const PEAK: Shader = Shader {
    name: "peak",
    source: include_str!("../../../shaders/peak.wgsl"),
    in_bounds: None,
};

/// `Params` of `peak.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct PeakParams {
    /// Rounds of 16 vec4 FMAs per invocation.
    pub iters: u32,
    /// The multiplier of every FMA.
    pub a: f32,
    /// The addend of every FMA.
    pub b: f32,
    /// To the 16-byte size of a uniform block.
    pub pad: u32,
}

/// `Params` of `normalize.wgsl` (every entry point of it).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct NormParams {
    /// Rows in the chunk.
    pub rows: u32,
    /// Floats per row.
    pub cols: u32,
    /// Floats between row starts (`cols` padded to a multiple of 4).
    pub stride: u32,
    /// 1: only report non-finite rows, leave the values as they are.
    pub check_only: u32,
}

/// `Params` of `similarity.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct GemmParams {
    /// Rows of `a` (and of `c`).
    pub m: u32,
    /// Rows of `b` (columns of `c`).
    pub n: u32,
    /// vec4s per row of `a` and `b`.
    pub d4: u32,
    /// Floats between rows of `c`.
    pub ldc: u32,
}

/// `Params` of `topk.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct TopkParams {
    /// Running lists (one per query, or per gamma and query).
    pub lists: u32,
    /// Columns in the score block.
    pub n: u32,
    /// Floats between rows of the score block.
    pub ld: u32,
    /// List length.
    pub k: u32,
    /// Columns per segment of `partial`.
    pub seg_len: u32,
    /// Segments per list (scratch lists per running list).
    pub segs: u32,
    /// Absolute corpus row of column 0.
    pub first_row: u32,
    /// 1: leave out the rows set in `skip`.
    pub use_skip: u32,
    /// -inf (WGSL has no infinite literal).
    pub neg_inf: f32,
    /// To the 16-byte size of a uniform block.
    pub pad: [u32; 3],
}

/// `Params` of `aggregate.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct AggParams {
    /// Segments (output rows) in this dispatch.
    pub segments: u32,
    /// vec4s per row.
    pub d4: u32,
    /// 1: start from `out` (the sum so far of a long segment) instead of 0.
    pub carry: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: u32,
}

/// `Params` of `slopes.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SlopeParams {
    /// Rows of S1 (dev queries).
    pub rows: u32,
    /// Columns to scale (the block's records).
    pub width: u32,
    /// Floats between rows of S1.
    pub ld: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: u32,
}

/// `Params` of `pick.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct PickParams {
    /// Elements to read.
    pub count: u32,
    /// Floats between rows of S0 and of the slopes.
    pub ld: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: [u32; 2],
}

/// `Params` of `nudge_m_bounds.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct BoundsParams {
    /// Pairs (invocations).
    pub pairs: u32,
    /// Block columns in this dispatch.
    pub width: u32,
    /// Floats between rows of S0 and the slopes.
    pub ld: u32,
    /// To the 16-byte size of a uniform block.
    pub pad: u32,
}

/// `Params` of `nudge_n_merge.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct MergeParams {
    /// Gammas times queries; list = g * queries + q.
    pub lists: u32,
    /// Queries (rows of S0 and S1).
    pub queries: u32,
    /// Block columns in this dispatch.
    pub width: u32,
    /// Floats between rows of S0 and S1.
    pub ld: u32,
    /// List length.
    pub k: u32,
    /// Columns per segment.
    pub seg_len: u32,
    /// Segments per list.
    pub segs: u32,
    /// -inf (WGSL has no infinite literal).
    pub neg_inf: f32,
}

/// `Params` of `update.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct UpdateParams {
    /// Rows in this dispatch.
    pub rows: u32,
    /// Floats per row.
    pub cols: u32,
    /// Step size.
    pub gamma: f32,
    /// NUDGE-N: sine of the rotation angle (from the host, in f64).
    pub sin_t: f32,
    /// NUDGE-N: its cosine.
    pub cos_t: f32,
    /// NUDGE-N: 1 - gamma / 2, the clamp threshold.
    pub clamp_at: f32,
    /// To the 16-byte size of a uniform block.
    pub pad: [u32; 2],
}

/// What a binding field holds: a storage buffer, or a typed uniform.
pub(crate) trait AsBuffer {
    fn buffer(&self) -> &wgpu::Buffer;
}

impl AsBuffer for wgpu::Buffer {
    fn buffer(&self) -> &wgpu::Buffer {
        self
    }
}

impl<T> AsBuffer for Uniform<T> {
    fn buffer(&self) -> &wgpu::Buffer {
        Uniform::buffer(self)
    }
}

/// A kernel's binding declaration and the typed struct that fills it.
///
/// Implemented (by `kernels!`) for the struct at `'static`, which only names
/// the kernel; [`Kernel::dispatch`] takes the struct at any lifetime.
pub(crate) trait Layout {
    /// The kernel's struct of buffers, one field per WGSL binding.
    type Bindings<'a>;
    /// Entry point and bindings, in the same order as [`Layout::buffers`].
    const SPEC: KernelSpec;
    /// The struct's buffers in `SPEC.bindings` order.
    fn buffers<'a>(b: &Self::Bindings<'a>) -> Vec<&'a wgpu::Buffer>;
}

/// The field type of one binding: `&Uniform<P>` for `Uniform<P>`, a plain
/// buffer for storage.
macro_rules! binding_type {
    ($a:lifetime, Uniform<$P:ty>) => { &$a Uniform<$P> };
    ($a:lifetime, Read) => { &$a wgpu::Buffer };
    ($a:lifetime, Write) => { &$a wgpu::Buffer };
}

/// The WGSL access of a binding, for the generated field docs.
macro_rules! binding_access {
    (Uniform) => {
        "uniform"
    };
    (Read) => {
        "storage, read"
    };
    (Write) => {
        "storage, read_write"
    };
}

/// Bytes of the Rust parameter block of a binding (0 for storage).
macro_rules! binding_size {
    (Uniform<$P:ty>) => {
        std::mem::size_of::<$P>()
    };
    ($access:ident) => {
        0
    };
}

/// Declares every kernel: for each, a bindings struct (fields named and
/// ordered like the WGSL bindings), its [`Layout`], a field of [`Kernels`],
/// and an entry of [`SPECS`].
macro_rules! kernels {
    ($(
        $(#[$doc:meta])*
        $field:ident: $Name:ident = $shader:ident::$entry:literal {
            $( $slot:literal => $bind:ident: $access:ident $(<$P:ty>)? ),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            pub(crate) struct $Name<'a> {
                $(
                    #[doc = concat!("`@binding(", stringify!($slot), ") var<",
                        binding_access!($access), "> ", stringify!($bind), "` of the WGSL.")]
                    pub $bind: binding_type!('a, $access $(<$P>)?),
                )*
            }

            impl Layout for $Name<'static> {
                type Bindings<'a> = $Name<'a>;
                const SPEC: KernelSpec = KernelSpec {
                    name: stringify!($field),
                    shader: &$shader,
                    entry: $entry,
                    bindings: &[$(BindingDecl {
                        slot: $slot,
                        name: stringify!($bind),
                        access: Access::$access,
                        size: binding_size!($access $(<$P>)?),
                    },)*],
                };
                fn buffers<'a>(b: &Self::Bindings<'a>) -> Vec<&'a wgpu::Buffer> {
                    vec![$(AsBuffer::buffer(b.$bind)),*]
                }
            }
        )*

        /// Every kernel the backend can build, with the bindings the Rust
        /// side declares for it (for the test that compares them with the
        /// WGSL).
        pub const SPECS: &[&KernelSpec] = &[$(&<$Name<'static> as Layout>::SPEC),*];
    };
}

kernels! {
    /// `normalize.wgsl::main`: normalise rows in place (or only check them)
    /// and write a status per row.
    normalize: Normalize = NORMALIZE::"main" {
        0 => p: Uniform<NormParams>,
        1 => x: Write,
        2 => status: Write,
    }
    /// `normalize.wgsl::main_f16`: the same on a chunk uploaded as f16.
    normalize_f16: NormalizeF16 = NORMALIZE::"main_f16" {
        0 => p: Uniform<NormParams>,
        2 => status: Write,
        5 => words: Write,
    }
    /// `normalize.wgsl::to_f16`: pack a normalised f32 chunk into halves.
    to_f16: ToF16 = NORMALIZE::"to_f16" {
        0 => p: Uniform<NormParams>,
        3 => xv: Read,
        4 => packed: Write,
    }
    /// `similarity.wgsl::main`: `c = a . b^T` in f32.
    gemm: Gemm = SIMILARITY::"main" {
        0 => p: Uniform<GemmParams>,
        1 => a: Read,
        2 => b: Read,
        3 => c: Write,
    }
    /// The generated register-blocked GEMM `c = a . b^T` in f32 on padded
    /// shapes (`tiled.rs`).
    gemm_tiled: GemmTiled = GEMM_TILED::"main" {
        0 => p: Uniform<TiledParams>,
        1 => a: Read,
        2 => b: Read,
        3 => c: Write,
    }
    /// The generated GEMM fused with the top-k epilogue: offers each score
    /// that can enter its query's list to the query's candidate list
    /// (`tiled.rs`, `topk_fused.wgsl`).
    gemm_fused: GemmFused = GEMM_FUSED::"main" {
        0 => p: Uniform<FusedParams>,
        1 => a: Read,
        2 => b: Read,
        3 => run_s: Read,
        4 => skip: Read,
        5 => cand: Write,
        6 => counts: Write,
    }
    /// `topk_fused.wgsl::merge`: fold each query's candidates into its
    /// running list, one workgroup per query.
    topk_fused_merge: TopkFusedMerge = TOPK_FUSED::"merge" {
        0 => p: Uniform<CandParams>,
        1 => cand: Read,
        2 => counts: Write,
        3 => run_s: Write,
        4 => run_r: Write,
    }
    /// `topk_fused.wgsl::arm`: the fallback's indirect grids, zero unless a
    /// candidate list overflowed.
    topk_fused_arm: TopkFusedArm = TOPK_FUSED::"arm" {
        0 => p: Uniform<CandParams>,
        2 => counts: Write,
        5 => args: Write,
    }
    /// `similarity.wgsl::main_f16`: the same with `b` as packed f16 pairs.
    gemm_f16: GemmF16 = SIMILARITY::"main_f16" {
        0 => p: Uniform<GemmParams>,
        1 => a: Read,
        3 => c: Write,
        4 => b16: Read,
    }
    /// `similarity_f16.wgsl::main_f16_native`: the same reading `b` as
    /// native `vec4<f16>`.
    gemm_f16_native: GemmF16Native = SIMILARITY_F16::"main_f16_native" {
        0 => p: Uniform<GemmParams>,
        1 => a: Read,
        3 => c: Write,
        5 => b16h: Read,
    }
    /// `topk.wgsl::partial`: best k per (list, segment) of a score block.
    topk_partial: TopkPartial = TOPK::"partial" {
        0 => p: Uniform<TopkParams>,
        1 => scores: Read,
        2 => skip: Read,
        3 => part_s: Write,
        4 => part_r: Write,
    }
    /// `topk.wgsl::merge`: fold the partial lists into the running ones.
    topk_merge: TopkMerge = TOPK::"merge" {
        0 => p: Uniform<TopkParams>,
        3 => part_s: Write,
        4 => part_r: Write,
        5 => run_s: Write,
        6 => run_r: Write,
    }
    /// `aggregate.wgsl::main`: sums of CSR row segments.
    aggregate: Aggregate = AGGREGATE::"main" {
        0 => p: Uniform<AggParams>,
        1 => rows: Read,
        2 => offsets: Read,
        3 => indices: Read,
        4 => out: Write,
    }
    /// `slopes.wgsl::main`: scale S1 by column into the NUDGE-M slopes.
    slopes: Slopes = SLOPES::"main" {
        0 => p: Uniform<SlopeParams>,
        1 => s1: Write,
        2 => inv_norm: Read,
    }
    /// `pick.wgsl::main`: chosen (S0, slope) elements, for the host.
    pick: Pick = PICK::"main" {
        0 => p: Uniform<PickParams>,
        1 => picks: Read,
        2 => s0: Read,
        3 => slope: Read,
        4 => out: Write,
    }
    /// `nudge_m_bounds.wgsl::main`: tighten the NUDGE-M bounds of pairs.
    nudge_m_bounds: NudgeMBounds = NUDGE_M_BOUNDS::"main" {
        0 => p: Uniform<BoundsParams>,
        1 => pairs: Read,
        2 => s0: Read,
        3 => slope: Read,
        4 => records: Read,
        5 => bounds: Write,
    }
    /// `nudge_n_merge.wgsl::main`: partial top-k of moved-record scores.
    nudge_n_partial: NudgeNPartial = NUDGE_N_MERGE::"main" {
        0 => p: Uniform<MergeParams>,
        1 => s0: Read,
        2 => s1: Read,
        3 => coef: Read,
        4 => records: Read,
        5 => part_s: Write,
        6 => part_r: Write,
    }
    /// `subgroup_size.wgsl::main`: each invocation's subgroup size. Not in
    /// [`Kernels`]: run once before them ([`probe_subgroup_size`]), since
    /// the generated GEMMs depend on its answer.
    subgroup_size: SubgroupSize = SUBGROUP_SIZE::"main" {
        0 => out: Write,
    }
    /// `peak.wgsl::main`: FMA chains that measure the FP32 peak.
    fma_peak: FmaPeak = PEAK::"main" {
        0 => p: Uniform<PeakParams>,
        1 => out: Write,
    }
    /// `update.wgsl::update_m`: the NUDGE-M step.
    update_m: UpdateM = UPDATE::"update_m" {
        0 => p: Uniform<UpdateParams>,
        1 => d: Write,
        2 => g: Read,
    }
    /// `update.wgsl::update_n`: the NUDGE-N step.
    update_n: UpdateN = UPDATE::"update_n" {
        0 => p: Uniform<UpdateParams>,
        1 => d: Write,
        2 => g: Read,
    }
}

/// One compute pipeline, typed by the bindings struct it takes.
pub(crate) struct Kernel<L: Layout> {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    _bindings: PhantomData<fn() -> L>,
}

impl<L: Layout> Kernel<L> {
    /// Builds the pipeline with the layout `L::SPEC` declares (explicit
    /// rather than derived by wgpu, so that wgpu checks it against the
    /// shader when the pipeline is created).
    fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Kernel<L> {
        let spec = &L::SPEC;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.slot,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::Write => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(spec.entry),
                entries: &entries,
            });
        let pl = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(spec.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(spec.entry),
                layout: Some(&pl),
                module,
                entry_point: Some(spec.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        Kernel {
            pipeline,
            layout,
            _bindings: PhantomData,
        }
    }

    /// The bind group of `bindings`, each buffer at the slot its field
    /// names.
    fn bind(&self, ctx: &Context, bindings: &L::Bindings<'_>) -> wgpu::BindGroup {
        let spec = &L::SPEC;
        let buffers = L::buffers(bindings);
        // Both lists come from one `kernels!` entry; this only guards the
        // macro itself.
        debug_assert_eq!(
            buffers.len(),
            spec.bindings.len(),
            "kernel {}: bindings struct and layout differ",
            spec.name
        );
        let entries: Vec<wgpu::BindGroupEntry> = spec
            .bindings
            .iter()
            .zip(buffers)
            .map(|(decl, b)| wgpu::BindGroupEntry {
                binding: decl.slot,
                resource: b.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.name),
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Binds `bindings` and records one dispatch of `groups` workgroups
    /// (none when either count is 0).
    pub(crate) fn dispatch(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        bindings: L::Bindings<'_>,
        groups: (u32, u32),
    ) {
        self.dispatch_counted(ctx, enc, bindings, groups, 0.0);
    }

    /// [`Kernel::dispatch`] of a kernel that does `flops` floating-point
    /// operations, for its GFLOP/s in the per-kernel timings. The pass is
    /// timed where the device has timestamps (see `profile`).
    pub(crate) fn dispatch_counted(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        bindings: L::Bindings<'_>,
        groups: (u32, u32),
        flops: f64,
    ) {
        self.dispatch_labelled(ctx, enc, bindings, groups, flops, L::SPEC.name);
    }

    /// [`Kernel::dispatch_counted`] timed under `label` rather than the
    /// kernel's name: the autotuner's trial runs must neither count as the
    /// job's GEMM time nor be confused with a scan's dispatches.
    pub(crate) fn dispatch_labelled(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        bindings: L::Bindings<'_>,
        groups: (u32, u32),
        flops: f64,
        label: &'static str,
    ) {
        let group = self.bind(ctx, &bindings);
        if groups.0 == 0 || groups.1 == 0 {
            return;
        }
        let slot = ctx.profiler.slot(label, flops);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: slot.as_ref().map(|s| s.writes()),
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        if let Some(s) = slot {
            s.resolve(enc);
        }
    }
}

impl<L: Layout> Kernel<L> {
    /// Binds `bindings` and records one dispatch whose grid the device
    /// reads from `args` at byte `offset` (three u32: x, y, z; a zero
    /// count dispatches nothing). Timed under `label`, so that work that
    /// may not run is not counted with the kernel's direct dispatches.
    pub(crate) fn dispatch_indirect(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        bindings: L::Bindings<'_>,
        args: &wgpu::Buffer,
        offset: u64,
        label: &'static str,
    ) {
        let group = self.bind(ctx, &bindings);
        let slot = ctx.profiler.slot(label, 0.0);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: slot.as_ref().map(|s| s.writes()),
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups_indirect(args, offset);
        }
        if let Some(s) = slot {
            s.resolve(enc);
        }
    }
}

/// `count` workgroups laid out as x * y with x within the per-dimension
/// limit; kernels rebuild the linear index as `wid.y * nwg.x + wid.x`.
pub(crate) fn grid(count: usize) -> (u32, u32) {
    if count == 0 {
        return (0, 0);
    }
    let x = count.min(MAX_GROUPS as usize);
    (x as u32, count.div_ceil(x) as u32)
}

/// Workgroups for `items` invocations of a 64-wide kernel.
pub(crate) fn grid_items(items: usize) -> (u32, u32) {
    grid(items.div_ceil(WG as usize))
}

/// Every pipeline the backend uses, each typed by its bindings struct.
pub(crate) struct Kernels {
    /// Normalise (or check) an f32 chunk.
    pub normalize: Kernel<Normalize<'static>>,
    /// Pack a normalised f32 chunk as f16.
    pub to_f16: Kernel<ToF16<'static>>,
    /// Normalise (or check) a chunk uploaded as f16.
    pub normalize_f16: Kernel<NormalizeF16<'static>>,
    /// The f32 GEMM.
    pub gemm: Kernel<Gemm<'static>>,
    /// The register-blocked f32 GEMM and its fused top-k variant in the
    /// device's default shape (`Tile::for_device`); a tuned scan may use
    /// another shape (`Gpu::tiled_for`).
    pub tiled: std::sync::Arc<TiledKernels>,
    /// Fused top-k: the per-query merge of the candidates.
    pub topk_fused_merge: Kernel<TopkFusedMerge<'static>>,
    /// Fused top-k: the fallback's indirect grids.
    pub topk_fused_arm: Kernel<TopkFusedArm<'static>>,
    /// The packed-f16 GEMM (any adapter).
    pub gemm_f16: Kernel<GemmF16<'static>>,
    /// The native-f16 GEMM, when the device has `SHADER_F16`.
    pub gemm_f16_native: Option<Kernel<GemmF16Native<'static>>>,
    /// Top-k, first pass: best k per segment.
    pub topk_partial: Kernel<TopkPartial<'static>>,
    /// Top-k, second pass: merge into the running lists.
    pub topk_merge: Kernel<TopkMerge<'static>>,
    /// Segment sums.
    pub aggregate: Kernel<Aggregate<'static>>,
    /// NUDGE-M bounds.
    pub nudge_m_bounds: Kernel<NudgeMBounds<'static>>,
    /// The NUDGE-M slopes: S1 scaled by column on the device.
    pub slopes: Kernel<Slopes<'static>>,
    /// Read chosen (S0, slope) elements of a NUDGE-M block back.
    pub pick: Kernel<Pick<'static>>,
    /// NUDGE-N partial lists (merged by `topk_merge`).
    pub nudge_n_partial: Kernel<NudgeNPartial<'static>>,
    /// The FP32 throughput probe.
    pub fma_peak: Kernel<FmaPeak<'static>>,
    /// NUDGE-M update.
    pub update_m: Kernel<UpdateM<'static>>,
    /// NUDGE-N update.
    pub update_n: Kernel<UpdateN<'static>>,
}

/// The generated GEMMs of one tile shape: what changes when the autotuner
/// picks another shape (every other kernel stays as it is).
pub(crate) struct TiledKernels {
    /// The shape both were generated for.
    pub tile: super::tiled::Tile,
    /// The register-blocked f32 GEMM.
    pub gemm_tiled: Kernel<GemmTiled<'static>>,
    /// `gemm_tiled` fused with the top-k epilogue.
    pub gemm_fused: Kernel<GemmFused<'static>>,
}

impl TiledKernels {
    /// Compiles both GEMMs of `tile` (already checked against the device's
    /// limits with `Tile::fits`); a compile error is an `Error`.
    pub(crate) fn new(ctx: &Context, tile: super::tiled::Tile) -> Result<TiledKernels> {
        ctx.scoped("compiling the tiled GEMM", || {
            Ok(TiledKernels {
                tile,
                gemm_tiled: generated(ctx, tile.wgsl_for(ctx.share_lanes())),
                gemm_fused: generated(ctx, tile.wgsl_fused_for(ctx.share_lanes())),
            })
        })
    }
}

/// The kernel `L` from generated WGSL (the tiled GEMMs of `tiled.rs`),
/// built as its [`Shader`] says (see [`create_module`]).
pub(crate) fn generated<L: Layout>(ctx: &Context, source: String) -> Kernel<L> {
    let module = create_module(ctx, L::SPEC.shader, source);
    Kernel::new(ctx, &module)
}

/// The smallest subgroup size `subgroup_size.wgsl` sees in one workgroup
/// of 64, on a device opened with `SUBGROUP`.
pub(crate) fn probe_subgroup_size(ctx: &Context) -> Result<u32> {
    let out = ctx.storage("subgroup sizes", 64 * 4);
    ctx.scoped("probing the subgroup size", || {
        let module = create_module(ctx, &SUBGROUP_SIZE, SUBGROUP_SIZE.source.to_string());
        let kern = Kernel::<SubgroupSize<'static>>::new(ctx, &module);
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        kern.dispatch(ctx, &mut enc, SubgroupSize { out: &out }, (1, 1));
        ctx.queue.submit([enc.finish()]);
        Ok(())
    })?;
    let sizes: Vec<u32> = ctx.read(&out, 64 * 4)?;
    Ok(sizes.into_iter().min().unwrap_or(0))
}

/// Creates a module: checked, or in release builds without wgpu's runtime
/// checks where the shader says why it is in bounds by construction
/// ([`Shader::in_bounds`]). Debug builds (the tests in debug) keep every
/// check, so an indexing mistake there shows up as wrong results rather
/// than memory corruption.
fn create_module(ctx: &Context, shader: &Shader, source: String) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(shader.name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    match shader.in_bounds {
        Some(_why) if !cfg!(debug_assertions) => {
            // SAFETY: the module's `in_bounds` says why each index it forms
            // is below the length of what it indexes (buffers sized by the
            // host for the dispatch, workgroup arrays by their bounds) and
            // why each loop ends, so neither index clamping nor loop
            // bounding can change what it does.
            unsafe {
                ctx.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        }
        _ => ctx.device.create_shader_module(desc),
    }
}

/// The kernels of one module, compiled on a thread of `s` inside the
/// context's error scopes (wgpu's scopes are per thread): `f` gets the
/// module, compiled once however many kernels use it.
fn compile_on<'s, 'e: 's, T: Send + 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    ctx: &'e Context,
    shader: &'static Shader,
    f: impl FnOnce(&wgpu::ShaderModule) -> T + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, Result<T>> {
    s.spawn(move || {
        ctx.scoped("compiling the kernels", || {
            Ok(f(&create_module(ctx, shader, shader.source.to_string())))
        })
    })
}

/// The result of a [`compile_on`] thread (a panic there goes on here).
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

impl Kernels {
    /// Compiles every kernel (the native-f16 GEMM only where the device was
    /// opened with `SHADER_F16`); a compile or layout error is an `Error`.
    /// `tile`: the shape of the default GEMMs (`None`: the device's own).
    pub(crate) fn new(ctx: &Context, tile: Option<super::tiled::Tile>) -> Result<Kernels> {
        let tile = match tile {
            Some(t) => t.check_fits(ctx)?,
            None => super::tiled::Tile::for_device(ctx),
        };
        // One thread per module: compiling (WGSL to SPIR-V in naga, then
        // the driver's compiler) is most of a GPU's start-up, about 0.1 s
        // one after the other on lavapipe, and the modules are independent.
        std::thread::scope(|s| {
            let tiled = s.spawn(move || {
                ctx.scoped("compiling the kernels", || {
                    Ok(generated(ctx, tile.wgsl_for(ctx.share_lanes())))
                })
            });
            let fused = s.spawn(move || {
                ctx.scoped("compiling the kernels", || {
                    Ok(generated(ctx, tile.wgsl_fused_for(ctx.share_lanes())))
                })
            });
            let norm = compile_on(s, ctx, &NORMALIZE, |m| {
                (
                    Kernel::new(ctx, m),
                    Kernel::new(ctx, m),
                    Kernel::new(ctx, m),
                )
            });
            let sim = compile_on(s, ctx, &SIMILARITY, |m| {
                (Kernel::new(ctx, m), Kernel::new(ctx, m))
            });
            let sim16 = ctx
                .native_f16
                .then(|| compile_on(s, ctx, &SIMILARITY_F16, |m| Kernel::new(ctx, m)));
            let topk_fused = compile_on(s, ctx, &TOPK_FUSED, |m| {
                (Kernel::new(ctx, m), Kernel::new(ctx, m))
            });
            let topk = compile_on(s, ctx, &TOPK, |m| {
                (Kernel::new(ctx, m), Kernel::new(ctx, m))
            });
            let aggregate = compile_on(s, ctx, &AGGREGATE, |m| Kernel::new(ctx, m));
            let slopes = compile_on(s, ctx, &SLOPES, |m| Kernel::new(ctx, m));
            let pick = compile_on(s, ctx, &PICK, |m| Kernel::new(ctx, m));
            let bounds = compile_on(s, ctx, &NUDGE_M_BOUNDS, |m| Kernel::new(ctx, m));
            let merge = compile_on(s, ctx, &NUDGE_N_MERGE, |m| Kernel::new(ctx, m));
            let peak = compile_on(s, ctx, &PEAK, |m| Kernel::new(ctx, m));
            let update = compile_on(s, ctx, &UPDATE, |m| {
                (Kernel::new(ctx, m), Kernel::new(ctx, m))
            });
            let (normalize, normalize_f16, to_f16) = joined(norm)?;
            let (gemm, gemm_f16) = joined(sim)?;
            let (topk_fused_merge, topk_fused_arm) = joined(topk_fused)?;
            let (topk_partial, topk_merge) = joined(topk)?;
            let (update_m, update_n) = joined(update)?;
            Ok(Kernels {
                tiled: std::sync::Arc::new(TiledKernels {
                    tile,
                    gemm_tiled: joined(tiled)?,
                    gemm_fused: joined(fused)?,
                }),
                topk_fused_merge,
                topk_fused_arm,
                normalize,
                normalize_f16,
                to_f16,
                gemm,
                gemm_f16,
                gemm_f16_native: sim16.map(joined).transpose()?,
                topk_partial,
                topk_merge,
                aggregate: joined(aggregate)?,
                nudge_m_bounds: joined(bounds)?,
                slopes: joined(slopes)?,
                pick: joined(pick)?,
                nudge_n_partial: joined(merge)?,
                fma_peak: joined(peak)?,
                update_m,
                update_n,
            })
        })
    }
}
