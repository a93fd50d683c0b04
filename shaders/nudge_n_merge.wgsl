// NUDGE-N grid scoring: for every (grid gamma g, dev query q), the score of
// moved record j after the update is `a_gj * S0[q,j] + b_gj * S1[q,j]`
// (`nudge_n::Step::coefficients`, computed on the host per record and gamma).
// Twin: the CPU backend's `nudge_n_merge`. This pass keeps the best k of each
// segment (every segs-th block column) per (g, q) list; `topk.wgsl::merge` then folds
// them into the running lists, exactly as for the corpus scan. The list
// rules (`better`, `is_nan`, `push_part`) come from `topk_list.wgsl`, which
// the host prepends.

struct Params {
    // lists = gammas * queries; list = g * queries + q.
    lists: u32,
    queries: u32,
    // Block columns, and floats between rows of S0/S1.
    width: u32,
    ld: u32,
    k: u32,
    // Columns per segment (informational; segments interleave).
    seg_len: u32,
    segs: u32,
    neg_inf: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s0: array<f32>;
@group(0) @binding(2) var<storage, read> s1: array<f32>;
// (a, b) per gamma and column: coef[g * width + j].
@group(0) @binding(3) var<storage, read> coef: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> records: array<u32>;
@group(0) @binding(5) var<storage, read_write> part_s: array<f32>;
@group(0) @binding(6) var<storage, read_write> part_r: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wid.y * nwg.x + wid.x) * 64u + lid;
    if t >= p.lists * p.segs {
        return;
    }
    let list = t / p.segs;
    let seg = t % p.segs;
    let g = list / p.queries;
    let q = list % p.queries;
    let base = t * p.k;
    for (var i = 0u; i < p.k; i++) {
        part_s[base + i] = p.neg_inf;
        part_r[base + i] = EMPTY;
    }
    // Interleaved segments, as in topk.wgsl: neighbouring invocations read
    // neighbouring columns.
    for (var j = seg; j < p.width; j += p.segs) {
        let ab = coef[g * p.width + j];
        let s = ab.x * s0[q * p.ld + j] + ab.y * s1[q * p.ld + j];
        if is_nan(s) {
            continue;
        }
        push_part(base, s, records[j]);
    }
}
