// NUDGE-M slopes in place: s1[q * ld + j] *= inv_norm[j] (1/|G_j|) for
// q < rows, j < width. One f32 multiply per element, written to memory
// before `nudge_m_bounds.wgsl` reads it, so that no compiler can fuse it
// into the bounds' subtraction (see there). Twin: `backend::slopes`.

struct Params {
    rows: u32,
    width: u32,
    // Floats between rows of S1.
    ld: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> s1: array<f32>;
@group(0) @binding(2) var<storage, read> inv_norm: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.rows * p.width {
        return;
    }
    let q = i / p.width;
    let j = i % p.width;
    s1[q * p.ld + j] = s1[q * p.ld + j] * inv_norm[j];
}
