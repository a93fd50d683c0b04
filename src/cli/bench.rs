//! `nudge bench`: what nudge does on this machine, CPU path against GPU path
//! in one run, on a synthetic dataset or a given one.
//!
//! Every measurement is a child `nudge` process, so that each gets its own
//! peak memory (from `wait4`) and its own phase timings (from the fit report
//! and `eval --json`), exactly as a user's run would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::log;
use nudge::{Error, Result};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Benchmark on this dataset folder instead of a synthetic one
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Size and seed of the synthetic dataset (when no --dataset)
    #[command(flatten)]
    pub shape: super::synth::Shape,
    /// Which backends: auto (CPU, and the GPU when there is an adapter), cpu or gpu
    #[arg(long, value_enum, default_value_t = super::device::DeviceArg::Auto)]
    pub device: super::device::DeviceArg,
    /// Spread each GPU run over these adapters (as `fit --adapters`) and
    /// report each adapter's share of the eval and its throughput
    #[arg(long, value_name = "all|LIST")]
    pub adapters: Option<String>,
    /// Run each step this many times and report the run of median wall
    /// time: the first run of a process after memory churn pays the kernel
    /// for fresh (huge) pages, which on a small dataset doubles its time
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeat: usize,
    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also write the runs as a self-contained HTML page with charts
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print nothing but errors (and the --json object)
    #[arg(long, short)]
    pub quiet: bool,
}

struct Run {
    backend: &'static str,
    step: String,
    wall: f64,
    peak_bytes: u64,
    output: Value,
    /// This machine's GEMM, GFLOP/s, timed right after the run (CPU runs).
    gemm: Option<f64>,
}

/// This machine's GEMM on the shape of a fit's blocks (its dev queries
/// against a chunk of records), from a run's output: the floor a CPU run
/// is held to. Timed right after each run, while nothing else runs: on a
/// shared or virtual machine the speed of the cores moves by half from
/// minute to minute, and one figure for the whole bench held early runs
/// to a later minute's speed.
fn gemm_after(output: &Value) -> f64 {
    let q = &output["queries"];
    let dev = q["dev"].as_u64().or_else(|| q.as_u64()).unwrap_or(1000) as usize;
    let d = output["dim"].as_u64().unwrap_or(384) as usize;
    super::floor::gemm_gflops(dev, 8192, d)
}

/// Runs `nudge ARGS` as a child; returns its exit status, stdout, wall time
/// and peak resident memory.
fn child(args: &[String]) -> Result<(i32, String, String, f64, u64)> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::runtime(format!("cannot find the nudge binary: {e}")))?;
    let t = Instant::now();
    let mut c = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::runtime(format!("cannot start nudge: {e}")))?;
    let (mut out, mut err) = (String::new(), String::new());
    let mut stderr = c.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    c.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .ok();
    err.push_str(&reader.join().unwrap_or_default());
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; `usage` is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = c.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(Error::runtime("wait4 on the benchmark child failed"));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    Ok((
        code,
        out,
        err,
        t.elapsed().as_secs_f64(),
        usage.ru_maxrss as u64 * 1024,
    ))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn run(a: BenchArgs) -> Result<()> {
    log::set_quiet(a.quiet);
    if let Some(path) = &a.html {
        super::fit::check_writable(path)?;
    }
    let tmp = tempfile::Builder::new()
        .prefix("nudge-bench-")
        .tempdir()
        .map_err(|e| Error::runtime(format!("cannot create a temporary directory: {e}")))?;
    let dataset = match &a.dataset {
        Some(d) => d.clone(),
        None => {
            let spec = a.shape.spec();
            log::notice(format!(
                "synthesising {} x {} ({}/{}/{} queries) in {}",
                spec.records,
                spec.dim,
                spec.train,
                spec.dev,
                spec.test,
                tmp.path().display()
            ));
            let dir = tmp.path().join("data");
            // In a child, so that this process stays small: a child's peak
            // memory as Linux reports it starts from its parent's at fork.
            let mut args: Vec<String> =
                vec!["synth".into(), "--out".into(), s(&dir), "--quiet".into()];
            for (flag, v) in [
                ("--records", spec.records as u64),
                ("--dim", spec.dim as u64),
                ("--train", spec.train as u64),
                ("--dev", spec.dev as u64),
                ("--test", spec.test as u64),
                ("--seed", spec.seed),
            ] {
                args.extend([flag.to_string(), v.to_string()]);
            }
            let (code, _, stderr, _, _) = child(&args)?;
            if code != 0 {
                return Err(Error::runtime(format!(
                    "nudge synth failed: {}",
                    stderr.trim()
                )));
            }
            dir
        }
    };
    let corpus_bytes = std::fs::metadata(dataset.join("corpus.npy"))
        .map(|m| m.len())
        .unwrap_or(0);
    use super::device::DeviceArg as Device;
    let mut notes: Vec<String> = Vec::new();
    let backends: Vec<&'static str> = match a.device {
        Device::Cpu => vec!["cpu"],
        Device::Gpu => vec!["gpu"],
        Device::Auto => {
            // As `--device auto` does: a software adapter (lavapipe) is
            // slower than the CPU path and not what a benchmark is after.
            let adapters = nudge::backend::gpu::list_adapters();
            if adapters.iter().any(|x| !x.software) {
                vec!["cpu", "gpu"]
            } else {
                notes.push(if adapters.is_empty() {
                    "gpu: skipped (no adapter)".to_string()
                } else {
                    "gpu: skipped (only a software adapter; --device gpu runs it)".to_string()
                });
                vec!["cpu"]
            }
        }
    };
    // The GPU's own ceiling, measured once on the adapter the GPU runs
    // get: FP32 peak and host-to-device bandwidth.
    let mut gpu_peak: Option<(f64, f64)> = None;
    if backends.contains(&"gpu") {
        log::notice("gpu: measuring the FP32 peak and host-to-device bandwidth ...");
        match super::devices::measure(&nudge::GpuOptions::default()) {
            Ok((gflops, _, h2d)) => gpu_peak = Some((gflops, h2d)),
            Err(e) => notes.push(format!("gpu: peak not measured ({e})")),
        }
    }
    let mut runs: Vec<Run> = Vec::new();
    'backends: for backend in backends {
        let mut steps: Vec<(String, Vec<String>)> = vec![(
            "eval dev".into(),
            vec![
                "eval".into(),
                "--split".into(),
                "dev".into(),
                "--json".into(),
            ],
        )];
        for m in ["nudge-m", "nudge-n"] {
            let out = tmp.path().join(format!("{backend}-{m}.npy"));
            let report = tmp.path().join(format!("{backend}-{m}.json"));
            steps.push((
                format!("fit {m}"),
                vec![
                    "fit".into(),
                    "--method".into(),
                    m.into(),
                    "--out".into(),
                    s(&out),
                    "--report".into(),
                    s(&report),
                    // The same queries as the eval step: the dev split alone.
                    "--no-test".into(),
                ],
            ));
        }
        for (step, mut args) in steps {
            args.extend([
                "--dataset".into(),
                s(&dataset),
                "--device".into(),
                backend.into(),
                "--quiet".into(),
            ]);
            if let (Some(list), "gpu") = (&a.adapters, backend) {
                args.extend(["--adapters".into(), list.clone()]);
            }
            log::notice(format!("{backend}: {step} ..."));
            let mut tries = Vec::new();
            for _ in 0..a.repeat.max(1) {
                let (code, stdout, stderr, wall, peak) = child(&args)?;
                if code != 0 {
                    if backend == "gpu" && a.device == Device::Auto {
                        notes.push(format!(
                            "gpu: skipped ({})",
                            stderr.trim().trim_start_matches("error: ")
                        ));
                        continue 'backends;
                    }
                    return Err(Error::runtime(format!(
                        "{backend} {step} failed: {}",
                        stderr.trim()
                    )));
                }
                // A fit's report is read now: the next run overwrites it.
                let output = if step.starts_with("eval") {
                    serde_json::from_str(&stdout).unwrap_or(Value::Null)
                } else {
                    let report = args
                        .iter()
                        .skip_while(|x| *x != "--report")
                        .nth(1)
                        .cloned()
                        .unwrap_or_default();
                    serde_json::from_slice(&std::fs::read(report).unwrap_or_default())
                        .unwrap_or(Value::Null)
                };
                let gemm = (backend == "cpu").then(|| gemm_after(&output));
                tries.push((wall, peak, output, gemm));
            }
            // The run of median wall time, whole (its phases, memory and
            // GEMM speed with it), not medians taken phase by phase.
            tries.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (wall, peak, output, gemm) = tries.swap_remove(tries.len() / 2);
            runs.push(Run {
                backend,
                step,
                wall,
                peak_bytes: peak,
                output,
                gemm,
            });
        }
    }

    // The bench's one figure for this machine's GEMM: the median of those
    // timed after the CPU runs (each run's floor uses its own).
    let gemm = {
        let mut all: Vec<f64> = runs.iter().filter_map(|r| r.gemm).collect();
        all.sort_by(f64::total_cmp);
        all.get(all.len() / 2).copied()
    };
    let queries_in_scan = |r: &Run| -> f64 {
        let q = &r.output["queries"];
        if r.step.starts_with("eval") {
            q.as_f64().unwrap_or(0.0)
        } else {
            q["dev"].as_f64().unwrap_or(0.0) + q["test"].as_f64().unwrap_or(0.0)
        }
    };
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            let t = &r.output["timings"];
            let scan = t["scan"].as_f64().unwrap_or(f64::NAN);
            let n = r.output["records"].as_f64().unwrap_or(0.0);
            let d = r.output["dim"].as_f64().unwrap_or(0.0);
            let flops = 2.0 * queries_in_scan(r) * n * d;
            let mut row = json!({
                "backend": r.backend,
                "device": r.output["device"],
                "step": r.step,
                "wall_s": r.wall,
                "timings": t,
                "similarity_gflops": flops / scan / 1e9,
                "corpus_gb_per_s": corpus_bytes as f64 / scan / 1e9,
                "peak_mib": r.peak_bytes as f64 / (1 << 20) as f64,
                "gamma": r.output["gamma"],
                // The GEMM-only time of each phase's similarity work.
                "floor": match r.gemm {
                    Some(g) => super::floor::floor(&r.step, &r.output, g),
                    None => Value::Null,
                },
            });
            if r.backend == "gpu" {
                let kernels = t["gpu_kernels"].clone();
                // The similarity kernels: every GEMM variant that ran (the
                // scan's and the moved-set blocks'), work over time.
                let (mut flop, mut ms) = (0.0, 0.0);
                for k in [
                    "gemm_tiled",
                    "gemm_fused",
                    "gemm",
                    "gemm_f16",
                    "gemm_f16_native",
                ] {
                    if let (Some(g), Some(t)) =
                        (kernels[k]["gflops"].as_f64(), kernels[k]["ms"].as_f64())
                    {
                        flop += g * t * 1e6;
                        ms += t;
                    }
                }
                let gemm = (ms > 0.0).then(|| flop / (ms * 1e6));
                row["gpu_kernels"] = kernels;
                row["gpu_host"] = t["gpu_host"].clone();
                if let Some((peak, h2d)) = gpu_peak {
                    row["fp32_peak_gflops"] = json!(peak);
                    row["h2d_gbps"] = json!(h2d);
                    if let Some(g) = gemm {
                        row["similarity_peak_fraction"] = json!(g / peak);
                    }
                }
            }
            if let Some(shares) = r.output["adapters"].as_array() {
                row["adapters"] = per_adapter(shares, queries_in_scan(r), d);
            }
            row
        })
        .collect();
    let mut speedups = serde_json::Map::new();
    for step in ["eval dev", "fit nudge-m", "fit nudge-n"] {
        let wall = |b: &str| {
            runs.iter()
                .find(|r| r.backend == b && r.step == step)
                .map(|r| r.wall)
        };
        if let (Some(c), Some(g)) = (wall("cpu"), wall("gpu")) {
            speedups.insert(step.into(), json!(c / g));
        }
    }
    let result = json!({ "dataset": s(&dataset), "runs": rows, "gpu_speedup": speedups, "cpu_gemm_gflops": gemm, "notes": notes });
    if let Some(path) = &a.html {
        nudge::data::atomic_write(path, nudge::report::bench_html(&result)?.as_bytes())?;
    }
    if a.json {
        println!("{result}");
        return Ok(());
    }
    println!(
        "{:<5} {:<12} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9}",
        "", "step", "wall s", "scan s", "write s", "GFLOP/s", "GB/s", "peak MiB"
    );
    for r in &rows {
        println!(
            "{:<5} {:<12} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>8.2} {:>9.0}",
            r["backend"].as_str().unwrap_or(""),
            r["step"].as_str().unwrap_or(""),
            r["wall_s"].as_f64().unwrap_or(f64::NAN),
            r["timings"]["scan"].as_f64().unwrap_or(f64::NAN),
            r["timings"]["write"].as_f64().unwrap_or(0.0),
            r["similarity_gflops"].as_f64().unwrap_or(f64::NAN),
            r["corpus_gb_per_s"].as_f64().unwrap_or(f64::NAN),
            r["peak_mib"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if gemm.is_some() {
        println!(
            "\nthe floor: each phase's similarity GFLOP at this machine's GEMM, timed right after the run"
        );
        println!(
            "{:<5} {:<12} {:<13} {:>8} {:>9} {:>9} {:>9} {:>8}",
            "", "step", "phase", "GFLOP", "GEMM GF/s", "floor ms", "actual ms", "x floor"
        );
        for r in rows.iter().filter(|r| r["floor"].is_object()) {
            for (phase, f) in r["floor"].as_object().into_iter().flatten() {
                if f["gflop"].as_f64().unwrap_or(0.0) <= 0.0 {
                    continue; // e.g. no test queries: nothing to compare
                }
                let ms = |v: &Value| v.as_f64().map_or(f64::NAN, |x| x * 1e3);
                println!(
                    "{:<5} {:<12} {:<13} {:>8.2} {:>9.1} {:>9.1} {:>9.1} {:>8.2}",
                    r["backend"].as_str().unwrap_or(""),
                    r["step"].as_str().unwrap_or(""),
                    phase,
                    f["gflop"].as_f64().unwrap_or(f64::NAN),
                    f["gemm_gflops"].as_f64().unwrap_or(f64::NAN),
                    ms(&f["floor_s"]),
                    ms(&f["actual_s"]),
                    f["x_floor"].as_f64().unwrap_or(f64::NAN),
                );
            }
        }
    }
    for (step, x) in &speedups {
        println!(
            "gpu speedup, {step}: {:.2}x",
            x.as_f64().unwrap_or(f64::NAN)
        );
    }
    for r in rows.iter().filter(|r| r["backend"] == "gpu") {
        let Some(k) = r["gpu_kernels"].as_object() else {
            continue;
        };
        let parts: Vec<String> = k
            .iter()
            .map(|(name, v)| {
                let ms = v["ms"].as_f64().unwrap_or(f64::NAN);
                match v["gflops"].as_f64() {
                    Some(g) => format!("{name} {ms:.1} ms ({g:.1} GFLOP/s)"),
                    None => format!("{name} {ms:.1} ms"),
                }
            })
            .collect();
        println!(
            "gpu kernels, {}: {}",
            r["step"].as_str().unwrap_or(""),
            parts.join(", ")
        );
    }
    for r in rows.iter().filter(|r| r["adapters"].is_array()) {
        for (i, x) in r["adapters"].as_array().into_iter().flatten().enumerate() {
            println!(
                "gpu adapter {i}, {}: {} ({} rows): {:.1} ms of kernels, similarity {:.1} GFLOP/s",
                r["step"].as_str().unwrap_or(""),
                x["device"].as_str().unwrap_or(""),
                x["rows"].as_u64().unwrap_or(0),
                x["gpu_ms"].as_f64().unwrap_or(f64::NAN),
                x["similarity_gflops"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    if let Some((peak, h2d)) = gpu_peak {
        println!("gpu fp32 peak (measured): {peak:.1} GFLOP/s; host to device {h2d:.2} GB/s");
    }
    for n in &notes {
        println!("{n}");
    }
    Ok(())
}

/// Each adapter's share of a pass spread over several (`eval --json`'s
/// `adapters`): its rows, its GPU kernel time, and its similarity
/// throughput (the work of its rows over its kernels' time).
fn per_adapter(shares: &[Value], queries: f64, dim: f64) -> Value {
    let list: Vec<Value> = shares
        .iter()
        .map(|x| {
            let rows = match x["rows"].as_array().map(|r| r.as_slice()) {
                Some([a, b]) => b.as_u64().unwrap_or(0) - a.as_u64().unwrap_or(0),
                _ => 0,
            };
            let ms: f64 = x["gpu_kernels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, k)| k["ms"].as_f64())
                .sum();
            let flop = 2.0 * queries * rows as f64 * dim;
            json!({
                "device": x["device"],
                "rows": rows,
                "gpu_ms": ms,
                "similarity_gflops": (ms > 0.0).then(|| flop / (ms * 1e6)),
            })
        })
        .collect();
    Value::Array(list)
}
