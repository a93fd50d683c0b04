// Running top-k of score blocks, in two passes so that a block of n scores
// per list is searched by many invocations:
//
// - `partial`: one invocation per (list, segment) keeps the best k of its
//   segment (every segs-th column; masked rows and NaN scores left out) in
//   a scratch list;
// - `merge`: one invocation per list offers every scratch entry to the
//   running list, which stays on the device between chunks.
//
// The order is the one of `backend::topk`: higher score first, at equal
// scores the lower row first. It is total, so the best k of a set does not
// depend on the order candidates arrive in: splitting into segments gives
// exactly the lists the CPU's one-by-one insertion gives for the same scores.
// Unused slots hold (-inf, EMPTY), as `TopK::new` makes them. `EMPTY`,
// `better`, `is_nan` and `push_part` come from `topk_list.wgsl`, which the
// host prepends.

struct Params {
    lists: u32,
    // Columns in the score block, and floats between its rows.
    n: u32,
    ld: u32,
    k: u32,
    // Columns per segment (n / segs rounded up; the host sizes the scratch
    // lists with it).
    seg_len: u32,
    segs: u32,
    // Absolute row of column 0.
    first_row: u32,
    use_skip: u32,
    // -inf, passed in because WGSL has no infinite literal.
    neg_inf: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
// One bit per absolute corpus row: 1 = moved, leave it out.
@group(0) @binding(2) var<storage, read> skip: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_s: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_r: array<u32>;
@group(0) @binding(5) var<storage, read_write> run_s: array<f32>;
@group(0) @binding(6) var<storage, read_write> run_r: array<u32>;

// `push_part` on the running list (WGSL cannot pass storage arrays to a
// function, so each list has its own copy of the insertion).
fn push_run(base: u32, s: f32, r: u32) {
    let k = p.k;
    if !better(s, r, run_s[base + k - 1u], run_r[base + k - 1u]) {
        return;
    }
    var i = k - 1u;
    while i > 0u && better(s, r, run_s[base + i - 1u], run_r[base + i - 1u]) {
        run_s[base + i] = run_s[base + i - 1u];
        run_r[base + i] = run_r[base + i - 1u];
        i -= 1u;
    }
    run_s[base + i] = s;
    run_r[base + i] = r;
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = index(wid, nwg, lid);
    if t >= p.lists * p.segs {
        return;
    }
    let list = t / p.segs;
    let seg = t % p.segs;
    let base = t * p.k;
    for (var i = 0u; i < p.k; i++) {
        part_s[base + i] = p.neg_inf;
        part_r[base + i] = EMPTY;
    }
    // Segment `seg` is every segs-th column from seg on: neighbouring
    // invocations read neighbouring scores (coalesced), and as the order is
    // total, which columns share a segment does not change the result.
    for (var j = seg; j < p.n; j += p.segs) {
        let s = scores[list * p.ld + j];
        let row = p.first_row + j;
        if is_nan(s) {
            continue;
        }
        // Rows past the end of the mask are not masked.
        if p.use_skip != 0u && row / 32u < arrayLength(&skip)
            && ((skip[row / 32u] >> (row % 32u)) & 1u) != 0u {
            continue;
        }
        push_part(base, s, row);
    }
}

@compute @workgroup_size(64)
fn merge(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let list = index(wid, nwg, lid);
    if list >= p.lists {
        return;
    }
    let run = list * p.k;
    for (var seg = 0u; seg < p.segs; seg++) {
        let base = (list * p.segs + seg) * p.k;
        for (var i = 0u; i < p.k; i++) {
            let r = part_r[base + i];
            if r == EMPTY {
                break;
            }
            push_run(run, part_s[base + i], r);
        }
    }
}
