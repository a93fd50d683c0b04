// The sorted-list rules shared by `topk.wgsl` and `nudge_n_merge.wgsl`,
// which the host prepends to each (WGSL has no imports). The including
// shader declares `p` (with a `k` field, the list length) and the scratch
// lists `part_s` / `part_r`; `push_part` works on those.
//
// `EMPTY`, `better` and `is_nan` come from `topk_order.wgsl`, prepended
// before this file.

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

