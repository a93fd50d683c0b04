// NUDGE-M intervals: one invocation per (dev query, answer) pair walks the
// block's moved records and applies `nudge_m::tighten` to the pair's running
// [low, high) (the pair's own record is skipped). Twin: the CPU backend's
// `nudge_m_bounds`. max/min/or are order-free, so a block split into
// sub-blocks gives the same bounds.
//
// The slopes t come in ready-made (S1 / |G|, scaled once by the host):
// scaling here would let the compiler fuse `pr.t - s1 * inv_norm` into an
// FMA (NVIDIA's does), and then two records with the same G, whose slopes
// must cancel to exactly 0, would differ by a rounding error instead. What
// is left differs from the CPU only in the division (2.5 ulp in WGSL).

struct Params {
    pairs: u32,
    width: u32,
    // Floats between rows of S0/S1.
    ld: u32,
    pad: u32,
}

struct Pair {
    query: u32,
    record: u32,
    s: f32,
    t: f32,
}

struct Bounds {
    low: f32,
    high: f32,
    dropped: u32,
    pad: u32,
}

// `nudge_m::EPS`.
const EPS: f32 = 1e-8;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pairs: array<Pair>;
@group(0) @binding(2) var<storage, read> s0: array<f32>;
@group(0) @binding(3) var<storage, read> slope: array<f32>;
@group(0) @binding(4) var<storage, read> records: array<u32>;
@group(0) @binding(5) var<storage, read_write> bounds: array<Bounds>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.pairs {
        return;
    }
    let pr = pairs[i];
    var b = bounds[i];
    let row = pr.query * p.ld;
    for (var j = 0u; j < p.width; j++) {
        if records[j] == pr.record {
            continue;
        }
        let s_j = s0[row + j];
        let t_j = slope[row + j];
        let g = pr.t - t_j;
        let s = s_j - pr.s;
        if g > 0.0 {
            b.low = max(b.low, s / (g + EPS));
        } else if g < 0.0 {
            b.high = min(b.high, s / (g + EPS));
        } else if s > 0.0 {
            b.dropped = 1u;
        }
    }
    bounds[i] = b;
}
