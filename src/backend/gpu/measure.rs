//! What the adapter can do, measured on it: the FP32 peak (from
//! `peak.wgsl`'s FMA chains) and the host-to-device bandwidth (through the
//! same queued writes the scan uploads its chunks with).
//!
//! Why: a kernel's GFLOP/s mean little without the adapter's own ceiling,
//! and vendor figures do not hold for a software adapter or a throttled
//! card. Both measurements take well under a second on a real GPU.

use std::time::Instant;

use super::Gpu;
use super::context::Uniform;
use super::kernel::{FmaPeak, PeakParams, grid};
use crate::error::Result;

/// Invocations per workgroup of `peak.wgsl`.
const PEAK_WG: usize = 256;
/// FLOP per invocation per round of `peak.wgsl` (16 vec4 FMAs).
const PEAK_FLOP_PER_ROUND: f64 = 16.0 * 4.0 * 2.0;

/// A measured FP32 peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// FP32 GFLOP/s of the FMA chains.
    pub gflops: f64,
    /// Timed with timestamp queries (true) or by the host's clock around
    /// submit and wait (false: includes the submission's overhead).
    pub timestamps: bool,
}

/// The host twin of `peak.wgsl`: what invocation `i` writes after `iters`
/// rounds of `x = x * a + b` (one rounding per step, as `fma` does).
pub fn fma_peak_twin(i: u32, iters: u32, a: f32, b: f32) -> [f32; 4] {
    let s = (i % 61) as f32;
    let mut x = [[0f32; 4]; 4];
    for (c, chain) in x.iter_mut().enumerate() {
        for (l, v) in chain.iter_mut().enumerate() {
            *v = s + l as f32 + 4.0 * c as f32;
        }
    }
    for _ in 0..iters * 4 {
        for chain in x.iter_mut() {
            for v in chain.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    let mut out = [0f32; 4];
    for (l, o) in out.iter_mut().enumerate() {
        *o = ((x[0][l] + x[1][l]) + x[2][l]) + x[3][l];
    }
    out
}

impl Gpu {
    /// Runs `peak.wgsl` on `groups` workgroups for `iters` rounds with
    /// multiplier `a` and addend `b`; returns every invocation's output
    /// (for the twin test) and the GPU milliseconds when timestamps timed
    /// it (else the host's).
    pub fn fma_peak_run(
        &self,
        groups: usize,
        iters: u32,
        a: f32,
        b: f32,
    ) -> Result<(Vec<[f32; 4]>, f64, bool)> {
        self.one_shot("fma peak", || {
            let ctx = &self.ctx;
            let n = groups * PEAK_WG;
            let out = self.scratch("peak", (n * 16) as u64);
            let params = Uniform::new(ctx);
            params.set(
                ctx,
                &PeakParams {
                    iters,
                    a,
                    b,
                    pad: 0,
                },
            );
            ctx.collect_timings()?;
            let before = self.kernel_time("fma_peak");
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            let flops = n as f64 * iters as f64 * PEAK_FLOP_PER_ROUND;
            self.k.fma_peak.dispatch_counted(
                ctx,
                &mut enc,
                FmaPeak {
                    p: &params,
                    out: &out,
                },
                grid(groups),
                flops,
            );
            let t = Instant::now();
            let idx = ctx.queue.submit([enc.finish()]);
            ctx.wait(Some(idx))?;
            let host_ms = t.elapsed().as_secs_f64() * 1e3;
            ctx.collect_timings()?;
            let after = self.kernel_time("fma_peak");
            let values: Vec<[f32; 4]> = self.read(&out, (n * 16) as u64)?;
            match after.calls > before.calls {
                true => Ok((values, after.ms - before.ms, true)),
                false => Ok((values, host_ms, false)),
            }
        })
    }

    /// The adapter's FP32 peak: `peak.wgsl` with more rounds until one run
    /// takes at least 50 ms (or 2^16 rounds), on 8192 workgroups of 256
    /// (2M invocations: enough to fill any GPU).
    pub fn fp32_peak(&self) -> Result<Peak> {
        let groups = 8192;
        let mut iters = 16u32;
        loop {
            let (_, ms, timestamps) = self.fma_peak_run(groups, iters, 0.5, 0.5)?;
            if ms >= 50.0 || iters >= 1 << 16 {
                let flop = (groups * PEAK_WG) as f64 * iters as f64 * PEAK_FLOP_PER_ROUND;
                return Ok(Peak {
                    gflops: flop / (ms.max(1e-6) * 1e6),
                    timestamps,
                });
            }
            // Aim at ~80 ms from what this run took.
            let scale = (80.0 / ms.max(0.01)).clamp(2.0, 64.0);
            iters = ((iters as f64 * scale) as u32).min(1 << 16);
        }
    }

    /// Host-to-device bandwidth in GB/s: `bytes` (capped at one binding)
    /// written through the queue as the scan writes its chunks, submitted
    /// and waited for, best of three after a warm-up.
    pub fn h2d_gbps(&self, bytes: usize) -> Result<f64> {
        self.one_shot("host-to-device bandwidth", || {
            let ctx = &self.ctx;
            let bytes = (bytes.min(self.budget() as usize) / 16 * 16).max(16);
            let host = vec![1u8; bytes];
            let dst = self.scratch("h2d", bytes as u64);
            let mut best = f64::INFINITY;
            for i in 0..4 {
                let t = Instant::now();
                ctx.write(&dst, &host);
                let idx = ctx.queue.submit([]);
                ctx.wait(Some(idx))?;
                let s = t.elapsed().as_secs_f64();
                if i > 0 {
                    best = best.min(s);
                }
            }
            Ok(bytes as f64 / best / 1e9)
        })
    }
}
