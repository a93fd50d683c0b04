// The second half of the fused top-k of the f32 scan. The first half is the
// epilogue of the generated GEMM (`tiled.rs`, `Tile::wgsl_fused`): it never
// writes the score block, only appends each score that can still enter its
// query's list (score >= the list's k-th score, not NaN, row not masked) to
// the query's candidate list, and raises the overflow flag when a list is
// full. Here:
//
// - `merge`: one workgroup per query folds its candidates into its running
//   list, in workgroup memory (twin: `topk::merge_candidates`);
// - `arm`: one invocation writes the indirect dispatch arguments of the
//   exact fallback (full score block, `topk.wgsl`), all zero unless a list
//   overflowed, and clears the flag.
//
// Why the answers are exact: a score below the k-th score of its query's
// list cannot enter the list (the list only gets better), and an equal one
// is kept as a candidate so that `better` settles the tie here. When any
// list overflows, `merge` leaves every list as it is and the fallback
// redoes the whole chunk the unfused way.
//
// `EMPTY` and `better` come from `topk_order.wgsl`, which the host prepends.

struct Params {
    // Queries (running lists).
    lists: u32,
    k: u32,
    // Entries per candidate list.
    cap: u32,
    // Fallback grids: GEMM, `topk.wgsl::partial`, `topk.wgsl::merge`.
    gemm_x: u32,
    gemm_y: u32,
    part_x: u32,
    part_y: u32,
    fold_x: u32,
    fold_y: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Candidate (score bits, row) pairs: query q's are at q * cap .. q * cap + cap.
@group(0) @binding(1) var<storage, read> cand: array<vec2<u32>>;
// counts[q]: candidates the epilogue offered to query q (may exceed cap);
// counts[lists]: the overflow flag.
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> run_s: array<f32>;
@group(0) @binding(4) var<storage, read_write> run_r: array<u32>;
// Three `DispatchIndirectArgs` (x, y, z) for the fallback.
@group(0) @binding(5) var<storage, read_write> args: array<u32>;

// The running list and the candidates of one query. The host keeps
// k + cap <= MERGE_ENTRIES (`scan.rs`).
const MERGE_ENTRIES: u32 = 1024u;
var<workgroup> ws: array<f32, MERGE_ENTRIES>;
var<workgroup> wr: array<u32, MERGE_ENTRIES>;
var<workgroup> w_count: u32;
var<workgroup> w_over: u32;

@compute @workgroup_size(64)
fn merge(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = wid.y * nwg.x + wid.x;
    if q >= p.lists {
        return;
    }
    if lid == 0u {
        w_count = counts[q];
        w_over = counts[p.lists];
        // Ready for the next chunk (only this invocation reads counts[q]).
        counts[q] = 0u;
    }
    let offered = workgroupUniformLoad(&w_count);
    if workgroupUniformLoad(&w_over) != 0u {
        return;
    }
    // Without overflow offered <= cap; min() keeps the reads in bounds
    // regardless.
    let k = p.k;
    let n = min(offered, min(p.cap, MERGE_ENTRIES - min(k, MERGE_ENTRIES)));
    let base = q * k;
    for (var i = lid; i < k; i += 64u) {
        ws[i] = run_s[base + i];
        wr[i] = run_r[base + i];
    }
    for (var j = lid; j < n; j += 64u) {
        let c = cand[q * p.cap + j];
        ws[k + j] = bitcast<f32>(c.x);
        wr[k + j] = c.y;
    }
    workgroupBarrier();
    // Each entry's place in the merged order is the number of entries that
    // rank before it. The list is sorted, its unused slots (-inf, EMPTY)
    // rank after every candidate, and rows are distinct (a chunk's rows are
    // new to the list), so the places are a permutation of 0..k+n and each
    // of the list's k slots is written exactly once.
    for (var e = lid; e < k + n; e += 64u) {
        let s = ws[e];
        let r = wr[e];
        var place = 0u;
        if e < k {
            place = e;
        } else {
            // Entries of the list ahead of it: a prefix, found by bisection.
            var lo = 0u;
            var hi = k;
            while lo < hi {
                let mid = (lo + hi) / 2u;
                if better(ws[mid], wr[mid], s, r) {
                    lo = mid + 1u;
                } else {
                    hi = mid;
                }
            }
            place = lo;
        }
        for (var j = 0u; j < n; j++) {
            if better(ws[k + j], wr[k + j], s, r) {
                place += 1u;
            }
        }
        if place < k {
            run_s[base + place] = s;
            run_r[base + place] = r;
        }
    }
}

@compute @workgroup_size(1)
fn arm() {
    let over = counts[p.lists] != 0u;
    counts[p.lists] = 0u;
    let grids = array<u32, 9>(
        p.gemm_x, p.gemm_y, 1u,
        p.part_x, p.part_y, 1u,
        p.fold_x, p.fold_y, 1u,
    );
    for (var i = 0u; i < 9u; i++) {
        args[i] = select(0u, grids[i], over);
    }
}
