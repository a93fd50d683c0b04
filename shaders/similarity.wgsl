// Tiled GEMM `c = a . b^T` (a: m x d, b: n x d, both row-major with rows
// padded to a multiple of 4 floats by the host, zeros in the padding).
// Twin: `backend::cpu::gemm_nt`. Used for `Backend::similarity` and for the
// score blocks of the streaming scan.
//
// A 16x16 workgroup computes a 64x64 output tile; each invocation keeps a
// 4x4 register micro-tile. Each step stages a 64x16 slice of a and of b in
// workgroup memory with one vec4 load per invocation per operand, and the
// inner loop reads it back as vec4s. Every
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
// [KT][T/4] vec4s, k-major: entry (k, r) holds rows 4r..4r+3 at depth k, so
// the inner loop reads the 4 rows of a micro-tile in one vec4 load.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

// Invocation li loaded 4 consecutive k of one row; each value goes to its
// own (k, row) slot (distinct words per invocation, so no write races).
fn stage(li: u32, va: vec4<f32>, vb: vec4<f32>) {
    let row = li / 4u;
    let k = (li % 4u) * 4u;
    let r4 = row / 4u;
    let c = row % 4u;
    ta[(k + 0u) * 16u + r4][c] = va.x;
    ta[(k + 1u) * 16u + r4][c] = va.y;
    ta[(k + 2u) * 16u + r4][c] = va.z;
    ta[(k + 3u) * 16u + r4][c] = va.w;
    tb[(k + 0u) * 16u + r4][c] = vb.x;
    tb[(k + 1u) * 16u + r4][c] = vb.y;
    tb[(k + 2u) * 16u + r4][c] = vb.z;
    tb[(k + 3u) * 16u + r4][c] = vb.w;
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

// Invocation (x, y) owns rows 4y..4y+3 and columns 4x..4x+3 of the tile:
// acc[i][j] is (row 4y+i, column 4x+j). Two vec4 loads feed 16 products.
fn accumulate(lid: vec2<u32>, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < KT; kk++) {
        let av = ta[kk * 16u + lid.y];
        let bv = tb[kk * 16u + lid.x];
        (*acc)[0] += av.x * bv;
        (*acc)[1] += av.y * bv;
        (*acc)[2] += av.z * bv;
        (*acc)[3] += av.w * bv;
    }
}

fn store(m0: u32, n0: u32, lid: vec2<u32>, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x * 4u + j;
            if row < p.m && col < p.n {
                c[row * p.ldc + col] = (*acc)[i][j];
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
    var acc: array<vec4<f32>, 4>;
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
    var acc: array<vec4<f32>, 4>;
    let steps = (p.d4 + 3u) / 4u;
    for (var ks = 0u; ks < steps; ks++) {
        stage(li, load_a(m0, li, ks), load_b16(n0, li, ks));
        workgroupBarrier();
        accumulate(lid.xy, &acc);
        workgroupBarrier();
    }
    store(m0, n0, lid.xy, &acc);
}
