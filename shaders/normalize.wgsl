// Row L2 normalisation of a corpus chunk, in place: x / |x|, zero rows stay
// zero. Twin: `backend::cpu::normalize_rows`. One workgroup per row; the sum
// of squares is reduced as a tree, so it may differ from the CPU's 16-lane
// sum in the last bits (the score tolerance in the tests allows for that).
//
// Every row also gets a status (0 ok, 1 zero norm, 2 holds NaN/inf or its
// squares overflow) that the host turns into the RowReport. Non-finite values
// are found from the bits: shader compilers may assume floats are finite and
// fold `x != x` away.

struct Params {
    rows: u32,
    cols: u32,
    // Floats between row starts (cols padded to a multiple of 4).
    stride: u32,
    // 0: normalise and report; 1: only report non-finite rows (scan of a
    // corpus scored as stored, e.g. a NUDGE-M output).
    check_only: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;
var<workgroup> bad: array<u32, 64>;

fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// The end of both entry points: reduces the workgroup's partial sums of
// squares (`ss`) and non-finite flags (`b`), writes the row's status and
// returns its norm. Every invocation of the workgroup must call it.
fn row_norm(lid: u32, row: u32, ss: f32, b: u32) -> f32 {
    partial[lid] = ss;
    bad[lid] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
            bad[lid] |= bad[lid + s];
        }
        workgroupBarrier();
    }
    let norm = sqrt(partial[0]);
    // Check-only mode mirrors the CPU's element test alone (no overflow test).
    let any_bad = bad[0] != 0u || (p.check_only == 0u && non_finite(norm));
    if row < p.rows && lid == 0u {
        var st = 0u;
        if any_bad {
            st = 2u;
        } else if norm == 0.0 {
            st = 1u;
        }
        status[row] = st;
    }
    return norm;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y * nwg.x + wid.x;
    let base = row * p.stride;
    var ss = 0.0;
    var b = 0u;
    if row < p.rows {
        for (var c = lid; c < p.cols; c += WG) {
            let v = x[base + c];
            ss += v * v;
            if non_finite(v) {
                b = 1u;
            }
        }
    }
    let norm = row_norm(lid, row, ss, b);
    if row >= p.rows {
        return;
    }
    // As the CPU twin: divide unless the norm is zero (or NaN).
    if p.check_only == 0u && norm > 0.0 {
        for (var c = lid; c < p.cols; c += WG) {
            x[base + c] = x[base + c] / norm;
        }
    }
}

// f16 precision: packs the normalised chunk (rows padded to 4 floats) into
// two halves per u32 for `similarity.wgsl::main_f16`. One invocation per vec4.
@group(0) @binding(3) var<storage, read> xv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> packed: array<vec2<u32>>;

@compute @workgroup_size(64)
fn to_f16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    // p.rows * p.stride / 4 vec4s in the chunk.
    if i >= p.rows * (p.stride / 4u) {
        return;
    }
    let v = xv[i];
    packed[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}

// f16 precision, when the host could upload the chunk as f16 (half the
// bytes): `main` on packed halves, in place. Values are unpacked to f32, the
// norm is summed in f32 and the normalised values are packed again.
@group(0) @binding(5) var<storage, read_write> words: array<u32>;

@compute @workgroup_size(64)
fn main_f16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y * nwg.x + wid.x;
    // Two halves per word; padding words hold zeros.
    let per_row = p.stride / 2u;
    let base = row * per_row;
    var ss = 0.0;
    var b = 0u;
    if row < p.rows {
        for (var c = lid; c < per_row; c += WG) {
            let v = unpack2x16float(words[base + c]);
            ss += v.x * v.x + v.y * v.y;
            if non_finite(v.x) || non_finite(v.y) {
                b = 1u;
            }
        }
    }
    let norm = row_norm(lid, row, ss, b);
    if row >= p.rows {
        return;
    }
    if p.check_only == 0u && norm > 0.0 {
        for (var c = lid; c < per_row; c += WG) {
            let v = unpack2x16float(words[base + c]);
            words[base + c] = pack2x16float(v / norm);
        }
    }
}
