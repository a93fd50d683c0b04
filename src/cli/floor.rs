//! The arithmetic floor of a run: how many GFLOP of similarity each phase
//! had to do, and how long this machine's GEMM (the one the CPU path runs,
//! timed here in the same process) takes for them. `nudge bench` prints it
//! beside the measured phase times, so the distance to the floor is there
//! for every user to see, on their machine and their data.

use std::time::Instant;

use serde_json::{Value, json};

use nudge::backend::cpu::gemm_nt;

/// GFLOP/s of `gemm_nt` on an `m x k` times `k x n` problem (median of a few
/// runs after a warm-up), with inputs of the shape the fit's blocks have.
pub fn gemm_gflops(m: usize, n: usize, k: usize) -> f64 {
    let (m, n, k) = (m.max(1), n.max(1), k.max(1));
    // Values in [-0.5, 0.5): finite, no denormals.
    let fill = |len: usize, seed: u32| -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / (1u32 << 24) as f32
                    - 0.5
            })
            .collect()
    };
    let (a, b) = (fill(m * k, 1), fill(n * k, 2));
    let mut out = vec![0.0f32; m * n];
    gemm_nt(&a, &b, m, n, k, &mut out);
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            gemm_nt(&a, &b, m, n, k, &mut out);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    2.0 * (m * n * k) as f64 / times[times.len() / 2] / 1e9
}

/// The similarity GFLOP each phase of a run had to do, from its report
/// (`nudge fit --report`, or `eval --json` with `step` "eval"): the scan of
/// the static records for the dev (and test) queries; S0 and S1 over the
/// moved records for the gamma search; the test queries against the moved
/// records before and after the update.
pub fn phase_gflop(step: &str, report: &Value) -> Vec<(&'static str, f64)> {
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (n, d) = (num(&report["records"]), num(&report["dim"]));
    if step.starts_with("eval") {
        return vec![("scan", 2.0 * num(&report["queries"]) * n * d / 1e9)];
    }
    let q = &report["queries"];
    let (dev, test) = (num(&q["dev"]), num(&q["test"]));
    let moved = num(&report["moved_records"]);
    vec![
        ("scan", 2.0 * (dev + test) * (n - moved) * d / 1e9),
        ("gamma search", 4.0 * dev * moved * d / 1e9),
        ("evaluate", 4.0 * test * moved * d / 1e9),
    ]
}

/// Per phase: its GFLOP, the GEMM speed it is held to (`gflops`), the
/// GEMM-only seconds at that speed, the measured seconds (from the
/// report's timings) and their ratio.
pub fn floor(step: &str, report: &Value, gflops: f64) -> Value {
    let mut out = serde_json::Map::new();
    for (phase, g) in phase_gflop(step, report) {
        let floor_s = g / gflops;
        let actual = report["timings"][phase].as_f64();
        out.insert(
            phase.into(),
            json!({
                "gflop": g,
                "gemm_gflops": gflops,
                "floor_s": floor_s,
                "actual_s": actual,
                "x_floor": actual.map(|a| if floor_s > 0.0 { a / floor_s } else { f64::NAN }),
            }),
        );
    }
    Value::Object(out)
}
