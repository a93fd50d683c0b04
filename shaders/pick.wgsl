// Reads chosen elements of S0 and the NUDGE-M slopes back: out[i] =
// (s0[q * ld + c], slope[q * ld + c]) for picks[i] = (q, c). The first
// block of the NUDGE-M search holds every pair's own record; its own score
// and slope are these elements, the very bits its competitors are compared
// with, and only they (not the whole block) need to reach the host before
// the bounds are taken on the device. Twin: `backend::pick`.

struct Params {
    count: u32,
    // Floats between rows of S0 and of the slopes.
    ld: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> picks: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> s0: array<f32>;
@group(0) @binding(3) var<storage, read> slope: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.count {
        return;
    }
    let at = picks[i].x * p.ld + picks[i].y;
    out[i] = vec2<f32>(s0[at], slope[at]);
}
