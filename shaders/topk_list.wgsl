// The sorted-list rules shared by `topk.wgsl` and `nudge_n_merge.wgsl`,
// which the host prepends to each (WGSL has no imports). The including
// shader declares `p` (with a `k` field, the list length) and the scratch
// lists `part_s` / `part_r`; `push_part` works on those.
//
// The order is the one of `backend::topk`: higher score first, at equal
// scores the lower row first. Unused slots hold (-inf, EMPTY).

const EMPTY: u32 = 0xffffffffu;

fn better(s1: f32, r1: u32, s2: f32, r2: u32) -> bool {
    return s1 > s2 || (s1 == s2 && r1 < r2);
}

fn is_nan(s: f32) -> bool {
    return (bitcast<u32>(s) & 0x7fffffffu) > 0x7f800000u;
}

// `topk::push_into` on the scratch list starting at `base`.
fn push_part(base: u32, s: f32, r: u32) {
    let k = p.k;
    if !better(s, r, part_s[base + k - 1u], part_r[base + k - 1u]) {
        return;
    }
    var i = k - 1u;
    while i > 0u && better(s, r, part_s[base + i - 1u], part_r[base + i - 1u]) {
        part_s[base + i] = part_s[base + i - 1u];
        part_r[base + i] = part_r[base + i - 1u];
        i -= 1u;
    }
    part_s[base + i] = s;
    part_r[base + i] = r;
}

