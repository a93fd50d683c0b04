//! The `nudge` binary on a GPU: `fit --device gpu` names the backend and
//! adapter, `auto` picks the CPU for small jobs and a hardware adapter (never
//! a software one unless named) for large ones, `devices` lists adapters.

use crate::common::backends::gpu;
use crate::common::{bin, fixture};
use nudge::backend::device::SMALL_JOB_FLOPS;
use nudge::backend::gpu::list_adapters;

fn nudge_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        // Hermetic and quick: no tile tuning, nothing in the user's cache.
        .env("NUDGE_GPU_TUNE", "0")
        .output()
        .expect("run nudge")
}

/// `nudge_cli`, failing the test (with nudge's stderr) unless it succeeds.
fn nudge_ok(args: &[&str]) -> std::process::Output {
    let out = nudge_cli(args);
    assert!(
        out.status.success(),
        "nudge {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn cli_fit_on_the_gpu_names_the_backend_and_adapter() {
    if gpu().is_none() {
        return;
    }
    let adapter = list_adapters().remove(0).name;
    let small = fixture("small");
    let tmp = tempfile::tempdir().unwrap();
    for precision in ["f32", "f16"] {
        let report = tmp.path().join(format!("report-{precision}.json"));
        nudge_ok(&[
            "fit",
            "--dataset",
            small.to_str().unwrap(),
            "--method",
            "nudge-n",
            "--report",
            report.to_str().unwrap(),
            "--device",
            "gpu",
            "--gpu-precision",
            precision,
            "--adapter",
            &adapter[..adapter.len().min(4)],
        ]);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(r["backend"], "gpu");
        assert!(
            r["device"].as_str().unwrap().contains(&adapter),
            "{}",
            r["device"]
        );
        assert_eq!(r["gamma"], 0.1);
    }
    // `auto` runs a small job on the CPU without looking for an adapter
    // (starting a GPU takes longer than the job).
    let report = tmp.path().join("report-auto.json");
    nudge_ok(&[
        "fit",
        "--dataset",
        small.to_str().unwrap(),
        "--method",
        "nudge-m",
        "--report",
        report.to_str().unwrap(),
    ]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["backend"], "cpu");
    // A job above `SMALL_JOB_FLOPS` (1000 test queries x 30000 records x
    // 384: 23 GFLOP) takes a hardware adapter, never a software one unless
    // it is named. (This once expected the GPU for the small job above:
    // lavapipe, the only adapter it had run on, never got that far.)
    let big = tmp.path().join("big");
    nudge_ok(&[
        "synth",
        "--out",
        big.to_str().unwrap(),
        "--records",
        "30000",
        "--dim",
        "384",
        "--train",
        "10",
        "--dev",
        "10",
        "--test",
        "1000",
        "--quiet",
    ]);
    let out = nudge_ok(&["eval", "--dataset", big.to_str().unwrap(), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all_software = list_adapters().iter().all(|a| a.software);
    const { assert!(2.0 * 1000.0 * 30000.0 * 384.0 > SMALL_JOB_FLOPS) };
    assert_eq!(r["backend"], if all_software { "cpu" } else { "gpu" });
    // An adapter filter that matches nothing is a usage error (exit 2), also
    // under --device auto: the user asked for something that is not there.
    let out = nudge_cli(&[
        "eval",
        "--dataset",
        small.to_str().unwrap(),
        "--device",
        "auto",
        "--adapter",
        "no such adapter 1234",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cli_devices_lists_the_adapter() {
    if gpu().is_none() {
        return;
    }
    let out = nudge_cli(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let first = &list_adapters()[0];
    assert!(text.contains(&first.name), "{text}");
    for field in [
        "backend",
        "device type",
        "max storage bind",
        "shader f16",
        "subgroups",
    ] {
        assert!(text.contains(field), "missing {field}: {text}");
    }
}
