// The order of `backend::topk`, which the host prepends to every shader that
// ranks (WGSL has no imports): higher score first, at equal scores the lower
// row first. Unused list slots hold (-inf, EMPTY).

const EMPTY: u32 = 0xffffffffu;

fn better(s1: f32, r1: u32, s2: f32, r2: u32) -> bool {
    return s1 > s2 || (s1 == s2 && r1 < r2);
}

// By the bits: a compiler may assume floats are never NaN.
fn is_nan(s: f32) -> bool {
    return (bitcast<u32>(s) & 0x7fffffffu) > 0x7f800000u;
}
