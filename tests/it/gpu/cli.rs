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
fn cli_gpu_opened_during_the_read_keeps_each_error_and_its_exit_code() {
    // `--device gpu` opens the adapter on a thread of its own while the
    // dataset is read; each failure must still come out as itself.
    if gpu().is_none() {
        return;
    }
    let adapter = list_adapters().remove(0).name;
    let small = fixture("small");
    let tmp = tempfile::tempdir().unwrap();
    // A bad dataset (a judgement line with two columns) under a good
    // adapter: the data error (exit 3) naming the file and line, after
    // the opening thread is done with the driver, not a crash.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(bad.join("qrels")).unwrap();
    for f in [
        "corpus.npy",
        "corpus_ids.txt",
        "queries.npy",
        "query_ids.txt",
        "qrels/dev.tsv",
    ] {
        std::fs::copy(small.join(f), bad.join(f)).unwrap();
    }
    let train = std::fs::read_to_string(small.join("qrels/train.tsv")).unwrap();
    let mut lines: Vec<&str> = train.lines().collect();
    lines[2] = "q-broken\t1";
    std::fs::write(bad.join("qrels/train.tsv"), lines.join("\n") + "\n").unwrap();
    for cmd in ["fit", "map"] {
        let out = tmp.path().join(format!("out-{cmd}"));
        let out = out.to_str().unwrap();
        let mut args = vec![cmd, "--dataset", bad.to_str().unwrap(), "--device", "gpu"];
        args.extend(["--adapter", &adapter[..adapter.len().min(4)]]);
        args.extend(match cmd {
            "fit" => ["--method", "nudge-m", "--report", out],
            _ => ["--out", out, "--k", "10"],
        });
        let out = nudge_cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{cmd}: {err}");
        assert!(err.contains("train.tsv:3:"), "{cmd}: {err}");
    }
    // A good dataset under an adapter that is not there: the usage error
    // (exit 2) from the opening thread, for fit and eval.
    let report = tmp.path().join("r.json");
    for cmd in ["fit", "eval"] {
        let mut args = vec![cmd, "--dataset", small.to_str().unwrap(), "--device", "gpu"];
        args.extend(["--adapter", "no such adapter 1234"]);
        if cmd == "fit" {
            args.extend(["--method", "nudge-m", "--report", report.to_str().unwrap()]);
        }
        let out = nudge_cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("no such adapter 1234"), "{cmd}: {err}");
    }
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

#[test]
fn cli_eval_on_the_gpu_tunes_once_then_takes_the_cached_tile() {
    if gpu().is_none() {
        return;
    }
    let small = fixture("small");
    let cache = tempfile::tempdir().unwrap();
    let eval = || {
        let out = std::process::Command::new(bin())
            .args([
                "eval",
                "--dataset",
                small.to_str().unwrap(),
                "--device",
                "gpu",
                "--json",
            ])
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("XDG_CACHE_HOME", cache.path())
            .env_remove("NUDGE_GPU_TUNE")
            .output()
            .expect("run nudge");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (r, err)
    };
    let file = cache.path().join("nudge").join("tune.json");
    let (first, err) = eval();
    let tiles = first["timings"]["gpu_tile"]
        .as_object()
        .expect("gpu_tile")
        .clone();
    assert_eq!(tiles.len(), 1, "{tiles:?}");
    let choice = tiles.values().next().unwrap().as_str().unwrap().to_string();
    assert!(err.contains("GPU tile for d="), "{err}");
    if !choice.ends_with("(tuned)") {
        // No timestamps: the default, nothing cached.
        assert!(choice.ends_with("(default)") && !file.exists(), "{choice}");
        return;
    }
    assert!(file.exists());
    // The second job takes the winner from the cache; a corrupt cache is
    // a warning, not a failure, and is replaced by a tuned one.
    let (second, _) = eval();
    let cached = choice.replace("(tuned)", "(cached)");
    let got = second["timings"]["gpu_tile"].as_object().unwrap();
    assert!(
        got.keys().eq(tiles.keys()) && got.values().all(|v| *v == cached),
        "{got:?}"
    );
    assert!(second["timings"]["gpu_kernels"].get("gemm_tune").is_none());
    // The same answers with the tuned tile as before.
    for (k, v) in first.as_object().unwrap() {
        if k.contains('@') {
            assert_eq!(&second[k], v, "{k}");
        }
    }
    std::fs::write(&file, "not json").unwrap();
    let (third, err) = eval();
    assert!(err.contains("warning:") && err.contains("corrupt"), "{err}");
    let again = third["timings"]["gpu_tile"].as_object().unwrap();
    assert!(
        again
            .values()
            .all(|v| v.as_str().unwrap().ends_with("(tuned)")),
        "{again:?}"
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("\"entries\"")
    );
}
