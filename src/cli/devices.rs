//! `nudge devices`: the GPU adapters wgpu can see, with the facts that decide
//! whether and how nudge uses them (buffer limits, f16, subgroups).

use clap::Args;

use nudge::backend::gpu::list_adapters;
use nudge::backend::gpu::tune::{Outcome, TuneOptions};
use nudge::{Gpu, GpuOptions, Result};

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Also measure each adapter's FP32 peak (an FMA-throughput kernel) and
    /// host-to-device bandwidth (seconds per adapter)
    #[arg(long)]
    pub peak: bool,
    /// Autotune the f32 GEMM's tile on each adapter for the common shapes
    /// (d 384 and 768, 1000 queries): time every variant, print the times
    /// and the winner, and cache it (as the first GPU job of a shape does)
    #[arg(long)]
    pub tune: bool,
    /// With --tune: the query counts to tune for, comma-separated (each
    /// stands for its power-of-two bucket, as a job's count does)
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "1000",
          requires = "tune", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub queries: Vec<u64>,
}

/// The measured FP32 peak and host-to-device bandwidth of the adapter
/// `GpuOptions` picks, as `nudge devices --peak` and `nudge bench` report
/// them: (GFLOP/s, timed by timestamps, GB/s).
pub fn measure(opts: &GpuOptions) -> Result<(f64, bool, f64)> {
    let gpu = Gpu::new(opts)?;
    let peak = gpu.fp32_peak()?;
    let h2d = gpu.h2d_gbps(64 << 20)?;
    Ok((peak.gflops, peak.timestamps, h2d))
}

/// `--tune` on the adapter `opts` picks: every variant timed afresh for
/// each common dimension and each of `queries`, the winner written to the
/// user's cache.
fn tune(opts: &GpuOptions, queries: &[u64]) -> Result<()> {
    let gpu = Gpu::new(opts)?;
    let tune = TuneOptions {
        cache: super::device::tune_cache(),
        ..Default::default()
    };
    for (d, q) in [384, 768]
        .into_iter()
        .flat_map(|d| queries.iter().map(move |&q| (d, q as usize)))
    {
        let r = gpu.autotune(d, q, &tune, true)?;
        for w in &r.warnings {
            super::log::warn(w);
        }
        let (q, n, d) = r.timed_shape;
        println!("   tune d={d}       {q} queries x {n} rows, f32");
        for t in &r.trials {
            let what = match &t.outcome {
                Outcome::Timed { ms, gflops } => format!("{ms:9.3} ms {gflops:8.1} GFLOP/s"),
                Outcome::Untimed => "not timed".to_string(),
                Outcome::Refused(why) => format!("refused: {why}"),
            };
            println!("     {:<18} {what}", t.tile.to_string());
        }
        println!(
            "     winner             {} ({}; default {})",
            r.tile,
            r.source.as_str(),
            gpu.default_tile()
        );
    }
    if let Some(p) = &tune.cache {
        println!("   tuning cache     {}", p.display());
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

pub fn run(args: DevicesArgs) -> Result<()> {
    let list = list_adapters();
    if list.is_empty() {
        println!(
            "no GPU adapters found; fits run on the CPU. For a CPU-emulated Vulkan device install mesa-vulkan-drivers and libvulkan1"
        );
        return Ok(());
    }
    for (i, a) in list.iter().enumerate() {
        println!("{i}: {}", a.name);
        println!("   backend          {}", a.backend);
        if a.software {
            println!(
                "   device type      {} (software: slower than the CPU backend; --device auto skips it)",
                a.device_type
            );
        } else {
            println!("   device type      {}", a.device_type);
        }
        println!("   driver           {}", a.driver);
        println!("   max buffer       {}", mib(a.max_buffer_size));
        println!("   max storage bind {}", mib(a.max_storage_binding));
        println!(
            "   max workgroup    {} x {} x {} ({} invocations)",
            a.max_workgroup_size[0],
            a.max_workgroup_size[1],
            a.max_workgroup_size[2],
            a.max_invocations
        );
        println!(
            "   shader f16       {}",
            if a.shader_f16 {
                "yes"
            } else {
                "no (packed f16 is used)"
            }
        );
        if a.subgroups {
            println!(
                "   subgroups        yes ({}-{})",
                a.subgroup_sizes.0, a.subgroup_sizes.1
            );
        } else {
            println!("   subgroups        no");
        }
        println!(
            "   timestamps       {}",
            if a.timestamps {
                "yes (per-kernel GPU times)"
            } else {
                "no"
            }
        );
        if args.peak {
            let opts = GpuOptions {
                adapter: Some(a.name.clone()),
                ..Default::default()
            };
            match measure(&opts) {
                Ok((gflops, ts, h2d)) => {
                    println!(
                        "   fp32 peak        {gflops:.1} GFLOP/s (measured, {})",
                        if ts { "timestamps" } else { "host clock" }
                    );
                    println!("   host to device   {h2d:.2} GB/s (measured)");
                }
                Err(e) => println!("   fp32 peak        not measured: {e}"),
            }
        }
        if args.tune {
            let opts = GpuOptions {
                adapter: Some(a.name.clone()),
                ..Default::default()
            };
            if let Err(e) = tune(&opts, &args.queries) {
                println!("   tuning           failed: {e}");
            }
        }
    }
    Ok(())
}
