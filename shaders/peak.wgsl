// FP32 throughput probe: each invocation runs 4 independent vec4 FMA chains
// `x = fma(x, a, b)` for `iters` rounds (4 unrolled steps per round), then
// writes the sum of its chains so that no chain can be optimised away.
// `a` and `b` come from the uniform block, so the compiler cannot fold the
// chains. Twin: `Gpu::fma_peak_twin` (the same recurrence in f32 on the
// host; with a = b = 1/2 every step is exact, fused or not, so the twin
// must agree bit for bit). Used for the adapter's measured FP32 peak, which
// the per-kernel GFLOP/s are compared with: 64 FMAs (128 FLOP) per round.

struct Params {
    iters: u32,
    a: f32,
    b: f32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    let s = f32(i % 61u);
    var x0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
    var x1 = x0 + 4.0;
    var x2 = x0 + 8.0;
    var x3 = x0 + 12.0;
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    for (var t = 0u; t < p.iters; t++) {
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
    }
    out[i] = ((x0 + x1) + x2) + x3;
}
