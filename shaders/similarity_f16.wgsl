enable f16;

// Prepended to similarity.wgsl (the host concatenates the two sources) when
// the device has SHADER_F16: the same GEMM reading the f16 chunk as native
// vec4<f16> instead of unpacking u32 pairs. `enable f16;` must open a
// module, which is why this is a separate file. The buffer layout is the one
// `normalize.wgsl::to_f16` writes (pack2x16float puts the first half in the
// low bits, where a vec4<f16> keeps its x), so both paths read the same
// bytes. Sums stay in f32.

@group(0) @binding(5) var<storage, read> b16h: array<vec4<f16>>;

fn load_b16h(n0: u32, li: u32, ks: u32) -> vec4<f32> {
    let row = n0 + li / 4u;
    let k4 = ks * 4u + li % 4u;
    if row < p.n && k4 < p.d4 {
        return vec4<f32>(b16h[row * p.d4 + k4]);
    }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(16, 16)
fn main_f16_native(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wid.y * T;
    let n0 = wid.x * T;
    var acc: array<vec4<f32>, 4>;
    let steps = (p.d4 + 3u) / 4u;
    for (var ks = 0u; ks < steps; ks++) {
        stage(li, load_a(m0, li, ks), load_b16h(n0, li, ks));
        workgroupBarrier();
        accumulate(lid.xy, &acc);
        workgroupBarrier();
    }
    store(m0, n0, lid.xy, &acc);
}

