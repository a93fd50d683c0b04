//! The measurements (`src/backend/gpu/{measure,profile}.rs`): the FMA
//! probe against its host twin, and per-kernel timestamps that account for
//! the dispatches that ran.

use super::{Rng, random, unit_rows};
use crate::common::backends::{backend_tests, every_gpu, scan_devices};
use nudge::backend::gpu::fma_peak_twin;
use nudge::backend::{Backend, Rows, ScanSpec};

backend_tests! {
    fn fma_probe_matches_its_twin(g in every_gpu()) {
        // a = b = 1/2: every step exact, so the twin agrees bit for bit; a
        // second pair of constants makes a wrong recurrence visible.
        for (iters, a, b) in [(3u32, 0.5f32, 0.5f32), (5, 0.25, 2.0)] {
            let (out, ms, _) = g.fma_peak_run(2, iters, a, b).unwrap();
            assert_eq!(out.len(), 2 * 256);
            assert!(ms >= 0.0);
            for (i, v) in out.iter().enumerate() {
                assert_eq!(*v, fma_peak_twin(i as u32, iters, a, b), "invocation {i}");
            }
        }
    }

    fn host_timings_count_each_chunk_and_the_gaps_between(g in scan_devices()) {
        let mut rng = Rng::new(10);
        let q = random(&mut rng, 3, 20);
        let corpus = unit_rows(random(&mut rng, 60, 20));
        let calls = |name: &str| {
            g.host_timings().iter().find(|k| k.name == name).map_or(0, |k| k.calls)
        };
        let names = ["wait_slot", "fill_upload", "submit", "host_rows", "between_pushes"];
        let before: Vec<u64> = names.iter().map(|n| calls(n)).collect();
        let mut scan = g
            .scan(ScanSpec { queries: &q, k: 2, rows: Rows::Normalize, skip: None })
            .unwrap();
        // Three chunks: two gaps between them, whose time is the caller's.
        for (i, rows) in corpus.data.chunks(20 * 20).enumerate() {
            scan.push(rows, i * 20).unwrap();
        }
        scan.finish().unwrap();
        let added: Vec<u64> = names.iter().zip(&before).map(|(n, b)| calls(n) - b).collect();
        // Tests share the device (and so its totals): at least this scan's.
        for (name, &n) in names.iter().zip(&added).take(3) {
            assert!(n >= 3, "{name}: {n} calls for 3 chunks");
        }
        if g.host_rows() {
            assert!(added[3] >= 3, "host_rows: {} calls for 3 chunks", added[3]);
        }
        assert!(added[4] >= 2, "between_pushes: {} calls for 3 chunks", added[4]);
        assert!(g.host_timings().iter().all(|k| k.ms >= 0.0 && k.ms.is_finite()));
    }

    fn kernel_timings_count_the_dispatches(g in every_gpu()) {
        if !g.timestamps() {
            assert!(g.kernel_timings().unwrap().is_empty());
            return;
        }
        let mut rng = Rng::new(9);
        let q = random(&mut rng, 3, 20);
        let corpus = unit_rows(random(&mut rng, 50, 20));
        let before = g.kernel_timings().unwrap();
        let calls = |t: &[nudge::backend::gpu::KernelTime], name: &str| {
            t.iter().find(|k| k.name == name).map_or(0, |k| k.calls)
        };
        let flops = |t: &[nudge::backend::gpu::KernelTime]| {
            t.iter().map(|k| k.flops).sum::<f64>()
        };
        let mut scan = g
            .scan(ScanSpec { queries: &q, k: 2, rows: Rows::AsStored, skip: None })
            .unwrap();
        scan.push(&corpus.data, 0).unwrap();
        scan.finish().unwrap();
        let after = g.kernel_timings().unwrap();
        // Tests share the device: at least this scan's dispatches were added
        // (the rows' check among them, unless the host does it).
        if !g.host_rows() {
            assert!(calls(&after, "normalize") > calls(&before, "normalize"));
        }
        assert!(calls(&after, "topk_merge") > calls(&before, "topk_merge"));
        // The GEMM counts its work (2 q n d at least, padding aside).
        assert!(flops(&after) - flops(&before) >= 2.0 * 3.0 * 50.0 * 20.0);
        assert!(after.iter().all(|k| k.ms >= 0.0 && k.ms.is_finite()));
        assert!(g.fp32_peak().unwrap().gflops > 0.0);
        assert!(g.h2d_gbps(1 << 16).unwrap() > 0.0);
    }
}
