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
    /// k per staged slice (a multiple of 4).
    pub bk: u32,
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
    };

    /// The shape for the device: [`Tile::LARGE`] where its workgroup fits
    /// the device's limits, else [`Tile::SMALL`]. Software adapters get the
    /// large tile too: on lavapipe (2 cores, 50k x 384 x 1000 queries) it
    /// ran the GEMM at 7.9 GFLOP/s against 3.1 for the small tile and 2.9
    /// for `similarity.wgsl` (more reuse per shared-memory gather and fewer
    /// barriers per FMA matter more there than register spills).
    ///
    /// This is the shape of an untuned device; `tune.rs` may pick another
    /// per job shape.
    pub fn for_device(ctx: &super::context::Context) -> Tile {
        if Tile::LARGE.fits(&ctx.limits) {
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
        let Tile { bm, bn, tm, tn, bk } = *self;
        if tm == 0 || tn == 0 || bk == 0 || bm == 0 || bn == 0 {
            return false;
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

    /// Workgroup memory of the double-buffered slices, in bytes.
    pub fn shared_bytes(&self) -> u32 {
        2 * self.bk * (self.bm + self.bn) * 4
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

    /// The WGSL of this shape (entry point `main`).
    pub fn wgsl(&self) -> String {
        generate(self, false)
    }

    /// The GEMM of this shape fused with the first half of the scan's
    /// top-k (entry point `main`): the same sums in the same order, but
    /// instead of storing the scores the epilogue offers each to its
    /// query's candidate list (see `shaders/topk_fused.wgsl`).
    pub fn wgsl_fused(&self) -> String {
        generate(self, true)
    }
}

/// `128x128/8x8/k16`: outputs per workgroup, per thread, and the k-tile.
impl std::fmt::Display for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}/{}x{}/k{}",
            self.bm, self.bn, self.tm, self.tn, self.bk
        )
    }
}

fn generate(t: &Tile, fused: bool) -> String {
    let Tile { bm, bn, tm, tn, bk } = *t;
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
    if fused {
        w.push_str(FUSED_INTERFACE);
        w.push_str(include_str!("../../../shaders/topk_order.wgsl"));
        w.push_str(OFFER);
    } else {
        w.push_str(INTERFACE);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_matches_the_generator() {
        assert!(Tile::LARGE.valid() && Tile::SMALL.valid());
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
        for t in [Tile::LARGE, Tile::SMALL] {
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
