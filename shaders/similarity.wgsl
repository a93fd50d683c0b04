// Tiled GEMM `c = a . b^T` (a: m x d, b: n x d, both row-major with rows
// padded to a multiple of 4 floats by the host, zeros in the padding).
// Twin: `backend::cpu::gemm_nt`. Used for `Backend::similarity` and for the
// score blocks of the streaming scan.
//
// A 16x16 workgroup computes a 64x64 output tile; each invocation keeps a
// 4x4 register micro-tile. Each step stages a 64x16 slice of a and of b in
// workgroup memory with one vec4 load per invocation per operand. Every
// output still sums its products in index order (k = 0, 1, 2, ...), so two
// identical rows of b score bit-identically: exact ties stay ties, as on
// the CPU.
//
// `main_f16` is the same kernel reading b stored as packed f16 (two halves
// per u32, `pack2x16float`), accumulating in f32.

struct Params {
    m: u32,
    n: u32,
    // vec4s per row of a and b.
    d4: u32,
    // Floats between rows of c.
    ldc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> b16: array<vec2<u32>>;

const T: u32 = 64u;
const KT: u32 = 16u;
// [KT][T]: k-major so the inner loop reads 4 values of a and 4 of b per k.
var<workgroup> ta: array<f32, 1024>;
var<workgroup> tb: array<f32, 1024>;

fn stage(li: u32, va: vec4<f32>, vb: vec4<f32>) {
    let row = li / 4u;
    let k = (li % 4u) * 4u;
    ta[(k + 0u) * T + row] = va.x;
    ta[(k + 1u) * T + row] = va.y;
    ta[(k + 2u) * T + row] = va.z;
    ta[(k + 3u) * T + row] = va.w;
    tb[(k + 0u) * T + row] = vb.x;
    tb[(k + 1u) * T + row] = vb.y;
    tb[(k + 2u) * T + row] = vb.z;
    tb[(k + 3u) * T + row] = vb.w;
}

fn load_a(m0: u32, li: u32, ks: u32) -> vec4<f32> {
    let row = m0 + li / 4u;
    let k4 = ks * 4u + li % 4u;
    if row < p.m && k4 < p.d4 {
        return a[row * p.d4 + k4];
    }
    return vec4<f32>(0.0);
}

fn load_b(n0: u32, li: u32, ks: u32) -> vec4<f32> {
    let row = n0 + li / 4u;
    let k4 = ks * 4u + li % 4u;
    if row < p.n && k4 < p.d4 {
        return b[row * p.d4 + k4];
    }
    return vec4<f32>(0.0);
}

fn load_b16(n0: u32, li: u32, ks: u32) -> vec4<f32> {
    let row = n0 + li / 4u;
    let k4 = ks * 4u + li % 4u;
    if row < p.n && k4 < p.d4 {
        let w = b16[row * p.d4 + k4];
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return vec4<f32>(0.0);
}

fn accumulate(lid: vec2<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var kk = 0u; kk < KT; kk++) {
        var ra: array<f32, 4>;
        var rb: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            ra[i] = ta[kk * T + lid.y + 16u * i];
            rb[i] = tb[kk * T + lid.x + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                (*acc)[i * 4u + j] += ra[i] * rb[j];
            }
        }
    }
}

fn store(m0: u32, n0: u32, lid: vec2<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x + 16u * j;
            if row < p.m && col < p.n {
                c[row * p.ldc + col] = (*acc)[i * 4u + j];
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wid.y * T;
    let n0 = wid.x * T;
    var acc: array<f32, 16>;
    let steps = (p.d4 + 3u) / 4u;
    for (var ks = 0u; ks < steps; ks++) {
        stage(li, load_a(m0, li, ks), load_b(n0, li, ks));
        workgroupBarrier();
        accumulate(lid.xy, &acc);
        workgroupBarrier();
    }
    store(m0, n0, lid.xy, &acc);
}

@compute @workgroup_size(16, 16)
fn main_f16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wid.y * T;
    let n0 = wid.x * T;
    var acc: array<f32, 16>;
    let steps = (p.d4 + 3u) / 4u;
    for (var ks = 0u; ks < steps; ks++) {
        stage(li, load_a(m0, li, ks), load_b16(n0, li, ks));
        workgroupBarrier();
        accumulate(lid.xy, &acc);
        workgroupBarrier();
    }
    store(m0, n0, lid.xy, &acc);
}
