//! Compiled pipelines with explicit bind-group layouts, and dispatch sizing.
//!
//! Every pipeline is built once in `Gpu::new` from the WGSL under `shaders/`
//! (one file per job). Layouts are explicit rather than derived by wgpu, so a
//! kernel's bindings are listed here next to the code that fills them.

use crate::error::Result;

use super::context::Context;

/// Threads per workgroup of every one-dimensional kernel (the WGSL files say
/// `@workgroup_size(64)`).
pub const WG: u32 = 64;
/// Workgroup count limit per dimension that WebGPU guarantees.
const MAX_GROUPS: u32 = 65535;

#[derive(Debug, Clone, Copy)]
pub enum Bind {
    Uniform,
    Read,
    Write,
}

pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    slots: Vec<u32>,
}

impl Kernel {
    pub fn new(
        ctx: &Context,
        module: &wgpu::ShaderModule,
        entry: &str,
        binds: &[(u32, Bind)],
    ) -> Kernel {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = binds
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        Bind::Uniform => wgpu::BufferBindingType::Uniform,
                        Bind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Bind::Write => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry),
                entries: &entries,
            });
        let pl = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        Kernel {
            pipeline,
            layout,
            slots: binds.iter().map(|b| b.0).collect(),
        }
    }

    /// A bind group of `buffers`, in the order the kernel's bindings were
    /// listed.
    pub fn bind(&self, ctx: &Context, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        debug_assert_eq!(buffers.len(), self.slots.len());
        let entries: Vec<wgpu::BindGroupEntry> = self
            .slots
            .iter()
            .zip(buffers)
            .map(|(&binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Records one dispatch of `groups` workgroups.
    pub fn record(
        &self,
        enc: &mut wgpu::CommandEncoder,
        group: &wgpu::BindGroup,
        groups: (u32, u32),
    ) {
        if groups.0 == 0 || groups.1 == 0 {
            return;
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }
}

/// `count` workgroups laid out as x * y with x within the per-dimension
/// limit; kernels rebuild the linear index as `wid.y * nwg.x + wid.x`.
pub fn grid(count: usize) -> (u32, u32) {
    if count == 0 {
        return (0, 0);
    }
    let x = count.min(MAX_GROUPS as usize);
    (x as u32, count.div_ceil(x) as u32)
}

/// Workgroups for `items` invocations of a 64-wide kernel.
pub fn grid_items(items: usize) -> (u32, u32) {
    grid(items.div_ceil(WG as usize))
}

/// Every pipeline the backend uses.
pub struct Kernels {
    pub normalize: Kernel,
    pub to_f16: Kernel,
    pub normalize_f16: Kernel,
    pub gemm: Kernel,
    /// The packed-f16 GEMM (any adapter).
    pub gemm_f16: Kernel,
    /// The native-f16 GEMM, when the device has `SHADER_F16`.
    pub gemm_f16_native: Option<Kernel>,
    pub topk_partial: Kernel,
    pub topk_merge: Kernel,
    pub aggregate: Kernel,
    pub nudge_m_bounds: Kernel,
    pub nudge_n_partial: Kernel,
    pub update_m: Kernel,
    pub update_n: Kernel,
}

fn module(ctx: &Context, name: &str, source: &'static str) -> wgpu::ShaderModule {
    ctx.device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        })
}

impl Kernels {
    pub fn new(ctx: &Context) -> Result<Kernels> {
        use Bind::*;
        ctx.scoped("compiling the kernels", || {
            let normalize = module(
                ctx,
                "normalize",
                include_str!("../../../shaders/normalize.wgsl"),
            );
            let similarity = module(
                ctx,
                "similarity",
                include_str!("../../../shaders/similarity.wgsl"),
            );
            let native = ctx.native_f16.then(|| {
                module(
                    ctx,
                    "similarity_f16",
                    concat!(
                        include_str!("../../../shaders/similarity_f16.wgsl"),
                        include_str!("../../../shaders/similarity.wgsl")
                    ),
                )
            });
            let topk = module(
                ctx,
                "topk",
                concat!(
                    include_str!("../../../shaders/topk_list.wgsl"),
                    include_str!("../../../shaders/topk.wgsl")
                ),
            );
            let aggregate = module(
                ctx,
                "aggregate",
                include_str!("../../../shaders/aggregate.wgsl"),
            );
            let bounds = module(
                ctx,
                "nudge_m_bounds",
                include_str!("../../../shaders/nudge_m_bounds.wgsl"),
            );
            let merge = module(
                ctx,
                "nudge_n_merge",
                concat!(
                    include_str!("../../../shaders/topk_list.wgsl"),
                    include_str!("../../../shaders/nudge_n_merge.wgsl")
                ),
            );
            let update = module(ctx, "update", include_str!("../../../shaders/update.wgsl"));
            Ok(Kernels {
                normalize: Kernel::new(
                    ctx,
                    &normalize,
                    "main",
                    &[(0, Uniform), (1, Write), (2, Write)],
                ),
                normalize_f16: Kernel::new(
                    ctx,
                    &normalize,
                    "main_f16",
                    &[(0, Uniform), (2, Write), (5, Write)],
                ),
                to_f16: Kernel::new(
                    ctx,
                    &normalize,
                    "to_f16",
                    &[(0, Uniform), (3, Read), (4, Write)],
                ),
                gemm: Kernel::new(
                    ctx,
                    &similarity,
                    "main",
                    &[(0, Uniform), (1, Read), (2, Read), (3, Write)],
                ),
                gemm_f16: Kernel::new(
                    ctx,
                    &similarity,
                    "main_f16",
                    &[(0, Uniform), (1, Read), (3, Write), (4, Read)],
                ),
                gemm_f16_native: native.as_ref().map(|m| {
                    Kernel::new(
                        ctx,
                        m,
                        "main_f16_native",
                        &[(0, Uniform), (1, Read), (3, Write), (5, Read)],
                    )
                }),
                topk_partial: Kernel::new(
                    ctx,
                    &topk,
                    "partial",
                    &[(0, Uniform), (1, Read), (2, Read), (3, Write), (4, Write)],
                ),
                topk_merge: Kernel::new(
                    ctx,
                    &topk,
                    "merge",
                    &[(0, Uniform), (3, Write), (4, Write), (5, Write), (6, Write)],
                ),
                aggregate: Kernel::new(
                    ctx,
                    &aggregate,
                    "main",
                    &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)],
                ),
                nudge_m_bounds: Kernel::new(
                    ctx,
                    &bounds,
                    "main",
                    &[
                        (0, Uniform),
                        (1, Read),
                        (2, Read),
                        (3, Read),
                        (4, Read),
                        (5, Write),
                    ],
                ),
                nudge_n_partial: Kernel::new(
                    ctx,
                    &merge,
                    "main",
                    &[
                        (0, Uniform),
                        (1, Read),
                        (2, Read),
                        (3, Read),
                        (4, Read),
                        (5, Write),
                        (6, Write),
                    ],
                ),
                update_m: Kernel::new(
                    ctx,
                    &update,
                    "update_m",
                    &[(0, Uniform), (1, Write), (2, Read)],
                ),
                update_n: Kernel::new(
                    ctx,
                    &update,
                    "update_n",
                    &[(0, Uniform), (1, Write), (2, Read)],
                ),
            })
        })
    }
}
