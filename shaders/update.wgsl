// The per-record updates, one invocation per moved record, with the sums
// taken sequentially in index order (as `shift` does; `Step::rotate` sums
// in lanes, so update_n agrees with it to rounding, as the tests allow).
//
// - `update_m`: `nudge_m::shift`, d + gamma * G/|G| (G = 0: unchanged).
// - `update_n`: `nudge_n::Step::rotate`: the case analysis of
//   `Step::coefficients` in f32 (WGSL has no f64). The angle's sine and
//   cosine and the clamp threshold 1 - gamma/2 depend on gamma alone and come
//   from the host in f64, because GPU sin/cos may be accurate to only ~1e-4.
//   |G - v d|^2 is summed directly instead of c - v^2, which cancels badly in
//   f32 when G is nearly parallel to d.

struct Params {
    rows: u32,
    cols: u32,
    gamma: f32,
    sin_t: f32,
    cos_t: f32,
    clamp_at: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn update_m(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var ss = 0.0;
    for (var i = 0u; i < p.cols; i++) {
        let x = g[base + i];
        ss += x * x;
    }
    let norm = sqrt(ss);
    if norm == 0.0 {
        return;
    }
    for (var i = 0u; i < p.cols; i++) {
        d[base + i] += p.gamma * (g[base + i] / norm);
    }
}

@compute @workgroup_size(64)
fn update_n(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var v = 0.0;
    var c = 0.0;
    for (var i = 0u; i < p.cols; i++) {
        v += d[base + i] * g[base + i];
        c += g[base + i] * g[base + i];
    }
    if p.gamma == 0.0 || c <= 0.0 {
        return;
    }
    let norm = sqrt(c);
    var a = 1.0;
    var b = 0.0;
    if v / norm >= p.clamp_at {
        a = 0.0;
        b = 1.0 / norm;
    } else {
        var w2 = 0.0;
        for (var i = 0u; i < p.cols; i++) {
            let u = g[base + i] - v * d[base + i];
            w2 += u * u;
        }
        if v < 0.0 || w2 <= 0.0 {
            return;
        }
        let w = sqrt(w2);
        a = p.cos_t - p.sin_t * v / w;
        b = p.sin_t / w;
    }
    for (var i = 0u; i < p.cols; i++) {
        d[base + i] = a * d[base + i] + b * g[base + i];
    }
}
