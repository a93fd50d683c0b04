// Segment sums (CSR): out[r] = sum of rows[indices[offsets[r]..offsets[r+1]]]
// added in that order. Twin: the CPU backend's `aggregate`. One invocation per
// (segment, vec4 column): no atomics (WGSL has no float atomics) and the same
// order of additions as the CPU, so the sums are deterministic and equal to
// the twin's. Rows are padded to a multiple of 4 floats by the host.

struct Params {
    segments: u32,
    d4: u32,
    // 1: start from `out` (the sum of the segment's earlier rows, when the
    // host splits one long segment into pieces) instead of zero.
    carry: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wid.y * nwg.x + wid.x) * 64u + lid;
    if t >= p.segments * p.d4 {
        return;
    }
    let r = t / p.d4;
    let c = t % p.d4;
    var acc = vec4<f32>(0.0);
    if p.carry != 0u {
        acc = out[t];
    }
    for (var i = offsets[r]; i < offsets[r + 1u]; i++) {
        acc += rows[indices[i] * p.d4 + c];
    }
    out[t] = acc;
}
