//! The register-blocked GEMM `c = a . b^T`, generated as WGSL from a tile
//! shape rather than written by hand: the inner loop over a k-tile is fully
//! unrolled here, with one named vec4 accumulator per (row, 4 columns) of a
//! thread's micro-tile, so no driver has to discover the unrolling itself.
//!
//! Twin: `backend::cpu::gemm_nt`, like `similarity.wgsl`. Every output sums
//! its products in ascending k (k-tile by k-tile, and inside a tile in
//! order), one `acc += a * b` per k, so an output depends only on its row
//! of `a`, its row of `b` and `d`: never on the tile shape, the chunk it
//! came in or its position in it. That keeps the scan's results invariant
//! to chunking bit for bit, and the CPU parity tolerances unchanged.
//!
//! Shapes are padded by the host (see `Tile::pad_rows`): `a` to a
//! multiple of `bm` rows, `b` to a multiple of `bn` rows, both rows to a
//! multiple of `bk` floats with zeros, and `c` has `ldc` = `b`'s padded row
//! count. So the kernel has no bounds branch at all: every index it forms is
//! below `grid * tile` of a buffer the host made that large. That is also
//! why the module may be built without wgpu's runtime checks (see
//! `kernel::create_module`).
//!
//! Each workgroup stages a `bm x bk` slice of `a` and a `bn x bk` slice of
//! `b` in workgroup memory, k-major, twice (double buffering): the next
//! slice is loaded into registers while the current one is multiplied, then
//! stored into the other half, so one barrier per k-tile suffices.
//!
//! A *direct* tile ([`Tile::direct`]) stages nothing: made for software
//! adapters (lavapipe), which run a workgroup's invocations as the lanes of
//! CPU SIMD registers. There a barrier switches coroutines, and every
//! workgroup-memory read whose index differs between lanes is a loop of
//! scalar loads, so the staged kernel spends its time moving data rather
//! than multiplying. In a direct tile every thread of a workgroup shares
//! the same `tm` rows of `a` (uniform loads, one broadcast for all lanes)
//! and owns `tn` rows of `b`, read straight from the buffer (the CPU's
//! caches are the staging), with `tm x tn` scalar accumulators. On lavapipe
//! (2 cores, 1024 x 8192 x 384) it ran at 15-16 GFLOP/s against 8-11 for
//! the staged 128x128 tiles, and at 28-31 with its loads of `a` shared
//! across a subgroup ([`SHARE_LANES`]). The sums are the same: ascending
//! k, one `acc += a * b` per k.

/// The parameter block and bindings every generated GEMM opens with (the
/// kernel table declares its bindings against this text).
pub const INTERFACE: &str = "struct Params {
    m: u32,
    n: u32,
    // vec4s per row of a and b (a multiple of the k-tile / 4).
    d4: u32,
    // vec4s between rows of c.
    ldc4: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
";

/// The parameter block and bindings of the fused variant
/// ([`Tile::wgsl_fused`]): no score block, but what the top-k epilogue
/// reads (the running lists' scores, the skip mask) and writes (the
/// candidate lists and their counts). `topk_order.wgsl` follows it.
pub const FUSED_INTERFACE: &str = "struct Params {
    m: u32,
    n: u32,
    // vec4s per row of a and b (a multiple of the k-tile / 4).
    d4: u32,
    // Real queries (rows of a) and chunk rows (rows of b); the rest is
    // padding, whose scores are never offered.
    queries: u32,
    rows: u32,
    // List length and entries per candidate list.
    k: u32,
    cap: u32,
    // Absolute corpus row of chunk row 0.
    first_row: u32,
    use_skip: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
// The running lists' scores, k per query: entry k - 1 is the k-th best.
@group(0) @binding(3) var<storage, read> run_s: array<f32>;
// One bit per absolute corpus row: 1 = moved, never offered.
@group(0) @binding(4) var<storage, read> skip: array<u32>;
// (score bits, row) pairs, cap per query.
@group(0) @binding(5) var<storage, read_write> cand: array<vec2<u32>>;
// counts[q]: candidates offered to query q; counts[queries]: overflow flag.
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>;
";

/// The epilogue of the fused GEMM: one call per (query, 4 columns) of a
/// thread's outputs. Every index it forms is in bounds by construction:
/// `q < queries` (checked by the caller), `run_s` holds `queries * k`
/// scores, `skip` is read below `arrayLength`, a candidate is written only
/// at `at < cap` of a buffer of `queries * cap` pairs, and `counts` holds
/// `queries + 1` words.
const OFFER: &str = "
fn offer(q: u32, col: u32, s: vec4<f32>, th: f32) {
    // Most scores fall below the k-th best: one test for all four. (NaN
    // compares false, and is tested by its bits below in case a compiler
    // assumed it away.)
    if !any(s >= vec4<f32>(th)) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let x = s[j];
        let c = col + j;
        if x >= th && !is_nan(x) && c < p.rows {
            let row = p.first_row + c;
            // Rows past the end of the mask are not masked.
            let w = row / 32u;
            if p.use_skip != 0u && w < arrayLength(&skip) && ((skip[w] >> (row % 32u)) & 1u) != 0u {
                continue;
            }
            let at = atomicAdd(&counts[q], 1u);
            if at < p.cap {
                cand[q * p.cap + at] = vec2<u32>(bitcast<u32>(x), row);
            } else {
                atomicStore(&counts[p.queries], 1u);
            }
        }
    }
}
";

/// A tile shape of the generated GEMM.
///
/// Serialised (as its five numbers) in the autotuner's cache, `tune.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tile {
    /// Output rows (rows of `a`) per workgroup.
    pub bm: u32,
    /// Output columns (rows of `b`) per workgroup.
    pub bn: u32,
    /// Rows per thread (a multiple of 4).
    pub tm: u32,
    /// Columns per thread (a multiple of 4).
    pub tn: u32,
    /// k per staged slice (a multiple of 4); 4 for a direct tile, whose
    /// rows need only whole vec4s.
    pub bk: u32,
    /// Nothing staged in workgroup memory: each thread reads its operands
    /// from the buffers (see the module's comment). `bm == tm`, so the
    /// whole workgroup shares its rows of `a`.
    #[serde(default)]
    pub direct: bool,
}

impl Tile {
    /// 128x128 outputs per workgroup of 256 threads, 8x8 each, k-tiles of
    /// 16: the shape fast Vulkan GEMMs use on discrete GPUs (32 KiB of
    /// workgroup memory, double-buffered).
    pub const LARGE: Tile = Tile {
        bm: 128,
        bn: 128,
        tm: 8,
        tn: 8,
        bk: 16,
        direct: false,
    };
    /// 32x64 outputs per workgroup of 64 threads, 4x8 each, k-tiles of 16
    /// (12 KiB of workgroup memory): for adapters whose limits the large
    /// tile exceeds.
    pub const SMALL: Tile = Tile {
        bm: 32,
        bn: 64,
        tm: 4,
        tn: 8,
        bk: 16,
        direct: false,
    };
    /// 16 rows of `a` by 128 of `b` per workgroup of 16 threads, 16x8
    /// outputs each, nothing staged: the default of software adapters
    /// (measured on lavapipe, 2 cores, 1024 x 8192 x 384: 15-16 GFLOP/s,
    /// 28 with shared loads, against 8-11 for the staged tiles and 6 for
    /// [`Tile::SMALL`]).
    pub const DIRECT: Tile = Tile {
        bm: 16,
        bn: 128,
        tm: 16,
        tn: 8,
        bk: 4,
        direct: true,
    };

    /// The shape for the device: [`Tile::DIRECT`] on a software adapter,
    /// else [`Tile::LARGE`] where its workgroup fits the device's limits,
    /// else [`Tile::SMALL`].
    ///
    /// This is the shape of an untuned device; `tune.rs` may pick another
    /// per job shape.
    pub fn for_device(ctx: &super::context::Context) -> Tile {
        if ctx.info.device_type == wgpu::DeviceType::Cpu && Tile::DIRECT.fits(&ctx.limits) {
            Tile::DIRECT
        } else if Tile::LARGE.fits(&ctx.limits) {
            Tile::LARGE
        } else {
            Tile::SMALL
        }
    }

    /// The generator's assumptions hold: per-thread outputs in whole vec4s,
    /// whole threads per tile, k-tiles of whole vec4s, and every thread
    /// loading the same whole number (at least one) of vec4s of each slice.
    /// A shape that breaks one would make [`Tile::wgsl`] panic (or, for the
    /// loads, leave part of a slice unstaged), so the autotuner and its
    /// cache check it before building one.
    pub fn valid(&self) -> bool {
        let Tile {
            bm,
            bn,
            tm,
            tn,
            bk,
            direct,
        } = *self;
        if tm == 0 || tn == 0 || bk == 0 || bm == 0 || bn == 0 {
            return false;
        }
        if direct {
            // One thread row sharing its rows of a; the epilogue stores
            // whole vec4s of columns; the unrolled loop stays a sane size.
            // Rows of a in whole groups of the 8 lanes that may share their
            // loads, and whole such groups of threads.
            return bm == tm
                && bk == 4
                && tm % SHARE_LANES == 0
                && tn % 4 == 0
                && bn % tn == 0
                && (bn / tn) % SHARE_LANES == 0
                && tm * tn <= 256
                && tm <= 32
                && tn <= 16
                && bn <= 1024;
        }
        if !(tm % 4 == 0 && tn % 4 == 0 && bk % 4 == 0 && bm % tm == 0 && bn % tn == 0) {
            return false;
        }
        // Bounded so that the unrolled source stays a sane size.
        if tm > 16 || tn > 16 || bk > 64 || bm > 256 || bn > 256 {
            return false;
        }
        let (x, y) = self.threads();
        let threads = x * y;
        let (a, b) = (bm * bk / 4, bn * bk / 4);
        a % threads == 0 && b % threads == 0 && a >= threads && b >= threads
    }

    /// The shape is [`Tile::valid`] and its workgroup (threads per
    /// dimension and in all, double-buffered workgroup memory) is within
    /// `limits`.
    pub fn fits(&self, limits: &wgpu::Limits) -> bool {
        let (x, y) = self.threads();
        self.valid()
            && self.shared_bytes() <= limits.max_compute_workgroup_storage_size
            && x * y <= limits.max_compute_invocations_per_workgroup
            && x <= limits.max_compute_workgroup_size_x
            && y <= limits.max_compute_workgroup_size_y
    }

    /// `self` where it [`Tile::fits`] the device, else an error naming
    /// the tile and the adapter.
    pub(crate) fn check_fits(self, ctx: &super::context::Context) -> crate::error::Result<Tile> {
        if self.fits(&ctx.limits) {
            Ok(self)
        } else {
            Err(crate::error::Error::gpu(format!(
                "tile {self} is beyond the limits of {}",
                ctx.info.name
            )))
        }
    }

    /// Workgroup memory of the double-buffered slices, in bytes.
    pub fn shared_bytes(&self) -> u32 {
        if self.direct {
            0
        } else {
            2 * self.bk * (self.bm + self.bn) * 4
        }
    }

    /// Threads along the columns and the rows of a workgroup.
    pub fn threads(&self) -> (u32, u32) {
        (self.bn / self.tn, self.bm / self.tm)
    }

    /// `rows` rounded up to whole tiles of `side`.
    pub fn pad(rows: usize, side: u32) -> usize {
        rows.div_ceil(side as usize).max(1) * side as usize
    }

    /// Floats per padded row for `d` columns.
    pub fn width(&self, d: usize) -> usize {
        Tile::pad(d.max(1), self.bk)
    }

    /// The WGSL of this shape (entry point `main`), reading every operand
    /// itself: [`Tile::wgsl_for`] with no sharing.
    pub fn wgsl(&self) -> String {
        self.wgsl_for(0)
    }

    /// The WGSL of this shape, where a direct tile's rows of `a` are
    /// loaded once per `lanes` lanes of a subgroup and broadcast to the
    /// others (`lanes` is [`SHARE_LANES`], for a device whose subgroups are
    /// all at least that wide: [`share_lanes`]; or 0, no sharing). A staged
    /// tile ignores it.
    pub fn wgsl_for(&self, lanes: u32) -> String {
        self.source(false, lanes)
    }

    /// The GEMM of this shape fused with the first half of the scan's
    /// top-k (entry point `main`): the same sums in the same order, but
    /// instead of storing the scores the epilogue offers each to its
    /// query's candidate list (see `shaders/topk_fused.wgsl`).
    pub fn wgsl_fused(&self) -> String {
        self.wgsl_fused_for(0)
    }

    /// [`Tile::wgsl_fused`] with a direct tile's loads of `a` shared as
    /// in [`Tile::wgsl_for`].
    pub fn wgsl_fused_for(&self, lanes: u32) -> String {
        self.source(true, lanes)
    }

    fn source(&self, fused: bool, lanes: u32) -> String {
        if self.direct {
            generate_direct(self, fused, lanes)
        } else {
            generate(self, fused)
        }
    }
}

/// Lanes of a subgroup that share their loads of `a` in a direct tile.
///
/// Why: lavapipe runs 8 invocations as the lanes of one 256-bit register,
/// and loads each lane's value apart even when all lanes want the same
/// one. So each of 8 lanes loads a different row of `a`, and
/// `subgroupBroadcast` (one register extract there) hands each row to all
/// of them: 8 times fewer loads of `a`. On lavapipe (2 cores, 1024 x 8192 x
/// 384) the 16x8 direct tile went from 14-16 to 28-31 GFLOP/s.
pub const SHARE_LANES: u32 = 8;

/// The `lanes` of [`Tile::wgsl_for`] on a device whose smallest subgroup
/// is `subgroup_size` (`None`: opened without subgroups): [`SHARE_LANES`]
/// where every subgroup holds that many lanes, else 0.
pub fn share_lanes(subgroup_size: Option<u32>) -> u32 {
    match subgroup_size {
        Some(s) if s >= SHARE_LANES => SHARE_LANES,
        _ => 0,
    }
}

/// `128x128/8x8/k16`: outputs per workgroup, per thread, and the k-tile.
impl std::fmt::Display for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.direct {
            write!(f, "{}x{}/{}x{}/direct", self.bm, self.bn, self.tm, self.tn)
        } else {
            write!(
                f,
                "{}x{}/{}x{}/k{}",
                self.bm, self.bn, self.tm, self.tn, self.bk
            )
        }
    }
}

/// The bindings a generated GEMM opens with: the plain GEMM's, or the
/// fused one's with the top-k order and the epilogue's `offer`.
fn interface(w: &mut String, fused: bool) {
    if fused {
        w.push_str(FUSED_INTERFACE);
        w.push_str(include_str!("../../../shaders/topk_order.wgsl"));
        w.push_str(OFFER);
    } else {
        w.push_str(INTERFACE);
    }
}

fn generate(t: &Tile, fused: bool) -> String {
    let Tile {
        bm, bn, tm, tn, bk, ..
    } = *t;
    assert!(tm % 4 == 0 && tn % 4 == 0 && bk % 4 == 0 && bm % tm == 0 && bn % tn == 0);
    let (tx, ty) = t.threads();
    let threads = tx * ty;
    let (am4, bn4) = (bm / 4, bn / 4);
    // vec4 loads per thread per slice.
    let a_loads = bm * bk / 4 / threads;
    let b_loads = bn * bk / 4 / threads;
    assert!(a_loads * threads * 4 == bm * bk && b_loads * threads * 4 == bn * bk);
    let (rg, cg) = (tm / 4, tn / 4);
    let mut s = String::new();
    use std::fmt::Write;
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/backend/gpu/tiled.rs for tile {bm}x{bn}, {tm}x{tn} per thread, k-tiles of {bk}.\n\
         // Do not edit: change the generator."
    );
    interface(w, fused);
    // k-major slices: entry (buf, k, r4) holds rows 4 r4 .. 4 r4 + 3 at depth k.
    let _ = writeln!(
        w,
        "var<workgroup> sa: array<vec4<f32>, {}>;\nvar<workgroup> sb: array<vec4<f32>, {}>;",
        2 * bk * am4,
        2 * bk * bn4
    );
    let _ = writeln!(
        w,
        "@compute @workgroup_size({tx}, {ty})\nfn main(\n    @builtin(workgroup_id) wid: vec3<u32>,\n    @builtin(local_invocation_id) lid: vec3<u32>,\n    @builtin(local_invocation_index) li: u32,\n) {{"
    );
    let _ = writeln!(
        w,
        "    let m0 = wid.y * {bm}u;\n    let n0 = wid.x * {bn}u;\n    let ks = p.d4 / {}u;",
        bk / 4
    );
    for i in 0..tm {
        for g in 0..cg {
            let _ = writeln!(w, "    var c{i}_{g} = vec4<f32>(0.0);");
        }
    }
    // Which (row, k-quad) each load of a thread covers, fixed per thread.
    let kq = bk / 4;
    for l in 0..a_loads {
        let _ = writeln!(
            w,
            "    let ar{l} = (li + {}u) / {kq}u;\n    let ak{l} = (li + {}u) % {kq}u;\n    let ag{l} = (m0 + ar{l}) * p.d4 + ak{l};",
            l * threads,
            l * threads
        );
    }
    for l in 0..b_loads {
        let _ = writeln!(
            w,
            "    let br{l} = (li + {}u) / {kq}u;\n    let bk{l} = (li + {}u) % {kq}u;\n    let bg{l} = (n0 + br{l}) * p.d4 + bk{l};",
            l * threads,
            l * threads
        );
    }
    // Prefetch slice 0 into registers.
    for l in 0..a_loads {
        let _ = writeln!(w, "    var pa{l} = a[ag{l}];");
    }
    for l in 0..b_loads {
        let _ = writeln!(w, "    var pb{l} = b[bg{l}];");
    }
    let _ = writeln!(w, "    for (var s = 0u; s < ks; s++) {{");
    let _ = writeln!(w, "        let half = (s & 1u) * {};", bk);
    // Store the prefetched slice, k-major, into this step's half.
    let store = |w: &mut String, arr: &str, pre: &str, r: &str, k: &str, l: u32, side4: u32| {
        for comp in 0..4 {
            let cn = ["x", "y", "z", "w"][comp];
            let _ = writeln!(
                w,
                "        {arr}[(half + {k}{l} * 4u + {comp}u) * {side4}u + {r}{l} / 4u][{r}{l} % 4u] = {pre}{l}.{cn};"
            );
        }
    };
    for l in 0..a_loads {
        store(w, "sa", "pa", "ar", "ak", l, am4);
    }
    for l in 0..b_loads {
        store(w, "sb", "pb", "br", "bk", l, bn4);
    }
    let _ = writeln!(w, "        workgroupBarrier();");
    // Prefetch the next slice while this one is multiplied (the last step
    // reloads its own slice rather than branch: the index stays in bounds).
    let _ = writeln!(w, "        let nx = min(s + 1u, ks - 1u) * {}u;", bk / 4);
    for l in 0..a_loads {
        let _ = writeln!(w, "        pa{l} = a[ag{l} + nx];");
    }
    for l in 0..b_loads {
        let _ = writeln!(w, "        pb{l} = b[bg{l} + nx];");
    }
    // Thread (x, y) owns row groups r: rows r*(bm/rg) + 4y .. +3, and
    // column groups g: columns g*(bn/cg) + 4x .. +3, so neighbouring threads
    // read neighbouring vec4s of a slice.
    for k in 0..bk {
        let _ = writeln!(w, "        {{");
        for r in 0..rg {
            let _ = writeln!(
                w,
                "            let a{r} = sa[(half + {k}u) * {am4}u + {}u + lid.y];",
                r * am4 / rg
            );
        }
        for g in 0..cg {
            let _ = writeln!(
                w,
                "            let b{g} = sb[(half + {k}u) * {bn4}u + {}u + lid.x];",
                g * bn4 / cg
            );
        }
        for r in 0..rg {
            for (comp, cn) in ["x", "y", "z", "w"].iter().enumerate() {
                let i = r * 4 + comp as u32;
                for g in 0..cg {
                    let _ = writeln!(w, "            c{i}_{g} += a{r}.{cn} * b{g};");
                }
            }
        }
        let _ = writeln!(w, "        }}");
    }
    // The other half is written next step while this one may still be read
    // by slower threads only if there were no barrier between: the store of
    // step s+1 goes to the other half, and the barrier of step s+1 orders
    // the reads of step s before the stores of step s+2 into this half.
    let _ = writeln!(w, "    }}");
    for r in 0..rg {
        for comp in 0..4u32 {
            let i = r * 4 + comp;
            if fused {
                // Query q's k-th best so far; padding queries offer nothing.
                let _ = writeln!(
                    w,
                    "    let q{i} = m0 + {}u + lid.y * 4u + {comp}u;\n    if q{i} < p.queries {{\n        let th{i} = run_s[q{i} * p.k + p.k - 1u];",
                    r * bm / rg
                );
                for g in 0..cg {
                    let _ = writeln!(
                        w,
                        "        offer(q{i}, n0 + ({}u + lid.x) * 4u, c{i}_{g}, th{i});",
                        g * bn4 / cg
                    );
                }
                let _ = writeln!(w, "    }}");
                continue;
            }
            let _ = writeln!(
                w,
                "    let row{i} = (m0 + {}u + lid.y * 4u + {comp}u) * p.ldc4 + n0 / 4u + lid.x;",
                r * bm / rg
            );
            for g in 0..cg {
                let _ = writeln!(w, "    c[row{i} + {}u] = c{i}_{g};", g * bn4 / cg);
            }
        }
    }
    let _ = writeln!(w, "}}");
    s
}

/// The WGSL of a direct tile: thread `x` of workgroup `(gx, gy)` computes
/// rows `gy * tm ..` of `a` (the same for every thread of the workgroup, so
/// their loads are uniform) against rows `(gx * threads + x) * tn ..` of
/// `b`, a vec4 of k at a time, each output summing in ascending k.
///
/// With `lanes` > 0 the rows of `a` are loaded `lanes` at a time, one per
/// lane of a subgroup (rows `m0 + g * lanes + lane`), and broadcast: the
/// same values in the same order, so the sums do not change.
fn generate_direct(t: &Tile, fused: bool, lanes: u32) -> String {
    let Tile { bm, bn, tm, tn, .. } = *t;
    assert!(t.direct && bm == tm && tn % 4 == 0 && bn % tn == 0);
    assert!(lanes == 0 || (tm % lanes == 0 && (bn / tn) % lanes == 0));
    let threads = bn / tn;
    let mut s = String::new();
    use std::fmt::Write;
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/backend/gpu/tiled.rs for the direct tile {bm}x{bn}, {tm}x{tn} per thread.\n\
         // Do not edit: change the generator."
    );
    interface(w, fused);
    let sub = if lanes > 0 {
        "\n    @builtin(subgroup_invocation_id) sid: u32,"
    } else {
        ""
    };
    let _ = writeln!(
        w,
        "@compute @workgroup_size({threads})\nfn main(\n    @builtin(workgroup_id) wid: vec3<u32>,\n    @builtin(local_invocation_index) li: u32,{sub}\n) {{"
    );
    let _ = writeln!(
        w,
        "    let m0 = wid.y * {tm}u;\n    let n0 = (wid.x * {threads}u + li) * {tn}u;"
    );
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(w, "    var c{i}_{j} = 0.0;");
        }
    }
    // Every index below is in bounds by construction: a holds whole tiles
    // of bm rows of d4 vec4s, b whole tiles of bn rows (see the module).
    if lanes > 0 {
        // Lanes past `lanes` (a wider subgroup) load what lane
        // `sid % lanes` does; only lanes below `lanes` are broadcast.
        let _ = writeln!(w, "    let lane = sid % {lanes}u;");
        for g in 0..tm / lanes {
            let _ = writeln!(w, "    let ag{g}i = (m0 + {}u + lane) * p.d4;", g * lanes);
        }
    } else {
        for i in 0..tm {
            let _ = writeln!(w, "    let ai{i} = (m0 + {i}u) * p.d4;");
        }
    }
    for j in 0..tn {
        let _ = writeln!(w, "    let bi{j} = (n0 + {j}u) * p.d4;");
    }
    // The loop's bound is uniform, so every lane reaches each broadcast.
    let _ = writeln!(w, "    for (var s = 0u; s < p.d4; s++) {{");
    for j in 0..tn {
        let _ = writeln!(w, "        let b{j} = b[bi{j} + s];");
    }
    if let Some(groups) = tm.checked_div(lanes) {
        for g in 0..groups {
            let _ = writeln!(w, "        let ag{g} = a[ag{g}i + s];");
        }
        for i in 0..tm {
            let _ = writeln!(
                w,
                "        let a{i} = subgroupBroadcast(ag{}, {}u);",
                i / lanes,
                i % lanes
            );
        }
    } else {
        for i in 0..tm {
            let _ = writeln!(w, "        let a{i} = a[ai{i} + s];");
        }
    }
    for cn in ["x", "y", "z", "w"] {
        for i in 0..tm {
            for j in 0..tn {
                let _ = writeln!(w, "        c{i}_{j} += a{i}.{cn} * b{j}.{cn};");
            }
        }
    }
    let _ = writeln!(w, "    }}");
    for i in 0..tm {
        let quad = |g: u32| {
            let j = 4 * g;
            format!(
                "vec4<f32>(c{i}_{j}, c{i}_{}, c{i}_{}, c{i}_{})",
                j + 1,
                j + 2,
                j + 3
            )
        };
        if fused {
            let _ = writeln!(
                w,
                "    let q{i} = m0 + {i}u;\n    if q{i} < p.queries {{\n        let th{i} = run_s[q{i} * p.k + p.k - 1u];"
            );
            for g in 0..tn / 4 {
                let _ = writeln!(
                    w,
                    "        offer(q{i}, n0 + {}u, {}, th{i});",
                    4 * g,
                    quad(g)
                );
            }
            let _ = writeln!(w, "    }}");
        } else {
            for g in 0..tn / 4 {
                let _ = writeln!(
                    w,
                    "    c[(m0 + {i}u) * p.ldc4 + n0 / 4u + {g}u] = {};",
                    quad(g)
                );
            }
        }
    }
    let _ = writeln!(w, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_matches_the_generator() {
        assert!(Tile::LARGE.valid() && Tile::SMALL.valid() && Tile::DIRECT.valid());
        // A direct tile with two thread rows would load a divergently, and
        // one with a k-tile would be a staged shape in disguise.
        for t in [
            Tile {
                bm: 32,
                ..Tile::DIRECT
            },
            Tile {
                bk: 16,
                ..Tile::DIRECT
            },
            Tile {
                tn: 6,
                bn: 96,
                ..Tile::DIRECT
            },
        ] {
            assert!(!t.valid(), "{t}");
        }
        assert_eq!(Tile::DIRECT.to_string(), "16x128/16x8/direct");
        // Per-thread outputs not in vec4s; a slice not divisible among the
        // threads; fewer slice vec4s than threads.
        for t in [
            Tile {
                tm: 6,
                ..Tile::LARGE
            },
            Tile {
                bk: 12,
                ..Tile::LARGE
            },
            Tile {
                bk: 4,
                ..Tile::LARGE
            },
        ] {
            assert!(!t.valid(), "{t}");
        }
        assert_eq!(Tile::LARGE.to_string(), "128x128/8x8/k16");
    }

    #[test]
    fn shapes_divide() {
        let shared = Tile::DIRECT.wgsl_for(SHARE_LANES);
        assert!(shared.contains("subgroupBroadcast(") && !Tile::DIRECT.wgsl().contains("subgroup"));
        for t in [Tile::LARGE, Tile::SMALL, Tile::DIRECT] {
            let src = t.wgsl();
            assert!(src.contains("fn main("));
            let fused = t.wgsl_fused();
            assert!(
                fused.contains("fn main(") && fused.contains("offer(") && !fused.contains("c[")
            );
            let (x, y) = t.threads();
            assert!(x * y <= 256);
        }
    }
}
