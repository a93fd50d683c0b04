// Subgroup-size probe: every invocation of one 64-wide workgroup writes the
// size of its subgroup. Read once when a device opens with subgroups, on
// software adapters, before the direct GEMM tile is generated: its loads of
// `a` are shared across 8 lanes of a subgroup (`tiled.rs`), which is right
// only where every subgroup has at least 8 lanes, and wgpu reports no size
// for adapters without VK_EXT_subgroup_size_control (lavapipe among them).
// No CPU twin: the value is the adapter's, not computed; the direct tiles'
// parity tests (every tile against `cpu::gemm_nt`) check what it decides.

@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_size) size: u32,
) {
    out[li] = size;
}
