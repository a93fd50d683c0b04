//! Bounded top-k lists, one per query, kept sorted best-first.
//!
//! The order is total so that every backend ranks alike: higher score first,
//! and at equal scores the lower record row first.

/// The best `k` (score, record row) entries of each of `queries` queries,
/// each list sorted best-first in the module's total order; what a scan
/// returns and what the metrics score.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// Capacity of each query's list.
    pub k: usize,
    /// Number of queries (lists).
    pub queries: usize,
    /// `queries x k` scores, best first; unused slots hold -inf.
    pub scores: Vec<f32>,
    /// `queries x k` record rows; unused slots hold `u32::MAX`.
    pub rows: Vec<u32>,
}

/// The record row of an unused slot (its score is -inf).
pub const EMPTY: u32 = u32::MAX;

/// `true` if (s1, r1) ranks before (s2, r2).
#[inline]
pub fn better(s1: f32, r1: u32, s2: f32, r2: u32) -> bool {
    s1 > s2 || (s1 == s2 && r1 < r2)
}

impl TopK {
    /// `queries` empty lists of capacity `k`.
    pub fn new(queries: usize, k: usize) -> TopK {
        TopK {
            k,
            queries,
            scores: vec![f32::NEG_INFINITY; queries * k],
            rows: vec![EMPTY; queries * k],
        }
    }

    /// Query `q`'s `k` score slots, best first (unused slots -inf).
    pub fn scores(&self, q: usize) -> &[f32] {
        &self.scores[q * self.k..(q + 1) * self.k]
    }
    /// Query `q`'s `k` record-row slots, best first (unused slots [`EMPTY`]).
    pub fn rows(&self, q: usize) -> &[u32] {
        &self.rows[q * self.k..(q + 1) * self.k]
    }
    /// The filled entries of query `q`, best first.
    pub fn entries(&self, q: usize) -> impl Iterator<Item = (f32, u32)> + '_ {
        self.scores(q)
            .iter()
            .copied()
            .zip(self.rows(q).iter().copied())
            .filter(|e| e.1 != EMPTY)
    }

    /// Offers one candidate to query `q`'s list.
    #[inline]
    pub fn push(&mut self, q: usize, score: f32, row: u32) {
        let k = self.k;
        let (s, r) = (
            &mut self.scores[q * k..(q + 1) * k],
            &mut self.rows[q * k..(q + 1) * k],
        );
        push_into(s, r, score, row);
    }

    /// Merges another set of lists for the same queries into this one.
    pub fn merge(&mut self, other: &TopK) {
        assert_eq!(self.queries, other.queries);
        for q in 0..self.queries {
            for (s, r) in other.entries(q) {
                self.push(q, s, r);
            }
        }
    }
}

/// Inserts (score, row) into one sorted list if it ranks within it.
#[inline]
pub fn push_into(scores: &mut [f32], rows: &mut [u32], score: f32, row: u32) {
    let k = scores.len();
    if k == 0 || !better(score, row, scores[k - 1], rows[k - 1]) {
        return;
    }
    let mut i = k - 1;
    while i > 0 && better(score, row, scores[i - 1], rows[i - 1]) {
        scores[i] = scores[i - 1];
        rows[i] = rows[i - 1];
        i -= 1;
    }
    scores[i] = score;
    rows[i] = row;
}

/// Offers a whole row of candidate scores (`scores[j]` belongs to record
/// `rows[j]`) to one sorted list: [`offer_by`] with the scores as given.
#[inline]
pub fn offer(list_scores: &mut [f32], list_rows: &mut [u32], scores: &[f32], rows: &[u32]) {
    offer_by(list_scores, list_rows, rows, |at, out| {
        out.copy_from_slice(&scores[at..at + out.len()])
    });
}

/// Offers candidates `j` (record `rows[j]`) to one sorted list, their
/// scores computed 16 at a time by `fill(j0, out)`, which writes the scores
/// of candidates `j0..j0 + out.len()` into `out`. Most candidates fall below
/// the list's worst entry, so each block is tested with a branch-free
/// compare the compiler vectorises, and only blocks holding a contender go
/// through [`push_into`]. A score computed in `fill` never makes a round
/// trip through memory.
#[inline(always)]
pub fn offer_by(
    list_scores: &mut [f32],
    list_rows: &mut [u32],
    rows: &[u32],
    fill: impl Fn(usize, &mut [f32]),
) {
    const L: usize = 16;
    /// One block: `scores` holds its scores, `rows` its records.
    #[inline(always)]
    fn test(ls: &mut [f32], lr: &mut [u32], scores: &[f32], rows: &[u32]) {
        let worst = ls[ls.len() - 1];
        let mut any = false;
        for &s in scores {
            any |= s >= worst;
        }
        if any {
            for (&s, &r) in scores.iter().zip(rows) {
                push_into(ls, lr, s, r);
            }
        }
    }
    if list_scores.is_empty() {
        return;
    }
    let mut block = [0f32; L];
    let full = rows.len() / L * L;
    // Whole blocks first: their width is a constant, so `fill` and the
    // test unroll and vectorise; then the ragged tail.
    for at in (0..full).step_by(L) {
        fill(at, &mut block);
        test(list_scores, list_rows, &block, &rows[at..at + L]);
    }
    if full < rows.len() {
        let tail = &mut block[..rows.len() - full];
        fill(full, tail);
        test(list_scores, list_rows, tail, &rows[full..]);
    }
}

impl TopK {
    /// [`offer`] for query `q`.
    pub fn offer(&mut self, q: usize, scores: &[f32], rows: &[u32]) {
        let k = self.k;
        offer(
            &mut self.scores[q * k..(q + 1) * k],
            &mut self.rows[q * k..(q + 1) * k],
            scores,
            rows,
        );
    }
}

/// Whether a score can still enter a list whose last (k-th) score is
/// `kth`: the filter of the GPU's fused top-k (the twin of its GEMM
/// epilogue, `tiled.rs`). A list only gets better, so a score below its
/// k-th never enters; an equal one may (a lower row wins the tie), so it
/// passes and [`merge_candidates`] decides. NaN never passes.
#[inline]
pub fn may_enter(score: f32, kth: f32) -> bool {
    score >= kth
}

/// Folds candidates into one sorted list: the twin of
/// `topk_fused.wgsl::merge`, and the same result as [`push_into`] of each.
/// Candidates are in any order, none NaN, their rows distinct and not in
/// the list (a chunk's rows are new to it). Each entry goes to its place
/// in the merged order, the number of entries that rank before it; places
/// past the list's end are dropped.
pub fn merge_candidates(scores: &mut [f32], rows: &mut [u32], cands: &[(f32, u32)]) {
    let k = scores.len();
    let list: Vec<(f32, u32)> = scores.iter().copied().zip(rows.iter().copied()).collect();
    let ahead = |s: f32, r: u32| cands.iter().filter(|c| better(c.0, c.1, s, r)).count();
    for (i, &(s, r)) in list.iter().enumerate() {
        let place = i + ahead(s, r);
        if place < k {
            scores[place] = s;
            rows[place] = r;
        }
    }
    for &(s, r) in cands {
        // The list entries ahead of it are a prefix of the sorted list.
        let place = list.partition_point(|e| better(e.0, e.1, s, r)) + ahead(s, r);
        if place < k {
            scores[place] = s;
            rows[place] = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_k_with_ties_to_lower_row() {
        let mut t = TopK::new(1, 3);
        for (s, r) in [(0.5, 4), (0.9, 7), (0.5, 2), (0.1, 0), (0.9, 9), (0.5, 1)] {
            t.push(0, s, r);
        }
        assert_eq!(
            t.entries(0).collect::<Vec<_>>(),
            vec![(0.9, 7), (0.9, 9), (0.5, 1)]
        );
    }

    #[test]
    fn offer_equals_pushing_one_by_one() {
        let scores: Vec<f32> = (0..100)
            .map(|i| ((i * 37 % 41) as f32 * 0.1).sin())
            .collect();
        let rows: Vec<u32> = (0..100).map(|i| i * 3).collect();
        for k in [1, 3, 10] {
            let (mut a, mut b) = (TopK::new(1, k), TopK::new(1, k));
            a.offer(0, &scores, &rows);
            for (s, r) in scores.iter().zip(&rows) {
                b.push(0, *s, *r);
            }
            assert_eq!(a, b);
        }
    }

    /// Scores with many ties (a few distinct values), some NaN, some -inf.
    fn tied_scores(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| match (i.wrapping_mul(2654435761) ^ seed) % 11 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                v => (v % 4) as f32 * 0.5,
            })
            .collect()
    }

    #[test]
    fn merging_candidates_equals_pushing_them() {
        for (k, filled, n) in [(1, 0, 5), (4, 2, 9), (5, 5, 30), (8, 3, 2), (3, 3, 0)] {
            let mut a = TopK::new(1, k);
            for (s, r) in tied_scores(filled, 7).into_iter().zip(100..) {
                if !s.is_nan() {
                    a.push(0, s, r);
                }
            }
            let mut b = a.clone();
            // Rows new to the list, in no particular order.
            let cands: Vec<(f32, u32)> = tied_scores(n, 3)
                .into_iter()
                .zip((0..n as u32).map(|r| (r * 7) % n as u32 + 200))
                .filter(|c| !c.0.is_nan())
                .collect();
            for &(s, r) in &cands {
                a.push(0, s, r);
            }
            merge_candidates(&mut b.scores, &mut b.rows, &cands);
            assert_eq!(a.rows, b.rows, "k={k} filled={filled} n={n}");
            let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
        }
    }

    /// The fused top-k's claim: chunk by chunk, offering only the scores
    /// that pass [`may_enter`] against the list's k-th and merging them
    /// gives the lists that pushing every score gives.
    #[test]
    fn filtered_chunks_give_the_full_lists() {
        let scores = tied_scores(500, 11);
        for k in [1, 3, 10, 40] {
            for chunk in [1, 7, 64, 500] {
                let mut want = TopK::new(1, k);
                let mut got = TopK::new(1, k);
                let mut passed = 0;
                for (c, block) in scores.chunks(chunk).enumerate() {
                    let kth = got.scores[k - 1];
                    let cands: Vec<(f32, u32)> = block
                        .iter()
                        .zip((c * chunk) as u32..)
                        .filter(|(s, _)| may_enter(**s, kth))
                        .map(|(s, r)| (*s, r))
                        .collect();
                    passed += cands.len();
                    merge_candidates(&mut got.scores, &mut got.rows, &cands);
                    for (s, r) in block.iter().zip((c * chunk) as u32..) {
                        want.push(0, *s, r);
                    }
                }
                assert_eq!(got.rows, want.rows, "k={k} chunk={chunk}");
                // And the filter does filter (but passes every tie).
                if chunk < 500 {
                    assert!(passed < 500, "k={k} chunk={chunk}");
                }
            }
        }
        assert!(!may_enter(f32::NAN, f32::NEG_INFINITY));
        assert!(may_enter(f32::NEG_INFINITY, f32::NEG_INFINITY));
        assert!(may_enter(0.5, 0.5) && !may_enter(0.25, 0.5));
    }

    #[test]
    fn fewer_candidates_than_k() {
        let mut t = TopK::new(2, 4);
        t.push(1, -3.0, 5);
        assert_eq!(t.entries(0).count(), 0);
        assert_eq!(t.entries(1).collect::<Vec<_>>(), vec![(-3.0, 5)]);
    }
}
