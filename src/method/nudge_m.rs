//! NUDGE-M: move each record by gamma along its normalised gradient, with
//! gamma chosen exactly by an interval sweep (DESIGN §1).
//!
//! For a dev query q and one of its answers x, every score is affine in gamma
//! (`s_j + gamma t_j`), so the set of gamma where x ranks first is an interval
//! `[low, high)`. The backend computes the intervals (`Backend::nudge_m_bounds`
//! over moved records, [`static_bounds`] against the best static record);
//! [`sweep`] picks the gamma covered by the most intervals.

/// A (dev query, answer) pair for the NUDGE-M interval search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Row of the query in the dev matrix.
    pub query: u32,
    /// Absolute record row of the answer x.
    pub record: u32,
    /// q . d_x (for a moved x, its entry of the block's S0)
    pub s: f32,
    /// q . Ghat_x (for a moved x, its entry of the block's slopes; 0 for a
    /// record that does not move)
    pub t: f32,
}

/// Running interval of one pair: x is ranked first for gamma in [low, high).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Gamma from which x ranks first.
    pub low: f32,
    /// Gamma from which x no longer ranks first.
    pub high: f32,
    /// x can never rank first (a competitor with the same slope scores higher).
    pub dropped: bool,
}

impl Bounds {
    /// No constraint yet: `[0, LARGE)`.
    pub const OPEN: Bounds = Bounds {
        low: 0.0,
        high: LARGE,
        dropped: false,
    };
}

/// Added to score-slope differences before dividing, as the reference does.
pub const EPS: f32 = 1e-8;
/// The reference's "no upper bound".
pub const LARGE: f32 = 1e8;

/// Tightens `b` with one competitor `j` of the pair (scores `s_j`, slope `t_j`).
/// This is the per-element rule every backend's bounds kernel applies.
#[inline]
pub fn tighten(b: &mut Bounds, s_x: f32, t_x: f32, s_j: f32, t_j: f32) {
    let g = t_x - t_j;
    let s = s_j - s_x;
    if g > 0.0 {
        b.low = b.low.max(s / (g + EPS));
    } else if g < 0.0 {
        b.high = b.high.min(s / (g + EPS));
    } else if s > 0.0 {
        b.dropped = true;
    }
}

/// Bounds of a pair against the static records, of which only the best
/// (`top1`, with its row) matters: all static records have slope 0, so the
/// highest static score gives the tightest bound.
pub fn static_bounds(pair: &Pair, top1: Option<(f32, u32)>) -> Bounds {
    let mut b = Bounds::OPEN;
    if let Some((s_j, row)) = top1
        && row != pair.record
    {
        tighten(&mut b, pair.s, pair.t, s_j, 0.0);
    }
    b
}

/// The interval of a pair once every competitor has been seen, or `None` if
/// x can never rank first.
pub fn finish(b: Bounds) -> Option<(f32, f32)> {
    let low = b.low.max(0.0);
    (!b.dropped && b.high >= low).then_some((low, b.high))
}

/// Whether `b` already gives no interval ([`finish`] is `None`) and so
/// never will: [`tighten`] only raises `low`, lowers `high` and sets
/// `dropped`. A backend may stop tightening such a pair (or leave it for
/// later blocks) and keep whatever bounds it has at that point; its
/// interval is `None` either way. Most pairs end this way (a query has
/// one best answer), most of them after a few competitors.
pub fn hopeless(b: &Bounds) -> bool {
    finish(*b).is_none()
}

/// The gamma covered by the most intervals: the lowest point where the count
/// of open intervals reaches its maximum. Lows sort before highs at equal
/// values; no interval (or none above zero) gives 0. Mirrors the reference's
/// `_get_point_of_most_intersection` exactly, including its float32 values.
pub fn sweep(intervals: &[(f32, f32)]) -> (f32, usize) {
    let mut lows: Vec<f32> = intervals.iter().map(|i| i.0).collect();
    let mut highs: Vec<f32> = intervals.iter().map(|i| i.1).collect();
    if lows.is_empty() {
        return (0.0, 0);
    }
    lows.sort_by(f32::total_cmp);
    highs.sort_by(f32::total_cmp);
    let mut events: Vec<(f32, i64)> = Vec::with_capacity(lows.len() * 2);
    let (mut li, mut hi) = (0, 0);
    while hi < highs.len() {
        if li == lows.len() || highs[hi] < lows[li] {
            events.push((highs[hi], -1));
            hi += 1;
        } else {
            events.push((lows[li], 1));
            li += 1;
        }
    }
    let (mut best, mut best_count, mut count, mut j) = (0.0f32, 0i64, 0i64, 0);
    while j < events.len() {
        let v = events[j].0;
        while j < events.len() && events[j].0 == v {
            count += events[j].1;
            j += 1;
        }
        if count > best_count {
            best_count = count;
            best = v;
        }
    }
    (best, best_count.max(0) as usize)
}

/// The NUDGE-M update of one record: `d + gamma * G/|G|` (unchanged if G = 0).
pub fn shift(d: &mut [f32], g: &[f32], gamma: f32) {
    let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return;
    }
    for (di, gi) in d.iter_mut().zip(g) {
        *di += gamma * (gi / norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_of_nothing_is_zero() {
        assert_eq!(sweep(&[]), (0.0, 0));
    }

    #[test]
    fn sweep_of_one_interval_is_its_low() {
        assert_eq!(sweep(&[(0.25, 0.5)]), (0.25, 1));
        assert_eq!(sweep(&[(0.0, 1e8)]), (0.0, 1));
    }

    #[test]
    fn sweep_finds_the_deepest_overlap() {
        // [0.1,0.4) [0.2,0.5) [0.3,0.35) overlap 3-deep from 0.3.
        assert_eq!(
            sweep(&[(0.1, 0.4), (0.2, 0.5), (0.3, 0.35), (0.6, 0.9)]),
            (0.3, 3)
        );
    }

    #[test]
    fn sweep_ties_lows_before_highs_and_first_maximum_wins() {
        // [0.1,0.2) and [0.2,0.3): the low and the high at 0.2 form one group
        // and cancel, so the count never exceeds 1 and the first point wins.
        assert_eq!(sweep(&[(0.1, 0.2), (0.2, 0.3)]), (0.1, 1));
        // [0.1,0.3) and [0.2,0.25): depth 2 from 0.2.
        assert_eq!(sweep(&[(0.1, 0.3), (0.2, 0.25)]), (0.2, 2));
        // Two disjoint groups of equal depth: the lower one wins.
        assert_eq!(
            sweep(&[(0.5, 0.6), (0.5, 0.7), (0.1, 0.2), (0.1, 0.3)]),
            (0.1, 2)
        );
        // Identical intervals form one group.
        assert_eq!(sweep(&[(0.4, 0.8), (0.4, 0.8), (0.4, 0.8)]), (0.4, 3));
    }

    #[test]
    fn empty_interval_survives_but_never_counts() {
        // low == high is kept by `finish` (the reference keeps high >= low),
        // but its low and high form one group in the sweep and cancel.
        assert_eq!(
            finish(Bounds {
                low: 0.3,
                high: 0.3,
                dropped: false
            }),
            Some((0.3, 0.3))
        );
        assert_eq!(sweep(&[(0.3, 0.3)]), (0.0, 0));
        assert_eq!(sweep(&[(0.3, 0.3), (0.1, 0.5)]), (0.1, 1));
        assert_eq!(
            finish(Bounds {
                low: 0.4,
                high: 0.3,
                dropped: false
            }),
            None
        );
        assert_eq!(
            finish(Bounds {
                low: -0.2,
                high: 0.3,
                dropped: false
            }),
            Some((0.0, 0.3))
        );
    }

    #[test]
    fn tighten_follows_the_sign_of_the_slope_difference() {
        let mut b = Bounds::OPEN;
        // Competitor scores 0.1 higher but gains 0.5 less per unit gamma:
        // x overtakes it at gamma = 0.2.
        tighten(&mut b, 0.5, 0.5, 0.6, 0.0);
        assert!((b.low - 0.2).abs() < 1e-6 && b.high == LARGE);
        // Competitor below x but catching up: x loses first place at 0.25.
        tighten(&mut b, 0.5, 0.0, 0.4, 0.4);
        assert!((b.high - 0.25).abs() < 1e-6);
        // Same slope and a higher score: x can never win.
        tighten(&mut b, 0.5, 0.1, 0.7, 0.1);
        assert!(b.dropped);
    }

    #[test]
    fn static_top1_that_is_the_answer_itself_is_no_competitor() {
        let p = Pair {
            query: 0,
            record: 3,
            s: 0.9,
            t: 0.0,
        };
        assert_eq!(static_bounds(&p, Some((0.9, 3))), Bounds::OPEN);
        assert!(static_bounds(&p, Some((0.95, 4))).dropped);
    }

    #[test]
    fn shift_moves_by_gamma_along_the_unit_gradient() {
        let mut d = vec![1.0, 0.0];
        shift(&mut d, &[0.0, 2.0], 0.5);
        assert_eq!(d, vec![1.0, 0.5]);
        let mut d = vec![1.0, 0.0];
        shift(&mut d, &[0.0, 0.0], 0.5);
        assert_eq!(d, vec![1.0, 0.0]);
    }
}
