//! NUDGE-N: keep every record unit-norm and bound its squared move by gamma;
//! gamma comes from a grid scored on the dev queries (DESIGN §1).
//!
//! Every updated record is a combination `a d + b G` of its normalised
//! embedding and its gradient, so a dev score after the update is
//! `a S0 + b S1`: [`Step::coefficients`] is the whole update rule, used both to
//! score the grid without touching the corpus and to write the output.

use crate::matrix::fold_lanes;

/// The reference's grid: `0.02 * x` for x in 0..25, as Python computes it.
pub fn grid() -> Vec<f64> {
    (0..25).map(|x| 0.02 * x as f64).collect()
}

/// The update for one gamma: what depends on gamma alone, computed once.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The bound on each record's squared move, `|d' - d|^2 <= gamma`.
    pub gamma: f64,
    /// Sine of the rotation angle `theta = 2 asin(sqrt(gamma)/2)`.
    pub sin: f64,
    /// Cosine of the rotation angle theta.
    pub cos: f64,
}

impl Step {
    /// Precomputes the rotation for `gamma`.
    pub fn new(gamma: f64) -> Step {
        let theta = 2.0 * (gamma.sqrt() / 2.0).asin();
        let (sin, cos) = theta.sin_cos();
        Step { gamma, sin, cos }
    }

    /// `(a, b)` such that the updated record is `a d + b G`, from `v = d.G`
    /// and `c = |G|^2` ([`dots`]). Cases, in the reference's order of
    /// precedence: gamma 0 or G = 0: unchanged; `d.Ghat >= 1 - gamma/2`: the
    /// optimum Ghat is within the bound; `v < 0` (or G parallel to d):
    /// unchanged, as the reference skips these; otherwise rotate d towards G
    /// by theta, so that `|d' - d|^2 = gamma` exactly.
    ///
    /// The rotation form replaces the reference's `mu` formula, which divides
    /// two vanishing quantities when G is nearly parallel to d and gives NaN.
    pub fn coefficients(&self, v: f64, c: f64) -> (f64, f64) {
        let gamma = self.gamma;
        if gamma == 0.0 || c <= 0.0 {
            return (1.0, 0.0);
        }
        let norm = c.sqrt();
        if v / norm >= 1.0 - gamma / 2.0 {
            return (0.0, 1.0 / norm);
        }
        let w2 = c - v * v;
        if v < 0.0 || w2 <= 0.0 {
            return (1.0, 0.0);
        }
        let w = w2.sqrt();
        // u = (G - v d) / w;  d' = cos d + sin u
        (self.cos - self.sin * v / w, self.sin / w)
    }

    /// The NUDGE-N update of one unit-norm record `d` with gradient `g`.
    pub fn rotate(&self, d: &mut [f32], g: &[f32]) {
        let (v, c) = dots(d, g);
        let (a, b) = self.coefficients(v, c);
        let (a, b) = (a as f32, b as f32);
        for (di, gi) in d.iter_mut().zip(g) {
            *di = a * *di + b * gi;
        }
    }
}

/// `(v, c) = (d.G, |G|^2)` in f64, in 8 interleaved lanes folded in a fixed
/// order: deterministic, and unlike one long chain of dependent additions
/// it vectorises. The gamma search and the update both take v and c from
/// here, so the grid scores exactly the records that are written.
pub fn dots(d: &[f32], g: &[f32]) -> (f64, f64) {
    const L: usize = 8;
    let (mut v, mut c) = ([0f64; L], [0f64; L]);
    let (dc, gc) = (d.chunks_exact(L), g.chunks_exact(L));
    let (dr, gr) = (dc.remainder(), gc.remainder());
    for (a, b) in dc.zip(gc) {
        for l in 0..L {
            let (x, y) = (a[l] as f64, b[l] as f64);
            v[l] += x * y;
            c[l] += y * y;
        }
    }
    for (l, (x, y)) in dr.iter().zip(gr).enumerate() {
        let (x, y) = (*x as f64, *y as f64);
        v[l] += x * y;
        c[l] += y * y;
    }
    (fold_lanes(v), fold_lanes(c))
}

/// Dev score of one query: `|top-k ∩ answers| / min(|answers|, k)`.
pub fn hit_rate(top: impl Iterator<Item = u32>, answers: &[(u32, f32)], k: usize) -> f64 {
    let hits = top
        .take(k)
        .filter(|r| answers.iter().any(|a| a.0 == *r))
        .count();
    hits as f64 / answers.len().min(k) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(x: &[f32]) -> f32 {
        x.iter().map(|v| v * v).sum::<f32>().sqrt()
    }
    fn dist2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn grid_matches_python() {
        // Printed by Python: [0.02 * x for x in range(25)]
        let python = [
            0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28,
            0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48,
        ];
        assert_eq!(grid(), python);
    }

    #[test]
    fn rotation_stays_unit_and_moves_exactly_gamma() {
        let d0 = [1.0f32, 0.0, 0.0];
        let g = [0.3f32, 2.0, 0.0]; // d.Ghat = 0.148, far from the clamp
        for gamma in [0.02, 0.1, 0.48] {
            let mut d = d0;
            Step::new(gamma).rotate(&mut d, &g);
            assert!((norm(&d) - 1.0).abs() < 1e-6);
            assert!(
                (dist2(&d, &d0) as f64 - gamma).abs() < 1e-6,
                "gamma {gamma}"
            );
            assert!(d[1] > 0.0 && d[2] == 0.0);
        }
    }

    #[test]
    fn clamp_boundary_goes_to_ghat() {
        // d.Ghat = cos(phi). With 1 - gamma/2 = cos(phi) the optimum is on the
        // boundary: just above it d' = Ghat, just below it a rotation that
        // lands (almost) on Ghat too; both are continuous.
        let phi: f64 = 0.3;
        let d0 = [1.0f32, 0.0];
        let g = [(phi.cos() * 2.0) as f32, (phi.sin() * 2.0) as f32];
        let ghat = [phi.cos() as f32, phi.sin() as f32];
        let at = 2.0 * (1.0 - phi.cos());
        for gamma in [at * 1.001, at + 1e-9] {
            let mut d = d0;
            Step::new(gamma).rotate(&mut d, &g);
            assert_eq!(d, ghat, "gamma {gamma} must clamp to Ghat");
        }
        let mut d = d0;
        Step::new(at * 0.999).rotate(&mut d, &g);
        assert!(dist2(&d, &ghat) < 1e-5 && d != ghat);
    }

    #[test]
    fn negative_alignment_and_zero_gradient_leave_the_record() {
        let d0 = [0.6f32, 0.8];
        for g in [[-1.0f32, 0.2], [0.0, 0.0]] {
            let mut d = d0;
            Step::new(0.2).rotate(&mut d, &g);
            assert_eq!(d, d0);
        }
        let mut d = d0;
        Step::new(0.0).rotate(&mut d, &[1.0, 1.0]);
        assert_eq!(d, d0);
    }

    #[test]
    fn nearly_parallel_gradient_gives_no_nan() {
        let d0 = [1.0f32, 1e-8, 0.0];
        let mut d = d0;
        Step::new(0.02).rotate(&mut d, &[3.0, 3e-8 + 1e-12, 1e-20]);
        assert!(d.iter().all(|x| x.is_finite()));
        assert!((norm(&d) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn hit_rate_divides_by_min_of_answers_and_k() {
        let answers = [(3, 1.0), (5, 1.0), (9, 1.0)];
        assert_eq!(hit_rate([3u32, 1].into_iter(), &answers, 1), 1.0);
        assert_eq!(hit_rate([1u32, 5, 3].into_iter(), &answers, 2), 0.5);
        assert_eq!(hit_rate([9u32, 5, 3, 0].into_iter(), &answers, 5), 1.0);
    }
}
