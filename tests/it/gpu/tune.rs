//! The tile autotuner (`src/backend/gpu/tune.rs`): every variant against
//! the CPU twin, the cache file (corrupt, stale, keyed by d and precision),
//! and a cached winner used by a scan without timing anything. Shapes are
//! tiny: on lavapipe each variant's compile dominates.

use super::{DOT_TOL, Rng, assert_topk_close, random, score_tol, unit_rows};
use crate::common::backends::gpu;
use nudge::backend::gpu::tiled::Tile;
use nudge::backend::gpu::tune::{
    self, DIRECT_VARIANTS, Outcome, Source, TuneOptions, TuneReport, VARIANTS, VERSION, lookup,
    store,
};
use nudge::backend::{Backend, Rows, ScanSpec, cpu};
use nudge::{Cpu, Gpu, GpuOptions};

/// Tiny timing runs: the tests check what is chosen and cached, not speed.
fn quick(cache: &std::path::Path) -> TuneOptions {
    TuneOptions {
        cache: Some(cache.to_path_buf()),
        timing_rows: Some(256),
        reps: Some(1),
    }
}

/// Dispatches timed by the autotuner so far.
fn tune_calls(g: &Gpu) -> u64 {
    g.kernel_timings()
        .unwrap()
        .iter()
        .filter(|t| t.name == "gemm_tune")
        .map(|t| t.calls)
        .sum()
}

#[test]
fn every_variant_equals_the_cpu_twin() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(11);
    // d not a multiple of 4 nor of a k-tile; rows past a tile boundary.
    for (m, n, d) in [(7, 150, 37), (3, 5, 5), (130, 70, 20)] {
        let a = random(&mut rng, m, d);
        let b = random(&mut rng, n, d);
        let mut want = vec![0.0f32; m * n];
        cpu::gemm_nt(&a.data, &b.data, m, n, d, &mut want);
        let mut first: Option<(Tile, Vec<f32>)> = None;
        // The direct shapes too: the autotuner tries them on software
        // adapters, and any adapter can run them.
        for t in VARIANTS.into_iter().chain(DIRECT_VARIANTS) {
            assert!(t.valid(), "{t}");
            if !t.fits(g.limits()) {
                continue;
            }
            let got = g.tiled_similarity(t, &a, &b).unwrap();
            assert_eq!((got.rows, got.cols), (m, n));
            for i in 0..m {
                for j in 0..n {
                    let mag: f32 = (0..d)
                        .map(|k| (a.data[i * d + k] * b.data[j * d + k]).abs())
                        .sum();
                    let (x, y) = (got.data[i * n + j], want[i * n + j]);
                    assert!(
                        (x - y).abs() <= DOT_TOL * mag,
                        "tile {t}, {m}x{n}x{d} ({i}, {j}): {x} vs the CPU's {y}"
                    );
                }
            }
            // Every tile sums in ascending k: the same bits whatever the
            // shape, so a tuned scan returns what the default one does.
            match &first {
                None => first = Some((t, got.data)),
                Some((t0, bits)) => assert!(
                    bits.iter()
                        .zip(&got.data)
                        .all(|(p, q)| p.to_bits() == q.to_bits()),
                    "tile {t} and tile {t0} differ on {m}x{n}x{d}"
                ),
            }
        }
        assert!(first.is_some(), "no variant fits the adapter");
    }
}

#[test]
fn the_cache_key_distinguishes_d_and_precision() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("tune.json");
    let limits = g.limits();
    let mut w = Vec::new();
    let k384 = g.tune_key(384, 1000);
    assert_eq!(k384.queries, 1024);
    assert_eq!(k384.nudge, VERSION);
    let k768 = g.tune_key(768, 1000);
    let f16 = tune::TuneKey {
        precision: "f16".into(),
        ..k384.clone()
    };
    // Another set of candidates (another build's tiles or template).
    assert_eq!(k384.candidates.len(), 16);
    let other_build = tune::TuneKey {
        candidates: "0".repeat(16),
        ..k384.clone()
    };
    store(&path, &k384, VARIANTS[3], Some(1.0), &mut w);
    store(&path, &k768, VARIANTS[5], None, &mut w);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(lookup(&path, &k384, limits, &mut w), Some(VARIANTS[3]));
    assert_eq!(lookup(&path, &k768, limits, &mut w), Some(VARIANTS[5]));
    assert_eq!(lookup(&path, &f16, limits, &mut w), None);
    assert_eq!(lookup(&path, &other_build, limits, &mut w), None);
    // The same bucket shares a winner; another does not.
    assert_eq!(
        lookup(&path, &g.tune_key(384, 900), limits, &mut w),
        Some(VARIANTS[3])
    );
    assert_eq!(lookup(&path, &g.tune_key(384, 100), limits, &mut w), None);
    // Rewriting one key keeps the others.
    store(&path, &k384, VARIANTS[6], None, &mut w);
    assert_eq!(lookup(&path, &k384, limits, &mut w), Some(VARIANTS[6]));
    assert_eq!(lookup(&path, &k768, limits, &mut w), Some(VARIANTS[5]));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_stale_or_invalid_cache_is_ignored_with_a_warning() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    let key = g.tune_key(8, 3);
    let tile = serde_json::json!({"bm": 32, "bn": 32, "tm": 4, "tn": 4, "bk": 16});
    let mut old_key = key_json(&key);
    old_key.insert("nudge".into(), "0.0.0-old".into());
    let stale = serde_json::json!({
        "nudge": "0.0.0-old",
        "entries": [{"key": old_key, "tile": tile, "gflops": null}],
    });
    std::fs::write(&path, stale.to_string()).unwrap();
    let mut w = Vec::new();
    assert_eq!(lookup(&path, &key, g.limits(), &mut w), None);
    assert!(
        w.len() == 1 && w[0].contains("stale") && w[0].contains("0.0.0-old"),
        "{w:?}"
    );
    // Replaced whole by the next store, in this version's form.
    let mut w = Vec::new();
    store(&path, &key, VARIANTS[6], None, &mut w);
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(f["nudge"], VERSION);
    assert_eq!(f["entries"].as_array().unwrap().len(), 1);
    assert_eq!(lookup(&path, &key, g.limits(), &mut w), Some(VARIANTS[6]));
    assert!(w.is_empty(), "{w:?}");
    // A current file naming a shape the template cannot build.
    let bad = Tile {
        tm: 6,
        ..Tile::LARGE
    };
    store(&path, &key, bad, None, &mut w);
    assert_eq!(lookup(&path, &key, g.limits(), &mut w), None);
    assert!(w.len() == 1 && w[0].contains("cannot run"), "{w:?}");
}

/// `key` as the cache file spells it, to build files by hand.
fn key_json(key: &tune::TuneKey) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(m) = serde_json::to_value(key).unwrap() else {
        unreachable!()
    };
    m
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_warning_then_replaced_and_used() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    std::fs::write(&path, b"{\"nudge\": \"tru").unwrap();
    let opts = quick(&path);
    let r: TuneReport = g.autotune(8, 3, &opts, false).unwrap();
    assert!(
        r.warnings.len() == 1 && r.warnings[0].contains("corrupt"),
        "{:?}",
        r.warnings
    );
    if !g.timestamps() {
        // Nothing timed, nothing cached: the vendor default.
        assert_eq!(r.source, Source::Default);
        assert!(r.trials.is_empty());
        return;
    }
    assert_eq!(r.source, Source::Timed);
    assert_eq!(r.trials.len(), g.tune_variants().len());
    // Every variant that fits was checked against the CPU and timed; the
    // winner is the fastest of them.
    for t in &r.trials {
        match &t.outcome {
            Outcome::Timed { ms, gflops } => assert!(*ms > 0.0 && *gflops > 0.0, "{t:?}"),
            other => assert!(!t.tile.fits(g.limits()), "{}: {other:?}", t.tile),
        }
    }
    let fastest = r
        .trials
        .iter()
        .filter_map(|t| match t.outcome {
            Outcome::Timed { ms, .. } => Some((ms, t.tile)),
            _ => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .1;
    assert_eq!(r.tile, fastest);
    // The file was replaced by one that holds the winner...
    let mut w = Vec::new();
    assert_eq!(lookup(&path, &r.key, g.limits(), &mut w), Some(r.tile));
    assert!(w.is_empty(), "{w:?}");
    // ...which the next call takes without timing anything.
    let before = tune_calls(g);
    let again = g.autotune(8, 3, &opts, false).unwrap();
    assert_eq!((again.source, again.tile), (Source::Cached, r.tile));
    assert!(again.trials.is_empty() && again.warnings.is_empty());
    assert_eq!(tune_calls(g), before, "a cached winner was timed again");
    // Forced (`nudge devices --tune`), it times again.
    let forced = g.autotune(8, 3, &opts, true).unwrap();
    assert_eq!(forced.source, Source::Timed);
    assert!(tune_calls(g) > before);
}

#[test]
fn a_scan_runs_the_cached_winner_without_timing() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    let g = Gpu::new(&GpuOptions {
        tune: Some(quick(&path)),
        ..Default::default()
    })
    .unwrap();
    // A winner other than the default, cached for this job's key.
    let tile = VARIANTS[6];
    assert_ne!(tile, g.default_tile());
    let (nq, n, d, k) = (5, 300, 24, 7);
    let mut w = Vec::new();
    store(&path, &g.tune_key(d, nq), tile, None, &mut w);
    assert!(w.is_empty(), "{w:?}");
    let mut rng = Rng::new(5);
    let q = random(&mut rng, nq, d);
    let corpus = unit_rows(random(&mut rng, n, d));
    let mut tops = Vec::new();
    for b in [&g as &dyn Backend, &Cpu] {
        // Twice on the GPU: the second scan finds the shape chosen.
        for _ in 0..if b.name() == "gpu" { 2 } else { 1 } {
            let mut scan = b
                .scan(ScanSpec {
                    queries: &q,
                    k,
                    rows: Rows::AsStored,
                    skip: None,
                })
                .unwrap();
            scan.push(&corpus.data[..130 * d], 0).unwrap();
            scan.push(&corpus.data[130 * d..], 130).unwrap();
            tops.push(scan.finish().unwrap().0);
        }
    }
    let reports = g.tune_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((reports[0].source, reports[0].tile), (Source::Cached, tile));
    assert_eq!(tune_calls(&g), 0);
    let (cpu_top, gpu_tops) = tops.split_last().unwrap();
    for t in gpu_tops {
        assert_topk_close(t, cpu_top, score_tol(&q), "tuned scan");
    }
    assert!((0..nq).all(|i| gpu_tops[0].rows(i) == gpu_tops[1].rows(i)));
}

#[test]
fn without_timestamps_the_vendor_default_is_used_and_nothing_cached() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    let g = Gpu::new(&GpuOptions {
        timestamps: false,
        ..Default::default()
    })
    .unwrap();
    let r = g.autotune(8, 3, &quick(&path), false).unwrap();
    assert_eq!(r.source, Source::Default);
    assert!(r.trials.is_empty() && r.warnings.is_empty());
    assert!(r.tile.fits(g.limits()));
    if nudge::backend::gpu::list_adapters()[0].software {
        // The direct tile on a software adapter, as untuned scans run.
        assert_eq!(r.tile, Tile::DIRECT);
        assert_eq!(g.default_tile(), Tile::DIRECT);
    }
    assert!(!path.exists());
}
