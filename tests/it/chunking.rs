//! Streaming in pieces gives the same fit as one piece: moved-set blocks
//! smaller than the moved set, for both methods, on every backend (bit for
//! bit: a block computes each column the same way whatever its width).

use crate::common::backends::backend_tests;
use crate::common::*;
use nudge::{DevScores, FitOptions, Method};

backend_tests! {
    fn moved_set_in_many_blocks_equals_one_block(backend) {
        for name in ["small", "rawnorms-stringids"] {
            let l = load(&fixture(name));
            for method in [Method::NudgeM, Method::NudgeN] {
                let mut whole = FitOptions::new(method);
                whole.block_rows = Some(1 << 20);
                let (a, rows_a) = fit_and_write(backend, &l, &whole);
                assert!(a.moved.len() > 100, "fixture too small to chunk");
                let mut pieces = FitOptions::new(method);
                pieces.block_rows = Some(37); // many blocks, the last one ragged
                let (b, rows_b) = fit_and_write(backend, &l, &pieces);
                assert_eq!(a.gamma, b.gamma, "{name} {method:?}");
                assert_eq!(rows_a, rows_b, "{name} {method:?}: outputs differ");
                assert_eq!(a.after, b.after);
                match (&a.dev_scores, &b.dev_scores) {
                    (DevScores::Grid(x), DevScores::Grid(y)) => {
                        let sx: Vec<f64> = x.iter().map(|p| p.score).collect();
                        let sy: Vec<f64> = y.iter().map(|p| p.score).collect();
                        assert_eq!(sx, sy);
                    }
                    (
                        DevScores::Intervals {
                            best_count: x,
                            intervals: ix,
                            ..
                        },
                        DevScores::Intervals {
                            best_count: y,
                            intervals: iy,
                            ..
                        },
                    ) => assert_eq!((x, ix), (y, iy)),
                    _ => panic!("dev scores of different kinds"),
                }
            }
        }
    }
}
